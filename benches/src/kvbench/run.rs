//! One run: find the target, start the workers, the leader watch and the progress line, stop
//! them all at the deadline, and gather the report.
//!
//! Bounds: every worker loop ends at the deadline (or when `--ops` is reached); every network
//! wait inside it is capped by the per-request timeout and by the deadline; tasks still running
//! `timeout + STRAGGLER_GRACE` after the deadline are aborted.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use hdrhistogram::Histogram;
use kvnode::resp::Frame;
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, timeout_at, Instant};

use super::client::{ClientError, Connection};
#[cfg(feature = "etcd")]
use super::etcd::{EtcdFailure, EtcdSession};
use super::gaps::GapTracker;
use super::leader::{find_leader, query_all, LeaderWatch};
use super::options::{Protocol, Settings, Target};
use super::report::Report;
use super::stats::{classify_reply, ErrorKind, Live, WorkerStats};
use super::workload::{Op, Workload};

/// Pause after a failed request or connect before trying again, so an unreachable or
/// leaderless cluster is not hammered in a hot loop; short, so a failover gap is measured to
/// within this much.
pub const RETRY_PAUSE: Duration = Duration::from_millis(20);
/// How often the leader watch polls RAFT.STATUS and the progress line is printed.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// How long past the deadline (on top of the request timeout) a task may take to notice it.
pub const STRAGGLER_GRACE: Duration = Duration::from_secs(1);

/// A finished run: its report and the merged latency histogram (for the plot).
pub struct Outcome {
    pub report: Report,
    pub latency_us: Histogram<u64>,
}

/// Runs the load described by `settings` and reports on it.
pub async fn run(settings: Settings) -> Outcome {
    let settings = Arc::new(settings);
    let targets = match settings.target {
        Target::Leader => {
            vec![find_leader(settings.protocol, &settings.endpoints, settings.timeout).await]
        }
        Target::Spread => settings.endpoints.clone(),
    };
    let started = Instant::now();
    let deadline = started + settings.warmup + settings.duration;
    let live = Arc::new(Live::new(
        started,
        settings.warmup,
        settings.warmup + settings.duration,
    ));
    let gaps = settings
        .failover
        .then(|| Arc::new(Mutex::new(GapTracker::new(settings.warmup))));
    let watch = tokio::spawn(watch_leaders(settings.clone(), live.clone(), deadline));
    let progress = settings
        .progress
        .then(|| tokio::spawn(print_progress(live.clone(), deadline)));
    let workers: Vec<JoinHandle<WorkerStats>> = (0..settings.connections)
        .map(|id| {
            let worker = Worker {
                settings: settings.clone(),
                live: live.clone(),
                gaps: gaps.clone(),
                targets: targets.clone(),
                target_index: id % targets.len(),
                workload: Workload::new(
                    settings.seed.wrapping_add(id as u64),
                    settings.keyspace,
                    settings.key_bytes,
                    settings.value_bytes,
                    settings.read_fraction,
                )
                .with_write(settings.write),
                stats: WorkerStats::default(),
                deadline,
            };
            tokio::spawn(worker.run())
        })
        .collect();
    let give_up = deadline + settings.timeout + STRAGGLER_GRACE;
    let mut stats = WorkerStats::default();
    for worker in workers {
        if let Some(worker_stats) = join_or_abort(worker, give_up).await {
            stats.merge(&worker_stats);
        }
    }
    live.stop.store(true, Ordering::Relaxed);
    let leader = join_or_abort(watch, give_up).await.unwrap_or_default();
    if let Some(progress) = progress {
        progress.abort();
    }
    let stopped_at_us = live.stopped_at_us.load(Ordering::Relaxed);
    let end = if stopped_at_us > 0 {
        Duration::from_micros(stopped_at_us)
    } else {
        settings.warmup + settings.duration
    };
    let gaps = gaps.map(|tracker| {
        let tracker = tracker
            .lock()
            .expect("no gap tracker user panics while holding it")
            .clone();
        tracker.finish(end)
    });
    let measured = end.saturating_sub(settings.warmup);
    let report = Report::new(
        &settings,
        targets,
        measured,
        &stats,
        leader,
        live.timeline_snapshot(),
        gaps,
    );
    Outcome {
        report,
        latency_us: stats.latency_us,
    }
}

/// Awaits `task` until `give_up`, then aborts it; `None` if it overran or panicked.
async fn join_or_abort<T>(mut task: JoinHandle<T>, give_up: Instant) -> Option<T> {
    match timeout_at(give_up, &mut task).await {
        Ok(result) => result.ok(),
        Err(_) => {
            task.abort();
            None
        }
    }
}

/// Polls every endpoint's RAFT.STATUS once per [`POLL_INTERVAL`] until the deadline.
async fn watch_leaders(settings: Arc<Settings>, live: Arc<Live>, deadline: Instant) -> LeaderWatch {
    let mut watch = LeaderWatch::default();
    let poll_timeout = settings.timeout.min(POLL_INTERVAL);
    let mut next = Instant::now();
    // Bounded: `next` advances by POLL_INTERVAL each pass and the loop ends at the deadline.
    while next < deadline && !live.stop.load(Ordering::Relaxed) {
        sleep_until(next).await;
        let statuses = query_all(settings.protocol, &settings.endpoints, poll_timeout).await;
        watch.observe(live.started.elapsed().as_secs_f64(), &statuses);
        live.leader_changes.store(watch.changes, Ordering::Relaxed);
        next += POLL_INTERVAL;
    }
    watch
}

/// Prints one progress line to stderr per [`POLL_INTERVAL`] until the deadline.
async fn print_progress(live: Arc<Live>, deadline: Instant) {
    let (mut ops_before, mut latency_before, mut errors_before) = (0u64, 0u64, 0u64);
    let mut next = live.started + POLL_INTERVAL;
    while next <= deadline && !live.stop.load(Ordering::Relaxed) {
        sleep_until(next).await;
        let ops = live.ops_ok.load(Ordering::Relaxed);
        let latency = live.latency_sum_us.load(Ordering::Relaxed);
        let errors = live.errors.load(Ordering::Relaxed);
        let delta_ops = ops - ops_before;
        let mean_ms = if delta_ops > 0 {
            (latency - latency_before) as f64 / delta_ops as f64 / 1000.0
        } else {
            0.0
        };
        let elapsed = next.duration_since(live.started).as_secs();
        let phase = if live.is_measuring(next) {
            ""
        } else {
            " warm-up"
        };
        eprintln!(
            "kvbench [{elapsed:>4} s]{phase} {delta_ops:>8} ops/s  mean {mean_ms:>8.3} ms  errors {:>5}  leader changes {}",
            errors - errors_before,
            live.leader_changes.load(Ordering::Relaxed)
        );
        (ops_before, latency_before, errors_before) = (ops, latency, errors);
        next += POLL_INTERVAL;
    }
}

/// One open connection, in the protocol of the run.
enum Session {
    Redis(Connection),
    /// Boxed: an etcd client (several gRPC service clients) is a few KiB.
    #[cfg(feature = "etcd")]
    Etcd(Box<EtcdSession>),
}

/// One closed-loop connection.
struct Worker {
    settings: Arc<Settings>,
    live: Arc<Live>,
    gaps: Option<Arc<Mutex<GapTracker>>>,
    targets: Vec<String>,
    target_index: usize,
    workload: Workload,
    stats: WorkerStats,
    deadline: Instant,
}

impl Worker {
    fn is_done(&self) -> bool {
        self.live.stop.load(Ordering::Relaxed) || Instant::now() >= self.deadline
    }

    async fn run(mut self) -> WorkerStats {
        let mut session: Option<Session> = None;
        let mut requests = BytesMut::new();
        let mut ops: Vec<Op> = Vec::with_capacity(self.settings.pipeline);
        // Bounded by the deadline (checked each pass) and by `--ops` (which sets `stop`).
        while !self.is_done() {
            let result = match session.as_mut() {
                None => {
                    match self.connect().await {
                        Ok(open) => session = Some(open),
                        Err(error) => self.after_failure(error, 1).await,
                    }
                    continue;
                }
                Some(Session::Redis(open)) => {
                    requests.clear();
                    ops.clear();
                    for _ in 0..self.settings.pipeline {
                        let (op, index) = self.next_choice();
                        self.workload.encode_resp(op, index, &mut requests);
                        ops.push(op);
                    }
                    self.round(open, &requests, &ops).await
                }
                #[cfg(feature = "etcd")]
                Some(Session::Etcd(open)) => self.round_etcd(open).await,
            };
            match result {
                Ok(true) => self.pause().await,
                Ok(false) => {}
                Err((error, unanswered)) => {
                    session = None;
                    self.after_failure(error, unanswered).await;
                }
            }
        }
        self.stats
    }

    /// The next request's kind and key index (from the shared counter with `--sequential`).
    fn next_choice(&mut self) -> (Op, u64) {
        let (op, random_index) = self.workload.next_choice();
        if !self.settings.sequential {
            return (op, random_index);
        }
        let index = self.live.next_key.fetch_add(1, Ordering::Relaxed) % self.settings.keyspace;
        (op, index)
    }

    async fn connect(&self) -> Result<Session, ClientError> {
        let deadline = (Instant::now() + self.settings.timeout).min(self.deadline);
        let endpoint = &self.targets[self.target_index];
        match self.settings.protocol {
            Protocol::Redis => Ok(Session::Redis(
                Connection::connect(endpoint, deadline).await?,
            )),
            #[cfg(feature = "etcd")]
            Protocol::Etcd => Ok(Session::Etcd(Box::new(
                EtcdSession::connect(endpoint, deadline).await?,
            ))),
            #[cfg(not(feature = "etcd"))]
            Protocol::Etcd => unreachable!("Settings refuse --protocol etcd without the feature"),
        }
    }

    /// One etcd request (no pipelining). `Ok(true)` if it failed alone; `Err` when the
    /// connection must be dropped.
    #[cfg(feature = "etcd")]
    async fn round_etcd(&mut self, session: &mut EtcdSession) -> Result<bool, (ClientError, u64)> {
        let (op, index) = self.next_choice();
        let key = self.workload.key(index);
        let sent_at = Instant::now();
        let deadline = sent_at + self.settings.timeout;
        let result = session
            .execute(op, key, self.workload.value(), deadline)
            .await;
        let now = Instant::now();
        match result {
            Ok(()) => {
                self.record_ok(op, sent_at, now);
                Ok(false)
            }
            Err(EtcdFailure::Request(kind)) => {
                self.record_errors(kind, 1, now);
                Ok(true)
            }
            Err(EtcdFailure::Connection(error)) => Err((error, 1)),
        }
    }

    /// Sends one batch and reads its replies. `Ok(true)` if some reply was an error;
    /// `Err` with the count of requests left unanswered when the connection failed.
    async fn round(
        &mut self,
        connection: &mut Connection,
        requests: &[u8],
        ops: &[Op],
    ) -> Result<bool, (ClientError, u64)> {
        let sent_at = Instant::now();
        let deadline = sent_at + self.settings.timeout;
        connection
            .send(requests, deadline)
            .await
            .map_err(|error| (error, ops.len() as u64))?;
        let mut had_error = false;
        for (answered, op) in ops.iter().enumerate() {
            // A transaction's MULTI and queued command answer first; the last reply
            // (EXEC's) is the request's.
            let mut reply = Frame::Null;
            let mut queue_error = None;
            for _ in 0..self.workload.frames_per(*op) {
                reply = connection
                    .read_reply(deadline)
                    .await
                    .map_err(|error| (error, (ops.len() - answered) as u64))?;
                if let Frame::Error(_) = reply {
                    queue_error.get_or_insert_with(|| reply.clone());
                }
            }
            let reply = queue_error.unwrap_or(reply);
            let now = Instant::now();
            match classify_reply(*op, &reply) {
                Ok(()) => self.record_ok(*op, sent_at, now),
                Err(kind) => {
                    had_error = true;
                    self.record_errors(kind, 1, now);
                }
            }
        }
        Ok(had_error)
    }

    fn in_window(&self, now: Instant) -> bool {
        self.live.is_measuring(now) && now < self.deadline
    }

    fn record_ok(&mut self, op: Op, sent_at: Instant, now: Instant) {
        let latency = now.duration_since(sent_at);
        self.live.record_ok(now, 1, latency);
        if !self.in_window(now) {
            return;
        }
        if let Some(ops_max) = self.settings.ops_max {
            let before = self.live.measured_ops.fetch_add(1, Ordering::Relaxed);
            if before >= ops_max {
                return;
            }
            if before + 1 == ops_max {
                let at_us = u64::try_from(now.duration_since(self.live.started).as_micros())
                    .expect("a run is capped at a day");
                self.live
                    .stopped_at_us
                    .store(at_us.max(1), Ordering::Relaxed);
                self.live.stop.store(true, Ordering::Relaxed);
            }
        }
        self.stats.record_ok(op, latency);
        if let (Some(gaps), Op::Set) = (&self.gaps, op) {
            let mut tracker = gaps
                .lock()
                .expect("no gap tracker user panics while holding it");
            // Timed under the lock, so successes reach the tracker in time order.
            tracker.record_success(self.live.started.elapsed());
        }
    }

    fn record_errors(&mut self, kind: ErrorKind, count: u64, now: Instant) {
        self.live.errors.fetch_add(count, Ordering::Relaxed);
        if self.in_window(now) {
            self.stats.errors.add(kind, count);
        }
    }

    /// Counts a failed connection, pauses, and picks where to connect next: the leader again
    /// (it may have changed), or the next endpoint with `--spread`.
    async fn after_failure(&mut self, error: ClientError, unanswered: u64) {
        let kind = match error {
            ClientError::Timeout => ErrorKind::Timeout,
            ClientError::Io(_) | ClientError::Closed | ClientError::Protocol(_) => {
                ErrorKind::Connection
            }
        };
        self.record_errors(kind, unanswered, Instant::now());
        self.pause().await;
        if self.is_done() {
            return;
        }
        match self.settings.target {
            Target::Spread => self.target_index = (self.target_index + 1) % self.targets.len(),
            Target::Leader => {
                let left = self.deadline.saturating_duration_since(Instant::now());
                let leader = find_leader(
                    self.settings.protocol,
                    &self.settings.endpoints,
                    self.settings.timeout.min(left),
                )
                .await;
                self.targets = vec![leader];
                self.target_index = 0;
            }
        }
    }

    async fn pause(&self) {
        sleep_until((Instant::now() + RETRY_PAUSE).min(self.deadline)).await;
    }
}
