use super::*;
use raft_net::ClusterId;

fn base() -> Settings {
    Settings {
        node_id: Some(1),
        members: vec!["1=127.0.0.1:7001,127.0.0.1:6001".into()],
        ..Settings::default()
    }
}

#[test]
fn defaults_come_from_the_member_list() {
    let config = base().resolve().unwrap();
    assert_eq!(config.peer_listen.port(), 7001);
    assert_eq!(config.client_listen.port(), 6001);
    assert_eq!(config.storage, StorageKind::Wal);
    assert_eq!(config.election_ticks, 3);
    assert_eq!(config.data_dir, PathBuf::from("data/node-1"));
}

#[test]
fn invalid_settings_name_their_key() {
    let cases: Vec<(Settings, &str)> = vec![
        (
            Settings {
                node_id: None,
                ..base()
            },
            "node_id",
        ),
        (
            Settings {
                storage: Some("disk".into()),
                ..base()
            },
            "storage",
        ),
        (
            Settings {
                sync: Some("sometimes".into()),
                ..base()
            },
            "sync",
        ),
        (
            Settings {
                election_ms: Some(60),
                ..base()
            },
            "election_ms",
        ),
        (
            Settings {
                members: vec!["1=nonsense".into()],
                ..base()
            },
            "member",
        ),
        (
            Settings {
                members: vec!["2=127.0.0.1:1,127.0.0.1:2".into()],
                ..base()
            },
            "member",
        ),
        (
            Settings {
                key_bytes_max: Some(0),
                ..base()
            },
            "key_bytes_max",
        ),
        (
            Settings {
                wal_segment_bytes: Some(1 << 20),
                ..base()
            },
            "wal_segment_bytes",
        ),
        (
            Settings {
                databases: Some(0),
                ..base()
            },
            "databases",
        ),
        (
            Settings {
                databases: Some(DATABASES_MAX + 1),
                ..base()
            },
            "databases",
        ),
    ];
    for (settings, key) in cases {
        let error = settings.resolve().unwrap_err().to_string();
        assert!(error.contains(&format!("invalid config: {key}")), "{error}");
    }
}

/// Peer TLS and the secret: loaded and checked at start, each problem named by its key.
#[test]
fn peer_security_files_are_checked_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let hosts = ["127.0.0.1".to_owned()];
    raft_net::certgen::write_cluster_certificates(
        &certs,
        ClusterId(1),
        &[NodeId(1), NodeId(2)],
        &hosts,
    )
    .unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, format!("{}\n", "s".repeat(40))).unwrap();
    let short = dir.path().join("short");
    std::fs::write(&short, "too short\n").unwrap();
    let tls = |cert: &str, key: &str| Settings {
        peer_tls_cert: Some(certs.join(cert)),
        peer_tls_key: Some(certs.join(key)),
        peer_tls_ca: Some(certs.join("ca.pem")),
        ..base()
    };
    let config = Settings {
        cluster_secret_file: Some(secret.clone()),
        ..tls("node-1.pem", "node-1.key")
    }
    .resolve()
    .unwrap();
    assert!(config.peer_security.tls.is_some() && config.peer_security.secret.is_some());
    let cases: Vec<(Settings, &str)> = vec![
        (
            Settings {
                peer_tls_key: None,
                ..tls("node-1.pem", "node-1.key")
            },
            "peer_tls_key",
        ),
        (tls("missing.pem", "node-1.key"), "peer_tls_cert"),
        (tls("node-1.pem", "node-2.key"), "peer_tls_key"),
        (tls("node-2.pem", "node-2.key"), "peer_tls_cert"),
        (
            Settings {
                peer_tls_ca: Some(certs.join("node-2.pem")),
                ..tls("node-1.pem", "node-1.key")
            },
            "peer_tls_cert",
        ),
        (
            Settings {
                cluster_secret_file: Some(short),
                ..base()
            },
            "cluster_secret_file",
        ),
    ];
    for (settings, key) in cases {
        let error = format!("{:#}", settings.resolve().unwrap_err());
        assert!(error.contains(&format!("invalid config: {key}")), "{error}");
    }
}

#[test]
fn unprotected_peer_port_is_one_beyond_loopback_without_tls_or_secret() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "s".repeat(32)).unwrap();
    let cases = [
        ("127.0.0.1:7001", false, false),
        ("0.0.0.0:7001", false, true),
        ("0.0.0.0:7001", true, false),
    ];
    for (addr, with_secret, unprotected) in cases {
        let config = Settings {
            peer_addr: Some(addr.into()),
            cluster_secret_file: with_secret.then(|| secret.clone()),
            ..base()
        }
        .resolve()
        .unwrap();
        assert_eq!(
            config.peer_port_unprotected(),
            unprotected,
            "{addr} {with_secret}"
        );
    }
}

#[test]
fn flags_override_the_file_and_unknown_file_keys_are_refused() {
    let file: Settings = toml::from_str("node_id = 2\nstorage = \"memory\"\n").unwrap();
    let flags = Settings {
        node_id: Some(1),
        ..Settings::default()
    };
    let merged = flags.over(file);
    assert_eq!(merged.node_id, Some(1));
    assert_eq!(merged.storage.as_deref(), Some("memory"));
    assert!(toml::from_str::<Settings>("nod_id = 1").is_err());
}
