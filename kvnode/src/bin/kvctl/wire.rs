//! kvctl's connection to one client port: plain TCP or TLS (`--tls`), one request and its
//! reply at a time, every step bounded by a timeout.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::{Bytes, BytesMut};
use clap::Args;
use kvnode::resp::{decode_frame, encode, Frame, Limits, Protocol};

/// Largest reply kvctl accepts, in bytes (a value is at most 8 MiB by default; a status
/// bulk is a few hundred bytes).
const REPLY_BYTES_MAX: usize = 64 * 1024 * 1024;

/// How to dial a client port over TLS, when it speaks TLS.
pub type Tls<'a> = Option<&'a Arc<rustls::ClientConfig>>;

/// TLS to the client ports, as redis-cli spells it.
#[derive(Args, Debug)]
pub struct TlsFlags {
    /// Connect over TLS (the nodes run with client_tls_cert); needs --cacert.
    #[arg(long, requires = "cacert")]
    tls: bool,
    /// PEM CA certificate(s) the nodes' client port certificates chain to (client_tls_ca).
    #[arg(long, value_name = "FILE", requires = "tls")]
    cacert: Option<PathBuf>,
    /// PEM client certificate, for nodes that require one (client_tls_auth_clients).
    #[arg(long, value_name = "FILE", requires_all = ["tls", "key"])]
    cert: Option<PathBuf>,
    /// PEM private key of --cert.
    #[arg(long, value_name = "FILE", requires = "cert")]
    key: Option<PathBuf>,
}

impl TlsFlags {
    /// The TLS configuration the flags describe, or `None` without `--tls`.
    pub fn config(&self) -> Result<Option<Arc<rustls::ClientConfig>>> {
        let Some(ca) = self.cacert.as_deref().filter(|_| self.tls) else {
            return Ok(None);
        };
        let identity = self.cert.as_deref().zip(self.key.as_deref());
        kvnode::client_tls::tool_config(ca, identity).map(Some)
    }
}

/// A connection to a client port.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Stream {
    fn socket(&self) -> &TcpStream {
        match self {
            Stream::Plain(stream) => stream,
            Stream::Tls(stream) => &stream.sock,
        }
    }

    /// Bounds every later read and write by `timeout`.
    pub fn set_timeouts(&self, timeout: Duration) -> Result<()> {
        self.socket().set_read_timeout(Some(timeout))?;
        self.socket().set_write_timeout(Some(timeout))?;
        Ok(())
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(stream) => stream.read(buf),
            Stream::Tls(stream) => stream.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(stream) => stream.write(buf),
            Stream::Tls(stream) => stream.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Plain(stream) => stream.flush(),
            Stream::Tls(stream) => stream.flush(),
        }
    }
}

/// A connection whose every read and write is bounded by `timeout`; over TLS, verifying
/// the node's certificate for the endpoint's host, when `tls` is given.
pub fn connect(endpoint: &str, timeout: Duration, tls: Tls<'_>) -> Result<Stream> {
    let address = resolve(endpoint)?;
    let mut socket = TcpStream::connect_timeout(&address, timeout)
        .with_context(|| format!("connecting to {endpoint}"))?;
    socket.set_read_timeout(Some(timeout))?;
    socket.set_write_timeout(Some(timeout))?;
    socket.set_nodelay(true)?;
    let Some(config) = tls else {
        return Ok(Stream::Plain(socket));
    };
    let name = kvnode::client_tls::endpoint_server_name(endpoint)?;
    let mut session = rustls::ClientConnection::new(Arc::clone(config), name)
        .with_context(|| format!("starting TLS with {endpoint}"))?;
    // Bounded: each step reads or writes within the socket timeouts, or fails.
    while session.is_handshaking() {
        session
            .complete_io(&mut socket)
            .with_context(|| format!("TLS handshake with {endpoint}"))?;
    }
    Ok(Stream::Tls(Box::new(rustls::StreamOwned::new(
        session, socket,
    ))))
}

/// Sends one request on `stream` and reads its reply, within `timeout` overall.
pub fn request(
    stream: &mut Stream,
    endpoint: &str,
    args: &[&str],
    timeout: Duration,
) -> Result<Frame> {
    let request = Frame::Array(
        args.iter()
            .map(|arg| Frame::Bulk(Bytes::copy_from_slice(arg.as_bytes())))
            .collect(),
    );
    let mut out = BytesMut::new();
    encode(&request, Protocol::Resp2, &mut out);
    stream
        .write_all(&out)
        .and_then(|()| stream.flush())
        .with_context(|| format!("sending {} to {endpoint}", args[0]))?;
    read_reply(stream, timeout).with_context(|| format!("reading the reply from {endpoint}"))
}

/// Reads until one whole frame has arrived, within `timeout` overall.
fn read_reply(stream: &mut Stream, timeout: Duration) -> Result<Frame> {
    let limits = Limits {
        bulk_bytes_max: REPLY_BYTES_MAX,
        frame_bytes_max: REPLY_BYTES_MAX + 1024,
        ..Limits::default()
    };
    let deadline = Instant::now() + timeout;
    let mut buf = BytesMut::new();
    let mut chunk = [0u8; 16 * 1024];
    // Bounded: each pass reads at least one byte or fails, the reply is capped at
    // REPLY_BYTES_MAX, and the deadline caps the time.
    loop {
        if let Some(frame) = decode_frame(&mut buf, &limits)? {
            return Ok(frame);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?}");
        }
        let read = stream.read(&mut chunk)?;
        if read == 0 {
            bail!("connection closed before a whole reply arrived");
        }
        buf.extend_from_slice(&chunk[..read]);
    }
}

fn resolve(endpoint: &str) -> Result<SocketAddr> {
    endpoint
        .to_socket_addrs()
        .with_context(|| format!("{endpoint:?} is not a host:port"))?
        .next()
        .ok_or_else(|| anyhow!("{endpoint:?} resolves to no address"))
}
