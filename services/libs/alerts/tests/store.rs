//! The alert store's behaviour through its public API: de-duplication, clearing,
//! acknowledgement, bounded history, durability, recovery from damaged files, and rollback
//! when a write fails.

use std::fs;
use std::path::{Path, PathBuf};

use tiervault_alerts::{AlertError, AlertStore, NewAlert, Priority, Severity};

const SOURCE: &str = "ingest";

fn sev(n: u8) -> Severity {
    Severity::try_from(n).expect("severity in range")
}

fn new_alert(class: &str, key: &str, severity: u8) -> NewAlert {
    NewAlert {
        class: class.into(),
        key: key.into(),
        severity: sev(severity),
        summary: format!("{class} {key} at {severity}"),
        detail: format!("detail of {class} {key}\nsecond line"),
    }
}

fn open(path: &Path, max_cleared: usize) -> AlertStore {
    let (store, report) = AlertStore::open(path, SOURCE, max_cleared).expect("open");
    assert_eq!(report.recovered_from, None, "unexpected recovery");
    store
}

fn snapshot(store: &AlertStore) -> (Vec<tiervault_alerts::Alert>, u64) {
    (store.all().cloned().collect(), store.next_id())
}

fn store_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("alerts.json")
}

fn list_dir(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_new_store_is_created_empty_and_raising_fills_every_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = store_path(&dir);
    let mut store = open(&path, 10);
    assert!(path.exists(), "open creates the file");
    assert_eq!(store.all().count(), 0);
    assert_eq!(store.next_id(), 1);
    assert_eq!(store.path(), path);
    assert_eq!(store.source(), SOURCE);

    let raised = store
        .raise(new_alert("job.failed", "nightly", 9), 1_000)
        .expect("raise");
    assert!(raised.new);
    let alert = store.get(raised.id).expect("stored");
    assert_eq!(alert.id, 1);
    assert_eq!(alert.source, SOURCE);
    assert_eq!(alert.class, "job.failed");
    assert_eq!(alert.key, "nightly");
    assert_eq!(alert.severity, sev(9));
    assert_eq!(alert.priority(), Priority::P1);
    assert_eq!(alert.raised_ns, 1_000);
    assert_eq!(alert.last_seen_ns, 1_000);
    assert_eq!(alert.count, 1);
    assert!(alert.is_active());
    assert_eq!(alert.ack, None);
    assert_eq!(store.active().count(), 1);
    assert_eq!(store.active_count(), 1);
    assert_eq!(store.next_id(), 2);
}

#[test]
fn the_file_is_the_documented_json_with_integer_times() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = store_path(&dir);
    let mut store = open(&path, 10);
    let id = store
        .raise(
            new_alert("job.failed", "nightly", 5),
            1_700_000_000_123_456_789,
        )
        .expect("raise")
        .id;
    store
        .acknowledge(id, "alice", "", 1_700_000_001_000_000_000)
        .expect("ack");
    let doc: serde_json::Value =
        serde_json::from_slice(&fs::read(&path).expect("read")).expect("json");
    assert_eq!(doc["format"], "tiervault-alerts");
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["source"], SOURCE);
    assert_eq!(doc["next_id"], 2);
    let alert = &doc["alerts"][0];
    assert_eq!(alert["id"], 1);
    assert_eq!(alert["severity"], 5);
    assert_eq!(alert["raised_ns"].as_i64(), Some(1_700_000_000_123_456_789));
    assert_eq!(alert["cleared_ns"], serde_json::Value::Null);
    assert_eq!(
        alert["ack"]["at_ns"].as_i64(),
        Some(1_700_000_001_000_000_000)
    );
    let mode = fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode, 0o640);
    assert_eq!(list_dir(dir.path()), ["alerts.json"], "no temporary left");
}

#[test]
fn the_same_class_and_key_while_active_is_one_alert() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = open(&store_path(&dir), 10);
    let first = store
        .raise(new_alert("job.failed", "nightly", 5), 100)
        .expect("raise");
    let second = store
        .raise(new_alert("job.failed", "nightly", 8), 200)
        .expect("raise");
    let mut third_alert = new_alert("job.failed", "nightly", 3);
    third_alert.summary = "latest words".into();
    let third = store.raise(third_alert, 300).expect("raise");
    assert!(first.new);
    assert!(!second.new && !third.new);
    assert_eq!(second.id, first.id);
    assert_eq!(third.id, first.id);

    let alert = store.get(first.id).expect("stored");
    assert_eq!(alert.count, 3);
    assert_eq!(
        alert.severity,
        sev(8),
        "the highest severity seen, never lowered"
    );
    assert_eq!(alert.summary, "latest words");
    assert_eq!(alert.raised_ns, 100);
    assert_eq!(alert.last_seen_ns, 300);
    assert_eq!(store.all().count(), 1);

    let other_key = store
        .raise(new_alert("job.failed", "weekly", 5), 400)
        .expect("raise");
    let other_class = store
        .raise(new_alert("job.slow", "nightly", 5), 500)
        .expect("raise");
    assert!(other_key.new && other_class.new);
    assert_eq!([other_key.id, other_class.id], [2, 3]);
    assert_eq!(
        store.find_active("job.failed", "weekly").map(|a| a.id),
        Some(2)
    );
}

#[test]
fn clearing_then_raising_again_is_a_new_alert() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = open(&store_path(&dir), 10);
    let first = store
        .raise(new_alert("job.failed", "nightly", 5), 100)
        .expect("raise")
        .id;
    assert_eq!(
        store.clear("job.failed", "nightly", 200).expect("clear"),
        Some(first)
    );
    let cleared = store.get(first).expect("kept in history");
    assert_eq!(cleared.cleared_ns, Some(200));
    assert!(!cleared.is_active());
    assert_eq!(store.active().count(), 0);

    assert_eq!(
        store.clear("job.failed", "nightly", 250).expect("clear"),
        None,
        "nothing active: not an error"
    );
    assert_eq!(store.get(first).and_then(|a| a.cleared_ns), Some(200));

    let again = store
        .raise(new_alert("job.failed", "nightly", 5), 300)
        .expect("raise");
    assert!(again.new);
    assert!(again.id > first);
    assert_eq!(store.get(again.id).map(|a| a.count), Some(1));
    assert_eq!(store.get(first).map(|a| a.is_active()), Some(false));
}

#[test]
fn acknowledging_records_and_replaces_and_rejects_unknown_ids() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = open(&store_path(&dir), 10);
    let id = store
        .raise(new_alert("pool.degraded", "data0", 8), 100)
        .expect("raise")
        .id;
    store
        .acknowledge(id, "alice", "replacing disk", 200)
        .expect("ack");
    let ack = store.get(id).and_then(|a| a.ack.clone()).expect("acked");
    assert_eq!(
        (ack.by.as_str(), ack.at_ns, ack.comment.as_str()),
        ("alice", 200, "replacing disk")
    );

    store.acknowledge(id, "bob", "", 300).expect("re-ack");
    let ack = store.get(id).and_then(|a| a.ack.clone()).expect("acked");
    assert_eq!(
        (ack.by.as_str(), ack.at_ns, ack.comment.as_str()),
        ("bob", 300, ""),
        "the latest acknowledgement replaces the earlier one"
    );

    match store.acknowledge(99, "alice", "", 400) {
        Err(e @ AlertError::NotFound(99)) => assert!(e.to_string().contains("99"), "{e}"),
        other => panic!("expected NotFound(99), got {other:?}"),
    }
    match store.acknowledge(id, "", "why", 400) {
        Err(AlertError::Invalid { field: "by", .. }) => {}
        other => panic!("expected Invalid by, got {other:?}"),
    }
    assert_eq!(
        store.get(id).and_then(|a| a.ack.as_ref()).map(|a| a.at_ns),
        Some(300),
        "a rejected acknowledgement changes nothing"
    );

    store.clear("pool.degraded", "data0", 500).expect("clear");
    store
        .acknowledge(id, "carol", "seen after the fact", 600)
        .expect("a cleared alert can be acknowledged");
    assert_eq!(
        store
            .get(id)
            .and_then(|a| a.ack.as_ref())
            .map(|a| a.by.as_str()),
        Some("carol")
    );
}

#[test]
fn escalation_drops_the_acknowledgement_and_anything_else_keeps_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = open(&store_path(&dir), 10);
    let id = store
        .raise(new_alert("pool.degraded", "data0", 6), 100)
        .expect("raise")
        .id;
    store.acknowledge(id, "alice", "on it", 150).expect("ack");

    store
        .raise(new_alert("pool.degraded", "data0", 6), 200)
        .expect("same severity");
    store
        .raise(new_alert("pool.degraded", "data0", 2), 300)
        .expect("lower severity");
    let alert = store.get(id).expect("stored");
    assert_eq!(alert.ack.as_ref().map(|a| a.by.as_str()), Some("alice"));
    assert_eq!(alert.severity, sev(6));

    store
        .raise(new_alert("pool.degraded", "data0", 9), 400)
        .expect("escalation");
    let alert = store.get(id).expect("stored");
    assert_eq!(alert.severity, sev(9));
    assert_eq!(alert.ack, None, "the operator must see the escalation");
    assert_eq!(alert.count, 4);
}

#[test]
fn invalid_alerts_are_refused_naming_the_field_and_change_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = store_path(&dir);
    let mut store = open(&path, 10);
    let before = fs::read(&path).expect("read");
    let cases = [
        ("class", new_alert("Job Failed", "k", 5)),
        ("class", new_alert("job", "k", 5)),
        ("key", new_alert("job.failed", "a\u{7}b", 5)),
        ("key", new_alert("job.failed", &"k".repeat(257), 5)),
        (
            "summary",
            NewAlert {
                summary: String::new(),
                ..new_alert("job.failed", "k", 5)
            },
        ),
        (
            "detail",
            NewAlert {
                detail: "x".repeat(4097),
                ..new_alert("job.failed", "k", 5)
            },
        ),
    ];
    for (field, new) in cases {
        match store.raise(new, 100) {
            Err(e @ AlertError::Invalid { field: f, .. }) => {
                assert_eq!(f, field);
                assert!(e.to_string().contains(field), "{e}");
            }
            other => panic!("{field}: expected Invalid, got {other:?}"),
        }
    }
    assert_eq!(store.all().count(), 0);
    assert_eq!(store.next_id(), 1);
    assert_eq!(fs::read(&path).expect("read"), before);

    for source in ["", "a\nb"] {
        match AlertStore::open(&dir.path().join("other.json"), source, 1) {
            Err(AlertError::Invalid {
                field: "source", ..
            }) => {}
            other => panic!("source {source:?}: expected Invalid, got {other:?}"),
        }
    }
}

#[test]
fn history_keeps_the_newest_cleared_and_every_active() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = open(&store_path(&dir), 3);
    let keys: Vec<String> = (0..10).map(|i| format!("job{i}")).collect();
    let mut ids = Vec::new();
    for key in &keys {
        ids.push(
            store
                .raise(new_alert("job.failed", key, 5), 100)
                .expect("raise")
                .id,
        );
    }
    let active_ids: Vec<u64> = ["a", "b"]
        .iter()
        .map(|k| {
            store
                .raise(new_alert("pool.degraded", k, 8), 100)
                .expect("raise")
                .id
        })
        .collect();

    // Cleared newest id first, so that "oldest cleared" and "lowest id" differ.
    for (t, key) in keys.iter().rev().enumerate() {
        let t = 1_000 + i64::try_from(t).expect("small");
        store.clear("job.failed", key, t).expect("clear");
        let cleared = store.all().filter(|a| !a.is_active()).count();
        assert!(cleared <= 3, "{cleared} cleared kept");
    }
    let kept: Vec<u64> = store
        .all()
        .filter(|a| !a.is_active())
        .map(|a| a.id)
        .collect();
    assert_eq!(kept, ids[..3], "the three cleared last");
    let active: Vec<u64> = store.active().map(|a| a.id).collect();
    assert_eq!(active, active_ids);
    assert_eq!(store.next_id(), 13, "dropping history reuses no id");
}

#[test]
fn nothing_is_kept_cleared_with_a_history_of_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = open(&store_path(&dir), 0);
    let id = store
        .raise(new_alert("job.failed", "k", 5), 100)
        .expect("raise")
        .id;
    assert_eq!(
        store.clear("job.failed", "k", 200).expect("clear"),
        Some(id)
    );
    assert_eq!(store.get(id), None);
    assert_eq!(store.all().count(), 0);
}

#[test]
fn reopening_gives_the_same_state_and_ids_continue_after_dropped_history() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = store_path(&dir);
    let mut store = open(&path, 1);
    for key in ["a", "b", "c", "d"] {
        store
            .raise(new_alert("job.failed", key, 5), 100)
            .expect("raise");
    }
    store.acknowledge(2, "alice", "note", 150).expect("ack");
    // Clearing d (the highest id) first and then a drops d from the history: the largest id
    // ever handed out is then only in next_id.
    store.clear("job.failed", "d", 200).expect("clear");
    store.clear("job.failed", "a", 300).expect("clear");
    assert_eq!(store.get(4), None);
    assert_eq!(store.all().map(|a| a.id).max(), Some(3));
    let before = snapshot(&store);
    drop(store);

    let mut reopened = open(&path, 1);
    assert_eq!(snapshot(&reopened), before);
    assert_eq!(reopened.next_id(), 5);
    let raised = reopened
        .raise(new_alert("job.failed", "d", 5), 400)
        .expect("raise");
    assert_eq!(raised.id, 5, "id 4 is never reused");
    assert!(raised.new);
}

#[test]
fn reopening_with_a_smaller_history_trims_it_on_disk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = store_path(&dir);
    let mut store = open(&path, 5);
    for (t, key) in ["a", "b", "c", "d"].iter().enumerate() {
        let t = i64::try_from(t).expect("small");
        store
            .raise(new_alert("job.failed", key, 5), t)
            .expect("raise");
        store.clear("job.failed", key, 100 + t).expect("clear");
    }
    drop(store);
    let trimmed = open(&path, 2);
    let kept: Vec<u64> = trimmed.all().map(|a| a.id).collect();
    assert_eq!(kept, [3, 4]);
    let before = snapshot(&trimmed);
    drop(trimmed);
    assert_eq!(snapshot(&open(&path, 5)), before, "the trim was written");
}

fn assert_set_aside(path: &Path, content: &[u8]) -> (AlertStore, PathBuf, String) {
    let (store, report) = AlertStore::open(path, SOURCE, 10).expect("recovery does not fail");
    let aside = report.recovered_from.expect("recovery reported");
    let reason = report.reason.expect("reason reported");
    let aside_name = aside
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    assert!(
        aside_name.starts_with("alerts.json.corrupt-"),
        "{aside_name}"
    );
    assert_eq!(aside.parent(), path.parent());
    assert_eq!(fs::read(&aside).expect("aside kept"), content);
    assert_eq!(store.all().count(), 0);
    (store, aside, reason)
}

#[test]
fn a_garbage_file_is_set_aside_and_the_store_starts_empty() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = store_path(&dir);
    let garbage = b"\x00\x01 not json at all \xff".to_vec();
    fs::write(&path, &garbage).expect("write");

    let (mut store, aside, reason) = assert_set_aside(&path, &garbage);
    assert!(reason.contains("JSON"), "{reason}");
    // Ids restart far above anything a store of realistic age handed out, so none can
    // collide with the illegible ones.
    assert!(store.next_id() > 1 << 40, "next id {}", store.next_id());
    let first = store
        .raise(new_alert("job.failed", "k", 5), 100)
        .expect("the store works");
    assert!(first.new);
    let before = snapshot(&store);
    drop(store);

    let reopened = open(&path, 10);
    assert_eq!(snapshot(&reopened), before, "the new file is sound");
    assert!(aside.exists());
}

#[test]
fn a_truncated_file_is_set_aside_and_new_ids_stay_above_its_ids() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = store_path(&dir);
    let mut store = open(&path, 10);
    for i in 0..20 {
        store
            .raise(new_alert("job.failed", &format!("k{i}"), 5), 100)
            .expect("raise");
    }
    let largest = store.next_id() - 1;
    drop(store);
    let whole = fs::read(&path).expect("read");
    let cut = whole[..whole.len() / 2].to_vec();
    fs::write(&path, &cut).expect("write");

    let (mut store, _aside, _reason) = assert_set_aside(&path, &cut);
    assert!(store.next_id() > largest);
    let id = store
        .raise(new_alert("job.failed", "k0", 5), 200)
        .expect("raise")
        .id;
    assert!(id > largest);
}

#[test]
fn another_format_or_version_is_set_aside() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = store_path(&dir);
    let cases = [
        (
            r#"{"format":"tiervault-alerts","version":2,"source":"ingest","next_id":1,"alerts":[]}"#,
            "version 2",
        ),
        (
            r#"{"format":"something-else","version":1,"source":"ingest","next_id":1,"alerts":[]}"#,
            "something-else",
        ),
        (r#"[1,2,3]"#, "JSON"),
        (
            // Two active alerts for one class and key: the store's invariant broken.
            r#"{"format":"tiervault-alerts","version":1,"source":"ingest","next_id":3,"alerts":[
              {"id":1,"source":"ingest","class":"job.failed","key":"k","severity":5,"summary":"s","detail":"","raised_ns":1,"last_seen_ns":1,"count":1,"cleared_ns":null,"ack":null},
              {"id":2,"source":"ingest","class":"job.failed","key":"k","severity":5,"summary":"s","detail":"","raised_ns":1,"last_seen_ns":1,"count":1,"cleared_ns":null,"ack":null}]}"#,
            "second active",
        ),
        (
            r#"{"format":"tiervault-alerts","version":1,"source":"ingest","next_id":2,"alerts":[
              {"id":1,"source":"ingest","class":"job.failed","key":"k","severity":11,"summary":"s","detail":"","raised_ns":1,"last_seen_ns":1,"count":1,"cleared_ns":null,"ack":null}]}"#,
            "severity 11",
        ),
    ];
    for (content, why) in cases {
        fs::write(&path, content).expect("write");
        let (_store, _aside, reason) = assert_set_aside(&path, content.as_bytes());
        assert!(reason.contains(why), "{why}: {reason}");
    }
    // Within one second the set-aside names are numbered rather than overwritten; either way
    // every damaged file is still there.
    let asides = list_dir(dir.path())
        .into_iter()
        .filter(|n| n.starts_with("alerts.json.corrupt-"))
        .count();
    assert_eq!(asides, cases.len());
}

#[test]
fn a_file_of_another_service_is_an_error_and_left_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = store_path(&dir);
    let mut store = AlertStore::open(&path, "pools", 10).expect("open").0;
    store
        .raise(new_alert("pool.degraded", "data0", 8), 100)
        .expect("raise");
    drop(store);
    let before = fs::read(&path).expect("read");

    match AlertStore::open(&path, SOURCE, 10) {
        Err(e @ AlertError::WrongSource { .. }) => {
            let message = e.to_string();
            assert!(
                message.contains("pools") && message.contains(SOURCE),
                "{message}"
            );
            assert!(message.contains("alerts.json"), "{message}");
        }
        other => panic!("expected WrongSource, got {other:?}"),
    }
    assert_eq!(fs::read(&path).expect("read"), before);
    assert_eq!(list_dir(dir.path()), ["alerts.json"]);
}

#[test]
fn an_unreadable_path_is_an_error_not_a_recovery() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = store_path(&dir);
    fs::create_dir(&path).expect("a directory where the file should be");
    match AlertStore::open(&path, SOURCE, 10) {
        Err(e @ AlertError::Read { .. }) => assert!(e.to_string().contains("alerts.json"), "{e}"),
        other => panic!("expected Read, got {other:?}"),
    }
    assert_eq!(list_dir(dir.path()), ["alerts.json"]);

    match AlertStore::open(&dir.path().join("absent").join("alerts.json"), SOURCE, 10) {
        Err(AlertError::Write { path, .. }) => assert!(path.ends_with("absent/alerts.json")),
        other => panic!("expected Write for a missing directory, got {other:?}"),
    }
}

#[test]
fn a_failed_write_leaves_memory_as_it_was() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    fs::create_dir(&state).expect("mkdir");
    let path = state.join("alerts.json");
    let mut store = open(&path, 1);
    let a = store
        .raise(new_alert("job.failed", "a", 5), 100)
        .expect("raise")
        .id;
    store
        .raise(new_alert("job.failed", "b", 5), 100)
        .expect("raise");
    store.clear("job.failed", "b", 150).expect("clear");
    store
        .raise(new_alert("job.failed", "c", 5), 160)
        .expect("raise");
    let before = snapshot(&store);

    fs::remove_dir_all(&state).expect("remove the directory under the store");
    let failures: Vec<AlertError> = vec![
        store
            .raise(new_alert("job.failed", "new", 5), 200)
            .expect_err("new alert"),
        store
            .raise(new_alert("job.failed", "a", 9), 200)
            .expect_err("de-duplicated alert"),
        store
            .clear("job.failed", "c", 200)
            .expect_err("clear, which would also drop b from the history"),
        store
            .acknowledge(a, "alice", "", 200)
            .expect_err("acknowledge"),
    ];
    for failure in failures {
        match failure {
            AlertError::Write { path: p, .. } => assert_eq!(p, path),
            other => panic!("expected Write, got {other:?}"),
        }
        assert_eq!(snapshot(&store), before, "memory rolled back");
    }
    assert_eq!(
        store.find_active("job.failed", "c").map(|x| x.count),
        Some(1)
    );

    fs::create_dir(&state).expect("mkdir again");
    let raised = store
        .raise(new_alert("job.failed", "new", 5), 300)
        .expect("raise once the directory is back");
    assert_eq!(raised.id, before.1, "the failed raise consumed no id");
    let after = snapshot(&store);
    drop(store);
    assert_eq!(snapshot(&open(&path, 1)), after);
}

#[test]
fn another_services_store_is_read_without_touching_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = store_path(&dir);
    assert_eq!(
        tiervault_alerts::read_store(&path, SOURCE)
            .expect("absent")
            .len(),
        0
    );
    assert_eq!(
        list_dir(dir.path()),
        Vec::<String>::new(),
        "nothing created"
    );
    let mut store = open(&path, 10);
    store
        .raise(new_alert("disk.failed", "VD1", 9), 1)
        .expect("raise");
    store
        .raise(new_alert("disk.failed", "VD2", 5), 2)
        .expect("raise");
    store.clear("disk.failed", "VD2", 3).expect("clear");
    let alerts = tiervault_alerts::read_store(&path, SOURCE).expect("read");
    assert_eq!(alerts, store.all().cloned().collect::<Vec<_>>());
    assert_eq!(alerts.iter().filter(|a| a.is_active()).count(), 1);
    assert!(matches!(
        tiervault_alerts::read_store(&path, "other"),
        Err(AlertError::WrongSource { .. })
    ));
    fs::write(&path, b"{\"format\": garbage").expect("damage");
    let e = tiervault_alerts::read_store(&path, SOURCE).expect_err("damaged");
    assert!(e.to_string().contains("damaged"), "{e}");
    assert_eq!(
        fs::read(&path).expect("read"),
        b"{\"format\": garbage",
        "left alone"
    );
    assert_eq!(list_dir(dir.path()), ["alerts.json"], "nothing set aside");
}
