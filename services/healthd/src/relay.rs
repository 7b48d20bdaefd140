//! The other services' alerts, to the notification targets. vault-poold, vault-ingestd and
//! vault-replicad keep their alerts in the shared model (`alerts.json`), but ingest has no
//! network at all and the others have no notification targets: health is the service that
//! reaches the MSP. Each round it reads their files (read only) and spools every change since
//! the last read through a dispatcher of that service's name (its own spool directory and
//! sequence, the same targets), so an MSP's receiver sees `poold:…` events beside `healthd:…`.
//!
//! What was passed on is kept per service (`relay-<source>.json`), so a restart sends nothing
//! twice and misses nothing that changed while health was down.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tiervault_alerts::Alert;
use tiervault_notify::{Dispatcher, Transition};

use crate::config::Relay as RelayConfig;

/// What was last passed on of one alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sent {
    pub severity: u8,
    pub cleared: bool,
    pub acknowledged: bool,
}

impl Sent {
    fn of(a: &Alert) -> Sent {
        Sent {
            severity: a.severity.get(),
            cleared: !a.is_active(),
            acknowledged: a.ack.is_some(),
        }
    }
}

/// The notifications that bring the receiver from `sent` to `now`, and what was sent after
/// them. `first` is the first read ever (no state kept): the history of cleared alerts is not
/// news then, only what is active. An alert raised and cleared between two reads is sent as
/// raised, then cleared. Re-raises at the same severity are not news (as for health's own).
pub fn transitions(
    sent: &BTreeMap<u64, Sent>,
    now: &[Alert],
    first: bool,
) -> (Vec<(Alert, Transition)>, BTreeMap<u64, Sent>) {
    let mut out = Vec::new();
    let mut after = BTreeMap::new();
    for a in now {
        let cur = Sent::of(a);
        match sent.get(&a.id) {
            None if first && cur.cleared => {}
            None => {
                out.push((a.clone(), Transition::Raised));
                if cur.cleared {
                    out.push((a.clone(), Transition::Cleared));
                } else if cur.acknowledged {
                    out.push((a.clone(), Transition::Acknowledged));
                }
            }
            Some(before) if before.cleared => {}
            Some(before) => {
                if cur.severity > before.severity {
                    out.push((a.clone(), Transition::Escalated));
                }
                if cur.cleared {
                    out.push((a.clone(), Transition::Cleared));
                } else if cur.acknowledged && !before.acknowledged {
                    out.push((a.clone(), Transition::Acknowledged));
                }
            }
        }
        // Cleared alerts are remembered while the file holds them, so they are not news again.
        after.insert(a.id, cur);
    }
    (out, after)
}

/// One relayed service.
pub struct Relay {
    pub source: String,
    file: PathBuf,
    state: PathBuf,
    dispatcher: Dispatcher,
    sent: Option<BTreeMap<u64, Sent>>,
    /// Why the last read failed, if it did (shown in status.json's errors).
    pub error: Option<String>,
}

impl Relay {
    pub fn new(cfg: &RelayConfig, state_dir: &Path, dispatcher: Dispatcher) -> Relay {
        let state = state_dir.join(format!("relay-{}.json", cfg.source));
        let sent = match std::fs::read(&state) {
            Ok(b) => match serde_json::from_slice(&b) {
                Ok(s) => Some(s),
                Err(e) => {
                    // Starting over means re-sending what is active, never losing it.
                    tracing::warn!(
                        "{}: {e}; the active alerts will be sent again",
                        state.display()
                    );
                    None
                }
            },
            Err(_) => None,
        };
        Relay {
            source: cfg.source.clone(),
            file: cfg.alerts.clone(),
            state,
            dispatcher,
            sent,
            error: None,
        }
    }

    /// Reads the service's alerts and spools what changed. The state is saved only after
    /// every notification was spooled: a crash in between sends some twice, never none.
    pub fn poll(&mut self) {
        let alerts = match tiervault_alerts::read_store(&self.file, &self.source) {
            Ok(a) => a,
            Err(e) => {
                self.error = Some(e.to_string());
                return;
            }
        };
        self.error = None;
        let first = self.sent.is_none();
        let empty = BTreeMap::new();
        let (news, after) = transitions(self.sent.as_ref().unwrap_or(&empty), &alerts, first);
        for (alert, t) in &news {
            if let Err(e) = self.dispatcher.notify(alert, *t) {
                tracing::error!("queueing {}'s alert {}: {e}", self.source, alert.id);
                self.error = Some(e.to_string());
                return;
            }
        }
        if first || !news.is_empty() || self.sent.as_ref() != Some(&after) {
            let saved = serde_json::to_vec(&after)
                .map_err(std::io::Error::other)
                .and_then(|b| tiervault_sys::durable::write_atomic(&self.state, &b, 0o640));
            if let Err(e) = saved {
                tracing::error!("writing {}: {e}", self.state.display());
            }
        }
        self.sent = Some(after);
    }

    pub fn dispatcher(&mut self) -> &mut Dispatcher {
        &mut self.dispatcher
    }

    pub fn dispatcher_ref(&self) -> &Dispatcher {
        &self.dispatcher
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tiervault_alerts::{Ack, Severity};

    fn alert(id: u64, severity: u8, cleared: bool, ack: bool) -> Alert {
        Alert {
            id,
            source: "poold".into(),
            class: "pool.degraded".into(),
            key: format!("vault-data{id}"),
            severity: Severity::try_from(severity).expect("severity"),
            summary: "degraded".into(),
            detail: String::new(),
            raised_ns: 1,
            last_seen_ns: 1,
            count: 1,
            cleared_ns: cleared.then_some(2),
            ack: ack.then(|| Ack {
                by: "tv-admin".into(),
                at_ns: 2,
                comment: String::new(),
            }),
        }
    }

    fn kinds(v: &[(Alert, Transition)]) -> Vec<(u64, Transition)> {
        v.iter().map(|(a, t)| (a.id, *t)).collect()
    }

    #[test]
    fn the_first_read_sends_what_is_active_not_the_history() {
        let now = [alert(1, 9, false, false), alert(2, 7, true, false)];
        let (news, after) = transitions(&BTreeMap::new(), &now, true);
        assert_eq!(kinds(&news), [(1, Transition::Raised)]);
        assert_eq!(after.len(), 2);
        // Nothing changed: nothing is sent.
        let (news, again) = transitions(&after, &now, false);
        assert!(news.is_empty());
        assert_eq!(again, after);
    }

    #[test]
    fn every_change_is_sent_once_in_order() {
        let (_, sent) = transitions(&BTreeMap::new(), &[alert(1, 7, false, false)], true);
        let now = [
            alert(1, 9, false, true),  // escalated and acknowledged
            alert(3, 8, true, false),  // raised and cleared between two reads
            alert(4, 6, false, false), // new
        ];
        let (news, sent) = transitions(&sent, &now, false);
        assert_eq!(
            kinds(&news),
            [
                (1, Transition::Escalated),
                (1, Transition::Acknowledged),
                (3, Transition::Raised),
                (3, Transition::Cleared),
                (4, Transition::Raised),
            ]
        );
        let now = [alert(1, 9, true, true), alert(3, 8, true, false)];
        let (news, sent) = transitions(&sent, &now, false);
        assert_eq!(kinds(&news), [(1, Transition::Cleared)]);
        // Alert 4 left the file (history trimmed): forgotten, nothing sent.
        assert!(!sent.contains_key(&4));
        let (news, _) = transitions(&sent, &now, false);
        assert!(news.is_empty());
    }
}
