//! A TCP proxy on 127.0.0.1 that a test can cut off like a silent network partition.
//!
//! While cut, a proxy forwards nothing in either direction and closes nothing: bytes (and
//! any FIN or reset) wait in the kernel's buffers or in the proxy's, so to both ends an
//! established connection simply goes quiet. New connections get nowhere either: the
//! proxy listens with a backlog of 0 and stops accepting, and it fills that one slot with
//! a connection of its own, so the kernel drops every SYN that arrives, as a partition
//! would (the dialer's connect hangs in SYN retries). Healing resumes forwarding and
//! accepting.
//!
//! Several proxies can share one [`Partition`] switch, to cut a pair of nodes (each
//! dialling the other through its own proxy) at one instant.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// How long the proxy waits for its own queue-filling connect: if the slot is already
/// taken by a client's connection, that connect would hang, and the slot is full anyway.
const FILL_CONNECT_WAIT: Duration = Duration::from_millis(200);

/// Bytes one pump moves per read.
const PUMP_BUFFER_BYTES: usize = 64 * 1024;

/// The switch all proxies of one partition follow: forwarding or cut.
pub struct Partition {
    forwarding: watch::Sender<bool>,
}

impl Partition {
    /// A switch, initially forwarding or cut.
    pub fn new(forwarding: bool) -> Partition {
        Partition {
            forwarding: watch::Sender::new(forwarding),
        }
    }

    /// Stops every proxy of this partition from forwarding or accepting.
    pub fn cut(&self) {
        self.forwarding.send_replace(false);
    }

    /// Lets every proxy of this partition forward and accept again.
    pub fn heal(&self) {
        self.forwarding.send_replace(true);
    }

    /// A proxy to `target` following this switch.
    pub async fn proxy(&self, target: SocketAddr) -> Proxy {
        let socket = TcpSocket::new_v4().expect("socket");
        socket
            .bind("127.0.0.1:0".parse().expect("addr"))
            .expect("bind");
        let addr = socket.local_addr().expect("addr");
        // Backlog 0: one connection may wait unaccepted; the kernel drops SYNs beyond it.
        let listener = socket.listen(0).expect("listen");
        // Created cut: the slot is filled before anyone learns the address, so that even
        // the first SYN of a client is dropped.
        let filler = if *self.forwarding.borrow() {
            None
        } else {
            Some(
                TcpStream::connect(addr)
                    .await
                    .expect("fill the accept queue"),
            )
        };
        let forwarding = self.forwarding.subscribe();
        let task = tokio::spawn(accept_loop(listener, addr, target, forwarding, filler));
        Proxy { addr, task }
    }
}

/// One proxy; dropping it stops it and closes every connection through it.
pub struct Proxy {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Proxy {
    /// Where to dial to reach the target through this proxy.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Accepts while forwarding; while cut, keeps the accept queue full so SYNs are dropped.
async fn accept_loop(
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
    target: SocketAddr,
    mut forwarding: watch::Receiver<bool>,
    mut filler: Option<TcpStream>,
) {
    // Dropping the set (when this task is aborted) aborts every pump.
    let mut pumps = JoinSet::new();
    // `filler` is the proxy's own connection holding the accept queue's one slot while
    // cut; its address lets its server side be recognised and dropped once accepted.
    let mut filler_addr = filler.as_ref().map(|f| f.local_addr().expect("addr"));
    loop {
        if !*forwarding.borrow_and_update() {
            if filler.is_none() {
                filler = tokio::time::timeout(FILL_CONNECT_WAIT, TcpStream::connect(addr))
                    .await
                    .ok()
                    .and_then(Result::ok);
                filler_addr = filler.as_ref().map(|f| f.local_addr().expect("addr"));
            }
            if forwarding.changed().await.is_err() {
                return;
            }
            continue;
        }
        filler = None;
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, remote) = accepted.expect("accept");
                if Some(remote) == filler_addr {
                    filler_addr = None;
                } else {
                    pumps.spawn(forward(stream, target, forwarding.clone()));
                }
            }
            changed = forwarding.changed() => if changed.is_err() { return },
        }
    }
}

/// Waits until the switch says forward.
async fn wait_forwarding(forwarding: &mut watch::Receiver<bool>) {
    // An error means the switch is gone with its test; then nothing is forwarded again.
    if forwarding.wait_for(|on| *on).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Connects to `target` (once forwarding) and pumps both ways until either side ends.
async fn forward(client: TcpStream, target: SocketAddr, mut forwarding: watch::Receiver<bool>) {
    wait_forwarding(&mut forwarding).await;
    let Ok(upstream) = TcpStream::connect(target).await else {
        return;
    };
    // Nodelay on both legs, so the proxy adds no Nagle delay of its own.
    let _ = client.set_nodelay(true); // a failure costs latency only
    let _ = upstream.set_nodelay(true); // likewise
    let (client_read, client_write) = client.into_split();
    let (upstream_read, upstream_write) = upstream.into_split();
    tokio::select! {
        () = pump(client_read, upstream_write, forwarding.clone()) => {}
        () = pump(upstream_read, client_write, forwarding) => {}
    }
}

/// Copies `from` to `to`, holding everything (data and the end of the stream) while cut.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut forwarding: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; PUMP_BUFFER_BYTES];
    // Bounded by the connection's life: each pass moves one read.
    loop {
        wait_forwarding(&mut forwarding).await;
        let read = from.read(&mut buf).await;
        // Read while forwarding, but it may have been cut since: hold what was read.
        wait_forwarding(&mut forwarding).await;
        match read {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if to.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}
