//! vault-replicad's alerts in the shared alert model: `replication/alerts.json` in the vault
//! (the service writes only under /srv/tiervault), source `replicad`, on the bus as
//! `org.tiervault.Alert1` objects under `/org/tiervault/Replication1/alerts/`.
//!
//! What to raise is decided by `tiervault_replicate::alerts::evaluate` from the status file
//! the replication loop writes; this module applies it to the store, once a second from the
//! `alerts` thread: a lag crosses its threshold with time alone, while the loop may be
//! sleeping out a retry backoff or in the middle of a long run.

use std::path::Path;

use tiervault_alerts::{clip, AlertError, AlertStore, NewAlert, Severity, MAX_TEXT_LEN};
use tiervault_bus::{AlertBoard, Audit};
use tiervault_replicate::alerts::{evaluate, AlertChange, AlertRules, CLASSES};
use tiervault_replicate::status::RunStatus;

/// The source name on every alert of this service.
pub const SOURCE: &str = "replicad";

/// The alerts file of the vault at `vault`.
pub fn path(vault: &Path) -> std::path::PathBuf {
    vault.join("replication").join("alerts.json")
}

/// Opens the alert store (setting a damaged file aside, and saying so with an alert) and its
/// board for the bus.
pub fn open(
    vault: &Path,
    history: usize,
    audit: std::sync::Arc<Audit>,
    service_path: &str,
) -> Result<AlertBoard, AlertError> {
    let (store, report) = AlertStore::open(&path(vault), SOURCE, history)?;
    let board = AlertBoard::new(store, audit, service_path);
    if let Some(p) = report.recovered_from {
        // As vault-ingestd does: what was active in the damaged file is no longer shown, so
        // an operator should know (P3: nothing about the data is wrong).
        let raised = Severity::try_from(5).and_then(|severity| {
            board.raise(NewAlert {
                class: "service.state_damaged".into(),
                key: "alerts".into(),
                severity,
                summary: "the alerts file was damaged and set aside".into(),
                detail: clip(
                    &format!("{}: {}", p.display(), report.reason.unwrap_or_default()),
                    MAX_TEXT_LEN,
                )
                .into(),
            })
        });
        if let Err(e) = raised {
            tracing::error!("raising the damaged-alerts-file alert: {e}");
        }
    }
    Ok(board)
}

/// Makes the store match the status file at `now_ns`: raises or refreshes what
/// [`evaluate`] finds, clears what ended, and clears this service's replication alerts of any
/// other target (the configuration now names another one, so nothing will clear them).
pub fn apply(board: &AlertBoard, target: &str, vault: &Path, now_ns: i64, rules: &AlertRules) {
    let status = RunStatus::load(vault);
    for change in evaluate(target, status.as_ref(), now_ns, rules) {
        let result = match change {
            AlertChange::Raise(f) => f.to_new().and_then(|new| board.ensure(new).map(|_| ())),
            AlertChange::Clear { class, key } => board.clear_active(class, &key).map(|_| ()),
        };
        if let Err(e) = result {
            tracing::error!("alert: {e}");
        }
    }
    let stale: Vec<(String, String)> = board
        .snapshot()
        .into_iter()
        .filter(|a| a.is_active() && CLASSES.contains(&a.class.as_str()) && a.key != target)
        .map(|a| (a.class, a.key))
        .collect();
    for (class, key) in stale {
        if let Err(e) = board.clear_active(&class, &key) {
            tracing::error!("clearing {class} {key}: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use tiervault_replicate::status::Lag;

    const S: i64 = 1_000_000_000;

    fn board(dir: &Path) -> AlertBoard {
        std::fs::create_dir_all(dir.join("replication")).expect("mkdir");
        let audit = Arc::new(Audit::open(&dir.join("audit.log")).expect("audit"));
        open(dir, 10, audit, "/org/tiervault/Replication1").expect("open")
    }

    fn active(b: &AlertBoard) -> Vec<(String, String, u8)> {
        b.snapshot()
            .into_iter()
            .filter(|a| a.is_active())
            .map(|a| (a.class, a.key, a.severity.get()))
            .collect()
    }

    #[test]
    fn raises_keeps_and_clears_from_the_status_file() {
        let dir = tempfile::tempdir().expect("tmp");
        let b = board(dir.path());
        let rules = AlertRules {
            lag_ns: 10 * S,
            failing_ns: 10 * S,
        };
        // No status yet: nothing.
        apply(&b, "/r", dir.path(), 100 * S, &rules);
        assert!(active(&b).is_empty());

        let mut st = RunStatus {
            target: "/r".into(),
            last_attempt_ns: 50 * S,
            last_error: Some("down".into()),
            failing_since_ns: Some(50 * S),
            ..RunStatus::default()
        };
        st.set_lag(
            &Lag {
                pending_snapshots: 1,
                oldest_pending_ns: Some(40 * S),
                pending_bytes: 5,
            },
            50 * S,
        );
        st.save(dir.path()).expect("save");
        apply(&b, "/r", dir.path(), 61 * S, &rules);
        assert_eq!(
            active(&b),
            [
                ("replication.lag".into(), "/r".into(), 7),
                ("replication.failing".into(), "/r".into(), 7)
            ]
        );
        // Same finding again: the file is not rewritten (the count stays 1).
        apply(&b, "/r", dir.path(), 61 * S, &rules);
        assert!(b.snapshot().iter().all(|a| a.count == 1));
        let on_disk = std::fs::read_to_string(path(dir.path())).expect("alerts.json");
        assert!(on_disk.contains("replicad"), "{on_disk}");
        assert!(b.snapshot().iter().all(|a| a.source == SOURCE));

        // The configuration now names another target: the old target's alerts are cleared.
        apply(&b, "/other", dir.path(), 61 * S, &rules);
        let now = active(&b);
        assert!(now.iter().all(|(_, k, _)| k == "/other"), "{now:?}");
        assert_eq!(now.len(), 2);

        // A success that caught up clears both.
        st.last_error = None;
        st.failing_since_ns = None;
        st.set_lag(&Lag::default(), 70 * S);
        st.save(dir.path()).expect("save");
        apply(&b, "/other", dir.path(), 71 * S, &rules);
        assert!(active(&b).is_empty(), "{:?}", active(&b));
    }

    #[test]
    fn a_damaged_alerts_file_is_set_aside_and_said_so() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::create_dir_all(dir.path().join("replication")).expect("mkdir");
        std::fs::write(path(dir.path()), b"{ torn").expect("write");
        let b = board(dir.path());
        let a = active(&b);
        assert_eq!(a, [("service.state_damaged".into(), "alerts".into(), 5)]);
    }
}
