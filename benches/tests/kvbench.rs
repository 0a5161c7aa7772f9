//! Runs the real `kvbench` binary for a second or two against a fake RESP server in this test
//! process (127.0.0.1, ephemeral port), and checks what it prints and writes.
//!
//! The fake answers `+OK` to SET, a bulk to GET and a leader's RAFT.STATUS; it counts what it
//! served so the tool's numbers can be checked against it. Every wait is bounded: the child is
//! killed if it overruns [`CHILD_DEADLINE`].

use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use kvnode::resp::{decode_request, encode, Frame, Limits, Protocol};
use kvnode::status::NodeStatus;
use raft_core::{NodeId, Role, Term};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Longest a kvbench child may run before the test kills it and fails.
const CHILD_DEADLINE: Duration = Duration::from_secs(20);

/// Commands the fake served.
#[derive(Default)]
struct Served {
    sets: AtomicU64,
    gets: AtomicU64,
}

/// A fake server on its own runtime; dropped (and stopped) with the test.
struct FakeServer {
    address: String,
    served: Arc<Served>,
    _runtime: tokio::runtime::Runtime,
}

fn start_fake_server() -> FakeServer {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let listener = runtime
        .block_on(TcpListener::bind("127.0.0.1:0"))
        .expect("bind 127.0.0.1:0");
    let address = listener.local_addr().expect("address").to_string();
    let served = Arc::new(Served::default());
    let (task_address, task_served) = (address.clone(), served.clone());
    runtime.spawn(async move {
        // Ends when the runtime is dropped at the end of the test.
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream, task_address.clone(), task_served.clone()));
        }
    });
    FakeServer {
        address,
        served,
        _runtime: runtime,
    }
}

async fn serve(mut stream: TcpStream, address: String, served: Arc<Served>) {
    let limits = Limits::default();
    let mut input = BytesMut::new();
    let mut output = BytesMut::new();
    loop {
        match stream.read_buf(&mut input).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        while let Ok(Some(Frame::Array(args))) = decode_request(&mut input, &limits) {
            let reply = answer(&args, &address, &served);
            encode(&reply, Protocol::Resp2, &mut output);
        }
        if stream.write_all(&output).await.is_err() {
            return;
        }
        output.clear();
    }
}

fn answer(args: &[Frame], address: &str, served: &Served) -> Frame {
    let name = match args.first() {
        Some(Frame::Bulk(name)) => name.to_ascii_uppercase(),
        _ => return Frame::error("ERR expected a command"),
    };
    match name.as_slice() {
        b"SET" => {
            served.sets.fetch_add(1, Ordering::Relaxed);
            Frame::ok()
        }
        b"GET" => {
            served.gets.fetch_add(1, Ordering::Relaxed);
            Frame::bulk("value")
        }
        b"RAFT.STATUS" => Frame::bulk(
            NodeStatus {
                node_id: NodeId(1),
                role: Role::Leader,
                term: Term(3),
                leader: Some(NodeId(1)),
                leader_client: Some(address.to_owned()),
                voters: vec![NodeId(1)],
                ..NodeStatus::default()
            }
            .render(),
        ),
        _ => Frame::error("ERR unknown command"),
    }
}

struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Runs kvbench with `args`, output to files in `dir`, killed if it overruns.
fn run_kvbench(dir: &Path, args: &[&str]) -> Run {
    let stdout_path = dir.join("stdout");
    let stderr_path = dir.join("stderr");
    let mut child = Command::new(env!("CARGO_BIN_EXE_kvbench"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).expect("stdout file"))
        .stderr(std::fs::File::create(&stderr_path).expect("stderr file"))
        .spawn()
        .expect("start kvbench");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("poll kvbench") {
            break status;
        }
        if started.elapsed() > CHILD_DEADLINE {
            // Best effort: the child is being abandoned either way.
            let _ = child.kill();
            let _ = child.wait();
            panic!("kvbench {args:?} did not stop within {CHILD_DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run {
        status,
        stdout: std::fs::read_to_string(stdout_path).expect("read stdout"),
        stderr: std::fs::read_to_string(stderr_path).expect("read stderr"),
    }
}

fn json_from_stdout(stdout: &str) -> Value {
    let line = stdout
        .lines()
        .find_map(|line| line.strip_prefix("JSON "))
        .unwrap_or_else(|| panic!("no JSON line in:\n{stdout}"));
    serde_json::from_str(line).expect("the JSON line parses")
}

#[test]
fn load_run_counts_ops_prints_json_and_draws_the_plot() {
    let server = start_fake_server();
    let dir = tempfile::tempdir().expect("temp dir");
    let plot = dir.path().join("plot.svg");
    let plot_arg = plot.to_str().expect("utf-8 path");
    let run = run_kvbench(
        dir.path(),
        &[
            "--endpoints",
            &server.address,
            "-c",
            "4",
            "-P",
            "2",
            "--reads",
            "0.5",
            "--warmup",
            "0.5",
            "--duration",
            "1.5",
            "--plot",
            plot_arg,
        ],
    );
    assert!(
        run.status.success(),
        "{:?}\n{}\n{}",
        run.status,
        run.stdout,
        run.stderr
    );
    let json = json_from_stdout(&run.stdout);
    let ops = json["ops"].as_u64().expect("ops");
    assert!(ops > 100, "too few ops: {ops}");
    assert_eq!(
        json["reads_ok"].as_u64().unwrap() + json["writes_ok"].as_u64().unwrap(),
        ops
    );
    let served =
        server.served.sets.load(Ordering::Relaxed) + server.served.gets.load(Ordering::Relaxed);
    assert!(
        served >= ops,
        "the server served {served}, kvbench counted {ops} after warm-up"
    );
    assert!(json["reads_ok"].as_u64().unwrap() > 0 && json["writes_ok"].as_u64().unwrap() > 0);
    assert_eq!(json["errors"]["total"], 0);
    assert_eq!(json["leader_changes"], 0);
    // The fake's RAFT.STATUS parsed: its leader was seen, and no poll failed.
    assert_eq!(json["leader_events"][0]["leader_id"], 1, "{json}");
    assert_eq!(json["leader_events"][0]["term"], 3, "{json}");
    assert_eq!(json["status_polls_failed"], 0, "{json}");
    assert_eq!(json["targets"][0].as_str(), Some(server.address.as_str()));
    assert_eq!(json["connections"], 4);
    assert_eq!(json["pipeline"], 2);
    let measured = json["measured_s"].as_f64().expect("measured_s");
    assert!((measured - 1.5).abs() < 0.01, "measured {measured}");
    assert!(json["throughput_ops_s"].as_f64().unwrap() > 0.0);
    let latency = &json["latency_us"];
    assert!(latency["p50"].as_u64().unwrap() <= latency["p99"].as_u64().unwrap());
    assert!(latency["p99"].as_u64().unwrap() <= latency["max"].as_u64().unwrap());
    assert!(run.stdout.contains("latency   p50"), "{}", run.stdout);
    assert!(
        run.stderr.contains("ops/s"),
        "no progress line: {}",
        run.stderr
    );
    let svg = std::fs::read_to_string(&plot).expect("SVG written");
    assert!(svg.starts_with("<svg") && svg.contains("throughput per second"));
}

#[test]
fn op_count_stops_the_run_early_and_failover_reports_gaps_in_a_json_file() {
    let server = start_fake_server();
    let dir = tempfile::tempdir().expect("temp dir");
    let json_path = dir.path().join("result.json");
    let started = Instant::now();
    let run = run_kvbench(
        dir.path(),
        &[
            "--endpoints",
            &server.address,
            "--failover",
            "--ops",
            "300",
            "--warmup",
            "0.2",
            "--duration",
            "10",
            "--json",
            json_path.to_str().expect("utf-8 path"),
            "--quiet",
        ],
    );
    assert!(
        run.status.success(),
        "{:?}\n{}\n{}",
        run.status,
        run.stdout,
        run.stderr
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "--ops did not end the run early"
    );
    assert!(
        !run.stdout.contains("JSON "),
        "the JSON goes to the file only"
    );
    let text = std::fs::read_to_string(&json_path).expect("JSON file written");
    assert_eq!(text.lines().count(), 1);
    let json: Value = serde_json::from_str(&text).expect("the JSON file parses");
    assert_eq!(json["mode"], "failover");
    assert_eq!(json["ops"], 300);
    assert_eq!(json["writes_ok"], 300);
    assert_eq!(json["connections"], 4);
    let gap = json["longest_write_gap_ms"]
        .as_f64()
        .expect("a longest gap");
    assert!(gap > 0.0 && gap < 1000.0, "gap {gap} ms");
    assert!(json["measured_s"].as_f64().unwrap() < 5.0);
    assert!(
        run.stdout.contains("write gaps longest first"),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr.is_empty(),
        "--quiet prints no progress: {}",
        run.stderr
    );
}

#[test]
fn unreachable_endpoint_counts_connection_errors_and_exits_1() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = closed.local_addr().expect("address").to_string();
    drop(closed);
    let dir = tempfile::tempdir().expect("temp dir");
    let run = run_kvbench(
        dir.path(),
        &[
            "--endpoints",
            &address,
            "--warmup",
            "0",
            "--duration",
            "0.5",
            "--timeout-ms",
            "200",
            "--quiet",
        ],
    );
    assert_eq!(run.status.code(), Some(1), "{}\n{}", run.stdout, run.stderr);
    let json = json_from_stdout(&run.stdout);
    assert_eq!(json["ops"], 0);
    assert!(json["errors"]["connection"].as_u64().unwrap() > 0, "{json}");
    assert!(
        run.stderr.contains("no operation succeeded"),
        "{}",
        run.stderr
    );
}

#[test]
fn bad_options_exit_2_naming_the_option() {
    let dir = tempfile::tempdir().expect("temp dir");
    let run = run_kvbench(dir.path(), &["--reads", "2"]);
    assert_eq!(run.status.code(), Some(2));
    assert!(run.stderr.contains("--reads"), "{}", run.stderr);
}
