//! Real handshakes over TCP on 127.0.0.1, one per failure an operator may meet.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{both_sides, raw_client, serve_once, tcp, Pki, SERVER_NAME};
use tiervault_tls::{Peer, Tenant, TlsError};
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn days(n: i64) -> time::Duration {
    time::Duration::days(n)
}

#[tokio::test]
async fn valid_client_is_bound_to_its_tenant_and_talks() {
    let pki = Pki::new();
    let client = pki.client("acme-corp");
    let (server, client) = both_sides(&pki, &pki.connector(&client), SERVER_NAME).await;
    let (mut server, tenant) = server.unwrap();
    let mut client = client.unwrap();
    assert_eq!(tenant, Tenant::parse("acme-corp").unwrap());

    client.write_all(b"hello vault").await.unwrap();
    client.flush().await.unwrap();
    let mut buf = [0u8; 11];
    server.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"hello vault");

    server.write_all(b"hello appliance").await.unwrap();
    server.flush().await.unwrap();
    let mut buf = [0u8; 15];
    client.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"hello appliance");

    let (_, conn) = client.get_ref();
    assert_eq!(
        conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    assert_eq!(conn.alpn_protocol(), Some(&b"tiervault/1"[..]));
}

#[tokio::test]
async fn server_reachable_by_ip_address_too() {
    let pki = Pki::new();
    let client = pki.client("acme");
    let (server, client) = both_sides(&pki, &pki.connector(&client), "127.0.0.1").await;
    assert_eq!(server.unwrap().1.as_str(), "acme");
    client.unwrap();
}

#[tokio::test]
async fn client_without_certificate_is_refused() {
    let pki = Pki::new();
    let connector = raw_client(&pki, &[&rustls::version::TLS13], None, true);
    let (server, client) = both_sides(&pki, &connector, SERVER_NAME).await;
    let err = server.unwrap_err();
    assert!(
        matches!(
            err,
            TlsError::NoClientCertificate {
                peer: Peer::Client(Some(_))
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("presented no client certificate"),
        "{err}"
    );
    let err = client.unwrap_err();
    assert!(
        matches!(err, TlsError::RefusedOurCertificate { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn client_from_another_ca_is_refused() {
    let pki = Pki::new();
    let stranger = Pki::named("Other MSP CA").client("acme");
    let (server, client) = both_sides(&pki, &pki.connector(&stranger), SERVER_NAME).await;
    let err = server.unwrap_err();
    assert!(matches!(err, TlsError::UnknownIssuer { .. }), "{err:?}");
    assert!(
        err.to_string().contains("not issued by the trusted CA"),
        "{err}"
    );
    let err = client.unwrap_err();
    assert!(
        matches!(&err, TlsError::RefusedOurCertificate { alert, .. } if alert == "UnknownCA"),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .starts_with("server vault.example (127.0.0.1:"),
        "{err}"
    );
}

#[tokio::test]
async fn client_from_a_foreign_ca_with_the_same_name_is_refused() {
    let pki = Pki::new();
    let lookalike = Pki::new().client("acme");
    let (server, client) = both_sides(&pki, &pki.connector(&lookalike), SERVER_NAME).await;
    let err = server.unwrap_err();
    assert!(matches!(err, TlsError::UnknownIssuer { .. }), "{err:?}");
    let err = client.unwrap_err();
    assert!(
        matches!(&err, TlsError::RefusedOurCertificate { alert, .. } if alert == "UnknownCA"),
        "{err:?}"
    );
}

#[tokio::test]
async fn expired_client_is_refused_with_its_end_date() {
    let pki = Pki::new();
    let now = OffsetDateTime::now_utc();
    let ended = (now - days(1)).replace_nanosecond(0).unwrap();
    let expired = pki
        .ca
        .issue_client_with_validity(&Tenant::parse("acme").unwrap(), now - days(30), ended)
        .unwrap();
    let (server, client) = both_sides(&pki, &pki.connector(&expired), SERVER_NAME).await;
    let err = server.unwrap_err();
    match &err {
        TlsError::Expired {
            not_after: Some(at),
            ..
        } => assert_eq!(*at, ended),
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("expired at"), "{err}");
    let err = client.unwrap_err();
    assert!(
        matches!(&err, TlsError::RefusedOurCertificate { alert, .. } if alert == "CertificateExpired"),
        "{err:?}"
    );
}

#[tokio::test]
async fn not_yet_valid_client_is_refused() {
    let pki = Pki::new();
    let now = OffsetDateTime::now_utc();
    let early = pki
        .ca
        .issue_client_with_validity(
            &Tenant::parse("acme").unwrap(),
            now + days(1),
            now + days(30),
        )
        .unwrap();
    let (server, client) = both_sides(&pki, &pki.connector(&early), SERVER_NAME).await;
    let err = server.unwrap_err();
    assert!(
        matches!(
            err,
            TlsError::NotYetValid {
                not_before: Some(_),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("clock"), "{err}");
    client.unwrap_err();
}

#[tokio::test]
async fn client_certificate_without_tenant_is_refused() {
    let pki = Pki::new();
    let anonymous = pki.client_with_uris(&[]);
    let (server, client) = both_sides(&pki, &pki.connector(&anonymous), SERVER_NAME).await;
    let err = server.unwrap_err();
    assert!(matches!(err, TlsError::NoTenant { .. }), "{err:?}");
    assert!(err.to_string().contains("urn:tiervault:tenant:"), "{err}");
    let err = client.unwrap_err();
    assert!(
        matches!(err, TlsError::RefusedOurCertificate { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn unrelated_uri_is_not_a_tenant() {
    let pki = Pki::new();
    let other = pki.client_with_uris(&["https://acme.example/"]);
    let (server, _) = both_sides(&pki, &pki.connector(&other), SERVER_NAME).await;
    let err = server.unwrap_err();
    assert!(matches!(err, TlsError::NoTenant { .. }), "{err:?}");
}

#[tokio::test]
async fn invalid_tenant_name_in_certificate_is_refused() {
    let pki = Pki::new();
    let bad = pki.client_with_uris(&["urn:tiervault:tenant:ACME"]);
    let (server, _) = both_sides(&pki, &pki.connector(&bad), SERVER_NAME).await;
    let err = server.unwrap_err();
    assert!(
        matches!(&err, TlsError::BadTenant { reason, .. } if reason.contains("\"ACME\"")),
        "{err:?}"
    );
}

#[tokio::test]
async fn two_tenants_in_one_certificate_are_refused() {
    let pki = Pki::new();
    let both = pki.client_with_uris(&["urn:tiervault:tenant:a", "urn:tiervault:tenant:b"]);
    let (server, _) = both_sides(&pki, &pki.connector(&both), SERVER_NAME).await;
    let err = server.unwrap_err();
    assert!(
        matches!(&err, TlsError::BadTenant { reason, .. } if reason.contains("several tenants")),
        "{err:?}"
    );
}

#[tokio::test]
async fn server_certificate_for_another_name_is_refused_by_the_client() {
    let pki = Pki::new();
    let client = pki.client("acme");
    let (server, client) = both_sides(&pki, &pki.connector(&client), "other.example").await;
    let err = client.unwrap_err();
    match &err {
        TlsError::NameMismatch {
            expected,
            presented,
            ..
        } => {
            assert_eq!(expected, "other.example");
            assert!(
                presented.iter().any(|name| name == SERVER_NAME),
                "{presented:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.contains("other.example") && text.contains(SERVER_NAME),
        "{text}"
    );
    let err = server.unwrap_err();
    assert!(
        matches!(err, TlsError::RefusedOurCertificate { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn server_from_another_ca_is_refused_by_the_client() {
    let pki = Pki::new();
    let impostor = Pki::named("Impostor CA");
    // The impostor server presents its own CA's certificate to our appliance.
    let acceptor = impostor.acceptor();
    let (addr, server) = serve_once(acceptor, Duration::from_secs(5)).await;
    let client = pki.client("acme");
    let err = tiervault_tls::connect(&pki.connector(&client), SERVER_NAME, tcp(addr).await)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, TlsError::UnknownIssuer { peer: Peer::Server { name, .. } } if name == SERVER_NAME),
        "{err:?}"
    );
    let err = server.await.unwrap().unwrap_err();
    assert!(
        matches!(err, TlsError::RefusedOurCertificate { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn server_from_a_foreign_ca_with_the_same_name_is_refused_by_the_client() {
    let pki = Pki::new();
    let (addr, _server) = serve_once(Pki::new().acceptor(), Duration::from_secs(5)).await;
    let client = pki.client("acme");
    let err = tiervault_tls::connect(&pki.connector(&client), SERVER_NAME, tcp(addr).await)
        .await
        .unwrap_err();
    assert!(matches!(err, TlsError::UnknownIssuer { .. }), "{err:?}");
}

#[tokio::test]
async fn expired_server_certificate_is_refused_by_the_client() {
    let mut pki = Pki::new();
    let now = OffsetDateTime::now_utc();
    pki.server = pki
        .ca
        .issue_server_with_validity(&[SERVER_NAME.to_owned()], now - days(30), now - days(1))
        .unwrap();
    let client = pki.client("acme");
    let (_, client) = both_sides(&pki, &pki.connector(&client), SERVER_NAME).await;
    let err = client.unwrap_err();
    assert!(matches!(err, TlsError::Expired { .. }), "{err:?}");
}

#[tokio::test]
async fn tls12_only_client_is_refused() {
    let pki = Pki::new();
    let client = pki.client("acme");
    let connector = raw_client(&pki, &[&rustls::version::TLS12], Some(&client), true);
    let (server, client) = both_sides(&pki, &connector, SERVER_NAME).await;
    let err = server.unwrap_err();
    assert!(
        matches!(&err, TlsError::Handshake { reason, .. } if reason.contains("TLS 1.3")),
        "{err:?}"
    );
    let err = client.unwrap_err();
    assert!(matches!(err, TlsError::Handshake { .. }), "{err:?}");
}

#[tokio::test]
async fn client_without_alpn_is_refused() {
    let pki = Pki::new();
    let client = pki.client("acme");
    let connector = raw_client(&pki, &[&rustls::version::TLS13], Some(&client), false);
    let (server, client) = both_sides(&pki, &connector, SERVER_NAME).await;
    let err = server.unwrap_err();
    assert!(
        matches!(&err, TlsError::Handshake { reason, .. } if reason.contains("tiervault/1")),
        "{err:?}"
    );
    client.unwrap_err();
}

#[tokio::test]
async fn silent_client_times_out() {
    let pki = Pki::new();
    let (addr, server) = serve_once(pki.acceptor(), Duration::from_millis(200)).await;
    let _silent = tcp(addr).await;
    let err = server.await.unwrap().unwrap_err();
    assert!(matches!(err, TlsError::Timeout { .. }), "{err:?}");
}

#[tokio::test]
async fn silent_server_times_out() {
    let pki = Pki::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let client = pki.client("acme");
    let err = tiervault_tls::connect_within(
        &pki.connector(&client),
        SERVER_NAME,
        tcp(addr).await,
        Duration::from_millis(200),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, TlsError::Timeout { after, .. } if after == Duration::from_millis(200)),
        "{err:?}"
    );
    drop(listener);
}

#[tokio::test]
async fn server_name_must_be_a_name() {
    let pki = Pki::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = pki.client("acme");
    let err = tiervault_tls::connect(
        &pki.connector(&client),
        "not a name",
        tcp(listener.local_addr().unwrap()).await,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, TlsError::BadServerName { .. }), "{err:?}");
}
