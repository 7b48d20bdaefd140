//! The pool service's state and what it does: read the machine, derive array and disk
//! states, raise and clear alerts on changes, take the automatic steps (faulty members out,
//! spares lent or added), start due scrubs, and the operator's provision / replace / scrub.
//! One mutation at a time (`ops`); readers take the latest status.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tiervault_alerts::{NewAlert, Severity};
use tiervault_bus::{AlertBoard, Audit, BusError, Caller};
use tiervault_pools::health::{alert_changes, pool_status, AlertChange, ArrayState, PoolStatus};
use tiervault_pools::host::{Host, Observed};
use tiervault_pools::layout::Layout;
use tiervault_pools::maintain;
use tiervault_pools::ops::Op;
use tiervault_pools::provision::{self, Consent, Report};

use crate::watch::Poker;
use tiervault_pools::config::PoolConfig as Config;

pub struct Setup {
    pub cfg: Config,
    pub layout: Layout,
    pub tier: String,
    pub host: Box<dyn Host + Send + Sync>,
    pub alerts: AlertBoard,
    pub audit: Arc<Audit>,
    pub poker: Option<Poker>,
}

pub struct Service {
    pub cfg: Config,
    pub layout: Layout,
    pub tier: String,
    host: Box<dyn Host + Send + Sync>,
    pub alerts: AlertBoard,
    pub audit: Arc<Audit>,
    poker: Option<Poker>,
    state: Mutex<State>,
    /// Held while the machine is changed, so steps never interleave.
    ops: Mutex<()>,
}

#[derive(Default)]
struct State {
    obs: Observed,
    status: Option<PoolStatus>,
    /// When each array entered its current state (for the log's delays).
    since: BTreeMap<String, Instant>,
    scrubs: ScrubRecord,
}

/// When each array's last scrub started (Unix seconds), kept in `scrub.json`.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct ScrubRecord {
    pub started: BTreeMap<String, u64>,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The caller the service's own steps are audited as.
pub fn service_caller() -> Caller {
    Caller {
        sender: String::new(),
        uid: None,
        pid: Some(std::process::id()),
        user: "vault-poold".into(),
    }
}

impl Service {
    pub fn new(s: Setup) -> Service {
        let scrubs = std::fs::read(s.cfg.state_dir.join("scrub.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Service {
            cfg: s.cfg,
            layout: s.layout,
            tier: s.tier,
            host: s.host,
            alerts: s.alerts,
            audit: s.audit,
            poker: s.poker,
            state: Mutex::new(State {
                scrubs,
                ..State::default()
            }),
            ops: Mutex::new(()),
        }
    }

    pub fn status(&self) -> Option<PoolStatus> {
        lock(&self.state).status.clone()
    }

    /// The md devices to watch (`md127`, ...).
    pub fn md_devs(&self) -> Vec<String> {
        lock(&self.state)
            .obs
            .arrays
            .iter()
            .map(|a| a.dev.clone())
            .collect()
    }

    /// Whether an array is syncing (progress is then refreshed more often).
    pub fn syncing(&self) -> bool {
        lock(&self.state).status.as_ref().is_some_and(|s| {
            s.arrays.iter().any(|a| {
                matches!(
                    a.state,
                    ArrayState::Rebuilding | ArrayState::Resyncing | ArrayState::Checking
                )
            })
        })
    }

    fn poke(&self) {
        if let Some(p) = &self.poker {
            p.poke();
        }
    }

    fn audit(
        &self,
        caller: &Caller,
        member: &str,
        args: serde_json::Value,
        result: &Result<String, String>,
    ) {
        if let Err(e) = self.audit.record(
            caller,
            crate::dbus::ROOT,
            crate::dbus::MANAGER_INTERFACE,
            member,
            args,
            result,
        ) {
            tracing::error!("{e}");
        }
    }

    /// Runs one step the service decided on itself, logged and audited.
    fn run_own(&self, op: &Op, why: &str) {
        tracing::warn!("{why}: {op}");
        let result = self
            .host
            .run(op)
            .map(|()| op.to_string())
            .map_err(|e| e.to_string());
        if let Err(e) = &result {
            tracing::error!("{op}: {e}");
        }
        self.audit(
            &service_caller(),
            "Automatic",
            serde_json::json!({ "op": op.to_string(), "why": why }),
            &result,
        );
    }

    /// Assembles and mounts what exists (the service's start).
    pub fn bring_up(&self) -> Result<Report, provision::ProvisionError> {
        let _ops = lock(&self.ops);
        provision::bring_up(
            self.host.as_ref(),
            &self.layout,
            &self.cfg.targets(),
            &mut |op| tracing::info!("bring-up: {op}"),
        )
    }

    /// Reads the machine again, updates states and alerts, takes the automatic steps.
    /// Returns whether anything changed.
    pub fn refresh(&self) -> Result<bool, tiervault_pools::host::HostError> {
        let _ops = lock(&self.ops);
        let mut obs = self.host.observe()?;
        if self.cfg.auto_spare {
            let status = pool_status(&self.layout, &obs);
            let acts = maintain::automatic(&self.layout, &obs, &status);
            if !acts.is_empty() {
                for a in &acts {
                    self.run_own(&a.op, &a.why);
                }
                obs = self.host.observe()?;
            }
        }
        let status = pool_status(&self.layout, &obs);
        let mut st = lock(&self.state);
        let changed = st.status.as_ref() != Some(&status) || st.obs != obs;
        let before = st.status.take();
        self.log_transitions(&mut st, before.as_ref(), &status);
        for change in alert_changes(before.as_ref(), &status) {
            self.apply_alert(change);
        }
        st.obs = obs;
        st.status = Some(status);
        drop(st);
        if changed {
            self.save_status();
        }
        self.start_due_scrub();
        Ok(changed)
    }

    /// `status.json` in the state directory: the pool and its active alerts, replaced
    /// atomically on every change, for support bundles and for scripts on a machine
    /// without a bus (the VM tests read it).
    fn save_status(&self) {
        let Some(status) = self.status() else { return };
        let alerts: Vec<serde_json::Value> = self
            .alerts
            .snapshot()
            .iter()
            .filter(|a| a.is_active())
            .map(|a| {
                serde_json::json!({
                    "class": a.class,
                    "key": a.key,
                    "severity": a.severity.get(),
                    "summary": a.summary,
                    "raised_ns": a.raised_ns,
                })
            })
            .collect();
        let doc = serde_json::json!({
            "tier": self.tier,
            "arrays": status.arrays,
            "disks": status.disks,
            "alerts": alerts,
        });
        let path = self.cfg.state_dir.join("status.json");
        let bytes = serde_json::to_vec(&doc).unwrap_or_default();
        if let Err(e) = tiervault_sys::durable::write_atomic(&path, &bytes, 0o644) {
            tracing::error!("{}: {e}", path.display());
        }
    }

    fn log_transitions(&self, st: &mut State, before: Option<&PoolStatus>, now: &PoolStatus) {
        for a in &now.arrays {
            let prev = before.and_then(|b| b.array(&a.name)).map(|p| p.state);
            if prev == Some(a.state) {
                continue;
            }
            let held = st
                .since
                .insert(a.name.clone(), Instant::now())
                .map(|t| format!(" after {:.1} s", t.elapsed().as_secs_f64()))
                .unwrap_or_default();
            match prev {
                Some(p) => tracing::warn!(
                    array = a.name.as_str(),
                    "{}: {} → {}{held}",
                    a.name,
                    p.name(),
                    a.state.name()
                ),
                None => tracing::info!(array = a.name.as_str(), "{}: {}", a.name, a.state.name()),
            }
        }
        for d in &now.disks {
            let prev = before.and_then(|b| b.disk(&d.serial)).map(|p| p.state);
            if prev.is_some() && prev != Some(d.state) {
                tracing::warn!(
                    disk = d.serial.as_str(),
                    "disk {} (/dev/{}): {} → {}",
                    d.serial,
                    d.device,
                    prev.map_or("?", |p| p.name()),
                    d.state.name()
                );
            }
        }
    }

    fn apply_alert(&self, change: AlertChange) {
        let result = match change {
            AlertChange::Raise {
                class,
                key,
                severity,
                summary,
                detail,
            } => {
                let Ok(severity) = Severity::try_from(severity) else {
                    return;
                };
                self.alerts
                    .ensure(NewAlert {
                        class: class.into(),
                        key,
                        severity,
                        summary,
                        detail,
                    })
                    .map(|_| ())
            }
            AlertChange::Clear { class, key } => self.alerts.clear_active(class, &key).map(|_| ()),
        };
        if let Err(e) = result {
            tracing::error!("alert: {e}");
        }
    }

    /// Starts the scrub of one array whose last one is older than `scrub-every-days`, when
    /// nothing else syncs (a scrub reads every disk; one at a time keeps backups fast).
    fn start_due_scrub(&self) {
        let days = self.cfg.scrub_every_days;
        if days == 0 || self.syncing() {
            return;
        }
        let now = now_secs();
        let due = {
            let st = lock(&self.state);
            let Some(status) = &st.status else { return };
            status
                .arrays
                .iter()
                .filter(|a| a.state == ArrayState::Healthy && !a.dev.is_empty())
                .find(|a| {
                    st.scrubs
                        .started
                        .get(&a.name)
                        .is_none_or(|&t| now.saturating_sub(t) >= u64::from(days) * 86_400)
                })
                .map(|a| (a.name.clone(), a.dev.clone()))
        };
        let Some((name, dev)) = due else { return };
        if lock(&self.state).scrubs.started.is_empty() {
            // First start on this appliance: count from now instead of scrubbing every array
            // at once right after provisioning.
            let names: Vec<String> = self.layout.arrays.iter().map(|a| a.name.clone()).collect();
            let mut st = lock(&self.state);
            for n in names {
                st.scrubs.started.insert(n, now);
            }
            let record = st.scrubs.clone();
            drop(st);
            self.save_scrubs(&record);
            return;
        }
        let op = Op::SyncAction {
            dev,
            action: "check".into(),
        };
        self.run_own(&op, &format!("monthly scrub of {name}"));
        let record = {
            let mut st = lock(&self.state);
            st.scrubs.started.insert(name, now);
            st.scrubs.clone()
        };
        self.save_scrubs(&record);
    }

    fn save_scrubs(&self, record: &ScrubRecord) {
        let path = self.cfg.state_dir.join("scrub.json");
        let bytes = serde_json::to_vec_pretty(record).unwrap_or_default();
        if let Err(e) = tiervault_sys::durable::write_atomic(&path, &bytes, 0o640) {
            tracing::error!("{}: {e}", path.display());
        }
    }

    // --- operator requests (from the bus) ---

    /// `vaultctl pool provision` through the service.
    pub fn provision(
        &self,
        caller: &Caller,
        dry_run: bool,
        wipe: Vec<String>,
    ) -> Result<Report, BusError> {
        let consent = Consent {
            wipe: wipe.iter().cloned().collect(),
        };
        let result = {
            let _ops = lock(&self.ops);
            provision::provision(
                self.host.as_ref(),
                &self.layout,
                &consent,
                &self.cfg.targets(),
                dry_run,
                &mut |op| {
                    if !dry_run {
                        tracing::warn!("provision: {op}")
                    }
                },
            )
        };
        let shown = result
            .as_ref()
            .map(|r| format!("{} operations", r.ops.len()))
            .map_err(|e| e.to_string());
        self.audit(
            caller,
            "Provision",
            serde_json::json!({ "dry_run": dry_run, "wipe": wipe }),
            &shown,
        );
        self.poke();
        result.map_err(|e| match e {
            provision::ProvisionError::Refused { refusals } => {
                BusError::InvalidArgument(refusals.join("\n"))
            }
            other => BusError::Failed(other.to_string()),
        })
    }

    /// `vaultctl pool replace OLD NEW`.
    pub fn replace(
        &self,
        caller: &Caller,
        old: &str,
        new: &str,
        wipe: bool,
    ) -> Result<Vec<String>, BusError> {
        let result = (|| {
            let _ops = lock(&self.ops);
            let obs = self
                .host
                .observe()
                .map_err(|e| BusError::Failed(e.to_string()))?;
            let status = pool_status(&self.layout, &obs);
            let ops = maintain::replace(&self.layout, &obs, &status, old, new, wipe)
                .map_err(|e| BusError::InvalidArgument(e.to_string()))?;
            let mut done = Vec::new();
            for op in &ops {
                tracing::warn!("replace {old} with {new}: {op}");
                self.host
                    .run(op)
                    .map_err(|e| BusError::Failed(format!("{op}: {e}")))?;
                done.push(op.to_string());
            }
            Ok(done)
        })();
        let shown = result
            .as_ref()
            .map(|d| d.join("; "))
            .map_err(|e: &BusError| e.to_string());
        self.audit(
            caller,
            "Replace",
            serde_json::json!({ "old": old, "new": new, "wipe": wipe }),
            &shown,
        );
        self.poke();
        result
    }

    /// Starts (or with `stop`, stops) a scrub of `array`.
    pub fn scrub(&self, caller: &Caller, array: &str, stop: bool) -> Result<String, BusError> {
        let result = (|| {
            let _ops = lock(&self.ops);
            let obs = self
                .host
                .observe()
                .map_err(|e| BusError::Failed(e.to_string()))?;
            let md = obs.array_by_name(array).ok_or_else(|| {
                BusError::NotFound(format!(
                    "array {array}: not assembled (arrays: {})",
                    obs.arrays
                        .iter()
                        .map(|a| a.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
            if !stop && md.sync_action != "idle" {
                return Err(BusError::Busy(format!(
                    "array {array} is busy ({}); scrub it when that is done",
                    md.sync_action
                )));
            }
            let op = Op::SyncAction {
                dev: md.dev.clone(),
                action: if stop { "idle" } else { "check" }.into(),
            };
            self.host
                .run(&op)
                .map_err(|e| BusError::Failed(format!("{op}: {e}")))?;
            Ok(op.to_string())
        })();
        if result.is_ok() && !stop {
            let mut st = lock(&self.state);
            st.scrubs.started.insert(array.to_owned(), now_secs());
            let record = st.scrubs.clone();
            drop(st);
            self.save_scrubs(&record);
        }
        let shown = result.as_ref().map(Clone::clone).map_err(|e| e.to_string());
        self.audit(
            caller,
            if stop { "StopScrub" } else { "Scrub" },
            serde_json::json!({ "array": array }),
            &shown,
        );
        self.poke();
        result
    }
}
