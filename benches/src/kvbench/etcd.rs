//! etcd's v3 gRPC API (`--protocol etcd`, build feature `etcd`): one client per connection,
//! Put for writes, a linearizable Range of one key for reads, and Status for the leader watch.
//!
//! A "connection" is one `etcd_client::Client` of its own, so one HTTP/2 channel (one TCP
//! connection) to one member, with one request in flight at a time: the same closed loop as a
//! Redis connection. Reads use etcd's default, linearizable (`serializable = false`), so they go
//! through the leader's ReadIndex like raftkv's GET.

use std::time::Duration;

use etcd_client::{Client, ConnectOptions};
use raft_core::{NodeId, Term};
use tokio::time::{timeout_at, Instant};

use super::client::ClientError;
use super::leader::LeaderView;
use super::stats::ErrorKind;
use super::workload::Op;

/// Why an etcd request failed: the connection is unusable (drop it and find the leader again),
/// or the request alone failed.
#[derive(Debug)]
pub enum EtcdFailure {
    Connection(ClientError),
    Request(ErrorKind),
}

/// One etcd client with its own channel to one member.
pub struct EtcdSession {
    client: Client,
}

/// `http://` plus `endpoint` (host:port), the form the client wants.
pub fn endpoint_url(endpoint: &str) -> String {
    format!("http://{endpoint}")
}

impl EtcdSession {
    /// Opens a client to `endpoint` (host:port) before `deadline`.
    ///
    /// # Errors
    /// [`ClientError::Io`] or [`ClientError::Timeout`].
    pub async fn connect(endpoint: &str, deadline: Instant) -> Result<EtcdSession, ClientError> {
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        let options = ConnectOptions::new()
            .with_connect_timeout(left)
            .with_timeout(left);
        let client = timeout_at(
            deadline,
            Client::connect([endpoint_url(endpoint)], Some(options)),
        )
        .await
        .map_err(|_| ClientError::Timeout)?
        .map_err(|error| ClientError::Io(std::io::Error::other(error.to_string())))?;
        Ok(EtcdSession { client })
    }

    /// Runs one Put (`Op::Set`) or one linearizable Range (`Op::Get`) before `deadline`.
    ///
    /// # Errors
    /// [`EtcdFailure`]: the connection is gone, or the request failed alone.
    pub async fn execute(
        &mut self,
        op: Op,
        key: Vec<u8>,
        value: &[u8],
        deadline: Instant,
    ) -> Result<(), EtcdFailure> {
        let result = match op {
            Op::Set => timeout_at(deadline, self.client.put(key, value.to_vec(), None))
                .await
                .map(|reply| reply.map(drop)),
            Op::Get => timeout_at(deadline, self.client.get(key, None))
                .await
                .map(|reply| reply.map(drop)),
        };
        match result {
            Err(_) => Err(EtcdFailure::Connection(ClientError::Timeout)),
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(classify_error(&error)),
        }
    }
}

/// Sorts a client error: a transport failure or an unavailable member ends the connection, an
/// expired deadline is a timeout, anything else fails the request alone.
pub fn classify_error(error: &etcd_client::Error) -> EtcdFailure {
    use tonic::Code;
    match error {
        etcd_client::Error::GRpcStatus(status) => match status.code() {
            Code::Unavailable => EtcdFailure::Connection(ClientError::Io(std::io::Error::other(
                status.message().to_owned(),
            ))),
            Code::DeadlineExceeded => EtcdFailure::Request(ErrorKind::Timeout),
            _ => EtcdFailure::Request(ErrorKind::Err),
        },
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => {
            EtcdFailure::Connection(ClientError::Io(std::io::Error::other(error.to_string())))
        }
        _ => EtcdFailure::Request(ErrorKind::Err),
    }
}

/// Asks `endpoint` for its Status before `deadline`, as a [`LeaderView`]: whether the member
/// leads (it names itself as leader), the Raft term and the leader's member id (0 in etcd
/// means none). `None` on any failure. etcd's Status does not carry the leader's client
/// address.
pub async fn query_status(endpoint: &str, deadline: Instant) -> Option<LeaderView> {
    let mut session = EtcdSession::connect(endpoint, deadline).await.ok()?;
    let status = timeout_at(deadline, session.client.status())
        .await
        .ok()?
        .ok()?;
    let member = NodeId(status.header()?.member_id());
    let leader = Some(NodeId(status.leader())).filter(|id| !id.is_none());
    Some(LeaderView {
        leads: leader == Some(member),
        term: Term(status.raft_term()),
        leader,
        leader_client: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_split_into_connection_and_request_failures() {
        let status = |code| etcd_client::Error::GRpcStatus(tonic::Status::new(code, "x"));
        assert!(matches!(
            classify_error(&status(tonic::Code::Unavailable)),
            EtcdFailure::Connection(ClientError::Io(_))
        ));
        assert!(matches!(
            classify_error(&status(tonic::Code::DeadlineExceeded)),
            EtcdFailure::Request(ErrorKind::Timeout)
        ));
        assert!(matches!(
            classify_error(&status(tonic::Code::ResourceExhausted)),
            EtcdFailure::Request(ErrorKind::Err)
        ));
        assert_eq!(endpoint_url("127.0.0.1:2379"), "http://127.0.0.1:2379");
    }

    #[tokio::test]
    async fn nothing_listening_is_a_failed_status_not_a_hang() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let endpoint = listener.local_addr().expect("addr").to_string();
        drop(listener);
        let deadline = Instant::now() + Duration::from_millis(500);
        assert_eq!(query_status(&endpoint, deadline).await, None);
        assert!(Instant::now() < deadline + Duration::from_millis(200));
    }
}
