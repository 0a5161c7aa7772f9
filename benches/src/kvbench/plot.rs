//! `--plot FILE.svg`: the latency percentile curve (top) and throughput per second (bottom).
//!
//! The percentile axis is logarithmic in the tail, as in HdrHistogram's own plots: x is the
//! number of nines, -log10(1 - q), so 90 %, 99 % and 99.9 % are evenly spaced.

use std::path::Path;

use anyhow::{anyhow, Result};
use hdrhistogram::Histogram;
use plotters::prelude::*;

use super::report::Report;

/// Most nines on the percentile axis (99.9999 %), whatever the sample count.
const NINES_MAX: f64 = 6.0;
/// Points per nine on the curve.
const STEPS_PER_NINE: u32 = 40;
const WIDTH_PX: u32 = 960;
const HEIGHT_PX: u32 = 720;

/// The latency curve as (nines, milliseconds): from the median-free start (0 nines = 0 %) to the
/// last nine the samples can support (log10 of the count), ending at the maximum.
pub fn percentile_curve(histogram: &Histogram<u64>) -> Vec<(f64, f64)> {
    if histogram.is_empty() {
        return Vec::new();
    }
    let nines_max = nines_max(histogram.len());
    let steps = (nines_max * f64::from(STEPS_PER_NINE)) as u32;
    let mut points: Vec<(f64, f64)> = (0..steps)
        .map(|step| {
            let nines = f64::from(step) / f64::from(STEPS_PER_NINE);
            let quantile = 1.0 - 10f64.powf(-nines);
            (nines, histogram.value_at_quantile(quantile) as f64 / 1000.0)
        })
        .collect();
    points.push((nines_max, histogram.max() as f64 / 1000.0));
    points
}

/// Whole nines the sample count supports, at least 1 and at most [`NINES_MAX`].
fn nines_max(samples: u64) -> f64 {
    (samples.max(1) as f64).log10().ceil().clamp(1.0, NINES_MAX)
}

/// "0%", "90%", "99%", "99.9%" for 0, 1, 2, 3 nines.
pub fn percentile_label(nines: f64) -> String {
    let percent = 100.0 * (1.0 - 10f64.powf(-nines));
    let decimals = (nines.round() as usize).saturating_sub(2);
    format!("{percent:.decimals$}%")
}

/// Draws the SVG.
///
/// # Errors
/// If the file cannot be written.
pub fn draw(path: &Path, report: &Report, latency_us: &Histogram<u64>) -> Result<()> {
    let fail = |error| anyhow!("drawing {}: {error:?}", path.display());
    let root = SVGBackend::new(path, (WIDTH_PX, HEIGHT_PX)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(format!("{e:?}")))?;
    let (top, bottom) = root.split_vertically(HEIGHT_PX / 2);
    draw_latency(&top, report, latency_us).map_err(fail)?;
    draw_throughput(&bottom, report).map_err(fail)?;
    root.present().map_err(|e| fail(format!("{e:?}")))?;
    Ok(())
}

fn draw_latency(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    report: &Report,
    latency_us: &Histogram<u64>,
) -> Result<(), String> {
    let curve = percentile_curve(latency_us);
    let nines_max = nines_max(latency_us.len());
    let y_max = curve.iter().map(|(_, ms)| *ms).fold(0.001, f64::max) * 1.05;
    let caption = format!(
        "latency by percentile: {} conn x pipeline {}, reads {:.0} %, {} ops (p50 {:.3} ms, p99 {:.3} ms)",
        report.connections,
        report.pipeline,
        report.read_fraction * 100.0,
        report.ops(),
        report.latency.p50_us as f64 / 1000.0,
        report.latency.p99_us as f64 / 1000.0
    );
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..nines_max, 0f64..y_max)
        .map_err(|e| format!("{e:?}"))?;
    chart
        .configure_mesh()
        .x_labels(nines_max as usize + 1)
        .x_label_formatter(&|nines| percentile_label(*nines))
        .x_desc("percentile")
        .y_desc("latency (ms)")
        .draw()
        .map_err(|e| format!("{e:?}"))?;
    chart
        .draw_series(LineSeries::new(curve, &BLUE))
        .map_err(|e| format!("{e:?}"))?;
    Ok(())
}

fn draw_throughput(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    report: &Report,
) -> Result<(), String> {
    // Whole seconds of the run only; the last slot holds a partial second and stragglers.
    let seconds = (report.warmup + report.measured).as_secs() as usize;
    let slots = &report.timeline[..seconds.min(report.timeline.len())];
    let x_max = (slots.len() as f64).max(1.0);
    let y_max = slots.iter().copied().max().unwrap_or(0).max(1) as f64 * 1.1;
    let mut chart = ChartBuilder::on(area)
        .caption(
            "throughput per second (grey: warm-up, excluded)",
            ("sans-serif", 16),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..x_max, 0f64..y_max)
        .map_err(|e| format!("{e:?}"))?;
    chart
        .configure_mesh()
        .x_desc("seconds since start")
        .y_desc("ops/s")
        .draw()
        .map_err(|e| format!("{e:?}"))?;
    let warmup = report.warmup.as_secs_f64().min(x_max);
    chart
        .draw_series(std::iter::once(Rectangle::new(
            [(0.0, 0.0), (warmup, y_max)],
            RGBColor(225, 225, 225).filled(),
        )))
        .map_err(|e| format!("{e:?}"))?;
    let points = slots
        .iter()
        .enumerate()
        .map(|(second, ops)| (second as f64 + 0.5, *ops as f64));
    chart
        .draw_series(LineSeries::new(points, &RED))
        .map_err(|e| format!("{e:?}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::stats::{new_histogram, WorkerStats};
    use super::super::workload::Op;
    use super::*;

    #[test]
    fn labels_show_the_nines() {
        let labels: Vec<String> = [0.0, 1.0, 2.0, 3.0, 4.0]
            .iter()
            .map(|n| percentile_label(*n))
            .collect();
        assert_eq!(labels, ["0%", "90%", "99%", "99.9%", "99.99%"]);
    }

    #[test]
    fn curve_rises_to_the_maximum_over_the_supported_nines() {
        assert!(percentile_curve(&new_histogram()).is_empty());
        let mut histogram = new_histogram();
        for us in 1..=1000 {
            histogram.record(us).expect("in range");
        }
        let curve = percentile_curve(&histogram);
        assert_eq!(curve.first(), Some(&(0.0, 0.001)));
        assert_eq!(curve.last(), Some(&(3.0, 1.0)));
        assert!(curve
            .windows(2)
            .all(|pair| pair[0].0 < pair[1].0 && pair[0].1 <= pair[1].1));
    }

    #[test]
    fn draws_an_svg_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("plot.svg");
        let mut stats = WorkerStats::default();
        for us in [100, 200, 300, 5000] {
            stats.record_ok(Op::Set, Duration::from_micros(us));
        }
        let options = <super::super::options::Options as clap::Parser>::try_parse_from(["kvbench"])
            .expect("valid");
        let settings = super::super::options::Settings::from_options(&options).expect("valid");
        let report = Report::new(
            &settings,
            vec!["127.0.0.1:6379".to_owned()],
            Duration::from_secs(10),
            &stats,
            Default::default(),
            vec![5; 12],
            None,
        );
        draw(&path, &report, &stats.latency_us).expect("drawn");
        let svg = std::fs::read_to_string(&path).expect("written");
        assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(100)]);
        assert!(svg.contains("90%"), "percentile labels");
        assert!(svg.contains("throughput per second"));
        assert!(svg.contains("polyline") || svg.contains("path"));
    }
}
