//! Tier 2: the ingest service on a private system bus with the project's bus policy, driven
//! by `busctl` and `gdbus` as root and as users in (and out of) the groups the policy names:
//! introspection, properties, a backup job with progress signals, snapshots, a restore,
//! access control, named errors for malformed calls, the audit log, and a kill -9 in the
//! middle of a backup.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::bus::{
    self, busctl, call_job, gdbus, get, stderr, wait_job, Bus, Service, ADMIN, GUEST, JOB, MANAGER,
    NAME, ROOT, SUPPORT,
};
use common::Vault;

struct Fixture {
    vault: Vault,
    bus: Bus,
    svc: Service,
    share: PathBuf,
    restore_root: PathBuf,
}

/// A vault, a "NAS share" under a backup root, a restore root, the bus and the service with
/// one backup job `nas` (excluding `*.tmp`) and one job `broken` whose path does not exist.
fn fixture(extra_files: impl FnOnce(&Path)) -> Option<Fixture> {
    if let Some(why) = bus::missing() {
        common::skip(&why);
        return None;
    }
    bus::ensure_users();
    let vault = Vault::new();
    let work = vault.scratch("work");
    let share = vault.scratch("nas/share");
    let restore_root = vault.scratch("restore");
    fs::create_dir_all(&work).expect("work");
    fs::create_dir_all(share.join("docs")).expect("share");
    fs::create_dir_all(&restore_root).expect("restore root");
    fs::write(share.join("docs/report.txt"), b"quarterly figures\n").expect("file");
    fs::write(share.join("ledger.csv"), "a,b,c\n".repeat(1000)).expect("file");
    fs::write(share.join("scratch.tmp"), b"not wanted").expect("file");
    extra_files(&share);
    let bus = Bus::start();
    let config = format!(
        r#"vault = "{vault}"
key-file = "{key}"
state-dir = "{state}"
backup-roots = ["{nas}"]
restore-roots = ["{restore}"]

[[job]]
name = "nas"
paths = ["{share}"]
schedule = "manual"
exclude = ["*.tmp"]

[[job]]
name = "broken"
paths = ["{missing}"]
"#,
        vault = vault.dir.display(),
        key = vault.key_file().expect("key file").display(),
        state = work.join("state").display(),
        nas = vault.scratch("nas").display(),
        restore = restore_root.display(),
        share = share.display(),
        missing = vault.scratch("nas/gone").display(),
    );
    let svc = Service::start(&bus, &work, &config);
    Some(Fixture {
        vault,
        bus,
        svc,
        share,
        restore_root,
    })
}

fn addr(f: &Fixture) -> &str {
    &f.bus.address
}

#[test]
fn busctl_and_gdbus_run_a_backup_with_progress_then_list_and_restore() {
    let Some(f) = fixture(|share| {
        // Enough incompressible data that the job runs for a few progress ticks.
        fs::write(share.join("disk.img"), noise(160 << 20, 1)).expect("big file");
    }) else {
        return;
    };
    let a = addr(&f);

    // Introspection and properties, as any client sees them.
    let intro = busctl(a, None, &["introspect", NAME, ROOT]);
    let text = String::from_utf8_lossy(&intro.stdout);
    for want in [
        MANAGER,
        ".StartBackupJob",
        ".Restore",
        ".Verify",
        "org.freedesktop.DBus.ObjectManager",
    ] {
        assert!(text.contains(want), "introspection lacks {want}:\n{text}");
    }
    assert_eq!(
        get(a, ROOT, MANAGER, "Vault"),
        f.vault.dir.display().to_string()
    );
    let job_def = format!("{ROOT}/backup_jobs/nas");
    assert_eq!(
        get(a, &job_def, "org.tiervault.Ingest1.BackupJob", "Schedule"),
        "manual"
    );

    // Watch the service's signals with gdbus while the backup runs.
    let monitor = bus::Monitor::start(a, NAME);

    let job = call_job(a, None, "StartBackupJob", "s", &["nas"]);
    assert!(job.starts_with(&format!("{ROOT}/jobs/")), "{job}");
    // The object exists as soon as the call returns.
    let op = get(a, &job, JOB, "Operation");
    assert_eq!(op, "backup");
    let status = wait_job(a, &job, Duration::from_secs(300));
    assert_eq!(status, "success", "{}", f.svc.log_text());
    let signals = monitor.finish(Duration::from_millis(1200));
    assert!(
        signals.contains(&format!(
            "{job}: org.freedesktop.DBus.Properties.PropertiesChanged ('{JOB}'"
        )),
        "no PropertiesChanged for the job:\n{signals}"
    );
    assert!(
        signals.contains("'Progress'"),
        "no progress reported:\n{signals}"
    );
    assert!(
        signals.contains(&format!("{job}: {JOB}.Completed (true,")),
        "no Completed signal:\n{signals}"
    );
    assert!(
        signals.contains("InterfacesAdded"),
        "the ObjectManager announced nothing:\n{signals}"
    );

    // The figures of the finished job.
    assert!(get(a, &job, JOB, "Files").as_u64().unwrap_or(0) >= 3);
    assert!(
        get(a, &job, JOB, "Excluded").as_u64().unwrap_or(0) >= 1,
        "scratch.tmp not excluded"
    );
    assert!(get(a, &job, JOB, "BytesRead").as_u64().unwrap_or(0) >= 48 << 20);
    assert!(get(a, &job, JOB, "DedupRatio").as_f64().unwrap_or(0.0) > 0.0);
    assert!(
        get(a, &job, JOB, "CompressionRatio")
            .as_f64()
            .unwrap_or(0.0)
            > 0.0
    );
    let snap = get(a, &job, JOB, "Snapshot")
        .as_str()
        .expect("snapshot id")
        .to_string();
    assert_eq!(snap.len(), 64, "{snap}");
    assert_eq!(
        get(a, &job_def, "org.tiervault.Ingest1.BackupJob", "LastStatus"),
        "success"
    );

    // The snapshot is an object, found through the ObjectManager (gdbus this time).
    let managed = gdbus(
        a,
        None,
        &[
            "call",
            "--dest",
            NAME,
            "--object-path",
            ROOT,
            "--method",
            "org.freedesktop.DBus.ObjectManager.GetManagedObjects",
        ],
    );
    assert!(managed.status.success(), "{}", stderr(&managed));
    let managed = String::from_utf8_lossy(&managed.stdout);
    let snap_path = format!("{ROOT}/snapshots/{}", &snap[..16]);
    assert!(
        managed.contains(&snap_path),
        "{snap_path} not listed:\n{managed}"
    );
    assert!(managed.contains("'BackupJob': <'nas'>"), "{managed}");

    // Restore one file with gdbus, into the restore root.
    let target = f.restore_root.join("ticket-123");
    let out = gdbus(
        a,
        None,
        &[
            "call",
            "--dest",
            NAME,
            "--object-path",
            ROOT,
            "--method",
            &format!("{MANAGER}.Restore"),
            &snap,
            "",
            &target.display().to_string(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let rjob = String::from_utf8_lossy(&out.stdout)
        .trim()
        .trim_start_matches("(objectpath '")
        .trim_end_matches("',)")
        .to_string();
    assert_eq!(
        wait_job(a, &rjob, Duration::from_secs(120)),
        "success",
        "{}",
        f.svc.log_text()
    );
    let restored = find(&target, "report.txt").expect("report.txt restored");
    assert_eq!(fs::read(restored).expect("read"), b"quarterly figures\n");
    assert!(
        find(&target, "scratch.tmp").is_none(),
        "an excluded file was restored"
    );
    let _ = f.share;

    // The audit log names the caller and the calls.
    let audit = fs::read_to_string(f.svc.state.join("audit.log")).expect("audit log");
    assert!(audit.contains("\"member\":\"StartBackupJob\""), "{audit}");
    assert!(audit.contains("\"member\":\"Restore\""), "{audit}");
    assert!(audit.contains("\"user\":\"root\""), "{audit}");
}

/// `len` bytes that neither compress nor dedup (xorshift64*).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

fn find(dir: &Path, name: &str) -> Option<PathBuf> {
    for e in fs::read_dir(dir).ok()? {
        let p = e.ok()?.path();
        if p.file_name().is_some_and(|n| n == name) {
            return Some(p);
        }
        if p.is_dir() {
            if let Some(found) = find(&p, name) {
                return Some(found);
            }
        }
    }
    None
}

#[test]
fn the_bus_policy_admits_admins_limits_support_and_refuses_others() {
    let Some(f) = fixture(|_| {}) else { return };
    let a = addr(&f);
    let start = ["call", NAME, ROOT, MANAGER, "StartBackupJob", "s", "nas"];
    let read = ["get-property", NAME, ROOT, MANAGER, "Vault"];
    let verify = [
        "--json=short",
        "call",
        NAME,
        ROOT,
        MANAGER,
        "Verify",
        "b",
        "false",
    ];

    // Anyone may introspect; a guest may neither read nor call.
    let intro = busctl(
        a,
        Some(GUEST.0),
        &["introspect", "--xml-interface", NAME, ROOT],
    );
    assert!(
        intro.status.success(),
        "introspection must stay visible: {}",
        stderr(&intro)
    );
    for args in [&start[..], &read[..], &verify[..]] {
        let out = busctl(a, Some(GUEST.0), args);
        assert!(!out.status.success(), "guest was let through: {args:?}");
        assert!(
            stderr(&out).contains("Access denied"),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    let out = gdbus(
        a,
        Some(GUEST.0),
        &[
            "call",
            "--dest",
            NAME,
            "--object-path",
            ROOT,
            "--method",
            &format!("{MANAGER}.StartBackupJob"),
            "nas",
        ],
    );
    assert!(
        stderr(&out).contains("org.freedesktop.DBus.Error.AccessDenied"),
        "{}",
        stderr(&out)
    );

    // Support reads and verifies, but starts no backup and sets nothing.
    let out = busctl(a, Some(SUPPORT.0), &read);
    assert!(
        out.status.success(),
        "support must read properties: {}",
        stderr(&out)
    );
    let vjob = bus::json_data(&busctl(a, Some(SUPPORT.0), &verify))[0]
        .as_str()
        .expect("path")
        .to_string();
    assert_eq!(
        wait_job(a, &vjob, Duration::from_secs(120)),
        "success",
        "{}",
        f.svc.log_text()
    );
    for args in [
        &start[..],
        &["call", NAME, ROOT, MANAGER, "Backup", "as", "1", "/tmp"][..],
        &[
            "call",
            NAME,
            &format!("{ROOT}/backup_jobs/nas"),
            "org.tiervault.Ingest1.BackupJob",
            "Start",
        ][..],
        &["call", NAME, &vjob, JOB, "Cancel"][..],
        &["set-property", NAME, ROOT, MANAGER, "Vault", "s", "/x"][..],
    ] {
        let out = busctl(a, Some(SUPPORT.0), args);
        assert!(!out.status.success(), "support was let through: {args:?}");
        assert!(
            stderr(&out).contains("Access denied"),
            "{args:?}: {}",
            stderr(&out)
        );
    }

    // An admin may start a backup.
    let job = bus::json_data(&busctl(
        a,
        Some(ADMIN.0),
        &[
            "--json=short",
            "call",
            NAME,
            ROOT,
            MANAGER,
            "StartBackupJob",
            "s",
            "nas",
        ],
    ))[0]
        .as_str()
        .expect("path")
        .to_string();
    assert_eq!(
        wait_job(a, &job, Duration::from_secs(120)),
        "success",
        "{}",
        f.svc.log_text()
    );
    let trigger = get(a, &job, JOB, "Trigger");
    assert!(
        trigger
            .as_str()
            .unwrap_or_default()
            .starts_with("tv-admin (uid "),
        "{trigger}"
    );

    // The audit log has who did what.
    let audit = fs::read_to_string(f.svc.state.join("audit.log")).expect("audit log");
    assert!(
        audit.contains("\"user\":\"tv-support\"") && audit.contains("\"member\":\"Verify\""),
        "{audit}"
    );
    assert!(
        audit.contains("\"user\":\"tv-admin\"") && audit.contains("\"member\":\"StartBackupJob\""),
        "{audit}"
    );
    assert!(
        !audit.contains("\"user\":\"tv-guest\""),
        "denied calls never reach the service:\n{audit}"
    );
}

#[test]
fn malformed_calls_get_named_errors_and_change_nothing() {
    let Some(f) = fixture(|_| {}) else { return };
    let a = addr(&f);
    let jobs_before = count_jobs(a);
    let call = |method: &str, args: &[&str]| {
        let m = format!("{MANAGER}.{method}");
        let mut v = vec![
            "call",
            "--dest",
            NAME,
            "--object-path",
            ROOT,
            "--method",
            m.as_str(),
        ];
        v.extend_from_slice(args);
        let out = gdbus(a, None, &v);
        assert!(!out.status.success(), "{method} {args:?} was accepted");
        stderr(&out)
    };
    let outside = f.vault.scratch("elsewhere");
    fs::create_dir_all(&outside).expect("mkdir");
    let outside = outside.display().to_string();
    for (method, args, want) in [
        (
            "StartBackupJob",
            vec!["no-such-job"],
            "org.tiervault.Error.NotFound",
        ),
        (
            "StartBackupJob",
            vec!["42", "43"],
            "org.freedesktop.DBus.Error.InvalidArgs",
        ),
        (
            "Backup",
            vec![&format!("['{outside}']")[..]],
            "org.tiervault.Error.PathNotAllowed",
        ),
        (
            "Backup",
            vec!["['/etc']"],
            "org.tiervault.Error.PathNotAllowed",
        ),
        (
            "Backup",
            vec!["['relative/path']"],
            "org.tiervault.Error.InvalidArgument",
        ),
        (
            "Backup",
            vec!["@as []"],
            "org.tiervault.Error.InvalidArgument",
        ),
        (
            "Restore",
            vec!["latest", "", "/etc/evil"],
            "org.tiervault.Error.PathNotAllowed",
        ),
        (
            "Restore",
            vec![
                "ffffffff",
                "",
                &f.restore_root.join("x").display().to_string()[..],
            ],
            "org.tiervault.Error.NotFound",
        ),
        (
            "NoSuchMethod",
            vec![],
            "org.freedesktop.DBus.Error.UnknownMethod",
        ),
    ] {
        let err = call(method, &args);
        assert!(
            err.contains(want),
            "{method} {args:?}: expected {want}, got {err}"
        );
    }
    // Wrong signature through busctl, an unknown object, an unknown job.
    let out = busctl(
        a,
        None,
        &["call", NAME, ROOT, MANAGER, "Verify", "s", "yes"],
    );
    assert!(!out.status.success(), "a wrong signature was accepted");
    let out = gdbus(
        a,
        None,
        &[
            "call",
            "--dest",
            NAME,
            "--object-path",
            &format!("{ROOT}/jobs/9999"),
            "--method",
            &format!("{JOB}.Cancel"),
        ],
    );
    assert!(
        stderr(&out).contains("org.freedesktop.DBus.Error.UnknownObject")
            || stderr(&out).contains("UnknownMethod"),
        "{}",
        stderr(&out)
    );
    let out = busctl(
        a,
        None,
        &[
            "get-property",
            NAME,
            &format!("{ROOT}/jobs/9999"),
            JOB,
            "Status",
        ],
    );
    assert!(!out.status.success());
    assert_eq!(count_jobs(a), jobs_before, "a refused call created a job");
    // Refusals are audited too.
    let audit = fs::read_to_string(f.svc.state.join("audit.log")).expect("audit log");
    assert!(audit.contains("PathNotAllowed"), "{audit}");
    assert!(
        f.restore_root.read_dir().expect("ls").next().is_none(),
        "a refused restore wrote something"
    );
}

fn count_jobs(a: &str) -> usize {
    let out = gdbus(
        a,
        None,
        &[
            "call",
            "--dest",
            NAME,
            "--object-path",
            ROOT,
            "--method",
            "org.freedesktop.DBus.ObjectManager.GetManagedObjects",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    String::from_utf8_lossy(&out.stdout)
        .matches(&format!("objectpath '{ROOT}/jobs/"))
        .count()
}

#[test]
fn a_failed_job_raises_an_alert_that_support_reads_and_an_admin_acknowledges() {
    let Some(f) = fixture(|_| {}) else { return };
    let a = addr(&f);
    let job = call_job(a, None, "StartBackupJob", "s", &["broken"]);
    assert_eq!(wait_job(a, &job, Duration::from_secs(60)), "failed");
    let alert = wait_for_alert(a, "job.failed");
    assert_eq!(get(a, &alert, "org.tiervault.Alert1", "Severity"), 7);
    assert_eq!(get(a, &alert, "org.tiervault.Alert1", "Priority"), "P2");
    assert_eq!(get(a, &alert, "org.tiervault.Alert1", "Key"), "broken");
    let out = busctl(
        a,
        Some(SUPPORT.0),
        &[
            "get-property",
            NAME,
            &alert,
            "org.tiervault.Alert1",
            "Summary",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = busctl(
        a,
        Some(SUPPORT.0),
        &[
            "call",
            NAME,
            &alert,
            "org.tiervault.Alert1",
            "Acknowledge",
            "s",
            "no",
        ],
    );
    assert!(
        stderr(&out).contains("Access denied"),
        "support acknowledged: {}",
        stderr(&out)
    );
    let out = busctl(
        a,
        Some(ADMIN.0),
        &[
            "call",
            NAME,
            &alert,
            "org.tiervault.Alert1",
            "Acknowledge",
            "s",
            "disk replaced, rerun tonight",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(get(a, &alert, "org.tiervault.Alert1", "Acknowledged"), true);
    let by = get(a, &alert, "org.tiervault.Alert1", "AcknowledgedBy");
    assert!(
        by.as_str().unwrap_or_default().starts_with("tv-admin"),
        "{by}"
    );
    assert_eq!(
        get(a, &alert, "org.tiervault.Alert1", "AcknowledgeComment"),
        "disk replaced, rerun tonight"
    );
}

/// The path of the first alert of `class`, waiting for the service to publish it.
fn wait_for_alert(a: &str, class: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let out = busctl(a, None, &["--list", "tree", NAME]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        for path in text
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with(&format!("{ROOT}/alerts/")))
        {
            if get(a, path, "org.tiervault.Alert1", "Class") == class {
                return path.to_string();
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {class} alert:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A fixture whose share holds `files` × 48 MiB of noise, and its `nas` job running with at
/// least `done` bytes processed: (fixture, bus address, job path).
fn backup_under_way(files: u32, done: u64) -> Option<(Fixture, String, String)> {
    let f = fixture(|share| {
        for i in 0..files {
            let data = noise(48 << 20, u64::from(i) + 10);
            fs::write(share.join(format!("big{i}.bin")), data).expect("big file");
        }
    })?;
    let a = f.bus.address.clone();
    let job = call_job(&a, None, "StartBackupJob", "s", &["nas"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while get(&a, &job, JOB, "BytesDone").as_u64().unwrap_or(0) < done {
        let status = get(&a, &job, JOB, "Status");
        assert_eq!(
            status, "running",
            "the backup ended too soon; make it bigger"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "no progress:\n{}",
            f.svc.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Some((f, a, job))
}

#[test]
fn kill_9_mid_backup_leaves_the_vault_consistent_and_the_job_failed_with_an_alert() {
    let Some((mut f, a, job)) = backup_under_way(6, 8 << 20) else {
        return;
    };
    f.svc.kill9();
    // What systemd's Restart=on-failure would do.
    f.svc.restart();
    assert_eq!(get(&a, &job, JOB, "Status"), "failed");
    let msg = get(&a, &job, JOB, "Message");
    assert!(
        msg.as_str().unwrap_or_default().contains("interrupted"),
        "{msg}"
    );
    let alert = wait_for_alert(&a, "job.failed");
    assert_eq!(get(&a, &alert, "org.tiervault.Alert1", "Key"), "nas");
    // The vault: consistent, no damage, and the next backup completes.
    let out = f.vault.run(["verify"]);
    assert!(
        out.status.success(),
        "verify after kill -9: {}",
        common::describe(&out)
    );
    let again = call_job(&a, None, "StartBackupJob", "s", &["nas"]);
    assert_eq!(
        wait_job(&a, &again, Duration::from_secs(600)),
        "success",
        "{}",
        f.svc.log_text()
    );
    // A completed backup after the failure clears the alert.
    assert_eq!(get(&a, &alert, "org.tiervault.Alert1", "Active"), false);
    let out = f.vault.run(["verify"]);
    assert!(
        out.status.success(),
        "verify after the second backup: {}",
        common::describe(&out)
    );
}

#[test]
fn sigterm_mid_backup_abandons_it_cleanly() {
    let Some((mut f, a, job)) = backup_under_way(4, 4 << 20) else {
        return;
    };
    let started = std::time::Instant::now();
    let status = f.svc.terminate();
    eprintln!(
        "SIGTERM to exit, a backup under way: {:?}",
        started.elapsed()
    );
    assert!(
        status.success(),
        "exit after SIGTERM: {status}\n{}",
        f.svc.log_text()
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "stop took {:?}",
        started.elapsed()
    );
    f.svc.restart();
    assert_eq!(get(&a, &job, JOB, "Status"), "failed");
    let msg = get(&a, &job, JOB, "Message");
    assert!(
        msg.as_str().unwrap_or_default().contains("abandoned"),
        "{msg}"
    );
    let out = f.vault.run(["verify"]);
    assert!(
        out.status.success(),
        "verify after SIGTERM: {}",
        common::describe(&out)
    );
    let snaps = f.vault.snapshots();
    assert!(
        snaps.is_empty(),
        "an abandoned backup committed a snapshot: {snaps:?}"
    );
}

#[test]
fn introspection_matches_the_checked_in_api() {
    let Some(f) = fixture(|_| {}) else { return };
    let a = addr(&f);
    let job = call_job(a, None, "StartBackupJob", "s", &["nas"]);
    assert_eq!(
        wait_job(a, &job, Duration::from_secs(120)),
        "success",
        "{}",
        f.svc.log_text()
    );
    let failed = call_job(a, None, "StartBackupJob", "s", &["broken"]);
    assert_eq!(wait_job(a, &failed, Duration::from_secs(60)), "failed");
    let alert = wait_for_alert(a, "job.failed");
    let snap = get(a, &job, JOB, "Snapshot")
        .as_str()
        .expect("id")
        .to_string();
    let objects = [
        ROOT.to_string(),
        format!("{ROOT}/backup_jobs/nas"),
        job,
        format!("{ROOT}/snapshots/{}", &snap[..16]),
        alert,
    ];
    // Its own interfaces and the shared Alert1; the other services' are checked by their
    // own tests (dbus_replicad.rs, dbus_poold.rs).
    let seen = bus::check_introspection(a, NAME, &objects, |f| {
        f.starts_with(NAME) || f.starts_with("org.tiervault.Alert1")
    });
    assert_eq!(
        seen,
        [
            "org.tiervault.Alert1",
            "org.tiervault.Ingest1.BackupJob",
            "org.tiervault.Ingest1.Job",
            "org.tiervault.Ingest1.Manager",
            "org.tiervault.Ingest1.Snapshot"
        ]
    );
}

#[test]
fn vaultctl_drives_the_service_over_the_bus() {
    let Some(f) = fixture(|_| {}) else { return };
    let a = addr(&f);
    // A copy other users can reach (the build directory may not be traversable for them).
    let bin = f.bus.dir.path().join("vaultctl");
    fs::copy(common::vaultctl(), &bin).expect("copy vaultctl");
    let run = |user: Option<&str>, args: &[&str]| {
        let mut cmd = match user {
            Some(u) => {
                let mut c = Command::new("runuser");
                c.args(["-u", u, "--"]).arg(&bin);
                c
            }
            None => Command::new(&bin),
        };
        cmd.env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .args(["--bus", a])
            .args(args)
            .output()
            .expect("vaultctl")
    };
    let json = |args: &[&str]| -> serde_json::Value {
        let out = run(None, args);
        assert!(out.status.success(), "{args:?}: {}", common::describe(&out));
        serde_json::from_slice(&out.stdout).expect("json")
    };

    let jobs = json(&["--json", "job", "list"]);
    let names: Vec<&str> = jobs
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|j| j["properties"]["Name"].as_str())
        .collect();
    assert_eq!(names, ["broken", "nas"]);

    let done = json(&["--json", "job", "start", "nas"]);
    assert_eq!(done["properties"]["Status"], "success", "{done}");
    let snaps = json(&["--json", "snapshots"]);
    let snaps = snaps.as_array().expect("array");
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0]["BackupJob"], "nas");

    let target = f.restore_root.join("by-vaultctl");
    let out = run(
        None,
        &[
            "restore",
            "latest",
            "--target",
            &target.display().to_string(),
        ],
    );
    assert!(out.status.success(), "{}", common::describe(&out));
    assert!(find(&target, "report.txt").is_some(), "nothing restored");
    let out = run(
        None,
        &["restore", "latest", "--target", "/etc/tiervault-evil"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("org.tiervault.Error.PathNotAllowed"),
        "{}",
        stderr(&out)
    );

    let out = run(None, &["job", "start", "broken"]);
    assert_eq!(out.status.code(), Some(1), "{}", common::describe(&out));
    assert!(stderr(&out).contains("failed"), "{}", stderr(&out));
    let history = json(&["--json", "job", "history"]);
    let statuses: Vec<&str> = history
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|j| j["properties"]["Status"].as_str())
        .collect();
    assert_eq!(statuses, ["success", "success", "failed"], "{history}");

    let alerts = json(&["--json", "alert", "list"]);
    let alert = alerts
        .as_array()
        .expect("array")
        .iter()
        .find(|x| x["properties"]["Class"] == "job.failed")
        .expect("a job.failed alert")
        .clone();
    let id = alert["properties"]["Id"].as_u64().expect("id").to_string();
    let out = run(
        Some(SUPPORT.0),
        &["alert", "ack", &id, "--comment", "looking"],
    );
    assert_eq!(out.status.code(), Some(1), "support acknowledged an alert");
    assert!(stderr(&out).contains("AccessDenied"), "{}", stderr(&out));
    let out = run(
        Some(ADMIN.0),
        &["alert", "ack", &id, "--comment", "share remounted"],
    );
    assert!(out.status.success(), "{}", common::describe(&out));
    let all = json(&["--json", "alert", "list", "--all"]);
    let acked = all
        .as_array()
        .expect("array")
        .iter()
        .find(|x| x["properties"]["Id"].as_u64().map(|i| i.to_string()) == Some(id.clone()))
        .expect("still listed");
    assert_eq!(acked["properties"]["AcknowledgeComment"], "share remounted");

    // Support may verify through vaultctl; a guest may not even list jobs.
    let out = run(Some(SUPPORT.0), &["verify", "--quick"]);
    assert!(out.status.success(), "{}", common::describe(&out));
    let out = run(Some(GUEST.0), &["job", "list"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("AccessDenied"), "{}", stderr(&out));
}

#[test]
fn support_replicates_through_vault_replicad() {
    let Some(f) = fixture(|_| {}) else { return };
    let a = addr(&f);
    let replicate = || {
        gdbus(
            a,
            Some(SUPPORT.0),
            &[
                "call",
                "--dest",
                NAME,
                "--object-path",
                ROOT,
                "--method",
                &format!("{MANAGER}.Replicate"),
            ],
        )
    };
    // vault-replicad never ran for this vault: a named error, no job.
    let out = replicate();
    assert!(
        stderr(&out).contains("org.tiervault.Error.NotConfigured"),
        "{}",
        stderr(&out)
    );

    let first = call_job(a, None, "StartBackupJob", "s", &["nas"]);
    assert_eq!(wait_job(a, &first, Duration::from_secs(120)), "success");
    // vault-replicad to a replica directory; a long poll interval, so only the request
    // (not its own polling) can explain a prompt second run.
    let replica = f.vault.scratch("replica");
    let config = f.vault.scratch("replicad.toml");
    fs::write(
        &config,
        format!(
            "version = 1\nvault = {:?}\nto = {:?}\npoll-seconds = 3600\nretry-seconds = 3600\n",
            f.vault.dir, replica
        ),
    )
    .expect("replicad.toml");
    let bin =
        common::cli::workspace_bin("VAULT_REPLICAD_BIN", "tiervault-replicad", "vault-replicad");
    let mut replicad = Command::new(bin)
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(fs::File::create(f.vault.scratch("replicad.log")).expect("log"))
        .spawn()
        .expect("vault-replicad");
    let status = f.vault.dir.join("replication/status.json");
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while !status.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "vault-replicad made no first run"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    fs::write(f.share.join("new.txt"), b"after the first replication").expect("file");
    let second = call_job(a, None, "StartBackupJob", "s", &["nas"]);
    assert_eq!(wait_job(a, &second, Duration::from_secs(120)), "success");
    let snap = get(a, &second, JOB, "Snapshot")
        .as_str()
        .expect("id")
        .to_string();

    let out = replicate();
    assert!(out.status.success(), "{}", stderr(&out));
    let job = String::from_utf8_lossy(&out.stdout)
        .trim()
        .trim_start_matches("(objectpath '")
        .trim_end_matches("',)")
        .to_string();
    assert_eq!(
        wait_job(a, &job, Duration::from_secs(120)),
        "success",
        "{}",
        get(a, &job, JOB, "Message")
    );
    let msg = get(a, &job, JOB, "Message");
    assert!(
        msg.as_str().unwrap_or_default().contains("2 snapshots"),
        "{msg}"
    );
    assert!(
        replica.join("snapshots").join(&snap).exists(),
        "the new snapshot is not in the replica"
    );
    let _ = replicad.kill();
    let _ = replicad.wait();
}
