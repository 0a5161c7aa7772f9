//! `latency.svg`: every operation as a point (time it started, latency), coloured by outcome
//! (ok, failed, indeterminate), over shaded fault windows, one colour per fault kind, with
//! membership steps as vertical lines.
//!
//! Bounded: at most [`POINTS_MAX`] points per outcome are drawn (evenly thinned; every
//! non-ok point is kept while the cap allows).

use std::path::Path;

use anyhow::{anyhow, Result};
use plotters::prelude::*;

use super::history::{History, Outcome, Phase};
use super::nemesis::Kind;
use super::report::FaultRecord;

/// Most points drawn per outcome class.
pub const POINTS_MAX: usize = 20_000;
const WIDTH_PX: u32 = 1200;
const HEIGHT_PX: u32 = 600;

fn kind_colour(kind: Kind) -> RGBColor {
    match kind {
        Kind::Kill => RGBColor(255, 205, 205),
        Kind::Pause => RGBColor(205, 220, 255),
        Kind::Partition => RGBColor(255, 235, 190),
        Kind::Membership => RGBColor(120, 120, 120),
        Kind::Skew => RGBColor(220, 205, 255),
        Kind::Netem => RGBColor(205, 245, 215),
    }
}

/// Every `len / max`-th item, so at most about `max` remain.
fn thin<T: Copy>(items: &[T], max: usize) -> Vec<T> {
    let step = items.len().div_ceil(max.max(1)).max(1);
    items.iter().step_by(step).copied().collect()
}

/// Draws the plot into `path`.
///
/// # Errors
/// If the file cannot be written.
pub fn draw(
    path: &Path,
    history: &History,
    faults: &[FaultRecord],
    end_us: u64,
    title: &str,
) -> Result<()> {
    let fail = |error: String| anyhow!("drawing {}: {error}", path.display());
    let mut classes: [Vec<(f64, f64)>; 3] = Default::default();
    for op in history.ops().iter().filter(|op| op.phase == Phase::Main) {
        let class = match op.outcome {
            Outcome::Ok(_) => 0,
            Outcome::Failed(_) => 1,
            Outcome::Indeterminate(_) => 2,
        };
        let latency_ms = op.complete_us.saturating_sub(op.invoke_us) as f64 / 1000.0;
        classes[class].push((op.invoke_us as f64 / 1e6, latency_ms));
    }
    let x_max = (end_us as f64 / 1e6).max(1.0);
    let y_max = classes
        .iter()
        .flatten()
        .map(|(_, ms)| *ms)
        .fold(1.0, f64::max)
        * 1.05;
    let root = SVGBackend::new(path, (WIDTH_PX, HEIGHT_PX)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(format!("{e:?}")))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..x_max, 0f64..y_max)
        .map_err(|e| fail(format!("{e:?}")))?;
    chart
        .configure_mesh()
        .x_desc("seconds since start")
        .y_desc("latency (ms)")
        .draw()
        .map_err(|e| fail(format!("{e:?}")))?;
    let mut labelled: Vec<Kind> = Vec::new();
    for fault in faults {
        let (start, end) = (fault.start_us as f64 / 1e6, fault.end_us as f64 / 1e6);
        let colour = kind_colour(fault.kind);
        let shape = if fault.kind == Kind::Membership {
            Rectangle::new(
                [(start, 0.0), (start + x_max / 1000.0, y_max)],
                colour.filled(),
            )
        } else {
            Rectangle::new([(start, 0.0), (end, y_max)], colour.filled())
        };
        let series = chart
            .draw_series(std::iter::once(shape))
            .map_err(|e| fail(format!("{e:?}")))?;
        // One legend entry per kind.
        if !labelled.contains(&fault.kind) {
            labelled.push(fault.kind);
            series.label(fault.kind.name()).legend(move |(x, y)| {
                Rectangle::new([(x, y - 5), (x + 10, y + 5)], colour.filled())
            });
        }
    }
    let styles = [
        ("ok", GREEN.mix(0.5)),
        ("failed", RGBColor(230, 140, 0).mix(0.8)),
        ("indeterminate", RED.mix(0.9)),
    ];
    for (points, (label, colour)) in classes.iter().zip(styles) {
        let points = thin(points, POINTS_MAX);
        chart
            .draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 2, colour.filled())),
            )
            .map_err(|e| fail(format!("{e:?}")))?
            .label(label)
            .legend(move |(x, y)| Circle::new((x + 5, y), 3, colour.filled()));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| fail(format!("{e:?}")))?;
    root.present().map_err(|e| fail(format!("{e:?}")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::history::{Call, Op, Ret, Workload};
    use super::*;

    #[test]
    fn thinning_keeps_at_most_about_the_cap() {
        let items: Vec<u32> = (0..1000).collect();
        assert_eq!(thin(&items, 100).len(), 100);
        assert_eq!(thin(&items, 5000).len(), 1000);
    }

    #[test]
    fn draws_points_and_fault_windows() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("latency.svg");
        let mut history = History::new();
        for (i, outcome) in [
            Outcome::Ok(Ret::Done),
            Outcome::Failed("TRYAGAIN".into()),
            Outcome::Indeterminate("t".into()),
        ]
        .into_iter()
        .enumerate()
        {
            history.push(Op {
                index: 0,
                process: 1,
                workload: Workload::Register,
                key: "k".into(),
                node: 1,
                call: Call::Write(i as u64),
                invoke_us: 1_000_000 * i as u64,
                complete_us: 1_000_000 * i as u64 + 5_000,
                outcome,
                phase: Phase::Main,
            });
        }
        let faults = [FaultRecord {
            kind: Kind::Partition,
            what: "x".into(),
            start_us: 500_000,
            end_us: 1_500_000,
        }];
        draw(&path, &history, &faults, 3_000_000, "test run").expect("drawn");
        let svg = std::fs::read_to_string(&path).expect("written");
        assert!(svg.starts_with("<svg"));
        for label in ["partition", "indeterminate", "test run"] {
            assert!(svg.contains(label), "{label} missing");
        }
        assert!(svg.contains("circle"), "points drawn");
    }
}
