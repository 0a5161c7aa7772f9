//! The clients' side of the network: a tokio runtime whose every thread lives in the client
//! namespace, and the one function that opens sockets ([`Dialer::connect`]).
//!
//! Sockets to test hosts are never opened from the root namespace (whose default route would
//! carry a private address off the machine). The runtime's threads `setns` into the client
//! namespace when they start, and `connect` checks two things before every connection: the
//! destination lies in the run's subnet, and the calling thread really is in the client
//! namespace. Work is handed to the runtime with [`ClientNet::run`], which spawns it there;
//! nothing that opens a socket runs on the caller's thread.

use std::future::Future;
use std::net::SocketAddrV4;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use kvnode::resp::Frame;
use tokio::time::Instant;

use super::net::Subnet;
use super::sys;
use crate::kvbench::client::{ClientError, Connection};

/// Worker threads of the client runtime: the machine has two cores, shared with the nodes.
const WORKER_THREADS: usize = 2;

/// The client runtime, inside the client namespace.
pub struct ClientNet {
    runtime: tokio::runtime::Runtime,
    pub subnet: Subnet,
    namespace_inode: u64,
}

impl ClientNet {
    /// Starts the runtime; its threads enter the client namespace as they start.
    ///
    /// # Errors
    /// If the namespace is missing or cannot be entered.
    pub fn start(subnet: Subnet) -> Result<ClientNet> {
        let namespace = subnet.client_namespace();
        let namespace_inode = sys::namespace_inode(&namespace)?;
        // Prove setns works before the runtime depends on it.
        let probe = namespace.clone();
        std::thread::spawn(move || {
            sys::enter_namespace(&probe)?;
            sys::current_namespace_inode()
        })
        .join()
        .map_err(|_| anyhow::anyhow!("namespace probe thread panicked"))??;
        let entered = namespace.clone();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(WORKER_THREADS)
            .enable_all()
            .on_thread_start(move || {
                sys::enter_namespace(&entered).expect("entering the client namespace (probed)");
            })
            .build()
            .context("building the client runtime")?;
        Ok(ClientNet {
            runtime,
            subnet,
            namespace_inode,
        })
    }

    /// Runs `future` on the client runtime and waits for its result.
    ///
    /// # Errors
    /// If the task panicked.
    pub fn run<T: Send + 'static>(
        &self,
        future: impl Future<Output = T> + Send + 'static,
    ) -> Result<T> {
        let task = self.runtime.spawn(future);
        self.runtime
            .block_on(task)
            .map_err(|error| anyhow::anyhow!("client task failed: {error}"))
    }

    /// Spawns `future` on the client runtime.
    pub fn spawn<T: Send + 'static>(
        &self,
        future: impl Future<Output = T> + Send + 'static,
    ) -> tokio::task::JoinHandle<T> {
        self.runtime.spawn(future)
    }

    /// A cheap handle for tasks that connect.
    pub fn dialer(&self) -> Dialer {
        Dialer {
            subnet: self.subnet,
            namespace_inode: self.namespace_inode,
        }
    }
}

/// What connecting needs: the run's subnet and the client namespace's identity.
#[derive(Clone, Copy, Debug)]
pub struct Dialer {
    subnet: Subnet,
    namespace_inode: u64,
}

impl Dialer {
    /// Connects to `addr` before `deadline`, after checking the destination and the thread's
    /// namespace.
    ///
    /// # Errors
    /// A refused destination or namespace is [`ClientError::Io`] with `PermissionDenied`.
    pub async fn connect(
        &self,
        addr: SocketAddrV4,
        deadline: Instant,
    ) -> Result<Connection, ClientError> {
        self.check(addr).map_err(|error| {
            ClientError::Io(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!("{error:#}"),
            ))
        })?;
        Connection::connect(&addr.to_string(), deadline).await
    }

    fn check(&self, addr: SocketAddrV4) -> Result<()> {
        if !self.subnet.contains(*addr.ip()) {
            bail!("refusing to connect to {addr}: outside the run's subnet");
        }
        let here = sys::current_namespace_inode()?;
        if here != self.namespace_inode {
            bail!("refusing to connect to {addr} from outside the client namespace");
        }
        Ok(())
    }

    /// Connects, sends one command, returns the reply; all within `timeout`.
    ///
    /// # Errors
    /// Any [`ClientError`].
    pub async fn call_once(
        &self,
        addr: SocketAddrV4,
        args: &[&str],
        timeout: Duration,
    ) -> Result<Frame, ClientError> {
        let deadline = Instant::now() + timeout;
        let mut connection = self.connect(addr, deadline).await?;
        connection.call(args, deadline).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dialer_refuses_addresses_outside_the_subnet_and_the_root_namespace() {
        let dialer = Dialer {
            subnet: Subnet { octet: 9 },
            namespace_inode: u64::MAX,
        };
        let outside = "192.168.1.1:6379".parse().expect("address");
        let error = dialer.check(outside).expect_err("outside the subnet");
        assert!(format!("{error}").contains("outside the run's subnet"));
        // Inside the subnet but from this (non-client) namespace: refused too.
        let inside = "10.231.9.11:6379".parse().expect("address");
        let error = dialer.check(inside).expect_err("wrong namespace");
        assert!(format!("{error}").contains("outside the client namespace"));
    }
}
