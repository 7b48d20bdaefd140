//! Mail delivery against a real SMTP server on loopback: Python's standard `smtpd` (an
//! independent implementation), which also parses the messages back with Python's `email`
//! package. Without python3 or its `smtpd` module (removed in Python 3.12) the tests print
//! SKIP and return.

mod common;

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use common::http::closed_port;
use common::{appliance, raise, store, SOURCE, T0};
use tiervault_alerts::Severity;
use tiervault_notify::{
    Backoff, Clock, Dispatcher, ManualClock, NotifyConfig, SmtpConfig, SmtpTarget, SpoolCaps,
    Transition,
};

/// Accepts every mail except to `reject*` (554 after DATA) and `tempfail*` (451), and writes
/// each accepted one, parsed, as JSON to the output directory, before it answers 250.
const SINK: &str = r#"
import json, os, sys, warnings
warnings.simplefilter("ignore")
try:
    import asyncore, smtpd
except ImportError as e:
    print("SKIP", e, flush=True)
    sys.exit(0)
import email, email.policy

outdir = sys.argv[1]

class Sink(smtpd.SMTPServer):
    count = 0

    def process_message(self, peer, mailfrom, rcpttos, data, **kwargs):
        for rcpt in rcpttos:
            if rcpt.startswith("reject"):
                return "554 5.7.1 rejected by the test sink"
            if rcpt.startswith("tempfail"):
                return "451 4.3.0 try again later"
        msg = email.message_from_bytes(data, policy=email.policy.default)
        Sink.count += 1
        record = {
            "mailfrom": mailfrom,
            "rcpttos": rcpttos,
            "subject": str(msg["subject"]),
            "from": str(msg["from"]),
            "to": str(msg["to"]),
            "message_id": str(msg["message-id"]),
            "auto_submitted": str(msg["auto-submitted"]),
            "event_id": str(msg["x-tiervault-event-id"]),
            "body": msg.get_content(),
            "raw": data.decode("ascii"),
        }
        path = os.path.join(outdir, "%04d.json" % Sink.count)
        with open(path + ".tmp", "w") as f:
            json.dump(record, f)
        os.rename(path + ".tmp", path)
        return None

server = Sink(("127.0.0.1", 0), None, decode_data=False)
print("PORT", server.socket.getsockname()[1], flush=True)
asyncore.loop(timeout=0.2)
"#;

/// The sink process; killed when dropped.
struct SmtpSink {
    child: Child,
    port: u16,
    outdir: PathBuf,
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl SmtpSink {
    /// The stdlib `smtpd` sink; `None` (after printing why) when python3 or smtpd is missing.
    fn start(outdir: &Path) -> Option<SmtpSink> {
        SmtpSink::spawn("python3", SINK, &[outdir.as_os_str()], outdir)
    }

    /// Runs `script` with `python`, which prints `PORT <n>` once listening or `SKIP <why>`.
    fn spawn(
        python: &str,
        script: &str,
        args: &[&std::ffi::OsStr],
        outdir: &Path,
    ) -> Option<SmtpSink> {
        let spawned = Command::new(python)
            .args(["-W", "ignore", "-c", script])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) => {
                println!("SKIP: cannot run {python} for the SMTP sink: {e}");
                return None;
            }
        };
        let mut line = String::new();
        if let Some(stdout) = child.stdout.take() {
            let _ = BufReader::new(stdout).read_line(&mut line);
        }
        let port = line
            .strip_prefix("PORT ")
            .and_then(|p| p.trim().parse::<u16>().ok());
        match port {
            Some(port) => Some(SmtpSink {
                child,
                port,
                outdir: outdir.to_owned(),
            }),
            None => {
                println!(
                    "SKIP: the {python} SMTP sink did not start: {}",
                    line.trim()
                );
                let _ = child.kill();
                let _ = child.wait();
                None
            }
        }
    }

    /// The mails accepted so far, in order, as the sink parsed them.
    fn mails(&self) -> Vec<serde_json::Value> {
        let mut names: Vec<PathBuf> = fs::read_dir(&self.outdir)
            .expect("outdir")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        names.sort();
        names
            .iter()
            .map(|p| serde_json::from_slice(&fs::read(p).expect("read")).expect("json"))
            .collect()
    }
}

fn smtp(name: &str, port: u16, to: &[&str]) -> SmtpConfig {
    SmtpConfig {
        name: name.into(),
        host: "127.0.0.1".into(),
        port,
        starttls: false,
        from: "vault-7@msp.example".into(),
        to: to.iter().map(|t| t.to_string()).collect(),
        user: None,
        password_file: None,
        min_severity: Severity::try_from(5).expect("severity"),
        timeout_secs: 10,
        backoff: Backoff {
            initial_secs: 1,
            max_secs: 4,
        },
        ca_file: None,
        helo: None,
    }
}

fn dispatcher(spool_dir: &Path, targets: Vec<SmtpConfig>) -> (Dispatcher, Arc<ManualClock>) {
    let config = NotifyConfig {
        spool_dir: spool_dir.to_owned(),
        spool: SpoolCaps::default(),
        webhook: Vec::new(),
        smtp: targets,
    };
    let clock = Arc::new(ManualClock::new(T0));
    let (dispatcher, _) =
        Dispatcher::from_config(&config, SOURCE, &appliance(), clock.clone()).expect("open");
    (dispatcher, clock)
}

#[test]
fn mail_reaches_a_real_smtp_server_with_subject_addresses_and_body() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outdir = dir.path().join("mails");
    fs::create_dir(&outdir).expect("outdir");
    let Some(sink) = SmtpSink::start(&outdir) else {
        return;
    };
    let mut alerts = store(dir.path());
    let (mut dispatcher, _clock) = dispatcher(
        &dir.path().join("notify"),
        vec![smtp(
            "noc-mail",
            sink.port,
            &["noc@msp.example", "oncall@msp.example"],
        )],
    );

    let mut failed = raise(
        &mut alerts,
        "vault-data1",
        10,
        "array vault-data1 has failed",
    );
    failed.detail =
        "2 of 6 members missing\n.a line starting with a dot\n.\nafter a lone dot".into();
    let p1 = dispatcher
        .notify(&failed, Transition::Raised)
        .expect("notify");
    let minor = raise(
        &mut alerts,
        "vault-data3",
        4,
        "scrub found nothing to repair",
    );
    let filtered = dispatcher
        .notify(&minor, Transition::Raised)
        .expect("notify");
    assert_eq!(filtered.filtered, ["noc-mail"], "below min-severity 5");
    let german = raise(
        &mut alerts,
        "vault-data2",
        7,
        "Prüfsumme falsch für vault-data2 — Datenträger sdc meldet Lesefehler in Sektor 1234567",
    );
    let p2 = dispatcher
        .notify(&german, Transition::Raised)
        .expect("notify");
    let mut cleared = failed.clone();
    cleared.cleared_ns = Some(T0 + 60_000_000_000);
    dispatcher
        .notify(&cleared, Transition::Cleared)
        .expect("notify");

    let report = dispatcher.pump();
    assert_eq!(report.delivered(), 3, "{report}");
    let mails = sink.mails();
    assert_eq!(mails.len(), 3);

    let first = &mails[0];
    assert_eq!(
        first["subject"],
        "[P1] site-appliance-7: array vault-data1 has failed"
    );
    assert_eq!(first["mailfrom"], "vault-7@msp.example");
    assert_eq!(
        first["rcpttos"],
        serde_json::json!(["noc@msp.example", "oncall@msp.example"])
    );
    assert!(first["from"]
        .as_str()
        .is_some_and(|f| f.contains("vault-7@msp.example")));
    let to = first["to"].as_str().expect("to");
    assert!(
        to.contains("noc@msp.example") && to.contains("oncall@msp.example"),
        "{to}"
    );
    assert_eq!(first["event_id"], p1.event_id.as_str());
    assert_eq!(first["auto_submitted"], "auto-generated");
    assert!(first["message_id"]
        .as_str()
        .is_some_and(|m| m.ends_with("@msp.example>")));
    let body = first["body"].as_str().expect("body");
    for expected in [
        "P1 alert raised on site-appliance-7",
        "Alert:      array vault-data1 has failed",
        "Severity:   10 (P1)",
        "Class:      pool.failed",
        "Key:        vault-data1",
        // SMTP dot-stuffing sent and undone by the server.
        "\nDetail:\n2 of 6 members missing\n.a line starting with a dot\n.\nafter a lone dot\n",
        "Customer:   Acme Ltd",
        &format!("Event:      {}", p1.event_id),
    ] {
        assert!(body.contains(expected), "{expected:?} not in {body}");
    }
    assert!(first["raw"]
        .as_str()
        .is_some_and(|r| r.contains("Content-Transfer-Encoding: 7bit")));

    // Non-ASCII: encoded words and base64, decoded by Python's email package.
    let second = &mails[1];
    assert_eq!(
        second["subject"],
        format!("[P2] site-appliance-7: {}", german.summary)
    );
    assert_eq!(second["event_id"], p2.event_id.as_str());
    let body = second["body"].as_str().expect("body");
    assert!(body.contains(&german.summary), "{body}");
    assert!(second["raw"]
        .as_str()
        .is_some_and(|r| r.contains("Content-Transfer-Encoding: base64")));

    assert_eq!(
        mails[2]["subject"],
        "[P1] site-appliance-7: cleared: array vault-data1 has failed"
    );
    assert!(mails[2]["body"]
        .as_str()
        .is_some_and(|b| b.contains("Cleared:    2025-03-01T12:01:00Z")));
}

#[test]
fn refusal_is_set_aside_and_temporary_failure_retried() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outdir = dir.path().join("mails");
    fs::create_dir(&outdir).expect("outdir");
    let Some(sink) = SmtpSink::start(&outdir) else {
        return;
    };
    let mut alerts = store(dir.path());
    let (mut dispatcher, clock) = dispatcher(
        &dir.path().join("notify"),
        vec![
            smtp("refused", sink.port, &["reject@msp.example"]),
            smtp("later", sink.port, &["tempfail@msp.example"]),
            smtp("down", closed_port().port(), &["noc@msp.example"]),
        ],
    );
    let alert = raise(
        &mut alerts,
        "vault-data1",
        9,
        "array vault-data1 has failed",
    );
    dispatcher
        .notify(&alert, Transition::Raised)
        .expect("notify");

    let report = dispatcher.pump();
    let [refused, later, down] = &report.targets[..] else {
        panic!("three targets: {report:?}");
    };
    assert_eq!(refused.set_aside, 1, "{refused:?}");
    assert_eq!(refused.pending, 0);
    assert!(refused.error.as_deref().is_some_and(|e| e.contains("554")));
    assert_eq!(later.set_aside, 0);
    assert_eq!(later.pending, 1);
    let error = later.error.clone().expect("error");
    assert!(
        error.contains("451") && error.contains("will retry"),
        "{error}"
    );
    assert!(later.retry_at_ns.is_some_and(|at| at > clock.now_ns()));
    assert_eq!(down.pending, 1);
    assert!(down
        .error
        .as_deref()
        .is_some_and(|e| e.contains("cannot connect") && e.contains("will retry")));
    assert!(sink.mails().is_empty());
}

#[test]
fn smtp_target_never_shows_its_password() {
    let dir = tempfile::tempdir().expect("tempdir");
    let password = dir.path().join("password");
    fs::write(&password, "pw-SECRET-5\n").expect("password");
    let mut config = smtp("mail", 587, &["noc@msp.example"]);
    config.starttls = true;
    config.user = Some("vault-7".into());
    config.password_file = Some(password);
    let target = SmtpTarget::from_config(&config, &appliance()).expect("target");
    let shown = format!("{target:?} {config:?}");
    assert!(shown.contains("vault-7"), "{shown}");
    assert!(!shown.contains("SECRET"), "{shown}");
}

/// aiosmtpd (Debian's python3-aiosmtpd) requiring STARTTLS and AUTH before MAIL: accepts user
/// `vault-7` with password `pw-right-6`; argv: outdir, cert, key, mechanisms to exclude.
const TLS_SINK: &str = r#"
import json, logging, os, socket, ssl, sys, time, warnings
warnings.simplefilter("ignore")
logging.disable(logging.WARNING)
try:
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword
except ImportError as e:
    print("SKIP", e, flush=True)
    sys.exit(0)
import email, email.policy

outdir, certfile, keyfile, excluded = sys.argv[1:5]
last_auth = {}

def authenticator(server, session, envelope, mechanism, auth_data):
    ok = (isinstance(auth_data, LoginPassword)
          and auth_data.login == b"vault-7" and auth_data.password == b"pw-right-6")
    if ok:
        last_auth["mechanism"] = mechanism
        last_auth["login"] = auth_data.login.decode()
    return AuthResult(success=ok, handled=False)

class Handler:
    count = 0

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        Handler.count += 1
        record = {
            "mailfrom": envelope.mail_from,
            "rcpttos": envelope.rcpt_tos,
            "subject": str(msg["subject"]),
            "tls": session.ssl is not None,
            "authenticated": bool(session.authenticated),
            "mechanism": last_auth.get("mechanism"),
            "login": last_auth.get("login"),
        }
        path = os.path.join(outdir, "%04d.json" % Handler.count)
        with open(path + ".tmp", "w") as f:
            json.dump(record, f)
        os.rename(path + ".tmp", path)
        return "250 OK"

context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
context.load_cert_chain(certfile, keyfile)
probe = socket.socket()
probe.bind(("127.0.0.1", 0))
port = probe.getsockname()[1]
probe.close()
controller = Controller(
    Handler(), hostname="127.0.0.1", port=port,
    tls_context=context, require_starttls=True,
    authenticator=authenticator, auth_required=True, auth_require_tls=True,
    auth_exclude_mechanism=[m for m in excluded.split(",") if m],
)
controller.start()
print("PORT", port, flush=True)
while True:
    time.sleep(1)
"#;

/// Starts the aiosmtpd sink with Debian's python3 (where python3-aiosmtpd installs), or the
/// one on PATH.
fn tls_sink(dir: &Path, excluded: &str) -> Option<(SmtpSink, PathBuf)> {
    let pki = common::http::test_pki();
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let ca = dir.join("ca.pem");
    fs::write(&cert, &pki.cert_pem).expect("cert");
    fs::write(&key, &pki.key_pem).expect("key");
    fs::write(&ca, &pki.ca_pem).expect("ca");
    let outdir = dir.join("mails");
    fs::create_dir(&outdir).expect("outdir");
    let python = if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    };
    let args = [
        outdir.as_os_str(),
        cert.as_os_str(),
        key.as_os_str(),
        std::ffi::OsStr::new(excluded),
    ];
    SmtpSink::spawn(python, TLS_SINK, &args, &outdir).map(|sink| (sink, ca))
}

fn tls_target(name: &str, port: u16, ca: Option<PathBuf>, password: &Path) -> SmtpConfig {
    let mut config = smtp(name, port, &["noc@msp.example"]);
    config.starttls = true;
    config.ca_file = ca;
    config.user = Some("vault-7".into());
    config.password_file = Some(password.to_owned());
    config
}

#[test]
fn starttls_and_auth_plain_against_aiosmtpd() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some((sink, ca)) = tls_sink(dir.path(), "") else {
        return;
    };
    let right = dir.path().join("right");
    fs::write(&right, "pw-right-6\n").expect("password");
    let wrong = dir.path().join("wrong");
    fs::write(&wrong, "pw-wrong-7\n").expect("password");
    let mut alerts = store(dir.path());
    let (mut dispatcher, _clock) = dispatcher(
        &dir.path().join("notify"),
        vec![
            tls_target("good", sink.port, Some(ca.clone()), &right),
            tls_target("badpass", sink.port, Some(ca), &wrong),
            // Mozilla's roots do not include the test CA.
            tls_target("untrusted", sink.port, None, &right),
        ],
    );
    let alert = raise(
        &mut alerts,
        "vault-data1",
        10,
        "array vault-data1 has failed",
    );
    dispatcher
        .notify(&alert, Transition::Raised)
        .expect("notify");

    let report = dispatcher.pump();
    let [good, badpass, untrusted] = &report.targets[..] else {
        panic!("three targets: {report:?}");
    };
    assert_eq!(good.delivered, 1, "{good:?}");
    let mails = sink.mails();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0]["tls"], true);
    assert_eq!(mails[0]["authenticated"], true);
    assert_eq!(mails[0]["mechanism"], "PLAIN");
    assert_eq!(mails[0]["login"], "vault-7");
    assert_eq!(
        mails[0]["subject"],
        "[P1] site-appliance-7: array vault-data1 has failed"
    );

    assert_eq!(badpass.set_aside, 1, "535 refuses for good: {badpass:?}");
    let error = badpass.error.clone().expect("error");
    assert!(
        error.contains("AUTH PLAIN") && error.contains("535"),
        "{error}"
    );
    let token = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode("\0vault-7\0pw-wrong-7")
    };
    assert!(
        !error.contains("pw-wrong") && !error.contains(&token),
        "{error}"
    );

    assert_eq!(untrusted.pending, 1);
    let error = untrusted.error.clone().expect("error");
    assert!(
        error.contains("TLS handshake") && error.contains("will retry"),
        "{error}"
    );
}

#[test]
fn auth_login_when_plain_is_not_offered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some((sink, ca)) = tls_sink(dir.path(), "PLAIN") else {
        return;
    };
    let right = dir.path().join("right");
    fs::write(&right, "pw-right-6\n").expect("password");
    let mut alerts = store(dir.path());
    let (mut dispatcher, _clock) = dispatcher(
        &dir.path().join("notify"),
        vec![tls_target("login", sink.port, Some(ca), &right)],
    );
    let alert = raise(
        &mut alerts,
        "vault-data1",
        9,
        "array vault-data1 is degraded",
    );
    dispatcher
        .notify(&alert, Transition::Raised)
        .expect("notify");
    assert_eq!(dispatcher.pump().delivered(), 1);
    let mails = sink.mails();
    assert_eq!(mails[0]["mechanism"], "LOGIN");
    assert_eq!(mails[0]["tls"], true);
}
