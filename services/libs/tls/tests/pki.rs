//! The operator's PKI on disk, and configurations loaded from its files.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use common::{serve_once, tcp, SERVER_NAME};
use tiervault_tls::tokio_rustls::{TlsAcceptor, TlsConnector};
use tiervault_tls::{Ca, Tenant, TlsError};
use x509_parser::extensions::GeneralName;

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn ca_round_trips_through_its_directory_with_a_private_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let ca_dir = dir.path().join("ca");
    let ca = Ca::create("Round Trip CA", 365).unwrap();
    ca.save(&ca_dir).unwrap();

    assert_eq!(mode(&ca_dir.join("ca.key")), 0o600);
    assert_eq!(mode(&ca_dir.join("ca.pem")), 0o644);
    assert_eq!(mode(&ca_dir), 0o700);

    let loaded = Ca::load(&ca_dir).unwrap();
    assert_eq!(loaded.cert_pem(), ca.cert_pem());
    assert_eq!(
        fs::read_to_string(ca_dir.join("ca.pem")).unwrap(),
        ca.cert_pem()
    );
}

#[test]
fn saving_over_an_existing_ca_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    Ca::create("First", 1).unwrap().save(dir.path()).unwrap();
    let before = fs::read(dir.path().join("ca.key")).unwrap();
    let err = Ca::create("Second", 1)
        .unwrap()
        .save(dir.path())
        .unwrap_err();
    assert!(matches!(err, TlsError::AlreadyExists { .. }), "{err:?}");
    assert!(err.to_string().contains("ca.pem"), "{err}");
    assert_eq!(fs::read(dir.path().join("ca.key")).unwrap(), before);
}

#[test]
fn loading_a_ca_with_someone_elses_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    Ca::create("A", 1).unwrap().save(&a).unwrap();
    Ca::create("B", 1).unwrap().save(&b).unwrap();
    fs::copy(b.join("ca.key"), a.join("ca.key")).unwrap();
    let err = Ca::load(&a).unwrap_err();
    assert!(matches!(err, TlsError::CaKeyMismatch { .. }), "{err:?}");
    assert!(err.to_string().contains("ca.key"), "{err}");
}

#[test]
fn loading_a_missing_ca_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let err = Ca::load(dir.path()).unwrap_err();
    assert!(
        matches!(&err, TlsError::ReadFile { path, .. } if path.ends_with("ca.pem")),
        "{err:?}"
    );
}

#[test]
fn loading_garbage_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    Ca::create("A", 1).unwrap().save(dir.path()).unwrap();
    fs::write(dir.path().join("ca.key"), b"not a key").unwrap();
    let err = Ca::load(dir.path()).unwrap_err();
    assert!(
        matches!(&err, TlsError::BadCa { path, .. } if path.ends_with("ca.key")),
        "{err:?}"
    );
}

#[test]
fn client_certificate_binds_the_tenant() {
    let ca = Ca::create("Binding CA", 30).unwrap();
    let issued = ca
        .issue_client(&Tenant::parse("acme-7").unwrap(), 30)
        .unwrap();
    let der = pem_der(&issued.cert_pem);
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();

    let cn: Vec<_> = cert
        .subject()
        .iter_common_name()
        .map(|cn| cn.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(cn, ["tenant acme-7"]);

    let san = cert.subject_alternative_name().unwrap().unwrap();
    let uris: Vec<_> = san
        .value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::URI(u) => Some(*u),
            _ => None,
        })
        .collect();
    assert_eq!(uris, ["urn:tiervault:tenant:acme-7"]);

    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.client_auth && !eku.server_auth);
    assert!(!cert.is_ca());
    let days =
        (cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp()) / 86_400;
    assert_eq!(days, 30, "30 days plus the one-hour backdate");
}

#[test]
fn server_certificate_carries_names_and_addresses() {
    let ca = Ca::create("Server CA", 30).unwrap();
    let issued = ca
        .issue_server(&["vault.example".to_owned(), "192.0.2.7".to_owned()], 30)
        .unwrap();
    let der = pem_der(&issued.cert_pem);
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    let san = cert.subject_alternative_name().unwrap().unwrap();
    assert!(san
        .value
        .general_names
        .contains(&GeneralName::DNSName("vault.example")));
    assert!(san
        .value
        .general_names
        .contains(&GeneralName::IPAddress(&[192, 0, 2, 7])));
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && !eku.client_auth);
}

#[test]
fn unusable_requests_are_refused_with_the_reason() {
    let ca = Ca::create("Picky CA", 30).unwrap();
    let err = ca.issue_server(&[], 30).unwrap_err();
    assert!(matches!(err, TlsError::BadRequest { .. }), "{err:?}");
    let err = ca
        .issue_server(&["not a name!".to_owned()], 30)
        .unwrap_err();
    assert!(err.to_string().contains("not a name!"), "{err}");
    let err = ca
        .issue_client(&Tenant::parse("acme").unwrap(), 0)
        .unwrap_err();
    assert!(err.to_string().contains("tenant acme"), "{err}");
    let now = time::OffsetDateTime::now_utc();
    let err = ca
        .issue_client_with_validity(&Tenant::parse("acme").unwrap(), now, now)
        .unwrap_err();
    assert!(matches!(err, TlsError::BadRequest { .. }), "{err:?}");
    assert!(Ca::create(" ", 30).is_err());
}

#[test]
fn issued_pair_is_saved_with_a_private_key() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::create("Save CA", 30).unwrap();
    let issued = ca
        .issue_client(&Tenant::parse("acme").unwrap(), 30)
        .unwrap();
    let (cert, key) = (dir.path().join("client.pem"), dir.path().join("client.key"));
    issued.save(&cert, &key).unwrap();
    assert_eq!(mode(&key), 0o600);
    assert_eq!(mode(&cert), 0o644);
    assert_eq!(fs::read_to_string(&key).unwrap(), issued.key_pem);
    assert_eq!(fs::read_to_string(&cert).unwrap(), issued.cert_pem);
    assert!(!format!("{issued:?}").contains("PRIVATE KEY"));
}

/// The path the operator and appliances take: CA on disk, reloaded in a later run,
/// certificates issued by the reloaded CA, configs read from files.
#[tokio::test]
async fn certificates_from_a_reloaded_ca_work_from_files() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name);
    Ca::create("Files CA", 30).unwrap().save(&p("ca")).unwrap();
    let ca = Ca::load(&p("ca")).unwrap();
    ca.issue_server(&[SERVER_NAME.to_owned()], 30)
        .unwrap()
        .save(&p("server.pem"), &p("server.key"))
        .unwrap();
    ca.issue_client(&Tenant::parse("acme").unwrap(), 30)
        .unwrap()
        .save(&p("client.pem"), &p("client.key"))
        .unwrap();

    let ca_pem = p("ca").join("ca.pem");
    let server = tiervault_tls::server_config(&ca_pem, &p("server.pem"), &p("server.key")).unwrap();
    let client = tiervault_tls::client_config(&ca_pem, &p("client.pem"), &p("client.key")).unwrap();

    let (addr, task) = serve_once(TlsAcceptor::from(server), Duration::from_secs(5)).await;
    tiervault_tls::connect(&TlsConnector::from(client), SERVER_NAME, tcp(addr).await)
        .await
        .unwrap();
    let (_, tenant) = task.await.unwrap().unwrap();
    assert_eq!(tenant.as_str(), "acme");
}

#[test]
fn config_errors_name_the_file_at_fault() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name);
    let ca = Ca::create("Config CA", 30).unwrap();
    ca.save(&p("ca")).unwrap();
    let ca_pem = p("ca").join("ca.pem");
    let one = ca.issue_server(&[SERVER_NAME.to_owned()], 30).unwrap();
    let two = ca.issue_server(&[SERVER_NAME.to_owned()], 30).unwrap();
    one.save(&p("one.pem"), &p("one.key")).unwrap();
    two.save(&p("two.pem"), &p("two.key")).unwrap();

    let err = tiervault_tls::server_config(&ca_pem, &p("one.pem"), &p("missing.key")).unwrap_err();
    assert!(
        matches!(&err, TlsError::ReadFile { path, .. } if path.ends_with("missing.key")),
        "{err:?}"
    );

    let err = tiervault_tls::server_config(&ca_pem, &p("one.pem"), &p("two.key")).unwrap_err();
    assert!(
        matches!(err, TlsError::CertificateKeyMismatch { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("two.key"), "{err}");

    let err =
        tiervault_tls::client_config(&p("one.key"), &p("one.pem"), &p("one.key")).unwrap_err();
    assert!(
        matches!(&err, TlsError::NoCertificate { what } if what.ends_with("one.key")),
        "{err:?}"
    );

    let err = tiervault_tls::client_config(&ca_pem, &p("one.pem"), &p("one.pem")).unwrap_err();
    assert!(
        matches!(&err, TlsError::NoPrivateKey { what } if what.ends_with("one.pem")),
        "{err:?}"
    );
}

fn pem_der(pem: &str) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}
