//! The server side of a client's TLS handshake, bounded by the handshake timeout, and what
//! happens to connections that fail it: each is closed, counted by [`Rejection`] and
//! logged, at most one line per reason a second (a flood of bad connections must not
//! flood the log); the node serves everyone else meanwhile.
//!
//! A connection whose first byte cannot start a TLS record is a plain client on the TLS
//! port: it gets one clear-text RESP error saying so (so redis-cli prints a reason rather
//! than a bare reset) and is closed. A connection closed before sending anything (a port
//! probe, a load balancer's health check) is not a rejection.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tracing::{debug, warn};

use super::ClientTlsState;
use crate::metrics::Metrics;

/// What a plain-text client on the TLS port is told before it is closed.
pub const NOT_TLS_REPLY: &[u8] =
    b"-ERR this port speaks TLS only: connect with TLS (redis-cli --tls --cacert CA_FILE)\r\n";
/// The content type of a TLS handshake record, the first byte any TLS client sends
/// (RFC 8446, section 5.1).
const TLS_HANDSHAKE_RECORD: u8 = 0x16;
/// How long a plain client gets to read [`NOT_TLS_REPLY`] and close; also bounds the bytes
/// drained meanwhile, below.
const NOT_TLS_LINGER: Duration = Duration::from_secs(1);
/// Bytes of a plain client's request read and dropped after the reply, so that closing
/// with them unread does not reset the connection before the client reads the reply.
const NOT_TLS_DRAIN_BYTES_MAX: usize = 64 << 10;
/// Fewest milliseconds between two log lines about one kind of rejection.
const LOG_INTERVAL_MS: u64 = 1000;

/// Why a client's handshake was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// The first byte cannot start a TLS record: a plain client, or garbage.
    NotTls,
    /// The handshake did not complete within the handshake timeout.
    HandshakeTimeout,
    /// Mutual TLS: no client certificate, or one that does not verify (another CA,
    /// expired, not for client use).
    ClientCertificate,
    /// Anything else: malformed TLS, nothing in common, the client refusing the node's
    /// certificate, the connection lost mid-handshake.
    HandshakeFailed,
}

impl Rejection {
    pub const KINDS: usize = 4;
    pub const ALL: [Rejection; Rejection::KINDS] = [
        Rejection::NotTls,
        Rejection::HandshakeTimeout,
        Rejection::ClientCertificate,
        Rejection::HandshakeFailed,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Rejection::NotTls => "not_tls",
            Rejection::HandshakeTimeout => "handshake_timeout",
            Rejection::ClientCertificate => "client_certificate",
            Rejection::HandshakeFailed => "handshake_failed",
        }
    }

    /// Classifies the error of a failed handshake.
    fn of(error: &io::Error) -> Rejection {
        let tls = error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>());
        match tls {
            Some(rustls::Error::NoCertificatesPresented | rustls::Error::InvalidCertificate(_)) => {
                Rejection::ClientCertificate
            }
            _ => Rejection::HandshakeFailed,
        }
    }
}

/// Logs rejected handshakes at a bounded rate.
pub struct RejectionLog {
    epoch: Instant,
    /// Milliseconds after `epoch` of the last line logged, plus one (0: never).
    logged_ms: [AtomicU64; Rejection::KINDS],
    /// Rejections not logged since the last line, by reason.
    suppressed: [AtomicU64; Rejection::KINDS],
}

impl Default for RejectionLog {
    fn default() -> RejectionLog {
        RejectionLog {
            epoch: Instant::now(),
            logged_ms: Default::default(),
            suppressed: Default::default(),
        }
    }
}

impl RejectionLog {
    fn record(&self, reason: Rejection, client: SocketAddr, detail: &str) {
        let index = reason as usize;
        let now_ms = u64::try_from(self.epoch.elapsed().as_millis())
            .unwrap_or(u64::MAX - 1)
            .saturating_add(1);
        let last = self.logged_ms[index].load(Ordering::Relaxed);
        let due = last == 0 || now_ms.saturating_sub(last) >= LOG_INTERVAL_MS;
        // One task wins the right to log this interval; the others count themselves.
        if due
            && self.logged_ms[index]
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let suppressed = self.suppressed[index].swap(0, Ordering::Relaxed);
            warn!(
                reason = reason.label(),
                %client,
                error = detail,
                suppressed,
                "client TLS handshake refused; connection closed"
            );
        } else {
            self.suppressed[index].fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// How a handshake ended without a connection.
enum Refused {
    /// Closed before sending a byte: not counted.
    Silent,
    Rejected(Rejection, String),
}

/// The TLS handshake of an accepted client, within the handshake timeout. `None` when it
/// failed: the connection is closed, and counted and logged as the module says.
pub async fn accept(
    stream: TcpStream,
    client: SocketAddr,
    state: &ClientTlsState,
    metrics: &Metrics,
) -> Option<TlsStream<TcpStream>> {
    let config = state.current().server;
    let refused =
        match tokio::time::timeout(state.handshake_timeout, handshake(stream, config)).await {
            Ok(Ok(stream)) => return Some(stream),
            Ok(Err(refused)) => refused,
            Err(_) => Refused::Rejected(
                Rejection::HandshakeTimeout,
                format!(
                    "no complete handshake within {} ms",
                    state.handshake_timeout.as_millis()
                ),
            ),
        };
    match refused {
        Refused::Silent => debug!(%client, "client closed before its TLS handshake"),
        Refused::Rejected(reason, detail) => {
            metrics.client_tls_rejections[reason as usize].fetch_add(1, Ordering::Relaxed);
            state.rejections.record(reason, client, &detail);
        }
    }
    None
}

async fn handshake(
    stream: TcpStream,
    config: std::sync::Arc<rustls::ServerConfig>,
) -> Result<TlsStream<TcpStream>, Refused> {
    let mut first = [0u8; 1];
    match stream.peek(&mut first).await {
        Ok(0) => return Err(Refused::Silent),
        Ok(_) => {}
        Err(error) => {
            return Err(Refused::Rejected(
                Rejection::HandshakeFailed,
                error.to_string(),
            ))
        }
    }
    if first[0] != TLS_HANDSHAKE_RECORD {
        answer_plain_client(stream).await;
        return Err(Refused::Rejected(
            Rejection::NotTls,
            format!("its first byte {:#04x} starts no TLS handshake", first[0]),
        ));
    }
    tokio_rustls::TlsAcceptor::from(config)
        .accept(stream)
        .await
        .map_err(|error| Refused::Rejected(Rejection::of(&error), error.to_string()))
}

/// Tells a plain client why it is closed, then lingers briefly reading (and dropping) what
/// it sent, so the reply is not lost to a reset.
async fn answer_plain_client(mut stream: TcpStream) {
    let answering = async {
        stream.write_all(NOT_TLS_REPLY).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        let mut drained = 0;
        while drained < NOT_TLS_DRAIN_BYTES_MAX {
            match stream.read(&mut sink).await? {
                0 => break,
                read => drained += read,
            }
        }
        io::Result::Ok(())
    };
    // The client may be gone or never close: either way the connection ends here.
    let _ = tokio::time::timeout(NOT_TLS_LINGER, answering).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_errors_are_classified_by_what_the_client_did() {
        let tls = |error: rustls::Error| io::Error::new(io::ErrorKind::InvalidData, error);
        let cases = [
            (
                tls(rustls::Error::NoCertificatesPresented),
                Rejection::ClientCertificate,
            ),
            (
                tls(rustls::Error::InvalidCertificate(
                    rustls::CertificateError::Expired,
                )),
                Rejection::ClientCertificate,
            ),
            (
                tls(rustls::Error::InvalidCertificate(
                    rustls::CertificateError::UnknownIssuer,
                )),
                Rejection::ClientCertificate,
            ),
            (
                tls(rustls::Error::AlertReceived(
                    rustls::AlertDescription::UnknownCA,
                )),
                Rejection::HandshakeFailed,
            ),
            (
                io::Error::from(io::ErrorKind::ConnectionReset),
                Rejection::HandshakeFailed,
            ),
        ];
        for (error, expected) in cases {
            assert_eq!(Rejection::of(&error), expected, "{error}");
        }
    }

    #[test]
    fn a_flood_of_rejections_logs_one_line_per_reason_and_interval() {
        let log = RejectionLog::default();
        let client = SocketAddr::from(([127, 0, 0, 1], 1));
        for _ in 0..100 {
            log.record(Rejection::NotTls, client, "garbage");
        }
        log.record(Rejection::HandshakeTimeout, client, "slow");
        // The first of each reason was logged; the other 99 wait for the next interval.
        let suppressed =
            |reason: Rejection| log.suppressed[reason as usize].load(Ordering::Relaxed);
        assert_eq!(suppressed(Rejection::NotTls), 99);
        assert_eq!(suppressed(Rejection::HandshakeTimeout), 0);
        assert_ne!(
            log.logged_ms[Rejection::NotTls as usize].load(Ordering::Relaxed),
            0
        );
    }
}
