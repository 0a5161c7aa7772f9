//! A peer socket's kernel settings, and the dial's TCP connect.
//!
//! - Every attempt to connect uses a fresh socket and gives up after `connect_timeout`. A
//!   SYN lost in a partition is retried by the kernel only after 1 s, then 3 s, 7 s, ...;
//!   a fresh socket per attempt, at our own pace, never waits for that.
//! - No Nagle: Raft messages are latency-sensitive, and the writer batches them already.
//! - `TCP_USER_TIMEOUT` (Linux): the kernel gives up on a connection whose data stays
//!   unacknowledged for `tcp_user_timeout`, instead of retrying for about 15 minutes. The
//!   application's own check (`liveness`) acts first; this is the backstop, and it bounds
//!   how long a closed socket's unsent data keeps being retransmitted.
//! - TCP keepalive stays off: the kernel probes only a connection idle at the TCP level,
//!   and keepalive frames (`liveness`) never leave one idle for longer than
//!   `keepalive_interval`, so its probes would never be sent.
//! - A connection declared dead is closed with a reset (zero linger): its unsent data
//!   would only be retransmitted into the partition, and the peer's end, if it ever hears
//!   of it, should drop its state at once.

use std::io;
use std::net::SocketAddr;

use tokio::net::TcpStream;

use crate::config::TransportConfig;

/// Connects to `addr` with a fresh socket, within `connect_timeout`, and applies the peer
/// socket settings.
///
/// # Errors
/// The connect's error, `TimedOut`, or a failure to apply a setting.
pub(crate) async fn connect(addr: SocketAddr, config: &TransportConfig) -> io::Result<TcpStream> {
    let stream = tokio::time::timeout(config.connect_timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| {
            let timeout_ms = config.connect_timeout.as_millis();
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("connect timed out after {timeout_ms} ms"),
            )
        })??;
    configure(&stream, config)?;
    Ok(stream)
}

/// Applies the peer socket settings to a dialled or accepted connection.
///
/// # Errors
/// A failed `setsockopt`.
pub(crate) fn configure(stream: &TcpStream, config: &TransportConfig) -> io::Result<()> {
    stream.set_nodelay(true)?;
    configure_user_timeout(stream, config)
}

#[cfg(any(target_os = "linux", target_os = "android", target_os = "fuchsia"))]
fn configure_user_timeout(stream: &TcpStream, config: &TransportConfig) -> io::Result<()> {
    socket2::SockRef::from(stream).set_tcp_user_timeout(Some(config.tcp_user_timeout))
}

/// Elsewhere the option does not exist; the application's silence check still applies.
#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "fuchsia")))]
fn configure_user_timeout(_stream: &TcpStream, _config: &TransportConfig) -> io::Result<()> {
    Ok(())
}

/// Makes the connection close with a reset, discarding unsent data: for a connection
/// declared dead.
///
/// # Errors
/// A failed `setsockopt`; the connection then closes normally.
pub(crate) fn reset_on_close(stream: &TcpStream) -> io::Result<()> {
    stream.set_zero_linger()
}

#[cfg(all(test, any(target_os = "linux", target_os = "android")))]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Dialled sockets carry the settings (accepted ones go through `configure` too).
    #[tokio::test]
    async fn connect_applies_the_user_timeout_and_no_delay() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let mut config = TransportConfig::new(
            crate::ClusterId(1),
            raft_core::NodeId(1),
            listener.local_addr().expect("addr"),
        );
        config.tcp_user_timeout = Duration::from_millis(1234);
        let stream = connect(listener.local_addr().expect("addr"), &config)
            .await
            .expect("connect");
        assert!(stream.nodelay().expect("nodelay"));
        let user_timeout = socket2::SockRef::from(&stream)
            .tcp_user_timeout()
            .expect("getsockopt");
        assert_eq!(user_timeout, Some(Duration::from_millis(1234)));
    }
}
