//! The remote vault server's tenant isolation and retention lock, driven through the wire
//! protocol by a raw test peer: another tenant's certificate cannot list, read, probe or forget
//! the first tenant's data; unknown tenants, certificates of another CA, expired certificates
//! and missing certificates are refused with a logged reason; an appliance cannot forget a
//! retention-locked snapshot, the operator can with `--force`.

mod common;

use std::collections::HashSet;

use common::cli::describe;
use common::remote::{
    assert_tenant_consistent, back_up_more, backed_up_vault, expect_error, listing, push_vault_as,
    ClientCert, Pki, Pushed, RawClient, RemoteServer, TenantConf,
};
use tiervault_wire::{ErrorCode, Message};

const DAY_NS: i64 = 86_400 * 1_000_000_000;

/// Everything `other` may ask about `victim`'s data, each answered as if it did not exist.
fn probe_other_tenant(other: &mut RawClient, victim: &Pushed) {
    let listed: HashSet<[u8; 32]> = other.list().iter().map(|e| e.id).collect();
    for id in &victim.snapshots {
        assert!(
            !listed.contains(id),
            "another tenant's ListSnapshots shows snapshot {}",
            hex::encode(id)
        );
        let msg = expect_error(
            other.request(Message::GetSnapshot { id: *id }),
            ErrorCode::NotFound,
            "GetSnapshot of another tenant's snapshot",
        );
        eprintln!("GetSnapshot refused: {msg}");
        expect_error(
            other.request(Message::Forget { id: *id }),
            ErrorCode::NotFound,
            "Forget of another tenant's snapshot",
        );
    }
    let held = other.have(&victim.blobs);
    assert!(
        held.iter().all(|h| !h),
        "Have tells another tenant that {} of {} blob ids exist",
        held.iter().filter(|h| **h).count(),
        held.len()
    );
    match other.request(Message::GetBlobs {
        ids: victim.blobs.clone(),
    }) {
        Ok(Message::Blobs { blobs }) => assert!(
            blobs.is_empty(),
            "GetBlobs returned {} of another tenant's blobs",
            blobs.len()
        ),
        other => panic!("GetBlobs: expected an empty Blobs, got {other:?}"),
    }
}

fn connect(server: &RemoteServer, cert: &ClientCert) -> RawClient {
    RawClient::connect(server, cert, &server.ca_pem())
        .unwrap_or_else(|e| panic!("connecting with a valid certificate: {e}"))
}

#[test]
fn another_tenant_cannot_list_read_probe_or_forget_the_first_tenants_data() {
    let pki = Pki::new();
    let server = RemoteServer::start(&pki, &[TenantConf::new("acme"), TenantConf::new("globex")]);
    let acme_vault = backed_up_vault(1);
    let acme = pki.client("acme");
    let pushed = push_vault_as(&server, &acme, &acme_vault.dir);
    assert!(!pushed.snapshots.is_empty() && !pushed.blobs.is_empty());
    let acme_dir = server.tenant_dir("acme");
    let before = listing(&acme_dir, &["sessions"]);
    assert!(
        before.iter().any(|(p, ..)| p.starts_with("snapshots/")),
        "acme's vault holds no snapshot file: {before:?}"
    );

    // globex, holding no vault, names acme's vault id: it is welcomed as itself, with nothing.
    let globex = pki.client("globex");
    let mut g = connect(&server, &globex);
    match g.hello(pushed.vault_id) {
        Ok(Message::Welcome {
            tenant, has_vault, ..
        }) => {
            assert_eq!(tenant, "globex", "the tenant comes from the certificate");
            assert!(!has_vault, "globex holds no vault, whatever id it names");
        }
        other => panic!("globex's Hello: expected Welcome, got {other:?}"),
    }
    probe_other_tenant(&mut g, &pushed);
    expect_error(
        g.request(Message::GetVaultMeta),
        ErrorCode::NotFound,
        "GetVaultMeta of a tenant without a vault",
    );
    let _ = g.shutdown();
    drop(g);

    // globex with a vault of its own: still nothing of acme's, and acme's id is refused.
    let globex_vault = backed_up_vault(2);
    let gp = push_vault_as(&server, &globex, &globex_vault.dir);
    let mut g = connect(&server, &globex);
    assert!(g.welcome(gp.vault_id), "globex now holds its vault");
    probe_other_tenant(&mut g, &pushed);
    match g.request(Message::GetVaultMeta) {
        Ok(Message::VaultMeta { config, .. }) => assert_eq!(
            config,
            std::fs::read(globex_vault.dir.join("config")).expect("globex's config"),
            "GetVaultMeta returns the tenant's own config"
        ),
        other => panic!("GetVaultMeta: expected VaultMeta, got {other:?}"),
    }
    drop(g);
    let mut g = connect(&server, &globex);
    expect_error(
        g.hello(pushed.vault_id),
        ErrorCode::DifferentVault,
        "globex's Hello naming acme's vault",
    );
    drop(g);

    // Nothing was written in acme's namespace by globex's sessions.
    let after = listing(&acme_dir, &["sessions"]);
    assert_eq!(
        before, after,
        "acme's vault changed during globex's sessions"
    );

    // acme still sees all of its data and none of globex's.
    let mut a = connect(&server, &acme);
    assert!(a.welcome(pushed.vault_id));
    let listed: Vec<[u8; 32]> = a.list().iter().map(|e| e.id).collect();
    assert_eq!(listed, pushed.snapshots);
    assert!(a.have(&pushed.blobs).iter().all(|h| *h));
    probe_other_tenant(&mut a, &gp);
    drop(a);
    assert_tenant_consistent(&server, "acme", &acme_vault);
    assert_tenant_consistent(&server, "globex", &globex_vault);
}

#[test]
fn a_certificate_for_a_tenant_not_configured_is_refused_and_logged() {
    let pki = Pki::new();
    let server = RemoteServer::start(&pki, &[TenantConf::new("acme")]);
    let mark = server.log_mark();
    let initech = pki.client("initech");
    let mut c = RawClient::connect(&server, &initech, &server.ca_pem()).unwrap_or_else(|e| {
        panic!("the TLS handshake itself succeeds (the CA issued the certificate): {e}")
    });
    // The server refuses before any request: one Error with request id 0, then the end.
    let frames = c.expect_closed();
    match frames.as_slice() {
        [(0, Message::Error { code, message })] => {
            assert_eq!(*code, ErrorCode::Unauthorized, "{message}");
            assert!(message.contains("initech"), "{message}");
        }
        other => panic!("expected one Error Unauthorized, got {other:?}"),
    }
    let line = server.wait_log(mark, &["refused", "tenant initech is not configured"]);
    eprintln!("server log: {line}");
    assert!(
        !server.tenant_dir("initech").exists(),
        "a directory was made for an unknown tenant"
    );

    // A request sent without waiting gets the same refusal (or a closed connection).
    let mut c = RawClient::connect(&server, &initech, &server.ca_pem()).expect("handshake");
    match c.hello([7; 32]) {
        Ok(Message::Error { code, .. }) => assert_eq!(code, ErrorCode::Unauthorized),
        Ok(other) => panic!("an unknown tenant's Hello was answered {other:?}"),
        Err(e) => eprintln!("the refused connection ended: {e}"),
    }

    // The server goes on serving configured tenants.
    let mut a = connect(&server, &pki.client("acme"));
    assert!(!a.welcome([7; 32]));
}

#[test]
fn certificates_of_another_ca_expired_server_or_missing_are_refused_with_a_logged_reason() {
    let pki = Pki::new();
    let server = RemoteServer::start(&pki, &[TenantConf::new("acme")]);
    let ca = server.ca_pem();
    let cases: Vec<(&str, Result<RawClient, String>, &str)> = vec![
        (
            "a certificate of another CA",
            RawClient::connect(&server, &pki.client_of_other_ca("acme"), &ca),
            "not issued by the trusted CA",
        ),
        (
            "an expired certificate",
            RawClient::connect(&server, &pki.expired_client("acme"), &ca),
            "expired",
        ),
        (
            "the server's own certificate",
            RawClient::connect(
                &server,
                &ClientCert {
                    cert: pki.server_cert.clone(),
                    key: pki.server_key.clone(),
                },
                &ca,
            ),
            "client authentication",
        ),
        (
            "no certificate",
            RawClient::connect_without_certificate(&server, &ca),
            "no client certificate",
        ),
    ];
    // The cases ran one after the other; each left its own log line.
    for (what, result, reason) in cases {
        match result {
            Ok(_) => panic!("{what}: the connection was accepted"),
            Err(e) => eprintln!("{what}: the client saw: {e}"),
        }
        let line = server.wait_log(0, &["refused 127.0.0.1:", reason]);
        eprintln!("{what}: server log: {line}");
    }
    assert!(
        !server.tenant_dir("acme").exists(),
        "a refused connection created the tenant's directory"
    );
    // The server goes on serving a valid certificate.
    let mut a = connect(&server, &pki.client("acme"));
    assert!(!a.welcome([1; 32]));
    assert!(a.list().is_empty());
}

#[test]
fn retention_locked_snapshots_cannot_be_forgotten_by_the_appliance_only_by_the_operator() {
    let pki = Pki::new();
    let server = RemoteServer::start(&pki, &[TenantConf::new("acme").retention("30d")]);
    let vault = backed_up_vault(3);
    back_up_more(&vault, 4);
    let acme = pki.client("acme");
    let pushed = push_vault_as(&server, &acme, &vault.dir);
    assert_eq!(pushed.snapshots.len(), 2);

    let mut a = connect(&server, &acme);
    assert!(a.welcome(pushed.vault_id));
    let list = a.list();
    assert_eq!(list.len(), 2);
    let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64;
    for e in &list {
        assert!(
            (now - e.time).abs() < DAY_NS,
            "snapshot time {} is not about now ({now})",
            e.time
        );
        assert_eq!(
            e.locked_until,
            e.time + 30 * DAY_NS,
            "locked_until is the snapshot's time + 30 days"
        );
        let file = server
            .tenant_dir("acme")
            .join("snapshots")
            .join(hex::encode(e.id));
        let len = std::fs::metadata(&file).expect("the snapshot file").len();
        assert_eq!(u64::from(e.size), len, "size is the snapshot file's size");
    }

    let victim = list[0].id;
    let victim_hex = hex::encode(victim);
    let victim_file = server
        .tenant_dir("acme")
        .join("snapshots")
        .join(&victim_hex);
    let mark = server.log_mark();
    let msg = expect_error(
        a.request(Message::Forget { id: victim }),
        ErrorCode::RetentionLocked,
        "Forget of a snapshot inside the retention period",
    );
    assert!(
        msg.contains(&victim_hex[..8]),
        "the error names the snapshot: {msg}"
    );
    server.wait_log(mark, &["retention-locked", "acme"]);
    assert!(victim_file.is_file(), "the locked snapshot file is gone");
    assert_eq!(a.list().len(), 2);

    // The operator override needs --force while the lock holds.
    let out = server.operator(
        "forget",
        &["--tenant", "acme", "--snapshot", victim_hex.as_str()],
    );
    assert_ne!(
        out.status.code(),
        Some(0),
        "forget without --force succeeded: {}",
        describe(&out)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("retention-locked"), "{}", describe(&out));
    assert!(victim_file.is_file());

    let out = server.operator(
        "forget",
        &[
            "--tenant",
            "acme",
            "--snapshot",
            victim_hex.as_str(),
            "--force",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "forget --force: {}",
        describe(&out)
    );
    assert!(
        !victim_file.exists(),
        "forget --force left the snapshot file"
    );
    // The open session sees the change; the other snapshot is untouched.
    let ids: Vec<[u8; 32]> = a.list().iter().map(|e| e.id).collect();
    assert_eq!(ids, vec![list[1].id]);
    expect_error(
        a.request(Message::Forget { id: victim }),
        ErrorCode::NotFound,
        "Forget of a snapshot the operator removed",
    );
    drop(a);
    let left = assert_tenant_consistent(&server, "acme", &vault);
    assert_eq!(left, vec![hex::encode(list[1].id)]);
}

#[test]
fn a_tenant_without_retention_may_forget_its_snapshots() {
    let pki = Pki::new();
    let server = RemoteServer::start(
        &pki,
        &[
            TenantConf::new("acme").retention("30d"),
            TenantConf::new("globex"),
        ],
    );
    let vault = backed_up_vault(5);
    back_up_more(&vault, 6);
    let globex = pki.client("globex");
    let pushed = push_vault_as(&server, &globex, &vault.dir);
    let mut g = connect(&server, &globex);
    assert!(g.welcome(pushed.vault_id));
    let list = g.list();
    assert_eq!(list.len(), 2);
    assert!(list.iter().all(|e| e.locked_until == 0), "{list:?}");
    match g.request(Message::Forget { id: list[0].id }) {
        Ok(Message::Ok) => {}
        other => panic!("Forget without retention: expected Ok, got {other:?}"),
    }
    // Forgetting again reports NotFound (docs/wire.md 4: Forget is not idempotent).
    expect_error(
        g.request(Message::Forget { id: list[0].id }),
        ErrorCode::NotFound,
        "a repeated Forget",
    );
    let ids: Vec<[u8; 32]> = g.list().iter().map(|e| e.id).collect();
    assert_eq!(ids, vec![list[1].id]);
    assert!(!server
        .tenant_dir("globex")
        .join("snapshots")
        .join(hex::encode(list[0].id))
        .exists());
    drop(g);
    let left = assert_tenant_consistent(&server, "globex", &vault);
    assert_eq!(left, vec![hex::encode(list[1].id)]);
}
