//! The spool on a real directory: FIFO order, no loss and no duplicates across failures and
//! reopens (property tests), and garbage in the directory set aside, never a panic.

mod common;

use std::collections::{HashSet, VecDeque};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use common::{appliance, SOURCE, T0};
use proptest::prelude::*;
use tiervault_alerts::{Alert, Severity};
use tiervault_notify::{
    Backoff, DeliveryError, Dispatcher, ManualClock, Notification, Route, Spool, SpoolCaps,
    SpoolOpenReport, Target, Transition, SET_ASIDE_DIR,
};

fn alert(id: u64, severity: u8) -> Alert {
    Alert {
        id,
        source: SOURCE.into(),
        class: "pool.degraded".into(),
        key: format!("array{id}"),
        severity: Severity::try_from(severity).expect("severity"),
        summary: format!("array{id} is degraded"),
        detail: String::new(),
        raised_ns: T0,
        last_seen_ns: T0,
        count: 1,
        cleared_ns: None,
        ack: None,
    }
}

fn note(seq: u64, severity: u8) -> Notification {
    Notification::new(
        &alert(seq, severity),
        Transition::Raised,
        &appliance(),
        seq,
        T0,
    )
}

#[derive(Debug, Clone)]
enum Op {
    Append(u8),
    DeliverOk,
    DeliverFail,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1u8..=10).prop_map(Op::Append),
        3 => Just(Op::DeliverOk),
        2 => Just(Op::DeliverFail),
        1 => Just(Op::Reopen),
    ]
}

fn open(dir: &Path) -> Spool {
    let (spool, report) = Spool::open(dir, SpoolCaps::default()).expect("open");
    assert_eq!(report, SpoolOpenReport::default());
    spool
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Under the caps, whatever mix of appends, successful and failed deliveries and reopens
    /// happens, entries come out in append order, each exactly once.
    #[test]
    fn spool_is_a_durable_fifo(ops in prop::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut spool = open(dir.path());
        let mut waiting = VecDeque::new();
        let mut appended = Vec::new();
        let mut delivered = Vec::new();
        for (i, op) in ops.into_iter().enumerate() {
            match op {
                Op::Append(severity) => {
                    let n = note(i as u64 + 1, severity);
                    let result = spool.append(&n).expect("append");
                    prop_assert_eq!(result.dropped.total(), 0);
                    waiting.push_back(n.event_id.clone());
                    appended.push(n.event_id);
                }
                Op::DeliverOk => match spool.head().expect("head") {
                    Some(queued) => {
                        prop_assert_eq!(Some(&queued.notification.event_id), waiting.front());
                        spool.complete(queued.seq).expect("complete");
                        delivered.extend(waiting.pop_front());
                    }
                    None => prop_assert!(waiting.is_empty()),
                },
                Op::DeliverFail => {
                    let head = spool.head().expect("head");
                    prop_assert_eq!(head.map(|q| q.notification.event_id), waiting.front().cloned());
                }
                Op::Reopen => {
                    drop(spool);
                    spool = open(dir.path());
                }
            }
            prop_assert_eq!(spool.len(), waiting.len());
        }
        drop(spool);
        let mut spool = open(dir.path());
        while let Some(queued) = spool.head().expect("head") {
            delivered.push(queued.notification.event_id);
            spool.complete(queued.seq).expect("complete");
        }
        prop_assert_eq!(&delivered, &appended);
        prop_assert_eq!(delivered.iter().collect::<HashSet<_>>().len(), delivered.len());
    }

    /// The same through the dispatcher: a target that fails (retryably) at random, pumps with
    /// the clock moved past every backoff, and restarts of the whole dispatcher.
    #[test]
    fn dispatcher_delivers_in_order_once_despite_failures_and_restarts(
        script in prop::collection::vec((0u8..4, any::<bool>()), 1..30),
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let clock = Arc::new(ManualClock::new(T0));
        let received = Arc::new(Mutex::new(Vec::new()));
        let failing = Arc::new(Mutex::new(false));
        let open_dispatcher = || {
            let mut d = Dispatcher::open(dir.path(), SOURCE, appliance(), clock.clone())
                .expect("dispatcher");
            d.add_target(route(), Box::new(Recorder {
                received: received.clone(),
                failing: failing.clone(),
            }))
            .expect("target");
            d
        };
        let mut dispatcher = open_dispatcher();
        let mut sent = Vec::new();
        for (i, (action, fail)) in script.into_iter().enumerate() {
            *failing.lock().expect("lock") = fail;
            match action {
                0 | 1 => {
                    let e = dispatcher
                        .notify(&alert(i as u64 + 1, 7), Transition::Raised)
                        .expect("notify");
                    sent.push(e.event_id);
                }
                2 => {
                    clock.advance(std::time::Duration::from_secs(3600));
                    dispatcher.pump();
                }
                _ => {
                    drop(dispatcher);
                    dispatcher = open_dispatcher();
                }
            }
        }
        *failing.lock().expect("lock") = false;
        clock.advance(std::time::Duration::from_secs(3600));
        while dispatcher.next_due_ns().is_some() {
            dispatcher.pump();
        }
        prop_assert_eq!(&*received.lock().expect("lock"), &sent);
    }
}

fn route() -> Route {
    Route {
        name: "recorder".into(),
        min_severity: Severity::MIN,
        backoff: Backoff {
            initial_secs: 1,
            max_secs: 60,
        },
        caps: SpoolCaps::default(),
    }
}

/// Records what it accepted; refuses (retryably) while `failing` is set.
struct Recorder {
    received: Arc<Mutex<Vec<String>>>,
    failing: Arc<Mutex<bool>>,
}

impl Target for Recorder {
    fn describe(&self) -> String {
        "recorder".into()
    }

    fn deliver(&mut self, n: &Notification) -> Result<(), DeliveryError> {
        if *self.failing.lock().expect("lock") {
            return Err(DeliveryError::retryable("recorder", "scripted failure"));
        }
        self.received.lock().expect("lock").push(n.event_id.clone());
        Ok(())
    }
}

fn entry_name(seq: u64) -> String {
    format!("{seq:020}.json")
}

#[test]
fn garbage_in_the_directory_is_reported_and_set_aside() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spool_dir = dir.path().join("psa");
    {
        let mut spool = open(&spool_dir);
        for seq in 1..=3 {
            spool.append(&note(seq, 9)).expect("append");
        }
    }
    let good = fs::read(spool_dir.join(entry_name(1))).expect("entry");
    // A torn entry, an empty one, one of another format, a foreign file and directory, a
    // file whose name is not UTF-8, a symlink posing as an entry, and the temporary of a
    // write a crash interrupted.
    fs::write(spool_dir.join(entry_name(2)), &good[..good.len() / 2]).expect("torn");
    fs::write(spool_dir.join(entry_name(4)), b"").expect("empty");
    fs::write(
        spool_dir.join(entry_name(5)),
        br#"{"schema":"something-else/9"}"#,
    )
    .expect("foreign format");
    fs::write(spool_dir.join("notes.txt"), b"hello").expect("foreign");
    fs::create_dir(spool_dir.join("junk")).expect("dir");
    fs::write(spool_dir.join("junk").join("x"), b"x").expect("junk");
    let odd = std::ffi::OsStr::from_bytes(b"bad-\xff-name");
    fs::write(spool_dir.join(odd), b"?").expect("non-utf8");
    std::os::unix::fs::symlink("/etc/passwd", spool_dir.join(entry_name(6))).expect("symlink");
    fs::write(
        spool_dir.join(format!(".{}.tmp-4242", entry_name(7))),
        &good,
    )
    .expect("tmp");

    let (mut spool, report) = Spool::open(&spool_dir, SpoolCaps::default()).expect("open");
    let mut aside: Vec<&str> = report.set_aside.iter().map(|s| s.name.as_str()).collect();
    aside.sort();
    assert_eq!(
        aside,
        [
            entry_name(2).as_str(),
            entry_name(4).as_str(),
            entry_name(5).as_str(),
            entry_name(6).as_str(),
            "bad-\u{fffd}-name",
            "junk",
            "notes.txt",
        ]
    );
    assert_eq!(report.removed_temporaries, 1);
    for moved in &report.set_aside {
        assert!(moved.to.starts_with(spool_dir.join(SET_ASIDE_DIR)));
        assert!(fs::symlink_metadata(&moved.to).is_ok(), "{moved:?}");
        assert!(!moved.reason.is_empty());
    }
    let torn = report
        .set_aside
        .iter()
        .find(|s| s.name == entry_name(2))
        .expect("torn");
    assert!(
        torn.reason.contains("not a notification"),
        "{}",
        torn.reason
    );
    assert!(
        fs::read_to_string("/etc/passwd").is_ok(),
        "the symlink target is untouched"
    );

    // What was good is still delivered in order, and new entries go after it.
    spool.append(&note(10, 9)).expect("append");
    let mut order = Vec::new();
    while let Some(queued) = spool.head().expect("head") {
        order.push(queued.notification.sequence);
        spool.complete(queued.seq).expect("complete");
    }
    assert_eq!(order, [1, 3, 10]);

    // Reopening finds a clean directory.
    drop(spool);
    let (_, report) = Spool::open(&spool_dir, SpoolCaps::default()).expect("reopen");
    assert_eq!(report, SpoolOpenReport::default());
}

#[test]
fn an_entry_damaged_after_opening_is_set_aside_when_it_reaches_the_head() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(T0));
    let received = Arc::new(Mutex::new(Vec::new()));
    let mut dispatcher =
        Dispatcher::open(dir.path(), SOURCE, appliance(), clock).expect("dispatcher");
    dispatcher
        .add_target(
            route(),
            Box::new(Recorder {
                received: received.clone(),
                failing: Arc::new(Mutex::new(false)),
            }),
        )
        .expect("target");
    let mut ids = Vec::new();
    for id in 1..=3 {
        ids.push(
            dispatcher
                .notify(&alert(id, 9), Transition::Raised)
                .expect("notify")
                .event_id,
        );
    }
    let spool_dir = dir.path().join("recorder");
    let first = fs::read_dir(&spool_dir)
        .expect("list")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .min()
        .expect("an entry");
    fs::write(&first, b"{\"schema\": \"tiervault-notif").expect("damage");

    let report = dispatcher.pump();
    assert_eq!(report.delivered(), 2, "{report}");
    assert_eq!(report.set_aside(), 1);
    assert_eq!(*received.lock().expect("lock"), ids[1..]);
    let aside = fs::read_dir(spool_dir.join(SET_ASIDE_DIR))
        .expect("set-aside")
        .count();
    assert_eq!(aside, 2, "the entry and its .why");
}

#[test]
fn over_the_caps_paging_entries_outlive_minor_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let caps = SpoolCaps {
        max_entries: 5,
        ..SpoolCaps::default()
    };
    let (mut spool, _) = Spool::open(dir.path(), caps).expect("open");
    // An outage during which minor alerts flood in among a few paging ones.
    let severities = [10u8, 2, 3, 1, 8, 4, 4, 2, 6, 3, 1, 9];
    let mut dropped = 0;
    for (i, severity) in severities.into_iter().enumerate() {
        dropped += spool
            .append(&note(i as u64 + 1, severity))
            .expect("append")
            .dropped
            .total();
    }
    assert_eq!(dropped, severities.len() - 5);
    let mut kept = Vec::new();
    while let Some(queued) = spool.head().expect("head") {
        kept.push(queued.notification.alert.severity.get());
        spool.complete(queued.seq).expect("complete");
    }
    // Every P1-P3 entry survives, in order, and the newest notify entry fills the rest.
    assert_eq!(kept, [10, 8, 6, 3, 9]);
}
