//! The accept loop and the task that serves one accepted connection.
//!
//! Each accepted connection gets its own task. Within `handshake_timeout` it checks that
//! the first byte fits the port (a TLS record on a TLS port, anything else on a plain
//! one), does the TLS handshake if any, reads the dialer's hello and, with a cluster
//! secret, exchanges challenge and proof (`inbound`); only a dialer that has proved who it
//! is reaches [`Links`](crate::link::Links), which decides whether to accept it (one
//! connection per pair; see that module). Then it writes the welcome, hands the write half
//! to the peer's task, and stays as the connection's reader (writing keepalives on it
//! too, until the peer's task takes it: see `liveness`). A connection that fails any of
//! this is closed with a warning and a counter, and touches no other connection; a valid
//! one that loses the tie-break is closed without a welcome and counted
//! (`connections_refused`).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{debug, warn};

use crate::codec::WireBody;
use crate::connection::{log_end, read_until_closed, Closed, HandshakeDeadline, ReadSide, Shared};
use crate::error::{tls_error_of, RejectReason};
use crate::handshake::Handshake;
use crate::inbound::InboundDecoder;
use crate::link::{AcceptDecision, Accepted};
use crate::liveness::keep_parked_alive;
use crate::metrics::add;
use crate::record::{Session, WriteSide};
use crate::secret::Nonce;
use crate::socket;
use rustls_pki_types::CertificateDer;

/// The first byte of every TLS handshake record (content type 22).
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// Pause after a failed `accept` (say, out of file descriptors) so the loop cannot spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// Accepts until cancelled. Each pass handles one accept result.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    connection_permits: Arc<Semaphore>,
) {
    loop {
        let accepted = tokio::select! {
            biased;
            () = shared.cancel.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, remote) = match accepted {
            Ok(pair) => pair,
            Err(error) => {
                warn!(error = %error, "accepting a peer connection failed");
                tokio::select! {
                    () = shared.cancel.cancelled() => return,
                    () = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => continue,
                }
            }
        };
        add(&shared.metrics.connections_accepted, 1);
        let Ok(permit) = Arc::clone(&connection_permits).try_acquire_owned() else {
            add(&shared.metrics.connections_over_limit, 1);
            warn!(%remote, limit = shared.config.inbound_connections_max, "too many peer connections; closing new one");
            continue;
        };
        let task = serve_connection(stream, remote, permit, Arc::clone(&shared));
        shared.tracker.spawn(task);
    }
}

/// An accepted socket after its TLS handshake, if any.
struct Secured {
    stream: TcpStream,
    session: Session,
    /// The dialer's certificate, verified against the CA (TLS only).
    certificate: Option<CertificateDer<'static>>,
}

/// Serves one accepted connection until it ends: handshake, welcome, then reading.
async fn serve_connection(
    stream: TcpStream,
    remote: SocketAddr,
    _permit: OwnedSemaphorePermit,
    shared: Arc<Shared>,
) {
    let config = &shared.config;
    if let Err(error) = socket::configure(&stream, config) {
        log_end(remote, None, Ok(Closed::Io(error)), &shared.metrics, None);
        return;
    }
    let deadline = HandshakeDeadline::after(config.handshake_timeout);
    let secured = match serve_connection_secure(stream, &shared, deadline).await {
        Ok(secured) => secured,
        Err(outcome) => return log_end(remote, None, outcome, &shared.metrics, None),
    };
    let (reader, writer) = secured.stream.into_split();
    let mut writer = WriteSide {
        half: writer,
        session: secured.session.clone(),
    };
    let mut decoder =
        InboundDecoder::new(config.cluster_id, config.node_id, config.frame_bytes_max);
    if let Some(secret) = &config.security.secret {
        decoder = decoder.with_secret(secret.clone(), Nonce::random());
    }
    if let Some(certificate) = secured.certificate {
        decoder = decoder.with_certificate(certificate);
    }
    let mut side = ReadSide::new(reader, decoder, remote, secured.session);
    let cancel = shared.cancel.child_token();
    let handshake = side.read_handshake(deadline, &cancel, &mut writer, config.frame_bytes_max);
    let peer = match handshake.await {
        Ok(Ok(peer)) => peer,
        Ok(Err(closed)) => return log_end(remote, None, Ok(closed), &shared.metrics, None),
        Err(reason) => return log_end(remote, None, Err(reason), &shared.metrics, None),
    };
    let id = shared.links.next_id();
    match shared.links.accept_begin(peer, id, &cancel) {
        AcceptDecision::Refuse => {
            add(&shared.metrics.connections_refused, 1);
            debug!(%remote, %peer, "refusing peer's connection: ours to it wins the tie-break");
            return;
        }
        AcceptDecision::Accept { replaced } => {
            if replaced {
                add(&shared.metrics.connections_replaced, 1);
                debug!(%remote, %peer, "new connection from peer replaces the older one");
            }
        }
    }
    if let Err(error) = serve_connection_welcome(&mut writer, &shared, peer).await {
        shared.links.ended(peer, id);
        return log_end(
            remote,
            Some(peer),
            Ok(Closed::Io(error)),
            &shared.metrics,
            None,
        );
    }
    let accepted = Accepted {
        id,
        writer,
        cancel: cancel.clone(),
    };
    let Some(reconnect) = shared.links.accept_finish(peer, accepted) else {
        return log_end(
            remote,
            Some(peer),
            Ok(Closed::Cancelled),
            &shared.metrics,
            None,
        );
    };
    let counters = shared.metrics.peer(peer);
    add(&counters.accepts, 1);
    add(&counters.reconnects, u64::from(reconnect));
    debug!(%remote, %peer, "peer connection established");
    let reader = read_until_closed(side, peer, id, cancel.clone(), Arc::clone(&shared));
    let parked = keep_parked_alive(&shared, peer, id, &cancel, &counters);
    tokio::join!(reader, parked);
}

/// Checks that the connection starts the way this port expects (a TLS record or not), and
/// does the TLS handshake, all by `deadline`. Returns how the connection ended otherwise.
async fn serve_connection_secure(
    stream: TcpStream,
    shared: &Shared,
    deadline: HandshakeDeadline,
) -> Result<Secured, Result<Closed, RejectReason>> {
    let mut first = [0u8; 1];
    match tokio::time::timeout_at(deadline.at, stream.peek(&mut first)).await {
        Err(_) => return Err(Err(deadline.expired())),
        Ok(Ok(0)) => return Err(Ok(Closed::Eof)),
        Ok(Ok(_)) => {}
        Ok(Err(error)) => return Err(Ok(Closed::Io(error))),
    }
    let Some(identity) = shared.tls_identity() else {
        if first[0] == TLS_HANDSHAKE_RECORD {
            return Err(Err(RejectReason::TlsOnPlainPort));
        }
        return Ok(Secured {
            stream,
            session: Session::Plain,
            certificate: None,
        });
    };
    if first[0] != TLS_HANDSHAKE_RECORD {
        return Err(Err(RejectReason::NotTls {
            first_byte: first[0],
        }));
    }
    let (stream, connection) =
        match tokio::time::timeout_at(deadline.at, identity.accept(stream)).await {
            Err(_) => return Err(Err(deadline.expired())),
            Ok(Err(error)) => {
                return Err(match tls_error_of(&error) {
                    Some(failure) => Err(RejectReason::Tls(failure)),
                    None => Ok(Closed::Io(error)),
                })
            }
            Ok(Ok(accepted)) => accepted,
        };
    // The verifier makes a certificate mandatory, so a completed handshake has one.
    let Some(certificate) = connection
        .peer_certificates()
        .and_then(|chain| chain.first())
        .cloned()
    else {
        return Err(Err(RejectReason::Tls(
            rustls::Error::NoCertificatesPresented,
        )));
    };
    Ok(Secured {
        stream,
        session: Session::tls(connection),
        certificate: Some(certificate),
    })
}

/// Writes the welcome, within `handshake_timeout` (a new connection's send buffer is
/// empty, so this is one `write` unless the peer is gone).
async fn serve_connection_welcome(
    writer: &mut WriteSide,
    shared: &Shared,
    peer: raft_core::NodeId,
) -> io::Result<()> {
    let config = &shared.config;
    let welcome = Handshake::new(config.cluster_id, config.node_id, peer);
    writer
        .write_frame(
            &WireBody::Welcome(welcome),
            config.frame_bytes_max,
            config.handshake_timeout,
        )
        .await
}
