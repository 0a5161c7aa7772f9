//! Keeping a connection to one peer: dial, run, and redial with jittered, capped
//! exponential backoff after a failure.
//!
//! The backoff doubles with each consecutive failure and resets once a connection has
//! stayed up for `backoff_max` (so a peer that accepts and then drops every connection,
//! say because it rejects our handshake, is not dialled in a tight loop) or when the
//! peer's address changes (a new address deserves a prompt first attempt).

use std::io;
use std::net::SocketAddr;

use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::batch::{run_connection, ConnectionEnd};
use super::{PeerContext, PeerQueues};
use crate::backoff::Backoff;
use crate::metrics::add;

/// Runs until the peer is removed or the transport shuts down. Each pass makes one
/// connection attempt (and runs the connection if it succeeds), then waits one backoff.
pub(super) async fn supervise(
    mut queues: PeerQueues,
    context: PeerContext,
    mut addr_rx: watch::Receiver<SocketAddr>,
    cancel: CancellationToken,
) {
    let seed = Backoff::random_seed() ^ context.peer_id.get();
    let mut backoff = Backoff::new(context.backoff_min, context.backoff_max, seed);
    let counters = &*context.counters;
    let mut had_failure = false;
    loop {
        let addr = *addr_rx.borrow_and_update();
        let connected = tokio::select! {
            biased;
            () = cancel.cancelled() => return,
            connected = connect(addr, &context) => connected,
        };
        match connected {
            Ok(stream) => {
                add(&counters.connects, 1);
                if had_failure {
                    add(&counters.reconnects, 1);
                }
                debug!(peer = %context.peer_id, %addr, "connected to peer");
                let started = Instant::now();
                let end =
                    run_connection(stream, &mut queues, &context, &cancel, &mut addr_rx).await;
                had_failure = true;
                match end {
                    ConnectionEnd::Stopped => return,
                    ConnectionEnd::AddrChanged => {
                        info!(peer = %context.peer_id, "peer address changed; redialling");
                        backoff.reset();
                        continue;
                    }
                    ConnectionEnd::Broken(error) => {
                        info!(peer = %context.peer_id, %addr, error = %error, "connection to peer lost");
                    }
                }
                if started.elapsed() >= context.backoff_max {
                    backoff.reset();
                }
            }
            Err(error) => {
                add(&counters.connect_failures, 1);
                if had_failure {
                    debug!(peer = %context.peer_id, %addr, error = %error, "still cannot connect to peer");
                } else {
                    warn!(peer = %context.peer_id, %addr, error = %error, "cannot connect to peer");
                }
                had_failure = true;
            }
        }
        let delay = backoff.next_delay();
        tokio::select! {
            biased;
            () = cancel.cancelled() => return,
            changed = addr_rx.changed() => match changed {
                Ok(()) => backoff.reset(),
                Err(_) => return,
            },
            () = tokio::time::sleep(delay) => {}
        }
    }
}

async fn connect(addr: SocketAddr, context: &PeerContext) -> io::Result<TcpStream> {
    let stream = tokio::time::timeout(context.connect_timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
    // Raft messages are latency-sensitive and already batched by the writer.
    stream.set_nodelay(true)?;
    Ok(stream)
}
