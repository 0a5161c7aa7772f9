//! Every error type of raft-net.
//!
//! - [`Error`]: starting and configuring the transport.
//! - [`SendError`]: why [`crate::Transport::send`] did not queue a message; every variant
//!   means the message was dropped, and the caller (Raft) will retransmit.
//! - [`EncodeError`] / [`DecodeError`]: one frame could not be written or read.
//! - [`RejectReason`]: why an inbound connection was closed; each one is logged and
//!   counted, and affects only that connection.
//! - [`TlsConfigError`] / [`CertificateNameError`]: TLS material that cannot be used, and
//!   a certificate that does not name the node it should.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

use raft_core::NodeId;

use crate::handshake::ClusterId;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid transport configuration: `{field}` {reason}")]
    InvalidConfig {
        field: &'static str,
        reason: &'static str,
    },
    #[error("cannot listen for peers on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("node {id} is this node, so it cannot be its own peer")]
    PeerIsSelf { id: NodeId },
    #[error("the transport has been shut down")]
    Shutdown,
    #[error(
        "cluster secret of {secret_bytes} bytes: it must have between {} and {} bytes",
        crate::secret::SECRET_BYTES_MIN,
        crate::secret::SECRET_BYTES_MAX
    )]
    InvalidSecret { secret_bytes: usize },
    #[error("unusable peer TLS configuration")]
    Tls(#[from] TlsConfigError),
    /// A reload may replace the TLS identity, not switch TLS on or off, nor move the node
    /// to another id or cluster.
    #[error("cannot reload peer TLS: {reason}")]
    TlsReload { reason: &'static str },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a message was not queued. In every case the message is dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The peer is not keeping up (or is down and its queue filled while reconnecting).
    #[error("peer {to} is unreachable: its queue of {queue_msgs_max} messages is full")]
    QueueFull { to: NodeId, queue_msgs_max: usize },
    #[error("peer {to} has no address; call set_peer first")]
    UnknownPeer { to: NodeId },
    /// The payload alone exceeds the frame limit, so no peer could accept it.
    #[error("message to {to} carries {payload_bytes} bytes, over the {frame_bytes_max}-byte frame limit")]
    TooLarge {
        to: NodeId,
        payload_bytes: u64,
        frame_bytes_max: usize,
    },
    #[error("the transport has been shut down")]
    Shutdown,
}

impl SendError {
    /// True when the caller should treat the peer as unreachable for now (Raft's
    /// `report_unreachable`), as opposed to a configuration or usage problem.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, SendError::QueueFull { .. })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("encoded frame of {frame_bytes} bytes is over the {frame_bytes_max}-byte limit")]
    TooLarge {
        frame_bytes: usize,
        frame_bytes_max: usize,
    },
    #[error("postcard could not encode the frame body")]
    Serialize {
        #[source]
        source: postcard::Error,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Caught from the length prefix alone, before any byte of the body is buffered.
    #[error("frame length {frame_bytes} is over the {frame_bytes_max}-byte limit")]
    TooLarge {
        frame_bytes: u64,
        frame_bytes_max: usize,
    },
    #[error("frame length is invalid")]
    Length {
        #[source]
        source: io::Error,
    },
    #[error("frame is empty (no version byte)")]
    EmptyFrame,
    #[error("frame has protocol version {version}; this node speaks only version {supported}")]
    UnsupportedVersion { version: u8, supported: u8 },
    #[error("frame body is not a valid postcard encoding")]
    Malformed {
        #[source]
        source: postcard::Error,
    },
    #[error("frame body has {trailing_bytes} bytes left over after decoding")]
    TrailingBytes { trailing_bytes: usize },
    /// The stream ended in the middle of a frame.
    #[error("connection ended inside a frame, with {buffered_bytes} bytes buffered")]
    Truncated { buffered_bytes: usize },
}

/// Why an inbound connection was closed.
#[derive(Debug, thiserror::Error)]
pub enum RejectReason {
    #[error("undecodable input")]
    Decode(#[from] DecodeError),
    #[error("handshake magic {magic:#010x} is not raftkv's")]
    BadMagic { magic: u32 },
    #[error("peer belongs to cluster {theirs}, this node to cluster {ours}")]
    ClusterMismatch { ours: ClusterId, theirs: ClusterId },
    #[error("peer meant to reach node {addressed_to}, but this is node {ours}")]
    WrongReceiver { ours: NodeId, addressed_to: NodeId },
    #[error("peer claims this node's own id {id} (duplicated node id?)")]
    SenderIsSelf { id: NodeId },
    #[error("peer sent a {kind} message before its handshake")]
    MessageBeforeHandshake { kind: &'static str },
    #[error("peer sent a second handshake")]
    RepeatedHandshake,
    /// A hello where a welcome was due, or the reverse.
    #[error("expected a {expected} frame first, got a {got}")]
    WrongHandshakeKind {
        expected: &'static str,
        got: &'static str,
    },
    /// The welcome came from another node than the one dialled.
    #[error("dialled node {expected}, but node {actual} answered")]
    UnexpectedPeer { expected: NodeId, actual: NodeId },
    #[error("message from {frame_from} on the connection of node {handshake_from}")]
    SenderMismatch {
        handshake_from: NodeId,
        frame_from: NodeId,
    },
    #[error("message addressed to {frame_to} arrived at node {ours}")]
    ReceiverMismatch { ours: NodeId, frame_to: NodeId },
    #[error("no handshake within {timeout_ms} ms")]
    HandshakeTimeout { timeout_ms: u128 },
    /// This node requires a cluster secret; the dialer's hello carries no nonce.
    #[error("peer proves no cluster secret, and this node requires one (is a cluster secret configured on the peer?)")]
    SecretMissing,
    /// The dialer offers a proof, or the acceptor asks for one, but this node has no
    /// secret configured.
    #[error("peer uses a cluster secret, and this node has none configured")]
    SecretUnexpected,
    /// The peer's HMAC does not match: it does not know the secret (or uses another).
    #[error("peer's proof of the cluster secret is wrong (another secret, or a stranger)")]
    BadProof,
    #[error("a welcome carries a nonce")]
    NonceInWelcome,
    /// The peer's TLS certificate (valid for the CA) does not name the node it claims to
    /// be.
    #[error("peer's certificate does not prove it is node {claimed}")]
    CertificateMismatch {
        claimed: NodeId,
        #[source]
        source: CertificateNameError,
    },
    /// A TLS peer port received something other than a TLS handshake record.
    #[error("peer did not start a TLS handshake (first byte {first_byte:#04x}{}), and this node's peer port requires TLS", if *first_byte == 0 { ": a plain-TCP raft-net peer?" } else { "" })]
    NotTls { first_byte: u8 },
    /// A plain peer port received the start of a TLS handshake.
    #[error("peer started a TLS handshake, and this node's peer port is plain TCP (peer TLS is configured on one side only?)")]
    TlsOnPlainPort,
    /// The TLS handshake or a TLS record failed.
    #[error("TLS failed")]
    Tls(#[source] rustls::Error),
}

/// Which TLS file a [`TlsConfigError`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsFile {
    /// The node's certificate (chain).
    Cert,
    /// The certificate's private key.
    Key,
    /// The CA certificate(s) peers must chain to.
    Ca,
}

impl fmt::Display for TlsFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsFile::Cert => "certificate",
            TlsFile::Key => "private key",
            TlsFile::Ca => "CA certificate",
        })
    }
}

/// Why TLS material cannot be used; each names the file at fault where there is one.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    #[error("cannot read the {file} file {}", path.display())]
    Read {
        file: TlsFile,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the {file} file is not valid PEM")]
    Pem {
        file: TlsFile,
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    #[error("the {file} file holds no certificate")]
    Empty { file: TlsFile },
    #[error("the {file} is unusable")]
    Rustls {
        file: TlsFile,
        #[source]
        source: rustls::Error,
    },
    #[error("the CA certificate file gives no usable trust anchor")]
    Verifier {
        #[source]
        source: rustls::server::VerifierBuilderError,
    },
    /// This node's own certificate would be refused by its peers.
    #[error("this node's certificate does not verify against the CA for {usage} use (it needs serverAuth and clientAuth)")]
    OwnCertificate {
        usage: &'static str,
        #[source]
        source: rustls::Error,
    },
    #[error("this node's certificate breaks the naming rule")]
    OwnName {
        #[source]
        source: CertificateNameError,
    },
}

impl TlsConfigError {
    /// The file at fault: `Cert` for problems of the certificate itself.
    pub fn file(&self) -> TlsFile {
        match self {
            TlsConfigError::Read { file, .. }
            | TlsConfigError::Pem { file, .. }
            | TlsConfigError::Empty { file }
            | TlsConfigError::Rustls { file, .. } => *file,
            TlsConfigError::Verifier { .. } => TlsFile::Ca,
            TlsConfigError::OwnCertificate { .. } | TlsConfigError::OwnName { .. } => TlsFile::Cert,
        }
    }
}

/// How a certificate breaks the naming rule (`tls::naming`).
#[derive(Debug, thiserror::Error)]
pub enum CertificateNameError {
    #[error("it does not carry the DNS name {expected}")]
    Missing { expected: String },
    #[error("it carries a wildcard name under cluster-{cluster}.raftkv, which would speak for every node")]
    Wildcard { cluster: ClusterId },
    #[error("it cannot be parsed")]
    Unparsable {
        #[source]
        source: webpki::Error,
    },
}

/// Which counter a [`RejectReason`] is added to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectClass {
    Handshake,
    Decode,
    WrongIds,
    /// The peer did not prove who it claims to be: a missing or wrong cluster-secret
    /// proof, or a certificate that is invalid or names another node.
    Auth,
    /// TLS itself failed: not TLS, TLS on a plain port, garbage or a broken record.
    Tls,
}

impl RejectReason {
    pub fn class(&self) -> RejectClass {
        match self {
            RejectReason::Decode(_) => RejectClass::Decode,
            RejectReason::BadMagic { .. }
            | RejectReason::ClusterMismatch { .. }
            | RejectReason::WrongReceiver { .. }
            | RejectReason::SenderIsSelf { .. }
            | RejectReason::MessageBeforeHandshake { .. }
            | RejectReason::RepeatedHandshake
            | RejectReason::WrongHandshakeKind { .. }
            | RejectReason::UnexpectedPeer { .. }
            | RejectReason::HandshakeTimeout { .. } => RejectClass::Handshake,
            RejectReason::SenderMismatch { .. } | RejectReason::ReceiverMismatch { .. } => {
                RejectClass::WrongIds
            }
            RejectReason::SecretMissing
            | RejectReason::SecretUnexpected
            | RejectReason::BadProof
            | RejectReason::NonceInWelcome
            | RejectReason::CertificateMismatch { .. } => RejectClass::Auth,
            RejectReason::NotTls { .. } | RejectReason::TlsOnPlainPort => RejectClass::Tls,
            RejectReason::Tls(error) if is_certificate_error(error) => RejectClass::Auth,
            RejectReason::Tls(_) => RejectClass::Tls,
        }
    }
}

/// Whether a TLS failure is about a certificate (the peer's, or ours as the peer judged
/// it): an identity not proven, rather than a broken TLS stream.
fn is_certificate_error(error: &rustls::Error) -> bool {
    use rustls::AlertDescription as Alert;
    match error {
        rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented => true,
        rustls::Error::AlertReceived(alert) => matches!(
            alert,
            Alert::BadCertificate
                | Alert::UnsupportedCertificate
                | Alert::CertificateRevoked
                | Alert::CertificateExpired
                | Alert::CertificateUnknown
                | Alert::UnknownCA
                | Alert::CertificateRequired
                | Alert::AccessDenied
        ),
        _ => false,
    }
}

/// The `rustls::Error` inside an I/O error from a TLS handshake, if that is what it is.
pub(crate) fn tls_error_of(error: &io::Error) -> Option<rustls::Error> {
    error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .cloned()
}

/// An error and its `source()` chain on one line, for log fields.
pub(crate) fn display_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    // Bounded: source chains are finite and short (at most three levels in this crate).
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
