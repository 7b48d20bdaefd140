//! The service's logic on a real vault in a temporary directory, with no bus and no worker
//! thread: each test drives the queue by hand.

use super::*;
use tiervault_alerts::AlertStore;

/// A service over a fresh vault in `dir`, with the jobs of `jobs_toml`; no worker runs,
/// so submitted jobs stay queued.
fn service(dir: &Path, jobs_toml: &str) -> Service {
    let key = dir.join("key");
    std::fs::write(&key, [7u8; 32]).expect("key");
    let vault_dir = dir.join("vault");
    let secret = tiervault_store::Secret::KeyFile(vec![7u8; 32]);
    let vault = Vault::init(
        &vault_dir,
        &secret,
        &tiervault_store::InitOptions::default(),
        tiervault_store::io::default_io(),
    )
    .expect("init");
    let text = format!(
        "vault = \"{}\"\nkey-file = \"{}\"\nstate-dir = \"{}\"\n{jobs_toml}",
        vault_dir.display(),
        key.display(),
        dir.join("state").display()
    );
    let cfg: Config = toml::from_str(&text).expect("config");
    let (cfg, jobs) = cfg.validate(&dir.join("ingestd.toml")).expect("valid");
    std::fs::create_dir_all(&cfg.state_dir).expect("state");
    let history = History::open(&cfg.state_dir.join("history.json"), 100, now_ns())
        .expect("history")
        .history;
    let (store, _) =
        AlertStore::open(&cfg.state_dir.join("alerts.json"), "ingestd", 10).expect("alerts");
    let audit = Arc::new(Audit::open(&cfg.state_dir.join("audit.log")).expect("audit"));
    let alerts = AlertBoard::new(store, audit.clone(), "/org/tiervault/Ingest1");
    Service::new(Setup {
        cfg,
        jobs,
        offset: UtcOffset::UTC,
        vault,
        history,
        alerts,
        audit,
        shutdown: Shutdown::new(),
    })
}

fn active(svc: &Service, class: &str) -> Vec<tiervault_alerts::Alert> {
    svc.alerts
        .snapshot()
        .into_iter()
        .filter(|a| a.class == class && a.is_active())
        .collect()
}

#[test]
fn a_due_job_still_queued_from_its_last_turn_is_recorded_skipped_with_an_alert() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("data")).expect("data");
    let svc = service(
        dir.path(),
        &format!(
            "[[job]]\nname = \"nas\"\npaths = [\"{}\"]\nschedule = \"hourly\"\n",
            dir.path().join("data").display()
        ),
    );
    let first_due = svc.next_due("nas").expect("scheduled");
    let at = |ns: i64| OffsetDateTime::from_unix_timestamp_nanos(ns as i128).expect("time");
    // Not due yet: nothing happens.
    svc.tick(at(first_due - 1));
    assert!(svc.runs().is_empty());
    // Due: queued, by the schedule.
    svc.tick(at(first_due));
    let runs = svc.runs();
    assert_eq!(runs.len(), 1);
    assert_eq!(
        (runs[0].0.status, runs[0].0.trigger.as_str()),
        (Status::Queued, "schedule")
    );
    let second_due = svc.next_due("nas").expect("rescheduled");
    assert_eq!(second_due - first_due, 3_600_000_000_000);
    // An hour later it has not run (no worker here): that turn is skipped, with an alert.
    svc.tick(at(second_due));
    let runs = svc.runs();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[1].0.status, Status::Skipped);
    assert!(
        runs[1].0.message.contains("already queued or running"),
        "{}",
        runs[1].0.message
    );
    let skipped = active(&svc, "job.skipped");
    assert_eq!(skipped.len(), 1);
    assert_eq!(
        (skipped[0].key.as_str(), skipped[0].severity.get()),
        ("nas", 7)
    );
    // A manual start meanwhile is refused as busy, not recorded.
    let e = svc
        .submit(Request::Job("nas".into()), "tv-admin")
        .expect_err("busy");
    assert!(matches!(e, BusError::Busy(_)), "{e:?}");
    assert_eq!(svc.runs().len(), 2);
}

#[test]
fn a_job_running_past_the_limit_raises_one_alert_that_its_end_clears() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("data")).expect("data");
    let svc = service(
        dir.path(),
        &format!(
            "long-running-alert = \"24h\"\n[[job]]\nname = \"nas\"\npaths = [\"{}\"]\n",
            dir.path().join("data").display()
        ),
    );
    let run = svc
        .submit(Request::Job("nas".into()), "schedule")
        .expect("queued");
    let (id, req, _, live) = {
        let mut st = svc.state();
        let next = st.queue.pop_front().expect("queued");
        svc.start(&mut st, next)
    };
    assert_eq!(id, run.id);
    let started = svc.run(id).expect("run").0.started_ns;
    svc.check_long_running(started + 23 * 3_600_000_000_000);
    assert!(active(&svc, "job.long_running").is_empty());
    svc.check_long_running(started + 25 * 3_600_000_000_000);
    svc.check_long_running(started + 26 * 3_600_000_000_000);
    let long = active(&svc, "job.long_running");
    assert_eq!(long.len(), 1, "one alert, refreshed, not one per check");
    assert_eq!((long[0].severity.get(), long[0].count), (7, 2));
    assert!(long[0].summary.contains("26 h"), "{}", long[0].summary);
    // The job ends (here: it really runs, on an empty directory).
    let cancel = Arc::new(AtomicBool::new(false));
    let outcome = svc.execute(&req, &cancel, &live);
    svc.finish(id, &req, outcome);
    assert!(active(&svc, "job.long_running").is_empty());
    assert_eq!(svc.run(id).expect("run").0.status, Status::Success);
    assert_eq!(svc.snapshots().0.len(), 1);
}

#[test]
fn a_failed_job_alerts_and_the_next_success_clears_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let svc = service(
        dir.path(),
        &format!(
            "[[job]]\nname = \"nas\"\npaths = [\"{}\"]\n",
            data.display()
        ),
    );
    let run_once = || {
        let run = svc
            .submit(Request::Job("nas".into()), "tv-admin")
            .expect("queued");
        let (id, req, cancel, live) = {
            let mut st = svc.state();
            let next = st.queue.pop_front().expect("queued");
            svc.start(&mut st, next)
        };
        let o = svc.execute(&req, &cancel, &live);
        svc.finish(id, &req, o);
        svc.run(run.id).expect("run").0
    };
    // The share is not mounted: failed, with a message that says so.
    let r = run_once();
    assert_eq!(r.status, Status::Failed);
    assert!(r.message.contains("is the share mounted"), "{}", r.message);
    assert_eq!(active(&svc, "job.failed").len(), 1);
    std::fs::create_dir_all(&data).expect("mount");
    std::fs::write(data.join("f"), b"x").expect("file");
    let r = run_once();
    assert_eq!(r.status, Status::Success, "{}", r.message);
    assert_eq!(r.files, 1);
    assert!(active(&svc, "job.failed").is_empty());
}
