//! The registry of live client connections: what CLIENT LIST, CLIENT INFO and CLIENT KILL
//! read, and INFO's `connected_clients`.
//!
//! A connection is registered when it is accepted and deregistered when its task ends
//! (the [`Registration`] guard), so the registry holds exactly the open connections and is
//! bounded by `connections_max` (the accept semaphore admits no more). The hot path never
//! takes the registry's lock: a connection updates its own entry with relaxed atomic
//! stores (last command, database, transaction size) once per command, and takes the
//! entry's small lock only when its name or library changes. Listing and killing take
//! the registry lock for a copy of the entry handles, then read each entry without it.
//!
//! Killing cancels the entry's token; the connection stops reading, answers what it has
//! already read and closes (never in the middle of a reply), as Redis closes a killed
//! client after its pending output.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

/// The only user raftkv has (a password protects the default user, as `requirepass`
/// does in Redis).
pub const DEFAULT_USER: &str = "default";

/// What may change about a client after it connected, rarely (CLIENT SETNAME, SETINFO,
/// HELLO ... SETNAME).
#[derive(Clone, Debug, Default)]
struct Names {
    name: Option<Bytes>,
    library_name: Option<Bytes>,
    library_version: Option<Bytes>,
}

/// One open connection, shared by the connection and the registry.
#[derive(Debug)]
pub struct ClientEntry {
    pub id: u64,
    pub addr: SocketAddr,
    pub local_addr: SocketAddr,
    /// The socket's file descriptor (CLIENT LIST's `fd`), -1 if unknown.
    pub fd: i64,
    created: Instant,
    /// Cancelled by CLIENT KILL: the connection closes after answering what it has read.
    pub kill: CancellationToken,
    names: Mutex<Names>,
    /// Milliseconds from `created` to the last command.
    last_active_ms: AtomicU64,
    /// The last command's row in the command table, plus one (0: none yet).
    last_command: AtomicU32,
    db: AtomicU32,
    /// Commands queued in an open transaction, or -1 outside one.
    multi: AtomicI64,
    /// 2 or 3.
    protocol: AtomicU8,
    read_only: AtomicBool,
}

impl ClientEntry {
    fn names(&self) -> MutexGuard<'_, Names> {
        // A poisoned lock only means a panic elsewhere (which aborts the process in release
        // builds); the names themselves are always whole.
        self.names
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records a command: its row in the command table and the time (CLIENT LIST's
    /// `cmd` and `idle`).
    pub fn touch(&self, command_row: Option<usize>) {
        let elapsed = u64::try_from(self.created.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_active_ms.store(elapsed, Ordering::Relaxed);
        if let Some(row) = command_row.and_then(|row| u32::try_from(row + 1).ok()) {
            self.last_command.store(row, Ordering::Relaxed);
        }
    }

    /// Records the connection state CLIENT LIST shows.
    pub fn set_state(&self, db: u32, queued: Option<usize>, protocol: u8, read_only: bool) {
        self.db.store(db, Ordering::Relaxed);
        let multi = queued.map_or(-1, |queued| i64::try_from(queued).unwrap_or(i64::MAX));
        self.multi.store(multi, Ordering::Relaxed);
        self.protocol.store(protocol, Ordering::Relaxed);
        self.read_only.store(read_only, Ordering::Relaxed);
    }

    pub fn set_name(&self, name: Option<Bytes>) {
        self.names().name = name;
    }

    pub fn set_library_name(&self, value: Bytes) {
        self.names().library_name = Some(value);
    }

    pub fn set_library_version(&self, value: Bytes) {
        self.names().library_version = Some(value);
    }

    /// Seconds since the connection was accepted.
    pub fn age_secs(&self) -> u64 {
        self.created.elapsed().as_secs()
    }

    /// The connection as one CLIENT LIST line (without the newline), in Redis 7.2's field
    /// order. Redis' buffer and memory fields (`qbuf`, `omem`, `tot-mem`, ...) are left
    /// out: raftkv does not measure them, and client libraries parse the line as
    /// `key=value` pairs, so missing keys are simply absent.
    pub fn describe(&self, command_name: impl Fn(usize) -> Option<&'static str>) -> String {
        let names = self.names().clone();
        let text = |value: &Option<Bytes>| {
            value
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default()
                .into_owned()
        };
        let elapsed = u64::try_from(self.created.elapsed().as_millis()).unwrap_or(u64::MAX);
        let idle_secs = elapsed.saturating_sub(self.last_active_ms.load(Ordering::Relaxed)) / 1000;
        let multi = self.multi.load(Ordering::Relaxed);
        let mut flags = String::new();
        if multi >= 0 {
            flags.push('x');
        }
        if self.read_only.load(Ordering::Relaxed) {
            flags.push('r');
        }
        if flags.is_empty() {
            flags.push('N');
        }
        let command = match self.last_command.load(Ordering::Relaxed) {
            0 => "NULL",
            row => command_name(row as usize - 1).unwrap_or("NULL"),
        };
        let mut line = String::with_capacity(256);
        let _ = write!(
            line,
            "id={} addr={} laddr={} fd={} name={} age={} idle={} flags={} db={} sub=0 psub=0 ssub=0 multi={} events=r cmd={} user={} redir=-1 resp={} lib-name={} lib-ver={}",
            self.id,
            self.addr,
            self.local_addr,
            self.fd,
            text(&names.name),
            self.age_secs(),
            idle_secs,
            flags,
            self.db.load(Ordering::Relaxed),
            multi,
            command,
            DEFAULT_USER,
            self.protocol.load(Ordering::Relaxed),
            text(&names.library_name),
            text(&names.library_version),
        );
        line
    }
}

/// Which clients CLIENT KILL closes: all the given conditions must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KillFilter {
    pub id: Option<u64>,
    /// `ip:port` of the client, as CLIENT LIST's `addr` shows it.
    pub addr: Option<Bytes>,
    /// `ip:port` of the server side, as `laddr` shows it.
    pub local_addr: Option<Bytes>,
    /// Leave the connection that asked alone (the new form's default).
    pub skip_me: bool,
    /// `TYPE master|replica|pubsub`: raftkv's clients are all normal, so these match none.
    pub no_match: bool,
    /// Only connections older than this many seconds (`MAXAGE`).
    pub max_age_secs: Option<u64>,
}

impl KillFilter {
    fn matches(&self, entry: &ClientEntry, me: u64) -> bool {
        let same = |wanted: &Option<Bytes>, actual: &SocketAddr| {
            wanted
                .as_ref()
                .is_none_or(|wanted| wanted.as_ref() == actual.to_string().as_bytes())
        };
        let skipped = self.no_match || (self.skip_me && entry.id == me);
        !skipped
            && self.id.is_none_or(|id| id == entry.id)
            && same(&self.addr, &entry.addr)
            && same(&self.local_addr, &entry.local_addr)
            && self.max_age_secs.is_none_or(|age| entry.age_secs() > age)
    }
}

/// Every open client connection.
#[derive(Debug, Default)]
pub struct ClientRegistry {
    clients: Mutex<BTreeMap<u64, Arc<ClientEntry>>>,
}

/// Removes its connection from the registry when dropped (when the connection ends).
#[derive(Debug)]
pub struct Registration {
    registry: Arc<ClientRegistry>,
    pub entry: Arc<ClientEntry>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.entry.id);
    }
}

impl ClientRegistry {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<u64, Arc<ClientEntry>>> {
        // See ClientEntry::names: the map is whole even if a holder panicked.
        self.clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds an accepted connection; it stays listed while the returned guard lives.
    pub fn register(
        registry: &Arc<ClientRegistry>,
        id: u64,
        addr: SocketAddr,
        local_addr: SocketAddr,
        fd: i64,
    ) -> Registration {
        let entry = Arc::new(ClientEntry {
            id,
            addr,
            local_addr,
            fd,
            created: Instant::now(),
            kill: CancellationToken::new(),
            names: Mutex::new(Names::default()),
            last_active_ms: AtomicU64::new(0),
            last_command: AtomicU32::new(0),
            db: AtomicU32::new(0),
            multi: AtomicI64::new(-1),
            protocol: AtomicU8::new(2),
            read_only: AtomicBool::new(false),
        });
        registry.lock().insert(id, Arc::clone(&entry));
        Registration {
            registry: Arc::clone(registry),
            entry,
        }
    }

    /// Open connections.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// The open connections, by id (a copy of the handles: the lock is not held while
    /// they are read).
    pub fn entries(&self) -> Vec<Arc<ClientEntry>> {
        self.lock().values().cloned().collect()
    }

    /// Closes every connection the filter matches (`me` is the asking connection's id);
    /// returns how many.
    pub fn kill(&self, filter: &KillFilter, me: u64) -> usize {
        let matched: Vec<Arc<ClientEntry>> = self
            .lock()
            .values()
            .filter(|entry| filter.matches(entry, me))
            .cloned()
            .collect();
        for entry in &matched {
            entry.kill.cancel();
        }
        matched.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().expect("a socket address")
    }

    #[test]
    fn registration_lists_a_connection_until_it_ends() {
        let registry = Arc::new(ClientRegistry::default());
        let first = ClientRegistry::register(
            &registry,
            1,
            addr("127.0.0.1:5000"),
            addr("127.0.0.1:6379"),
            7,
        );
        let second = ClientRegistry::register(
            &registry,
            2,
            addr("127.0.0.1:5001"),
            addr("127.0.0.1:6379"),
            8,
        );
        assert_eq!(registry.len(), 2);
        drop(first);
        let ids: Vec<u64> = registry.entries().iter().map(|entry| entry.id).collect();
        assert_eq!(ids, [2]);
        drop(second);
        assert!(registry.is_empty());
    }

    #[test]
    fn kill_filters_combine_and_skip_the_caller() {
        let registry = Arc::new(ClientRegistry::default());
        let guards: Vec<Registration> = (1..=3)
            .map(|id| {
                ClientRegistry::register(
                    &registry,
                    id,
                    addr(&format!("127.0.0.1:{}", 5000 + id)),
                    addr("127.0.0.1:6379"),
                    -1,
                )
            })
            .collect();
        let by_addr = KillFilter {
            addr: Some(Bytes::from_static(b"127.0.0.1:5002")),
            skip_me: true,
            ..KillFilter::default()
        };
        assert_eq!(registry.kill(&by_addr, 1), 1);
        assert!(guards[1].entry.kill.is_cancelled());
        assert!(!guards[0].entry.kill.is_cancelled());
        let all_but_me = KillFilter {
            skip_me: true,
            ..KillFilter::default()
        };
        assert_eq!(registry.kill(&all_but_me, 1), 2);
        assert!(!guards[0].entry.kill.is_cancelled());
        let replicas = KillFilter {
            no_match: true,
            ..KillFilter::default()
        };
        assert_eq!(registry.kill(&replicas, 1), 0);
        let me_by_id = KillFilter {
            id: Some(1),
            ..KillFilter::default()
        };
        assert_eq!(registry.kill(&me_by_id, 1), 1);
    }

    #[test]
    fn describe_shows_state_in_redis_field_order() {
        let registry = Arc::new(ClientRegistry::default());
        let guard = ClientRegistry::register(
            &registry,
            9,
            addr("127.0.0.1:5009"),
            addr("127.0.0.1:6379"),
            12,
        );
        let entry = &guard.entry;
        entry.set_name(Some(Bytes::from_static(b"worker")));
        entry.set_library_name(Bytes::from_static(b"redis-py"));
        entry.touch(Some(0));
        entry.set_state(3, Some(2), 3, true);
        let line = entry.describe(|row| (row == 0).then_some("get"));
        assert_eq!(
            line,
            "id=9 addr=127.0.0.1:5009 laddr=127.0.0.1:6379 fd=12 name=worker age=0 idle=0 flags=xr db=3 sub=0 psub=0 ssub=0 multi=2 events=r cmd=get user=default redir=-1 resp=3 lib-name=redis-py lib-ver="
        );
    }
}
