//! The command line, and the checked [`Settings`] the run uses.
//!
//! Every number a user gives is range-checked here, once, so the rest of the tool can rely on
//! bounded loops and bounded buffers (a pipeline of 10⁹ or a 1 TiB value is refused up front).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, ensure, Result};
use clap::{Parser, ValueEnum};

/// Most connections one run may open; far above what one 2-core machine needs.
pub const CONNECTIONS_MAX: usize = 4096;
/// Deepest pipeline: replies are read one batch at a time, so this bounds a batch.
pub const PIPELINE_MAX: usize = 1024;
/// Largest value (the kvnode default caps a bulk well above the typical 128 B).
pub const VALUE_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Longest key.
pub const KEY_BYTES_MAX: usize = 64 * 1024;
/// Longest run or warm-up, so a typo cannot start a week-long run.
pub const RUN_SECS_MAX: f64 = 24.0 * 3600.0;
/// Longest per-request timeout.
pub const TIMEOUT_MS_MAX: u64 = 600_000;
/// Connections in failover mode when `--connections` is not given: a steady trickle of writes
/// whose gaps show the outage, not a load test.
pub const FAILOVER_CONNECTIONS_DEFAULT: usize = 4;

/// Whether this build can speak etcd's API (`--protocol etcd`).
pub const ETCD_SUPPORTED: bool = cfg!(feature = "etcd");

/// The API the servers speak.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// The Redis protocol (RESP): raftkv, redis-server. SET and GET.
    Redis,
    /// etcd's v3 gRPC API: Put, and a linearizable Range of one key (needs the `etcd` build
    /// feature). Each connection is its own client with its own gRPC channel.
    Etcd,
}

impl Protocol {
    /// The name in the reports.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Redis => "redis",
            Protocol::Etcd => "etcd",
        }
    }
}

/// What a write is, on the Redis protocol.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum WriteKind {
    /// `SET key value`.
    #[default]
    Set,
    /// `SET key value EX 3600`: a write with a TTL.
    SetEx,
    /// `MULTI`, `INCR key`, `EXEC`: a one-command transaction (three frames, one log entry).
    IncrMulti,
}

/// Closed-loop load generator for raftkv, Redis and etcd (HDR latency histogram).
#[derive(Parser, Debug, Clone, PartialEq)]
#[command(name = "kvbench", version)]
pub struct Options {
    /// Comma-separated host:port list of the servers' client ports.
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1:6379")]
    pub endpoints: Vec<String>,
    /// The servers' API: redis (raftkv, redis-server) or etcd (etcd v3 gRPC; needs the `etcd`
    /// build feature).
    #[arg(long, value_enum, default_value_t = Protocol::Redis)]
    pub protocol: Protocol,
    /// Spread connections over all endpoints (round robin) instead of using only the leader.
    #[arg(long)]
    pub spread: bool,
    /// Concurrent connections, each a closed loop [default: 1, or 4 with --failover].
    #[arg(long, short = 'c')]
    pub connections: Option<usize>,
    /// Requests sent per round trip on each connection.
    #[arg(long, short = 'P', default_value_t = 1)]
    pub pipeline: usize,
    /// Number of distinct keys, chosen uniformly.
    #[arg(long, default_value_t = 100_000)]
    pub keyspace: u64,
    /// Key size in bytes.
    #[arg(long, default_value_t = 16)]
    pub key_size: usize,
    /// Value size in bytes.
    #[arg(long, default_value_t = 128)]
    pub value_size: usize,
    /// Fraction of requests that are GETs (the rest are SETs), 0.0 to 1.0.
    #[arg(long, default_value_t = 0.0)]
    pub reads: f64,
    /// What each write is (Redis protocol only): set, set-ex (SET with EX 3600) or
    /// incr-multi (MULTI, INCR, EXEC).
    #[arg(long, value_enum, default_value_t = WriteKind::Set)]
    pub write: WriteKind,
    /// Take keys in order 0, 1, 2, ... from one counter shared by all connections (wrapping at
    /// the keyspace) instead of at random; `--sequential --ops KEYSPACE --warmup 0` writes every
    /// key once.
    #[arg(long)]
    pub sequential: bool,
    /// Measured time in seconds, after the warm-up (always a cap, even with --ops).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Stop after this many measured operations (or at --duration, whichever comes first).
    #[arg(long)]
    pub ops: Option<u64>,
    /// Warm-up in seconds, excluded from the results.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Per-request (and per-connect) timeout in milliseconds.
    #[arg(long, default_value_t = 2000)]
    pub timeout_ms: u64,
    /// Write the JSON result line to this file (default: stdout, prefixed `JSON `).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Draw the latency percentile curve and throughput over time to this SVG file.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Failover mode: writes only, a few connections, retry on errors, report the longest gap
    /// between successful writes (kill the leader meanwhile).
    #[arg(long)]
    pub failover: bool,
    /// Seed of the key/value/mix generator (connection i uses seed + i).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// No live progress line.
    #[arg(long)]
    pub quiet: bool,
    /// Connect over TLS (raftkv with client_tls_cert, redis-server's tls-port); needs
    /// --cacert.
    #[arg(long, requires = "cacert")]
    pub tls: bool,
    /// PEM CA certificate(s) the servers' certificates chain to.
    #[arg(long, value_name = "FILE", requires = "tls")]
    pub cacert: Option<PathBuf>,
    /// PEM client certificate, for servers that require one (client_tls_auth_clients).
    #[arg(long, value_name = "FILE", requires_all = ["tls", "key"])]
    pub cert: Option<PathBuf>,
    /// PEM private key of --cert.
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
}

/// The TLS files of a run with `--tls`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub cacert: PathBuf,
    /// The client certificate and its key.
    pub identity: Option<(PathBuf, PathBuf)>,
}

/// Where connections go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// All connections to the leader (found via RAFT.STATUS, else the first endpoint).
    Leader,
    /// Connection i to endpoint i mod n.
    Spread,
}

/// Checked settings of one run.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub endpoints: Vec<String>,
    pub protocol: Protocol,
    pub target: Target,
    pub connections: usize,
    pub pipeline: usize,
    pub keyspace: u64,
    pub key_bytes: usize,
    pub value_bytes: usize,
    /// Probability of a GET, in [0, 1].
    pub read_fraction: f64,
    /// What a write is.
    pub write: WriteKind,
    pub sequential: bool,
    pub duration: Duration,
    pub ops_max: Option<u64>,
    pub warmup: Duration,
    pub timeout: Duration,
    pub json: Option<PathBuf>,
    pub plot: Option<PathBuf>,
    pub failover: bool,
    pub seed: u64,
    pub progress: bool,
    /// Connect over TLS with these files (`--tls`).
    pub tls: Option<TlsFiles>,
}

impl Settings {
    /// Checks every option against its range.
    ///
    /// # Errors
    /// A message naming the offending option and its allowed range.
    pub fn from_options(options: &Options) -> Result<Settings> {
        let endpoints: Vec<String> = options
            .endpoints
            .iter()
            .map(|e| e.trim().to_owned())
            .filter(|e| !e.is_empty())
            .collect();
        ensure!(
            !endpoints.is_empty(),
            "--endpoints needs at least one host:port"
        );
        for endpoint in &endpoints {
            ensure!(
                endpoint
                    .rsplit_once(':')
                    .is_some_and(|(host, port)| !host.is_empty()
                        && port.parse::<u16>().is_ok_and(|p| p != 0)),
                "--endpoints: '{endpoint}' is not host:port"
            );
        }
        let connections = options.connections.unwrap_or(if options.failover {
            FAILOVER_CONNECTIONS_DEFAULT
        } else {
            1
        });
        ensure!(
            (1..=CONNECTIONS_MAX).contains(&connections),
            "--connections must be 1..={CONNECTIONS_MAX}, got {connections}"
        );
        ensure!(
            (1..=PIPELINE_MAX).contains(&options.pipeline),
            "--pipeline must be 1..={PIPELINE_MAX}, got {}",
            options.pipeline
        );
        ensure!(options.keyspace >= 1, "--keyspace must be at least 1");
        let key_bytes_min = key_bytes_min(options.keyspace);
        ensure!(
            (key_bytes_min..=KEY_BYTES_MAX).contains(&options.key_size),
            "--key-size must be {key_bytes_min}..={KEY_BYTES_MAX} for a keyspace of {}, got {}",
            options.keyspace,
            options.key_size
        );
        ensure!(
            (1..=VALUE_BYTES_MAX).contains(&options.value_size),
            "--value-size must be 1..={VALUE_BYTES_MAX}, got {}",
            options.value_size
        );
        ensure!(
            (0.0..=1.0).contains(&options.reads),
            "--reads must be a fraction in 0.0..=1.0, got {}",
            options.reads
        );
        if options.protocol == Protocol::Etcd && options.write != WriteKind::Set {
            bail!("--write {:?} needs --protocol redis", options.write);
        }
        if options.failover && options.reads > 0.0 {
            bail!("--failover writes only; drop --reads");
        }
        if options.protocol == Protocol::Etcd {
            ensure!(
                ETCD_SUPPORTED,
                "--protocol etcd: this kvbench was built without the `etcd` feature \
                 (cargo build -p benches --features etcd; needs protoc)"
            );
            ensure!(
                options.pipeline == 1,
                "--pipeline must be 1 with --protocol etcd (a gRPC client has no pipelining; \
                 use more connections), got {}",
                options.pipeline
            );
        }
        let duration = seconds("--duration", options.duration, false)?;
        let warmup = seconds("--warmup", options.warmup, true)?;
        if let Some(ops) = options.ops {
            ensure!(ops >= 1, "--ops must be at least 1");
        }
        if options.tls && options.protocol == Protocol::Etcd {
            bail!("--tls needs --protocol redis");
        }
        let tls = options
            .cacert
            .clone()
            .filter(|_| options.tls)
            .map(|cacert| TlsFiles {
                cacert,
                identity: options.cert.clone().zip(options.key.clone()),
            });
        ensure!(
            (1..=TIMEOUT_MS_MAX).contains(&options.timeout_ms),
            "--timeout-ms must be 1..={TIMEOUT_MS_MAX}, got {}",
            options.timeout_ms
        );
        Ok(Settings {
            endpoints,
            protocol: options.protocol,
            target: if options.spread {
                Target::Spread
            } else {
                Target::Leader
            },
            connections,
            pipeline: options.pipeline,
            keyspace: options.keyspace,
            key_bytes: options.key_size,
            value_bytes: options.value_size,
            read_fraction: options.reads,
            write: options.write,
            sequential: options.sequential,
            duration,
            ops_max: options.ops,
            warmup,
            timeout: Duration::from_millis(options.timeout_ms),
            json: options.json.clone(),
            plot: options.plot.clone(),
            failover: options.failover,
            seed: options.seed,
            progress: !options.quiet,
            tls,
        })
    }
}

/// Shortest key that holds a one-letter prefix and every index of `keyspace` in decimal.
pub fn key_bytes_min(keyspace: u64) -> usize {
    let largest = keyspace.saturating_sub(1);
    1 + largest
        .checked_ilog10()
        .map_or(1, |digits| digits as usize + 1)
}

fn seconds(name: &str, value: f64, zero_ok: bool) -> Result<Duration> {
    let low_ok = if zero_ok { value >= 0.0 } else { value > 0.0 };
    ensure!(
        value.is_finite() && low_ok && value <= RUN_SECS_MAX,
        "{name} must be {} seconds up to {RUN_SECS_MAX}, got {value}",
        if zero_ok { "0 or more" } else { "more than 0" }
    );
    Ok(Duration::from_secs_f64(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Settings> {
        let options =
            Options::try_parse_from(std::iter::once("kvbench").chain(args.iter().copied()))?;
        Settings::from_options(&options)
    }

    #[test]
    fn defaults_target_the_leader_of_localhost_with_one_connection_writing() {
        let settings = parse(&[]).expect("defaults are valid");
        assert_eq!(settings.endpoints, vec!["127.0.0.1:6379".to_owned()]);
        assert_eq!(settings.target, Target::Leader);
        assert_eq!(settings.connections, 1);
        assert_eq!(settings.pipeline, 1);
        assert_eq!((settings.key_bytes, settings.value_bytes), (16, 128));
        assert_eq!(settings.read_fraction, 0.0);
        assert_eq!(settings.duration, Duration::from_secs(10));
        assert_eq!(settings.warmup, Duration::from_secs(1));
        assert_eq!(settings.timeout, Duration::from_millis(2000));
        assert!(settings.progress);
        assert!(!settings.failover);
        assert_eq!(settings.protocol, Protocol::Redis);
        assert!(!settings.sequential);
    }

    #[test]
    fn every_option_reaches_the_settings() {
        let settings = parse(&[
            "--endpoints",
            "127.0.0.1:6381, 127.0.0.1:6382,127.0.0.1:6383",
            "--spread",
            "-c",
            "64",
            "-P",
            "8",
            "--keyspace",
            "1000",
            "--key-size",
            "8",
            "--value-size",
            "4096",
            "--reads",
            "0.9",
            "--duration",
            "2.5",
            "--ops",
            "500",
            "--warmup",
            "0",
            "--timeout-ms",
            "300",
            "--json",
            "out.json",
            "--plot",
            "out.svg",
            "--seed",
            "7",
            "--quiet",
            "--sequential",
        ])
        .expect("valid");
        assert_eq!(settings.endpoints.len(), 3);
        assert_eq!(settings.endpoints[1], "127.0.0.1:6382");
        assert_eq!(settings.target, Target::Spread);
        assert_eq!((settings.connections, settings.pipeline), (64, 8));
        assert_eq!(settings.keyspace, 1000);
        assert_eq!((settings.key_bytes, settings.value_bytes), (8, 4096));
        assert_eq!(settings.read_fraction, 0.9);
        assert_eq!(settings.duration, Duration::from_millis(2500));
        assert_eq!(settings.ops_max, Some(500));
        assert_eq!(settings.warmup, Duration::ZERO);
        assert_eq!(settings.timeout, Duration::from_millis(300));
        assert_eq!(settings.json, Some(PathBuf::from("out.json")));
        assert_eq!(settings.plot, Some(PathBuf::from("out.svg")));
        assert_eq!(settings.seed, 7);
        assert!(!settings.progress);
        assert!(settings.sequential);
    }

    #[test]
    fn etcd_protocol_needs_the_feature_and_no_pipeline() {
        let etcd = parse(&["--protocol", "etcd", "--endpoints", "127.0.0.1:2379"]);
        if ETCD_SUPPORTED {
            assert_eq!(etcd.expect("valid").protocol, Protocol::Etcd);
            let error = parse(&["--protocol", "etcd", "-P", "4"]).expect_err("pipelined etcd");
            assert!(error.to_string().contains("--pipeline"), "{error}");
        } else {
            let error = etcd.expect_err("etcd without the feature");
            assert!(error.to_string().contains("`etcd` feature"), "{error}");
        }
        assert!(parse(&["--protocol", "memcached"]).is_err());
        assert_eq!(Protocol::Etcd.name(), "etcd");
    }

    #[test]
    fn failover_defaults_to_a_few_writing_connections() {
        let settings = parse(&["--failover"]).expect("valid");
        assert!(settings.failover);
        assert_eq!(settings.connections, FAILOVER_CONNECTIONS_DEFAULT);
        assert_eq!(
            parse(&["--failover", "-c", "2"])
                .expect("valid")
                .connections,
            2
        );
    }

    #[test]
    fn out_of_range_options_are_refused_naming_the_option() {
        let cases: &[(&[&str], &str)] = &[
            (&["--endpoints", ""], "--endpoints"),
            (&["--endpoints", "localhost"], "--endpoints"),
            (&["--endpoints", "127.0.0.1:0"], "--endpoints"),
            (&["-c", "0"], "--connections"),
            (&["-c", "5000"], "--connections"),
            (&["-P", "0"], "--pipeline"),
            (&["-P", "2000"], "--pipeline"),
            (&["--keyspace", "0"], "--keyspace"),
            (&["--keyspace", "1000000", "--key-size", "6"], "--key-size"),
            (&["--value-size", "0"], "--value-size"),
            (&["--value-size", "20000000"], "--value-size"),
            (&["--reads", "1.5"], "--reads"),
            (&["--reads=-0.1"], "--reads"),
            (&["--reads", "NaN"], "--reads"),
            (&["--duration", "0"], "--duration"),
            (&["--duration", "inf"], "--duration"),
            (&["--warmup=-1"], "--warmup"),
            (&["--ops", "0"], "--ops"),
            (&["--timeout-ms", "0"], "--timeout-ms"),
            (&["--failover", "--reads", "0.5"], "--failover"),
        ];
        for (args, option) in cases {
            let error = parse(args).expect_err(&format!("{args:?} must be refused"));
            assert!(
                error.to_string().contains(option),
                "{args:?}: '{error}' should name {option}"
            );
        }
    }

    #[test]
    fn shortest_key_holds_prefix_and_largest_index() {
        for (keyspace, bytes) in [
            (1, 2),
            (10, 2),
            (11, 3),
            (100, 3),
            (100_000, 6),
            (100_001, 7),
        ] {
            assert_eq!(key_bytes_min(keyspace), bytes, "keyspace {keyspace}");
        }
    }
}
