//! One RESP connection over TCP or TLS, every wait capped by a deadline.
//!
//! Replies are decoded with kvnode's own decoder under [`reply_limits`], so a broken or hostile
//! server cannot make the tool buffer without bound.

use std::sync::{Arc, OnceLock};

use bytes::BytesMut;
use kvnode::client_tls::DialedStream;
use kvnode::resp::{decode_frame, encode, Frame, Limits, Protocol, ProtocolError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{timeout_at, Instant};

/// How every connection of this process dials, when over TLS: set once at start
/// ([`use_tls`]) and never changed, so the workers and the leader queries need not carry it.
static TLS: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();

/// Makes every later connection use TLS with `files`.
///
/// # Errors
/// A file cannot be used (named by its flag), or TLS was already set up differently.
pub fn use_tls(files: &super::options::TlsFiles) -> anyhow::Result<()> {
    let identity = files
        .identity
        .as_ref()
        .map(|(cert, key)| (cert.as_path(), key.as_path()));
    let config = kvnode::client_tls::tool_config(&files.cacert, identity)?;
    TLS.set(config)
        .map_err(|_| anyhow::anyhow!("TLS is already set up for this process"))
}

/// Bytes asked of the socket per read; a batch of replies usually fits in one.
const READ_CHUNK_BYTES: usize = 16 * 1024;

/// Caps for replies: the largest value the tool writes, plus room for headers.
pub fn reply_limits() -> Limits {
    let bulk_bytes_max = super::options::VALUE_BYTES_MAX + 1024;
    Limits {
        bulk_bytes_max,
        array_elements_max: 1024,
        inline_bytes_max: 64 * 1024,
        nesting_depth_max: 8,
        frame_bytes_max: bulk_bytes_max + 64 * 1024,
    }
}

/// Why a request got no reply.
#[derive(Debug)]
pub enum ClientError {
    /// Connecting, writing or reading failed.
    Io(std::io::Error),
    /// The server closed the connection.
    Closed,
    /// The server sent bytes that are not RESP (or exceed the caps).
    Protocol(ProtocolError),
    /// The deadline passed first.
    Timeout,
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Io(error) => write!(f, "i/o error: {error}"),
            ClientError::Closed => write!(f, "connection closed by the server"),
            ClientError::Protocol(error) => write!(f, "protocol error: {error:?}"),
            ClientError::Timeout => write!(f, "timed out"),
        }
    }
}

impl std::error::Error for ClientError {}

/// A client connection to one endpoint.
pub struct Connection {
    stream: DialedStream,
    buf: BytesMut,
    limits: Limits,
}

impl Connection {
    /// Connects to `endpoint` (host:port) before `deadline`, with Nagle off, over TLS
    /// after [`use_tls`].
    ///
    /// # Errors
    /// [`ClientError::Io`] or [`ClientError::Timeout`].
    pub async fn connect(endpoint: &str, deadline: Instant) -> Result<Connection, ClientError> {
        let connecting = kvnode::client_tls::connect(endpoint, TLS.get().cloned());
        let stream = timeout_at(deadline, connecting)
            .await
            .map_err(|_| ClientError::Timeout)?
            .map_err(ClientError::Io)?;
        Ok(Connection {
            stream,
            buf: BytesMut::with_capacity(READ_CHUNK_BYTES),
            limits: reply_limits(),
        })
    }

    /// Writes already encoded requests.
    ///
    /// # Errors
    /// [`ClientError::Io`] or [`ClientError::Timeout`].
    pub async fn send(&mut self, bytes: &[u8], deadline: Instant) -> Result<(), ClientError> {
        // Flushing sends what TLS holds back when the socket is full (a no-op for TCP).
        let writing = async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        };
        timeout_at(deadline, writing)
            .await
            .map_err(|_| ClientError::Timeout)?
            .map_err(ClientError::Io)
    }

    /// Reads the next reply.
    ///
    /// # Errors
    /// Any [`ClientError`]; the connection should be dropped after one.
    pub async fn read_reply(&mut self, deadline: Instant) -> Result<Frame, ClientError> {
        // Bounded: each pass either returns a frame or reads at least one more byte, and the
        // decoder refuses a frame longer than `frame_bytes_max` before it arrives.
        loop {
            if let Some(frame) =
                decode_frame(&mut self.buf, &self.limits).map_err(ClientError::Protocol)?
            {
                return Ok(frame);
            }
            self.buf.reserve(READ_CHUNK_BYTES);
            let read = timeout_at(deadline, self.stream.read_buf(&mut self.buf))
                .await
                .map_err(|_| ClientError::Timeout)?
                .map_err(ClientError::Io)?;
            if read == 0 {
                return Err(ClientError::Closed);
            }
        }
    }

    /// Sends one command and reads its reply.
    ///
    /// # Errors
    /// Any [`ClientError`].
    pub async fn call(&mut self, args: &[&str], deadline: Instant) -> Result<Frame, ClientError> {
        let request = Frame::Array(args.iter().map(Frame::bulk).collect());
        let mut bytes = BytesMut::new();
        encode(&request, Protocol::Resp2, &mut bytes);
        self.send(&bytes, deadline).await?;
        self.read_reply(deadline).await
    }
}

/// Connects, sends one command, reads its reply, and disconnects; all before `deadline`.
///
/// # Errors
/// Any [`ClientError`].
pub async fn call_once(
    endpoint: &str,
    args: &[&str],
    deadline: Instant,
) -> Result<Frame, ClientError> {
    let mut connection = Connection::connect(endpoint, deadline).await?;
    connection.call(args, deadline).await
}
