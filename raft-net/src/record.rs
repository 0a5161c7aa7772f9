//! A connection's record layer: frames go to the socket as they are (plain TCP), or
//! sealed into TLS records by the connection's rustls session.
//!
//! Why not tokio-rustls's stream after the handshake: raft-net splits every socket into a
//! read half (the reader task) and a write half shared by the peer's writer task and by
//! `send`, which writes an idle peer's frame itself with one non-blocking `try_write`
//! (see `peer/wire`), and keepalives reach a parked connection the same way (`link`). A
//! TLS stream has no `try_write` and cannot be split into owned halves without a lock
//! around the whole stream. rustls itself needs no I/O: so the session is shared by the
//! two halves behind a mutex held only while sealing or opening bytes (never across an
//! await), and the socket halves stay as they are.
//!
//! Invariants that keep the TLS stream whole:
//! - Sealed bytes leave in the order they were sealed, and none is ever dropped: every
//!   writer (the writer task, `send`'s direct write, a parked keepalive) seals only while
//!   it alone may write the socket, and writes everything it sealed before anyone else
//!   seals (a direct write's unwritten rest is queued as a tail, which goes first).
//! - Sealing drains everything the session has to send, so a record the reader side
//!   caused (a TLS 1.3 key update answer) leaves with the next frame or keepalive, in
//!   session order.
//! - The reader hands rustls only bytes it read, never an empty slice (rustls would take
//!   that for the end of the stream), and drains every decrypted byte at once.

use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;

use crate::codec::{encode_frame, WireBody};
use crate::error::RejectReason;

/// How a connection's bytes are protected; cheap to clone (both halves hold one).
#[derive(Clone)]
pub(crate) enum Session {
    Plain,
    Tls(Arc<Mutex<rustls::Connection>>),
}

/// What [`Session::open`] found besides plaintext.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Opened {
    Open,
    /// The peer ended the TLS stream (close_notify): treat as the end of the stream.
    Closed,
}

impl Session {
    /// A TLS session whose handshake is complete.
    pub fn tls(connection: impl Into<rustls::Connection>) -> Session {
        let mut connection = connection.into();
        // Sealed records are taken out at once (`seal`), so rustls's own cap on what it
        // buffers for sending would only split a batch; the batch size is raft-net's bound.
        connection.set_buffer_limit(None);
        Session::Tls(Arc::new(Mutex::new(connection)))
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, Session::Tls(_))
    }

    fn lock(connection: &Mutex<rustls::Connection>) -> MutexGuard<'_, rustls::Connection> {
        connection
            .lock()
            .expect("TLS session lock is never held across a panic")
    }

    /// Appends the wire bytes for `plain` to `out`: `plain` itself, or TLS records holding
    /// it (plus anything else the session has to send, which goes first).
    ///
    /// # Errors
    /// The session refuses to seal (it has failed or been closed).
    pub fn seal(&self, plain: &[u8], out: &mut BytesMut) -> io::Result<()> {
        let Session::Tls(connection) = self else {
            out.extend_from_slice(plain);
            return Ok(());
        };
        let mut connection = Session::lock(connection);
        connection.writer().write_all(plain)?;
        let mut writer = out.writer();
        // Bounded: each pass moves at least one queued record out; none are added meanwhile.
        while connection.wants_write() {
            if connection.write_tls(&mut writer)? == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
        }
        Ok(())
    }

    /// Moves what was read from the socket (`wire`, emptied) into `plain`: as it is, or
    /// decrypted. Also takes out plaintext the session already holds (bytes that arrived
    /// with the TLS handshake), so call it once with an empty `wire` after the handshake.
    ///
    /// # Errors
    /// A TLS failure (garbage, a bad record, an alert from the peer): close the connection.
    pub fn open(&self, wire: &mut BytesMut, plain: &mut BytesMut) -> Result<Opened, RejectReason> {
        let Session::Tls(connection) = self else {
            plain.extend_from_slice(wire);
            wire.clear();
            return Ok(Opened::Open);
        };
        let mut connection = Session::lock(connection);
        // Bounded: each pass feeds rustls at least one byte of `wire`, or returns.
        loop {
            let state = connection
                .process_new_packets()
                .map_err(RejectReason::Tls)?;
            let ready = state.plaintext_bytes_to_read();
            if ready > 0 {
                let start = plain.len();
                plain.resize(start + ready, 0);
                connection
                    .reader()
                    .read_exact(&mut plain[start..])
                    .expect("rustls holds the plaintext it reported");
            }
            if state.peer_has_closed() {
                wire.clear();
                return Ok(Opened::Closed);
            }
            if wire.is_empty() {
                return Ok(Opened::Open);
            }
            let fed = connection
                .read_tls(&mut &wire[..])
                .map_err(|error| RejectReason::Tls(rustls::Error::General(error.to_string())))?;
            if fed == 0 {
                // rustls takes nothing only when its record buffer is full of a record
                // too large to be valid.
                return Err(RejectReason::Tls(rustls::Error::General(
                    "TLS record too large".into(),
                )));
            }
            wire.advance(fed);
        }
    }
}

/// The write half of a connection and how its bytes are protected.
pub(crate) struct WriteSide {
    pub half: OwnedWriteHalf,
    pub session: Session,
}

impl WriteSide {
    /// Seals `frame` (a whole frame) and writes it with one non-blocking `try_write`.
    /// Returns the sealed bytes and how many of them the kernel took: on a TLS session,
    /// the rest must still be written, first, or the stream is broken.
    ///
    /// # Errors
    /// Sealing or the write failed (`WouldBlock` only on a plain session, where nothing was
    /// sealed and so nothing is owed).
    pub fn try_write_sealed(&self, frame: &[u8], sealed: &mut BytesMut) -> io::Result<usize> {
        sealed.clear();
        self.session.seal(frame, sealed)?;
        match self.half.try_write(sealed) {
            Err(error) if error.kind() == io::ErrorKind::WouldBlock && self.session.is_tls() => {
                Ok(0)
            }
            written => written,
        }
    }

    /// Encodes, seals and writes one handshake frame within `timeout`.
    ///
    /// # Errors
    /// The write failed or timed out.
    pub async fn write_frame(
        &mut self,
        body: &WireBody,
        frame_bytes_max: usize,
        timeout: Duration,
    ) -> io::Result<()> {
        let mut frame = BytesMut::new();
        encode_frame(body, frame_bytes_max, &mut frame)
            .expect("a handshake frame is far smaller than FRAME_BYTES_MIN");
        let mut sealed = BytesMut::new();
        self.session.seal(&frame, &mut sealed)?;
        tokio::time::timeout(timeout, self.half.write_all(&sealed))
            .await
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    "handshake frame not written in time",
                )
            })?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certgen::Authority;
    use crate::handshake::ClusterId;
    use crate::tls::naming::node_server_name;
    use raft_core::NodeId;

    /// A completed in-memory TLS handshake between nodes 1 (client) and 2 (server).
    fn session_pair() -> (Session, Session) {
        let ca = Authority::new("record test CA").expect("CA");
        let cluster = ClusterId(1);
        let identity = |id| ca.identity(cluster, NodeId(id)).expect("identity");
        let client = rustls::ClientConnection::new(
            identity(1).client_config(),
            node_server_name(cluster, NodeId(2)),
        )
        .expect("client");
        let server = rustls::ServerConnection::new(identity(2).server_config()).expect("server");
        let (mut client, mut server) = (client.into(), server.into());
        // Bounded: a TLS 1.3 handshake takes a few flights.
        for _ in 0..10 {
            fly(&mut client, &mut server);
            fly(&mut server, &mut client);
        }
        assert!(!client.is_handshaking() && !server.is_handshaking());
        (Session::tls(client), Session::tls(server))
    }

    /// Moves everything `from` has to send into `to`.
    fn fly(from: &mut rustls::Connection, to: &mut rustls::Connection) {
        let mut flight = Vec::new();
        while from.wants_write() {
            from.write_tls(&mut flight).expect("write a flight");
        }
        if !flight.is_empty() {
            to.read_tls(&mut &flight[..]).expect("read a flight");
            to.process_new_packets().expect("process a flight");
        }
    }

    /// Sealed bytes open to the same plaintext whatever the read boundaries, and the
    /// plaintext never shows in the wire bytes.
    #[test]
    fn sealed_bytes_open_intact_across_any_split() {
        let (client, server) = session_pair();
        let plain: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let mut wire = BytesMut::new();
        client.seal(&plain[..40_000], &mut wire).expect("seal");
        client.seal(&plain[40_000..], &mut wire).expect("seal");
        assert!(wire.len() > plain.len(), "records add overhead");
        assert!(
            !wire.windows(16).any(|w| w == &plain[1000..1016]),
            "encrypted"
        );
        let mut opened = BytesMut::new();
        for piece in wire.chunks(777) {
            let mut piece = BytesMut::from(piece);
            assert_eq!(
                server.open(&mut piece, &mut opened).expect("open"),
                Opened::Open
            );
            assert!(piece.is_empty());
        }
        assert_eq!(&opened[..], &plain[..]);
    }

    #[test]
    fn garbage_and_tampering_are_tls_errors() {
        let (client, server) = session_pair();
        let mut wire = BytesMut::new();
        client.seal(b"hello", &mut wire).expect("seal");
        let last = wire.len() - 1;
        wire[last] ^= 1;
        let mut plain = BytesMut::new();
        assert!(matches!(
            server.open(&mut wire, &mut plain),
            Err(RejectReason::Tls(_))
        ));
        let (_, server) = session_pair();
        let mut garbage = BytesMut::from(&b"GET / HTTP/1.1\r\n\r\n"[..]);
        assert!(matches!(
            server.open(&mut garbage, &mut plain),
            Err(RejectReason::Tls(_))
        ));
        assert!(plain.is_empty(), "nothing forged gets through");
    }

    #[test]
    fn plain_session_passes_bytes_through() {
        let mut out = BytesMut::new();
        Session::Plain.seal(b"abc", &mut out).expect("seal");
        let mut plain = BytesMut::new();
        assert_eq!(
            Session::Plain.open(&mut out, &mut plain).expect("open"),
            Opened::Open
        );
        assert_eq!(&plain[..], b"abc");
        assert!(out.is_empty());
    }
}
