//! Webhook delivery against a real HTTP receiver on loopback: outages, restarts, status codes,
//! backoff on an injected clock, HTTPS, and secrets kept out of logs and errors.

mod common;

use std::collections::HashSet;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::http::{closed_port, test_pki, Receiver};
use common::{appliance, raise, store, Captured, SOURCE, T0};
use tiervault_alerts::Severity;
use tiervault_notify::{
    Backoff, Clock, Dispatcher, HeaderConfig, ManualClock, NotifyConfig, Secret, SpoolCaps, Target,
    Transition, WebhookConfig, WebhookTarget, SET_ASIDE_DIR,
};

const SECOND: i64 = 1_000_000_000;

fn webhook(name: &str, url: String, token_file: Option<PathBuf>) -> WebhookConfig {
    WebhookConfig {
        name: name.into(),
        url,
        token_file,
        header: None,
        min_severity: Severity::try_from(3).expect("severity"),
        timeout_secs: 5,
        backoff: Backoff {
            initial_secs: 1,
            max_secs: 8,
        },
        ca_file: None,
    }
}

fn config(spool_dir: &Path, webhooks: Vec<WebhookConfig>) -> NotifyConfig {
    NotifyConfig {
        spool_dir: spool_dir.to_owned(),
        spool: SpoolCaps::default(),
        webhook: webhooks,
        smtp: Vec::new(),
    }
}

fn url(addr: SocketAddr) -> String {
    format!("http://{addr}/hooks/tiervault")
}

fn open(config: &NotifyConfig, clock: &Arc<ManualClock>) -> Dispatcher {
    let (mut dispatcher, reports) =
        Dispatcher::from_config(config, SOURCE, &appliance(), clock.clone()).expect("dispatcher");
    for (name, report) in reports {
        assert!(report.set_aside.is_empty(), "{name}: {report:?}");
    }
    dispatcher.seed_jitter(7);
    dispatcher
}

#[test]
fn outage_then_recovery_delivers_everything_in_order_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut alerts = store(dir.path());
    let token = dir.path().join("token");
    fs::write(&token, "tok-123\n").expect("token");
    let addr = closed_port();
    let clock = Arc::new(ManualClock::new(T0));
    let config = config(
        &dir.path().join("notify"),
        vec![webhook("psa", url(addr), Some(token))],
    );
    let mut dispatcher = open(&config, &clock);

    let mut sent = Vec::new();
    for (i, severity) in [10u8, 4, 7, 9, 5].into_iter().enumerate() {
        let alert = raise(
            &mut alerts,
            &format!("vault-data{i}"),
            severity,
            &format!("array vault-data{i} has failed"),
        );
        let enqueued = dispatcher
            .notify(&alert, Transition::Raised)
            .expect("notify");
        assert_eq!(enqueued.spooled, ["psa"]);
        sent.push(enqueued.event_id);
    }

    // The receiver is down: every due pump fails, and the waits double up to the cap.
    for round in 0..5u32 {
        let report = dispatcher.pump();
        assert_eq!(report.delivered(), 0);
        assert_eq!(report.pending(), 5);
        let error = report.targets[0].error.clone().expect("an error");
        assert!(error.contains("will retry"), "{error}");
        let at = report.next_retry_ns().expect("waiting");
        let full = (SECOND << round).min(8 * SECOND);
        let wait = at - clock.now_ns();
        assert!(wait >= full / 2 && wait <= full, "round {round}: {wait}");
        // Not due yet: nothing is tried.
        let early = dispatcher.pump();
        assert_eq!(early.targets[0].retry_at_ns, Some(at));
        assert_eq!(early.targets[0].error, None);
        assert_eq!(dispatcher.next_due_ns(), Some(at));
        clock.set(at);
    }

    let receiver = Receiver::start(addr, None);
    let report = dispatcher.pump();
    assert_eq!(report.delivered(), 5, "{report}");
    assert_eq!(report.pending(), 0);
    assert_eq!(receiver.delivered_ids(), sent, "in order, each once");
    let requests = receiver.received();
    assert_eq!(requests.len(), 5);
    let mut sequences = Vec::new();
    for request in &requests {
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, "/hooks/tiervault");
        assert_eq!(request.header("content-type"), Some("application/json"));
        assert_eq!(request.header("authorization"), Some("Bearer tok-123"));
        let body = request.json();
        assert_eq!(request.header("idempotency-key"), body["event_id"].as_str());
        assert_eq!(body["schema"], "tiervault-notification/1");
        assert_eq!(body["transition"], "raised");
        assert_eq!(body["appliance"]["id"], "tv-0007");
        assert_eq!(body["alert"]["source"], SOURCE);
        sequences.push(body["sequence"].as_u64().expect("sequence"));
    }
    assert!(sequences.windows(2).all(|w| w[0] < w[1]), "{sequences:?}");
    assert_eq!(requests[0].json()["alert"]["priority"], "P1");
    assert_eq!(requests[1].json()["alert"]["priority"], "notify");

    let report = dispatcher.pump();
    assert_eq!(report.delivered(), 0);
    assert_eq!(receiver.received().len(), 5, "nothing sent twice");
    assert_eq!(dispatcher.next_due_ns(), None);
}

#[test]
fn restart_with_undelivered_entries_delivers_them_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut alerts = store(dir.path());
    let addr = closed_port();
    let clock = Arc::new(ManualClock::new(T0));
    let config = config(
        &dir.path().join("notify"),
        vec![webhook("psa", url(addr), None)],
    );

    let mut sent = Vec::new();
    {
        let mut dispatcher = open(&config, &clock);
        for i in 0..3 {
            let alert = raise(&mut alerts, &format!("a{i}"), 8, "array degraded");
            sent.push(
                dispatcher
                    .notify(&alert, Transition::Raised)
                    .expect("notify")
                    .event_id,
            );
        }
        assert_eq!(dispatcher.pump().delivered(), 0, "receiver is down");
        // The service stops (or crashes) here with three entries undelivered.
    }

    let receiver = Receiver::start(addr, None);
    let mut dispatcher = open(&config, &clock);
    assert_eq!(dispatcher.targets()[0].pending, 3);
    let report = dispatcher.pump();
    assert_eq!(report.delivered(), 3, "{report}");
    assert_eq!(receiver.delivered_ids(), sent);
    assert_eq!(dispatcher.pump().delivered(), 0);

    // Sequence numbers went on from where the first run stopped: a new event id.
    let alert = raise(&mut alerts, "a9", 8, "array degraded");
    let enqueued = dispatcher
        .notify(&alert, Transition::Raised)
        .expect("notify");
    assert!(!sent.contains(&enqueued.event_id));
    assert_eq!(dispatcher.pump().delivered(), 1);
    let ids = receiver.delivered_ids();
    assert_eq!(ids.len(), 4);
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 4, "{ids:?}");
}

#[test]
fn server_error_is_retried_after_the_backoff() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut alerts = store(dir.path());
    let receiver = Receiver::start("127.0.0.1:0".parse().expect("addr"), None);
    receiver.script(500, &[]);
    let clock = Arc::new(ManualClock::new(T0));
    let config = config(
        &dir.path().join("notify"),
        vec![webhook("psa", url(receiver.addr()), None)],
    );
    let mut dispatcher = open(&config, &clock);
    let a = raise(&mut alerts, "a", 9, "first");
    let b = raise(&mut alerts, "b", 9, "second");
    let first = dispatcher.notify(&a, Transition::Raised).expect("notify");
    let second = dispatcher.notify(&b, Transition::Raised).expect("notify");

    let report = dispatcher.pump();
    assert_eq!(report.delivered(), 0);
    let error = report.targets[0].error.clone().expect("error");
    assert!(error.contains("HTTP 500"), "{error}");
    let at = report.next_retry_ns().expect("retry time");
    assert_eq!(dispatcher.pump().delivered(), 0);
    assert_eq!(
        receiver.received().len(),
        1,
        "nothing tried before the retry time"
    );

    clock.set(at);
    let report = dispatcher.pump();
    assert_eq!(report.delivered(), 2, "{report}");
    let statuses: Vec<(String, u16)> = receiver
        .received()
        .iter()
        .map(|r| (r.event_id(), r.status))
        .collect();
    assert_eq!(
        statuses,
        [
            (first.event_id.clone(), 500),
            (first.event_id, 200),
            (second.event_id, 200)
        ]
    );
    assert_eq!(dispatcher.targets()[0].failures, 0);
}

#[test]
fn client_error_sets_the_entry_aside_and_the_next_proceeds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut alerts = store(dir.path());
    let receiver = Receiver::start("127.0.0.1:0".parse().expect("addr"), None);
    receiver.script(400, &[]);
    let clock = Arc::new(ManualClock::new(T0));
    let spool_dir = dir.path().join("notify");
    let config = config(&spool_dir, vec![webhook("psa", url(receiver.addr()), None)]);
    let mut dispatcher = open(&config, &clock);
    let a = raise(&mut alerts, "a", 9, "refused");
    let b = raise(&mut alerts, "b", 9, "accepted");
    dispatcher.notify(&a, Transition::Raised).expect("notify");
    let second = dispatcher.notify(&b, Transition::Raised).expect("notify");

    let report = dispatcher.pump();
    assert_eq!(report.delivered(), 1, "{report}");
    assert_eq!(report.set_aside(), 1);
    assert_eq!(
        report.targets[0].retry_at_ns, None,
        "no backoff for a refusal"
    );
    assert!(report.targets[0]
        .error
        .as_deref()
        .is_some_and(|e| e.contains("HTTP 400")));
    assert_eq!(receiver.delivered_ids(), [second.event_id]);
    assert_eq!(dispatcher.targets()[0].set_aside, 1);

    let aside = spool_dir.join("psa").join(SET_ASIDE_DIR);
    let mut names: Vec<String> = fs::read_dir(&aside)
        .expect("set-aside dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 2, "{names:?}");
    let why = fs::read_to_string(aside.join(&names[1])).expect("why");
    assert!(why.contains("HTTP 400"), "{why}");
    let entry = fs::read(aside.join(&names[0])).expect("entry");
    let body: serde_json::Value = serde_json::from_slice(&entry).expect("kept as sent");
    assert_eq!(body["alert"]["summary"], "refused");
}

#[test]
fn throttling_and_timeouts_are_retried_honouring_retry_after() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut alerts = store(dir.path());
    let receiver = Receiver::start("127.0.0.1:0".parse().expect("addr"), None);
    receiver.script(429, &[("Retry-After", "5")]);
    receiver.script(408, &[]);
    receiver.script(302, &[("Location", "http://elsewhere.invalid/")]);
    let clock = Arc::new(ManualClock::new(T0));
    let config = config(
        &dir.path().join("notify"),
        vec![webhook("psa", url(receiver.addr()), None)],
    );
    let mut dispatcher = open(&config, &clock);
    let a = raise(&mut alerts, "a", 5, "throttled");
    dispatcher.notify(&a, Transition::Raised).expect("notify");

    let report = dispatcher.pump();
    let at = report.next_retry_ns().expect("retry");
    assert_eq!(
        at - clock.now_ns(),
        5 * SECOND,
        "Retry-After wins over a 1 s backoff"
    );
    clock.set(at);
    let report = dispatcher.pump();
    assert!(report.targets[0]
        .error
        .as_deref()
        .is_some_and(|e| e.contains("HTTP 408")));
    clock.set(report.next_retry_ns().expect("retry"));
    let report = dispatcher.pump();
    let error = report.targets[0].error.clone().expect("error");
    assert!(
        error.contains("HTTP 302") && error.contains("will retry"),
        "{error}"
    );
    assert_eq!(report.set_aside(), 0);
    clock.set(report.next_retry_ns().expect("retry"));
    assert_eq!(dispatcher.pump().delivered(), 1);
    assert_eq!(receiver.received().len(), 4);
}

#[test]
fn min_severity_filters_per_target() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut alerts = store(dir.path());
    let receiver = Receiver::start("127.0.0.1:0".parse().expect("addr"), None);
    let clock = Arc::new(ManualClock::new(T0));
    let mut paging = webhook("paging", url(receiver.addr()), None);
    paging.min_severity = Severity::try_from(9).expect("severity");
    let all = webhook("all", url(receiver.addr()), None);
    let config = config(&dir.path().join("notify"), vec![paging, all]);
    let mut dispatcher = open(&config, &clock);
    let minor = raise(&mut alerts, "minor", 4, "minor");
    let enqueued = dispatcher
        .notify(&minor, Transition::Raised)
        .expect("notify");
    assert_eq!(enqueued.spooled, ["all"]);
    assert_eq!(enqueued.filtered, ["paging"]);
    let major = raise(&mut alerts, "major", 10, "major");
    let enqueued = dispatcher
        .notify(&major, Transition::Raised)
        .expect("notify");
    assert_eq!(enqueued.spooled, ["paging", "all"]);
    assert_eq!(dispatcher.pump().delivered(), 3);
    // The same event id reached both targets: one event, two receivers.
    let ids = receiver.delivered_ids();
    assert_eq!(ids.iter().filter(|id| **id == enqueued.event_id).count(), 2);
}

#[test]
fn https_with_a_configured_ca_and_refused_without_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut alerts = store(dir.path());
    let pki = test_pki();
    let receiver = Receiver::start("127.0.0.1:0".parse().expect("addr"), Some(pki.server));
    let ca_file = dir.path().join("ca.pem");
    fs::write(&ca_file, pki.ca_pem).expect("ca");
    let https = format!("https://127.0.0.1:{}/hook", receiver.addr().port());
    let mut trusted = webhook("trusted", https.clone(), None);
    trusted.ca_file = Some(ca_file);
    let untrusted = webhook("untrusted", https, None);
    let clock = Arc::new(ManualClock::new(T0));
    let config = config(&dir.path().join("notify"), vec![trusted, untrusted]);
    let mut dispatcher = open(&config, &clock);
    let alert = raise(&mut alerts, "a", 9, "over TLS");
    let enqueued = dispatcher
        .notify(&alert, Transition::Raised)
        .expect("notify");

    let report = dispatcher.pump();
    assert_eq!(report.targets[0].delivered, 1, "{report}");
    assert_eq!(report.targets[1].delivered, 0);
    let error = report.targets[1].error.clone().expect("TLS error");
    assert!(error.contains("will retry"), "{error}");
    assert!(error.to_lowercase().contains("certificate"), "{error}");
    assert_eq!(receiver.delivered_ids(), [enqueued.event_id]);
}

#[test]
fn secrets_stay_out_of_logs_errors_and_debug() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut alerts = store(dir.path());
    let receiver = Receiver::start("127.0.0.1:0".parse().expect("addr"), None);
    receiver.script(401, &[]);
    let token = dir.path().join("token");
    fs::write(&token, "tok-SECRET-1\n").expect("token");
    let path_secret = format!("http://{}/services/T0/PATH-SECRET-2", receiver.addr());
    let mut with_header = webhook("psa", path_secret, Some(token));
    with_header.header = Some(HeaderConfig {
        name: "X-Api-Key".into(),
        value: Some(Secret::new("hdr-SECRET-3")),
        value_file: None,
    });
    let down = webhook(
        "down",
        format!("http://{}/x/PATH-SECRET-4", closed_port()),
        None,
    );
    let config = config(&dir.path().join("notify"), vec![with_header.clone(), down]);
    let clock = Arc::new(ManualClock::new(T0));

    let captured = Captured::default();
    let (dispatcher, report) = tracing::subscriber::with_default(captured.clone(), || {
        let mut dispatcher = open(&config, &clock);
        let alert = raise(&mut alerts, "a", 9, "secret test");
        dispatcher
            .notify(&alert, Transition::Raised)
            .expect("notify");
        let report = dispatcher.pump();
        (dispatcher, report)
    });
    assert_eq!(report.set_aside(), 1, "401 is a refusal: {report}");
    let request = &receiver.received()[0];
    assert_eq!(request.header("authorization"), Some("Bearer tok-SECRET-1"));
    assert_eq!(request.header("x-api-key"), Some("hdr-SECRET-3"));

    let target = WebhookTarget::from_config(&with_header).expect("target");
    let mut shown = vec![
        captured.text(),
        format!("{report:?}"),
        format!("{dispatcher:?}"),
        format!("{:?}", dispatcher.targets()),
        format!("{config:?}"),
        format!("{target:?}"),
        target.describe(),
    ];
    let aside = dir.path().join("notify").join("psa").join(SET_ASIDE_DIR);
    for entry in fs::read_dir(aside).expect("set-aside") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "why") {
            shown.push(fs::read_to_string(path).expect("why"));
        }
    }
    assert!(captured.text().contains("401"), "{}", captured.text());
    assert!(
        captured.text().contains("will retry"),
        "{}",
        captured.text()
    );
    for text in shown {
        assert!(!text.contains("SECRET"), "a secret leaked: {text}");
    }
}

#[test]
fn a_slow_receiver_times_out_and_is_retried() {
    // A listener that accepts nothing: the connection is queued by the kernel, the request
    // written, and no answer ever comes.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut config = webhook("slow", url(listener.local_addr().expect("addr")), None);
    config.timeout_secs = 1;
    let mut target = WebhookTarget::from_config(&config).expect("target");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut alerts = store(dir.path());
    let alert = raise(&mut alerts, "a", 9, "slow");
    let notification =
        tiervault_notify::Notification::new(&alert, Transition::Raised, &appliance(), 1, T0);
    let started = std::time::Instant::now();
    let error = target.deliver(&notification).expect_err("no answer");
    assert!(error.is_retryable(), "{error}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "bounded by the timeout"
    );
}
