//! Keeping one connection to one peer: adopt the connection the peer dialled, or dial it
//! when there is none, and redial with jittered, capped exponential backoff after a
//! failure. Which connection wins when both ends dial is decided by `link`.
//!
//! The backoff doubles with each consecutive failure and resets once a connection has
//! stayed up for `backoff_max` (so a peer that accepts and then drops every connection is
//! not dialled in a tight loop) or when the peer's address changes (a new address
//! deserves a prompt first attempt). Its cap, `backoff_max`, is small (about a heartbeat):
//! while a peer is unreachable each attempt ends within `connect_timeout` (or, if the
//! connect succeeded, within the welcome wait), so after a partition heals the next
//! attempt comes soon (PROTOCOL.md, "Liveness").
//!
//! A peer that answered but refused or rejected our hello is different: the network works,
//! and only a change of configuration (a new address wakes the wait) or the peer's own
//! dial (adopted at once) can help, so the next attempt waits at least
//! [`DIAL_REFUSED_PAUSE`] rather than warning many times a second.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::batch::{run_connection, ConnectionEnd, Writer};
use super::{PeerContext, PeerQueues};
use crate::backoff::Backoff;
use crate::codec::WireBody;
use crate::connection::{read_until_closed, Closed, HandshakeDeadline, ReadSide, Shared};
use crate::error::{display_chain, tls_error_of, RejectClass, RejectReason};
use crate::handshake::Handshake;
use crate::inbound::InboundDecoder;
use crate::link::Step;
use crate::metrics::{add, Metrics};
use crate::record::{Session, WriteSide};
use crate::secret::Nonce;
use crate::socket;
use crate::tls::naming::check_certificate_names_node;

/// Least wait after a dial the peer refused (closed without a welcome) or answered with a
/// welcome we reject. Long enough that a misconfigured pair logs about one warning a
/// second, not one per `backoff_max`; short enough that a corrected peer is found soon.
pub(crate) const DIAL_REFUSED_PAUSE: Duration = Duration::from_secs(1);

/// What ties a peer's task to the rest of the transport.
pub(crate) struct PeerLink {
    pub shared: Arc<Shared>,
    /// Wakes the task when an accepted connection is handed to it.
    pub notify: Arc<Notify>,
    /// Asks the writer to write a probe frame (see `link`).
    pub probe: Arc<Notify>,
}

/// Why a dial did not produce a connection.
enum DialError {
    /// The network: no connection, no welcome in time, or a failed read or write.
    Io(io::Error),
    /// The peer closed the connection without a welcome: it refused our hello (invalid,
    /// or its own connection to us won the tie-break).
    Refused,
    Rejected(RejectReason),
}

impl fmt::Display for DialError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DialError::Io(error) => write!(f, "{error}"),
            DialError::Refused => write!(f, "peer closed the connection without a welcome"),
            DialError::Rejected(reason) => write!(f, "bad welcome: {}", display_chain(reason)),
        }
    }
}

/// A connection we dialled, welcomed by the peer.
struct Dialled {
    writer: WriteSide,
    side: ReadSide,
}

/// Runs until the peer is removed or the transport shuts down. Each pass adopts an
/// accepted connection, waits for one being accepted, or makes one dial; after a failure
/// or a lost connection it waits one backoff.
pub(super) async fn supervise(
    mut queues: PeerQueues,
    context: PeerContext,
    link: PeerLink,
    mut addr_rx: watch::Receiver<SocketAddr>,
    cancel: CancellationToken,
) {
    let seed = Backoff::random_seed() ^ context.peer_id.get();
    let mut backoff = Backoff::new(context.backoff_min, context.backoff_max, seed);
    let (peer, links) = (context.peer_id, &link.shared.links);
    let counters = &*context.counters;
    let mut reported_failure = false;
    loop {
        // The least wait before the next attempt, beyond the backoff.
        let mut pause_min = Duration::ZERO;
        let served = match links.next_step(peer) {
            Step::Adopt(accepted) => {
                let writer = Writer {
                    half: accepted.writer,
                    cancel: accepted.cancel,
                    dialled: false,
                };
                let started = Instant::now();
                let end = run_connection(
                    writer,
                    &mut queues,
                    &context,
                    &link.probe,
                    &cancel,
                    &mut addr_rx,
                )
                .await;
                links.ended(peer, accepted.id);
                Some((end, started))
            }
            Step::Wait => {
                tokio::select! {
                    biased;
                    () = cancel.cancelled() => return,
                    () = link.notify.notified() => continue,
                }
            }
            Step::Dial => {
                let addr = *addr_rx.borrow_and_update();
                let dialled = tokio::select! {
                    biased;
                    () = cancel.cancelled() => {
                        links.dial_abandon(peer);
                        return;
                    }
                    dialled = dial(addr, &context, &link.shared) => dialled,
                };
                match dialled {
                    Ok(dialled) => {
                        supervise_run_dialled(
                            dialled,
                            &mut queues,
                            &context,
                            &link,
                            &cancel,
                            &mut addr_rx,
                        )
                        .await
                    }
                    Err(error) => {
                        if links.dial_abandon(peer) {
                            debug!(%peer, %addr, error = %error, "our dial lost the tie-break to the peer's");
                            continue;
                        }
                        add(&counters.connect_failures, 1);
                        let metrics = &link.shared.metrics;
                        pause_min = supervise_dial_failed(
                            &context,
                            metrics,
                            addr,
                            &error,
                            reported_failure,
                        );
                        reported_failure = true;
                        None
                    }
                }
            }
        };
        if let Some((end, started)) = served {
            match end {
                ConnectionEnd::Stopped => return,
                ConnectionEnd::AddrChanged => {
                    info!(%peer, "peer address changed; redialling");
                    backoff.reset();
                    continue;
                }
                ConnectionEnd::Broken(error) => {
                    info!(%peer, error = %error, "connection to peer lost");
                }
            }
            reported_failure = false;
            if started.elapsed() >= context.backoff_max {
                backoff.reset();
            }
        }
        let delay = backoff.next_delay().max(pause_min);
        tokio::select! {
            biased;
            () = cancel.cancelled() => return,
            // An accepted connection needs no backoff: the peer reached us.
            () = link.notify.notified() => {}
            changed = addr_rx.changed() => match changed {
                Ok(()) => backoff.reset(),
                Err(_) => return,
            },
            () = tokio::time::sleep(delay) => {}
        }
    }
}

/// Logs a failed dial (the first of a series at `info`, a rejected welcome always at
/// `warn`) and returns the least wait before the next attempt: none beyond the backoff
/// for a network failure, [`DIAL_REFUSED_PAUSE`] when the peer answered but said no.
fn supervise_dial_failed(
    context: &PeerContext,
    metrics: &Metrics,
    addr: SocketAddr,
    error: &DialError,
    reported_failure: bool,
) -> Duration {
    let peer = context.peer_id;
    if let DialError::Rejected(reason) = error {
        // A peer that failed to prove who it is counts here as on an acceptor.
        if matches!(reason.class(), RejectClass::Auth | RejectClass::Tls) {
            metrics.count_rejection(reason.class(), None);
        }
        warn!(%peer, %addr, error = %error, "peer's welcome rejected");
    } else if reported_failure {
        debug!(%peer, %addr, error = %error, "still cannot connect to peer");
    } else {
        info!(%peer, %addr, error = %error, "cannot connect to peer");
    }
    match error {
        DialError::Io(_) => Duration::ZERO,
        DialError::Refused | DialError::Rejected(_) => DIAL_REFUSED_PAUSE,
    }
}

/// Registers a welcomed dial as the peer's connection (unless another connection won
/// meanwhile), starts its reader and runs its writer. Returns how it ended and when it
/// started, or `None` if it was dropped unused.
async fn supervise_run_dialled(
    dialled: Dialled,
    queues: &mut PeerQueues,
    context: &PeerContext,
    link: &PeerLink,
    cancel: &CancellationToken,
    addr_rx: &mut watch::Receiver<SocketAddr>,
) -> Option<(ConnectionEnd, Instant)> {
    let (peer, shared) = (context.peer_id, &link.shared);
    let id = shared.links.next_id();
    let connection_cancel = shared.cancel.child_token();
    let Some(reconnect) = shared.links.dial_finish(peer, id, &connection_cancel) else {
        debug!(%peer, "a connection from the peer was accepted meanwhile; dropping ours");
        return None;
    };
    add(&context.counters.connects, 1);
    add(&context.counters.reconnects, u64::from(reconnect));
    debug!(%peer, remote = %dialled.side.remote, "connected to peer");
    let reader = read_until_closed(
        dialled.side,
        peer,
        id,
        connection_cancel.clone(),
        Arc::clone(shared),
    );
    shared.tracker.spawn(reader);
    let started = Instant::now();
    let writer = Writer {
        half: dialled.writer,
        cancel: connection_cancel,
        dialled: true,
    };
    let end = run_connection(writer, queues, context, &link.probe, cancel, addr_rx).await;
    shared.links.ended(peer, id);
    Some((end, started))
}

/// Connects with a fresh socket, does the TLS handshake if any, writes the hello and
/// reads the welcome (with a cluster secret: the challenge, our proof, then the welcome),
/// each bounded by a timeout. The wait after the connect is the silence rule applied from
/// then on: a peer that has said nothing for `silence_timeout` is not there (or not
/// answering), and a shorter `handshake_timeout` applies as well.
async fn dial(
    addr: SocketAddr,
    context: &PeerContext,
    shared: &Shared,
) -> Result<Dialled, DialError> {
    let config = &shared.config;
    let stream = socket::connect(addr, config).await.map_err(DialError::Io)?;
    let deadline = HandshakeDeadline::after(config.handshake_timeout.min(config.silence_timeout));
    let (stream, session) = dial_secure(stream, context, shared, deadline).await?;
    let (reader, writer) = stream.into_split();
    let mut writer = WriteSide {
        half: writer,
        session: session.clone(),
    };
    let mut hello = Handshake::new(config.cluster_id, config.node_id, context.peer_id);
    let mut decoder = InboundDecoder::for_dialer(
        config.cluster_id,
        config.node_id,
        context.peer_id,
        config.frame_bytes_max,
    );
    if let Some(secret) = &config.security.secret {
        let nonce = Nonce::random();
        hello = hello.with_nonce(nonce);
        decoder = decoder.with_secret(secret.clone(), nonce);
    }
    writer
        .write_frame(
            &WireBody::Handshake(hello),
            config.frame_bytes_max,
            deadline.remaining(),
        )
        .await
        .map_err(DialError::Io)?;
    let mut side = ReadSide::new(reader, decoder, addr, session);
    let handshake = side.read_handshake(
        deadline,
        &shared.cancel,
        &mut writer,
        config.frame_bytes_max,
    );
    match handshake.await {
        Ok(Ok(_)) => Ok(Dialled { writer, side }),
        Ok(Err(Closed::Io(error))) => Err(DialError::Io(error)),
        Ok(Err(_)) => Err(DialError::Refused),
        Err(RejectReason::HandshakeTimeout { timeout_ms }) => Err(DialError::Io(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no welcome within {timeout_ms} ms"),
        ))),
        Err(reason) => Err(DialError::Rejected(reason)),
    }
}

/// The dialer's TLS handshake, if the peer port uses TLS: the peer's certificate must
/// verify against the CA and name the node dialled.
async fn dial_secure(
    stream: TcpStream,
    context: &PeerContext,
    shared: &Shared,
    deadline: HandshakeDeadline,
) -> Result<(TcpStream, Session), DialError> {
    let Some(identity) = shared.tls_identity() else {
        return Ok((stream, Session::Plain));
    };
    let peer = context.peer_id;
    let connected = tokio::time::timeout_at(deadline.at, identity.connect(stream, peer)).await;
    let (stream, connection) = match connected {
        Err(_) => {
            let timeout_ms = deadline.timeout.as_millis();
            return Err(DialError::Io(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no TLS handshake within {timeout_ms} ms"),
            )));
        }
        Ok(Err(error)) => {
            return Err(match tls_error_of(&error) {
                Some(failure) => DialError::Rejected(RejectReason::Tls(failure)),
                None => DialError::Io(error),
            })
        }
        Ok(Ok(connected)) => connected,
    };
    let certificate = connection
        .peer_certificates()
        .and_then(|chain| chain.first())
        .ok_or(DialError::Rejected(RejectReason::Tls(
            rustls::Error::NoCertificatesPresented,
        )))?;
    check_certificate_names_node(certificate, shared.config.cluster_id, peer).map_err(
        |source| {
            DialError::Rejected(RejectReason::CertificateMismatch {
                claimed: peer,
                source,
            })
        },
    )?;
    Ok((stream, Session::tls(connection)))
}
