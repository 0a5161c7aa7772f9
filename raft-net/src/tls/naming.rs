//! The certificate naming rule: how a certificate says which node it belongs to.
//!
//! A node's certificate carries the DNS subject alternative name
//! `node-<id>.cluster-<cluster id>.raftkv` (see [`node_dns_name`]). DNS names are what
//! webpki, and so rustls, know how to match; URI names are not matched by it, and the
//! subject's common name is ignored (as by every current TLS stack). The cluster id in the
//! name keeps a certificate issued for one cluster from serving in another that shares
//! the CA.
//!
//! A certificate is refused for a node if it does not carry that node's name, or if it
//! carries a wildcard under the cluster's domain (`*.cluster-<c>.raftkv`): a wildcard
//! would let one certificate speak for every node. Other names (say, the host's own DNS
//! name) are ignored, so one certificate may also serve other purposes.

use raft_core::NodeId;
use rustls_pki_types::{CertificateDer, ServerName};

use crate::error::CertificateNameError;
use crate::handshake::ClusterId;

/// The last label of every node name.
pub const NODE_NAME_DOMAIN: &str = "raftkv";

/// The DNS name node `node` of cluster `cluster` must carry in its certificate.
pub fn node_dns_name(cluster: ClusterId, node: NodeId) -> String {
    format!("node-{node}.cluster-{cluster}.{NODE_NAME_DOMAIN}")
}

/// A name under the cluster's domain that no node has: only a wildcard matches it.
fn wildcard_probe_name(cluster: ClusterId) -> String {
    format!("wildcard-probe.cluster-{cluster}.{NODE_NAME_DOMAIN}")
}

/// [`node_dns_name`] as the `ServerName` a dialer verifies its peer's certificate against.
///
/// # Panics
/// Never: the name is built from digits and fixed labels, always a valid DNS name.
pub(crate) fn node_server_name(cluster: ClusterId, node: NodeId) -> ServerName<'static> {
    ServerName::try_from(node_dns_name(cluster, node)).expect("node names are valid DNS names")
}

/// Checks that `cert` (already verified against the CA) names node `node` of `cluster`,
/// and no wildcard under the cluster's domain.
///
/// # Errors
/// Which part of the rule the certificate breaks.
pub fn check_certificate_names_node(
    cert: &CertificateDer<'_>,
    cluster: ClusterId,
    node: NodeId,
) -> Result<(), CertificateNameError> {
    let parsed = webpki::EndEntityCert::try_from(cert)
        .map_err(|source| CertificateNameError::Unparsable { source })?;
    if parsed
        .verify_is_valid_for_subject_name(&node_server_name(cluster, node))
        .is_err()
    {
        return Err(CertificateNameError::Missing {
            expected: node_dns_name(cluster, node),
        });
    }
    let probe = ServerName::try_from(wildcard_probe_name(cluster))
        .expect("the probe name is a valid DNS name");
    if parsed.verify_is_valid_for_subject_name(&probe).is_ok() {
        return Err(CertificateNameError::Wildcard { cluster });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certgen::{Authority, Validity};

    #[test]
    fn node_names_follow_the_rule() {
        assert_eq!(
            node_dns_name(ClusterId(1), NodeId(2)),
            "node-2.cluster-1.raftkv"
        );
        assert_eq!(
            node_server_name(ClusterId(7), NodeId(12)).to_str(),
            "node-12.cluster-7.raftkv"
        );
    }

    #[test]
    fn certificate_must_name_exactly_the_claimed_node() {
        let ca = Authority::new("naming test CA").expect("CA");
        let cluster = ClusterId(3);
        let names = |names: &[&str]| {
            let names = names.iter().map(|n| n.to_string()).collect();
            let issued = ca.issue_names(names, Validity::Current).expect("issue");
            issued.cert_der
        };
        let cases: Vec<(&str, Vec<&str>, Result<(), &str>)> = vec![
            ("own name", vec!["node-2.cluster-3.raftkv"], Ok(())),
            (
                "own name beside a host name",
                vec!["db2.example.org", "node-2.cluster-3.raftkv"],
                Ok(()),
            ),
            (
                "another node",
                vec!["node-4.cluster-3.raftkv"],
                Err("DNS name"),
            ),
            (
                "another cluster",
                vec!["node-2.cluster-4.raftkv"],
                Err("DNS name"),
            ),
            ("wildcard", vec!["*.cluster-3.raftkv"], Err("wildcard")),
            (
                "own name and a wildcard",
                vec!["node-2.cluster-3.raftkv", "*.cluster-3.raftkv"],
                Err("wildcard"),
            ),
            ("no node name", vec!["db2.example.org"], Err("DNS name")),
        ];
        for (name, sans, want) in cases {
            let got = check_certificate_names_node(&names(&sans), cluster, NodeId(2));
            match (got, want) {
                (Ok(()), Ok(())) => {}
                (Err(error), Err(text)) => {
                    assert!(error.to_string().contains(text), "{name}: {error}")
                }
                (got, want) => panic!("{name}: got {got:?}, wanted {want:?}"),
            }
        }
    }
}
