//! The crate as a service process sees it: environment variables and signals are process-wide,
//! so each case runs in a child — this test binary itself, started with one `child_*` test
//! selected and `TIERVAULT_DAEMON_CHILD` naming it. Run normally, the `child_*` tests do
//! nothing; the parent tests spawn them and look at what they send, print and return.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use tiervault_daemon::notify::Notifier;
use tiervault_daemon::shutdown::Shutdown;

const CHILD: &str = "TIERVAULT_DAEMON_CHILD";

/// Generous: these bound "promptly", not performance.
const PROMPT: Duration = Duration::from_secs(10);

/// True in the child spawned for test `name`.
fn am_child(name: &str) -> bool {
    std::env::var(CHILD).as_deref() == Ok(name)
}

/// This test binary, set up to run only the child test `name`, with none of the variables the
/// crate reads inherited from whoever runs the tests (possibly systemd).
fn child(name: &str) -> Command {
    let mut c = Command::new(std::env::current_exe().expect("the test binary"));
    c.args([name, "--exact", "--nocapture", "--test-threads=1", "-q"])
        .env(CHILD, name)
        .stdin(Stdio::null());
    for var in [
        "NOTIFY_SOCKET",
        "WATCHDOG_USEC",
        "WATCHDOG_PID",
        "JOURNAL_STREAM",
        "TEST_LOG",
        "NO_COLOR",
        "RUST_LOG",
    ] {
        c.env_remove(var);
    }
    c
}

fn run(mut c: Command) -> Output {
    let out = c.output().expect("running the child");
    assert!(
        out.status.success(),
        "child failed: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn receiver(dir: &Path) -> (UnixDatagram, std::path::PathBuf) {
    let path = dir.join("notify.sock");
    let sock = UnixDatagram::bind(&path).expect("binding the notify socket");
    (sock, path)
}

/// Runs the child while reading what it sends, as systemd does: a socket nobody reads holds
/// only a few datagrams (net.unix.max_dgram_qlen) before the sender blocks.
fn run_notified(c: Command, sock: &UnixDatagram) -> Vec<String> {
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .expect("read timeout");
    let mut got = Vec::new();
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        let child = scope.spawn(|| {
            let out = run(c);
            done.store(true, std::sync::atomic::Ordering::SeqCst);
            out
        });
        let mut buf = [0u8; 4096];
        loop {
            match sock.recv(&mut buf) {
                Ok(n) => got.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
                // Timed out: finished once the child is gone and nothing is left.
                Err(_) if done.load(std::sync::atomic::Ordering::SeqCst) => break,
                Err(_) => {}
            }
        }
        child.join().expect("the child runner");
    });
    got
}

// ---------------------------------------------------------------------------------------------
// notify

/// What a service does over its life, with a watchdog of 200 ms.
#[test]
fn child_notify_life() {
    if !am_child("child_notify_life") {
        return;
    }
    let n = Notifier::from_env();
    assert_eq!(n.watchdog_interval(), Some(Duration::from_millis(200)));
    n.ready();
    n.status("catching up: 2 snapshot(s)");
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(1) {
        n.watchdog();
        std::thread::sleep(Duration::from_millis(10));
    }
    n.extend_timeout(Duration::from_secs(30));
    n.stopping();
}

#[test]
fn notify_sends_ready_status_watchdog_extend_and_stopping() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (sock, path) = receiver(dir.path());
    let mut c = child("child_notify_life");
    c.env("NOTIFY_SOCKET", &path).env("WATCHDOG_USEC", "200000");
    let got = run_notified(c, &sock);
    assert_eq!(got.first().map(String::as_str), Some("READY=1"), "{got:?}");
    assert_eq!(got[1], "STATUS=catching up: 2 snapshot(s)", "{got:?}");
    let pings = got.iter().filter(|m| *m == "WATCHDOG=1").count();
    // About ten in the second of pinging every 10 ms; one proves it, and far fewer than the
    // hundred calls proves the rate limit.
    assert!((1..=60).contains(&pings), "{pings} pings: {got:?}");
    assert_eq!(
        got[got.len() - 2],
        "EXTEND_TIMEOUT_USEC=30000000",
        "{got:?}"
    );
    assert_eq!(got[got.len() - 1], "STOPPING=1", "{got:?}");
    assert_eq!(got.len(), 2 + pings + 2, "{got:?}");
}

#[test]
fn child_notify_abstract() {
    if !am_child("child_notify_abstract") {
        return;
    }
    let n = Notifier::from_env();
    n.ready();
    n.watchdog();
}

#[test]
fn notify_reaches_an_abstract_socket() {
    use std::os::linux::net::SocketAddrExt;
    let name = format!("tiervault-daemon-test-{}", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
        .expect("abstract address");
    let sock = UnixDatagram::bind_addr(&addr).expect("binding the abstract socket");
    let mut c = child("child_notify_abstract");
    c.env("NOTIFY_SOCKET", format!("@{name}"))
        .env("WATCHDOG_USEC", "1000000");
    assert_eq!(run_notified(c, &sock), ["READY=1", "WATCHDOG=1"]);
}

#[test]
fn child_notify_other_pid() {
    if !am_child("child_notify_other_pid") {
        return;
    }
    let n = Notifier::from_env();
    assert_eq!(n.watchdog_interval(), None);
    n.watchdog();
    n.ready();
}

#[test]
fn the_watchdog_of_another_process_is_not_ours() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (sock, path) = receiver(dir.path());
    let mut c = child("child_notify_other_pid");
    // PID 1 is never this test's child.
    c.env("NOTIFY_SOCKET", &path)
        .env("WATCHDOG_USEC", "200000")
        .env("WATCHDOG_PID", "1");
    assert_eq!(run_notified(c, &sock), ["READY=1"]);
}

#[test]
fn child_notify_unset() {
    if !am_child("child_notify_unset") {
        return;
    }
    let n = Notifier::from_env();
    assert_eq!(n.watchdog_interval(), None);
    n.ready();
    n.status("x");
    n.watchdog();
    n.extend_timeout(Duration::from_secs(1));
    n.stopping();
    println!("no-ops done");
}

#[test]
fn without_notify_socket_every_call_is_a_no_op() {
    let mut c = child("child_notify_unset");
    c.env("WATCHDOG_USEC", "200000");
    let out = run(c);
    assert!(String::from_utf8_lossy(&out.stdout).contains("no-ops done"));
}

// ---------------------------------------------------------------------------------------------
// shutdown

#[test]
fn child_shutdown_wait() {
    if !am_child("child_shutdown_wait") {
        return;
    }
    let s = Shutdown::install().expect("installing the handlers");
    // Installing twice is harmless and shares the request.
    let again = Shutdown::install().expect("installing again");
    println!("waiting");
    let start = Instant::now();
    let woken = s.wait_timeout(Duration::from_secs(60));
    println!(
        "saw shutdown: {woken} after {:?}, clone sees it: {}",
        start.elapsed(),
        again.is_requested()
    );
}

/// The child waits for up to a minute; the signal must end the wait (and the process) at once.
fn signal_ends_the_wait(signal: rustix::process::Signal) {
    let mut c = child("child_shutdown_wait");
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut proc: Child = c.spawn().expect("spawning the child");
    let mut stdout = BufReader::new(proc.stdout.take().expect("stdout"));
    // Only signal once the handlers are in: before, SIGTERM would just kill the child.
    let mut line = String::new();
    loop {
        line.clear();
        let n = stdout.read_line(&mut line).expect("reading the child");
        assert!(n > 0, "the child ended before it waited");
        if line.trim() == "waiting" {
            break;
        }
    }
    let sent = Instant::now();
    rustix::process::kill_process(rustix::process::Pid::from_child(&proc), signal)
        .expect("signalling the child");
    let status = loop {
        if let Some(s) = proc.try_wait().expect("wait") {
            break s;
        }
        if sent.elapsed() > PROMPT {
            let _ = proc.kill();
            panic!("the child did not stop within {PROMPT:?} of {signal:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).expect("reading the child");
    assert!(status.success(), "{status}: {rest}");
    assert!(
        rest.contains("saw shutdown: true") && rest.contains("clone sees it: true"),
        "{rest}"
    );
}

#[test]
fn sigterm_ends_a_wait_promptly() {
    signal_ends_the_wait(rustix::process::Signal::Term);
}

#[test]
fn sigint_ends_a_wait_promptly() {
    signal_ends_the_wait(rustix::process::Signal::Int);
}

// ---------------------------------------------------------------------------------------------
// log and exit_code

#[test]
fn child_log() {
    if !am_child("child_log") {
        return;
    }
    tiervault_daemon::log::init("vault-testd", "TEST_LOG");
    // A second call (another library, a test harness) must not panic either.
    tiervault_daemon::log::init("vault-testd", "TEST_LOG");
    tracing::info!("hello from the child");
    tracing::debug!("debug detail");
    let code = tiervault_daemon::exit_code(Err(
        anyhow::anyhow!("the disk is gone").context("opening /srv/vault")
    ));
    assert_eq!(code, std::process::ExitCode::FAILURE);
    println!("to journal: {}", tiervault_daemon::log::to_journal());
}

fn log_child(journal_stream: Option<&str>, filter: Option<&str>) -> (String, String) {
    let mut c = child("child_log");
    if let Some(j) = journal_stream {
        c.env("JOURNAL_STREAM", j);
    }
    if let Some(f) = filter {
        c.env("TEST_LOG", f);
    }
    let out = run(c);
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn log_goes_to_stderr_when_journal_stream_is_bogus_or_absent() {
    for j in [
        None,
        Some("garbage"),
        Some(""),
        Some(":"),
        Some("1:2"),
        Some("-1:x"),
    ] {
        let (out, err) = log_child(j, None);
        assert!(out.contains("to journal: false"), "{j:?}: {out}");
        assert!(err.contains("hello from the child"), "{j:?}: {err}");
        assert!(!err.contains("debug detail"), "{j:?}: {err}");
        // The error is reported once, as the one `error:` line.
        let errors: Vec<&str> = err
            .lines()
            .filter(|l| l.contains("the disk is gone"))
            .collect();
        assert_eq!(
            errors,
            ["error: opening /srv/vault: the disk is gone"],
            "{j:?}: {err}"
        );
    }
}

#[test]
fn log_filter_comes_from_the_named_variable_and_a_bad_one_is_reported() {
    let (_, err) = log_child(None, Some("debug"));
    assert!(err.contains("debug detail"), "{err}");
    let (_, err) = log_child(None, Some("info,=[bad"));
    assert!(err.contains("TEST_LOG="), "{err}");
    assert!(err.contains("hello from the child"), "{err}");
}

#[test]
fn a_journal_stream_that_is_stderr_uses_journald_or_falls_back() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("stderr");
    let file = std::fs::File::create(&log).expect("stderr file");
    let meta = file.metadata().expect("stat");
    let mut c = child("child_log");
    c.env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
        .stderr(file);
    let out = run(c);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let err = std::fs::read_to_string(&log).expect("reading stderr");
    if Path::new("/run/systemd/journal/socket").exists() && stdout.contains("to journal: true") {
        // The journal has it; stderr stays free of log lines.
        assert!(!err.contains("hello from the child"), "{err}");
    } else {
        // No journald here: the check matched, the socket did not work, stderr it is.
        assert!(stdout.contains("to journal: false"), "{stdout}");
        assert!(err.contains("socket is unusable"), "{err}");
        assert!(err.contains("hello from the child"), "{err}");
        assert!(
            err.contains("error: opening /srv/vault: the disk is gone"),
            "{err}"
        );
    }
}
