//! The alert store against a simple model under random sequences of raise, clear,
//! acknowledge and reopen: same alerts, same ids, and the invariants the rest of the
//! appliance relies on, with the file reopened after every step.

use std::collections::HashSet;

use proptest::prelude::*;
use tiervault_alerts::{Ack, Alert, AlertError, AlertStore, NewAlert, Severity};

const SOURCE: &str = "ingest";
const CLASSES: [&str; 2] = ["job.failed", "pool.degraded"];
const KEYS: [&str; 3] = ["", "a", "b"];

#[derive(Debug, Clone)]
enum Op {
    Raise {
        class: usize,
        key: usize,
        severity: u8,
        text: u8,
    },
    Clear {
        class: usize,
        key: usize,
    },
    /// `pick` chooses an existing alert, or an unknown id when it lands past the end.
    Ack {
        pick: usize,
        by: u8,
    },
}

fn op() -> impl Strategy<Value = (Op, i64)> {
    let op = prop_oneof![
        4 => (0..CLASSES.len(), 0..KEYS.len(), 1u8..=10, any::<u8>()).prop_map(
            |(class, key, severity, text)| Op::Raise { class, key, severity, text }
        ),
        2 => (0..CLASSES.len(), 0..KEYS.len()).prop_map(|(class, key)| Op::Clear { class, key }),
        1 => (any::<usize>(), any::<u8>()).prop_map(|(pick, by)| Op::Ack { pick, by }),
    ];
    // Time steps include 0 and going back: the wall clock is not monotonic.
    (op, -2i64..5)
}

/// The obvious implementation: a list searched linearly.
struct Model {
    alerts: Vec<Alert>,
    next_id: u64,
    max_cleared: usize,
}

impl Model {
    fn active_index(&self, class: &str, key: &str) -> Option<usize> {
        self.alerts
            .iter()
            .position(|a| a.cleared_ns.is_none() && a.class == class && a.key == key)
    }

    fn raise(&mut self, new: NewAlert, now: i64) -> (u64, bool) {
        if let Some(i) = self.active_index(&new.class, &new.key) {
            let a = &mut self.alerts[i];
            a.last_seen_ns = now;
            a.count += 1;
            a.summary = new.summary;
            a.detail = new.detail;
            if new.severity > a.severity {
                a.severity = new.severity;
                a.ack = None;
            }
            return (a.id, false);
        }
        let id = self.next_id;
        self.next_id += 1;
        self.alerts.push(Alert {
            id,
            source: SOURCE.into(),
            class: new.class,
            key: new.key,
            severity: new.severity,
            summary: new.summary,
            detail: new.detail,
            raised_ns: now,
            last_seen_ns: now,
            count: 1,
            cleared_ns: None,
            ack: None,
        });
        (id, true)
    }

    fn clear(&mut self, class: &str, key: &str, now: i64) -> Option<u64> {
        let i = self.active_index(class, key)?;
        self.alerts[i].cleared_ns = Some(now);
        let id = self.alerts[i].id;
        loop {
            let cleared: Vec<(i64, u64)> = self
                .alerts
                .iter()
                .filter_map(|a| a.cleared_ns.map(|t| (t, a.id)))
                .collect();
            if cleared.len() <= self.max_cleared {
                break;
            }
            let oldest = cleared.iter().min().map(|&(_, id)| id);
            self.alerts.retain(|a| Some(a.id) != oldest);
        }
        Some(id)
    }
}

fn check_invariants(store: &AlertStore, max_cleared: usize) -> Result<(), TestCaseError> {
    let mut active = HashSet::new();
    let mut previous = 0;
    let mut cleared = 0;
    for alert in store.all() {
        prop_assert!(alert.id > previous, "ids strictly increasing");
        prop_assert!(alert.id < store.next_id(), "ids below next_id");
        previous = alert.id;
        if alert.is_active() {
            prop_assert!(
                active.insert((alert.class.clone(), alert.key.clone())),
                "two active alerts for {} {:?}",
                alert.class,
                alert.key
            );
        } else {
            cleared += 1;
        }
    }
    prop_assert!(cleared <= max_cleared, "{} cleared kept", cleared);
    prop_assert_eq!(store.active_count(), active.len());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn store_follows_the_model_and_survives_reopening(
        max_cleared in 0usize..4,
        ops in prop::collection::vec(op(), 1..40),
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("alerts.json");
        let (mut store, _) = AlertStore::open(&path, SOURCE, max_cleared).expect("open");
        let mut model = Model { alerts: Vec::new(), next_id: 1, max_cleared };
        let mut issued = HashSet::new();
        let mut now = 1_000i64;

        for (op, step) in ops {
            now += step;
            match op {
                Op::Raise { class, key, severity, text } => {
                    let new = NewAlert {
                        class: CLASSES[class].into(),
                        key: KEYS[key].into(),
                        severity: Severity::try_from(severity).expect("severity"),
                        summary: format!("summary {text}"),
                        detail: format!("detail {text}"),
                    };
                    let raised = store.raise(new.clone(), now).expect("raise");
                    let (id, created) = model.raise(new, now);
                    prop_assert_eq!((raised.id, raised.new), (id, created));
                    if created {
                        prop_assert!(issued.insert(id), "id {} handed out twice", id);
                    }
                }
                Op::Clear { class, key } => {
                    let cleared = store.clear(CLASSES[class], KEYS[key], now).expect("clear");
                    prop_assert_eq!(cleared, model.clear(CLASSES[class], KEYS[key], now));
                }
                Op::Ack { pick, by } => {
                    let ids: Vec<u64> = model.alerts.iter().map(|a| a.id).collect();
                    let id = ids.get(pick % (ids.len() + 1)).copied().unwrap_or(model.next_id + 3);
                    let by = format!("operator{by}");
                    match store.acknowledge(id, &by, "comment", now) {
                        Ok(()) => {
                            let alert = model.alerts.iter_mut().find(|a| a.id == id);
                            prop_assert!(alert.is_some(), "acknowledged unknown id {}", id);
                            if let Some(alert) = alert {
                                alert.ack = Some(Ack { by, at_ns: now, comment: "comment".into() });
                            }
                        }
                        Err(AlertError::NotFound(missing)) => {
                            prop_assert_eq!(missing, id);
                            prop_assert!(!ids.contains(&id), "known id {} not found", id);
                        }
                        Err(e) => return Err(TestCaseError::fail(format!("acknowledge: {e}"))),
                    }
                }
            }

            let in_memory: Vec<Alert> = store.all().cloned().collect();
            prop_assert_eq!(&in_memory, &model.alerts);
            prop_assert_eq!(store.next_id(), model.next_id);
            check_invariants(&store, max_cleared)?;

            drop(store);
            let (reopened, report) = AlertStore::open(&path, SOURCE, max_cleared).expect("reopen");
            prop_assert_eq!(report.recovered_from, None);
            let on_disk: Vec<Alert> = reopened.all().cloned().collect();
            prop_assert_eq!(&on_disk, &in_memory);
            prop_assert_eq!(reopened.next_id(), model.next_id);
            store = reopened;
        }
    }
}
