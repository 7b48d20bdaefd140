//! Routing notifications to every target's spool, and pumping the spools into the targets.

use std::fmt;
use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tiervault_alerts::{Alert, Severity};

use crate::config::check_target_name;
use crate::prometheus::Metric;
use crate::sequence::Sequence;
use crate::spool::{Dropped, Spool, SpoolCaps, SpoolOpenReport};
use crate::{
    Appliance, Backoff, Clock, DeliveryError, Notification, NotifyConfig, NotifyError, SmtpTarget,
    Target, Transition, WebhookTarget,
};

/// Most deliveries to one target in one [`Dispatcher::pump`]: a long backlog is worked off
/// over several calls so the service's loop keeps its other duties (and its watchdog).
pub const MAX_DELIVERIES_PER_PUMP: usize = 100;

const SEQUENCE_FILE: &str = "sequence";

/// How one target is fed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The target's name, also its spool directory's name (see [`NotifyConfig`]'s rules).
    pub name: String,
    /// Notifications of alerts below this severity are not spooled for this target.
    pub min_severity: Severity,
    pub backoff: Backoff,
    pub caps: SpoolCaps,
}

/// What [`Dispatcher::enqueue`] did with one notification.
#[derive(Debug)]
pub struct Enqueued {
    pub event_id: String,
    pub sequence: u64,
    /// Targets whose spool now holds it.
    pub spooled: Vec<String>,
    /// Targets whose minimum severity it is below.
    pub filtered: Vec<String>,
    /// Entries dropped (this one or older ones) to keep spools within their caps.
    pub dropped: Dropped,
    /// Targets whose spool could not take it (a full or broken disk); logged already.
    pub failed: Vec<(String, NotifyError)>,
}

/// What one [`Dispatcher::pump`] did for one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetPump {
    pub target: String,
    pub delivered: usize,
    /// Refused for good by the receiver, or found damaged in the spool: moved aside.
    pub set_aside: usize,
    /// When the target is due again after a failure (Unix nanoseconds); `None` when it is
    /// not waiting.
    pub retry_at_ns: Option<i64>,
    /// The last failure, if this pump had one.
    pub error: Option<String>,
    /// Entries still waiting.
    pub pending: usize,
}

/// What one [`Dispatcher::pump`] did, per target, for the service to log or expose.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PumpReport {
    pub targets: Vec<TargetPump>,
}

impl PumpReport {
    pub fn delivered(&self) -> usize {
        self.targets.iter().map(|t| t.delivered).sum()
    }

    pub fn set_aside(&self) -> usize {
        self.targets.iter().map(|t| t.set_aside).sum()
    }

    pub fn pending(&self) -> usize {
        self.targets.iter().map(|t| t.pending).sum()
    }

    /// The earliest time a waiting target is due again.
    pub fn next_retry_ns(&self) -> Option<i64> {
        self.targets.iter().filter_map(|t| t.retry_at_ns).min()
    }
}

impl fmt::Display for PumpReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, t) in self.targets.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(
                f,
                "{}: delivered {}, set aside {}, pending {}",
                t.target, t.delivered, t.set_aside, t.pending
            )?;
            if let Some(at) = t.retry_at_ns {
                write!(f, ", retry at {}", crate::notification::format_rfc3339(at))?;
            }
        }
        Ok(())
    }
}

/// A target's state, for status displays and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetStatus {
    pub name: String,
    pub description: String,
    pub pending: usize,
    pub pending_bytes: u64,
    pub delivered: u64,
    pub set_aside: u64,
    pub dropped: u64,
    /// Failures in a row of the head entry.
    pub failures: u32,
    pub retry_at_ns: Option<i64>,
    pub last_error: Option<String>,
}

struct Lane {
    route: Route,
    target: Box<dyn Target>,
    spool: Spool,
    failures: u32,
    retry_at_ns: Option<i64>,
    last_error: Option<String>,
    delivered: u64,
}

/// Takes a service's notifications, appends them to the spool of each target that wants
/// them, and delivers from the spools in order when pumped.
///
/// Delivery is at least once: a notification is removed from its spool only after the
/// receiver confirmed it, so a crash in between sends it again with the same `event_id`.
/// Within a target, order is kept strictly: a failing head is retried (with backoff) and
/// everything behind it waits; only a permanent refusal moves it aside. Targets are
/// independent: a dead mail relay does not hold up the webhook.
pub struct Dispatcher {
    root: PathBuf,
    source: String,
    appliance: Appliance,
    sequence: Sequence,
    clock: Arc<dyn Clock>,
    rng: fastrand::Rng,
    lanes: Vec<Lane>,
}

impl fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dispatcher")
            .field("root", &self.root)
            .field("source", &self.source)
            .field(
                "targets",
                &self
                    .lanes
                    .iter()
                    .map(|l| l.target.describe())
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Dispatcher {
    /// A dispatcher for service `source` keeping its state under `root` (created if needed):
    /// the sequence file and one spool directory per target. No targets yet.
    pub fn open(
        root: &Path,
        source: &str,
        appliance: Appliance,
        clock: Arc<dyn Clock>,
    ) -> Result<Dispatcher, NotifyError> {
        appliance.validate()?;
        if source.is_empty() || source.chars().any(char::is_control) {
            return Err(crate::error::config_error(
                "dispatcher",
                "source",
                "must be one non-empty line",
            ));
        }
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(root)
            .map_err(|source| NotifyError::SpoolDir {
                path: root.to_owned(),
                source,
            })?;
        let sequence = Sequence::open(&root.join(SEQUENCE_FILE), clock.now_ns())?;
        Ok(Dispatcher {
            root: root.to_owned(),
            source: source.to_owned(),
            appliance,
            sequence,
            clock,
            rng: fastrand::Rng::new(),
            lanes: Vec::new(),
        })
    }

    /// Opens the dispatcher and every target of `config` for service `source`; the spool
    /// reports are returned (and logged) for the service to raise an alert about damaged
    /// entries. Spool directories of targets no longer configured are logged: they may hold
    /// notifications that will now never leave.
    pub fn from_config(
        config: &NotifyConfig,
        source: &str,
        appliance: &Appliance,
        clock: Arc<dyn Clock>,
    ) -> Result<(Dispatcher, Vec<(String, SpoolOpenReport)>), NotifyError> {
        config.validate()?;
        let mut dispatcher = Dispatcher::open(&config.spool_dir, source, appliance.clone(), clock)?;
        let mut reports = Vec::new();
        for webhook in &config.webhook {
            let route = Route {
                name: webhook.name.clone(),
                min_severity: webhook.min_severity,
                backoff: webhook.backoff,
                caps: config.spool,
            };
            let target = WebhookTarget::from_config(webhook)?;
            let report = dispatcher.add_target(route, Box::new(target))?;
            reports.push((webhook.name.clone(), report));
        }
        for smtp in &config.smtp {
            let route = Route {
                name: smtp.name.clone(),
                min_severity: smtp.min_severity,
                backoff: smtp.backoff,
                caps: config.spool,
            };
            let target = SmtpTarget::from_config(smtp, appliance)?;
            let report = dispatcher.add_target(route, Box::new(target))?;
            reports.push((smtp.name.clone(), report));
        }
        for orphan in dispatcher.orphan_spools() {
            tracing::warn!(
                dir = %orphan.display(),
                "spool directory of a target that is no longer configured; its notifications will not be sent"
            );
        }
        Ok((dispatcher, reports))
    }

    /// Adds a target fed as `route` says, opening its spool `<root>/<name>`; what is already
    /// spooled there is delivered by the next pumps.
    pub fn add_target(
        &mut self,
        route: Route,
        target: Box<dyn Target>,
    ) -> Result<SpoolOpenReport, NotifyError> {
        check_target_name(&route.name)?;
        route.backoff.validate(&route.name)?;
        if self.lanes.iter().any(|l| l.route.name == route.name) {
            return Err(crate::error::config_error(
                format!("target {:?}", route.name),
                "name",
                "is used by two targets",
            ));
        }
        let (spool, report) = Spool::open(&self.root.join(&route.name), route.caps)?;
        if !spool.is_empty() {
            tracing::info!(
                target_name = %route.name,
                pending = spool.len(),
                "notifications from before the restart are waiting"
            );
        }
        self.lanes.push(Lane {
            route,
            target,
            spool,
            failures: 0,
            retry_at_ns: None,
            last_error: None,
            delivered: 0,
        });
        Ok(report)
    }

    /// Makes the jitter of backoffs reproducible (tests).
    pub fn seed_jitter(&mut self, seed: u64) {
        self.rng = fastrand::Rng::with_seed(seed);
    }

    /// Numbers and spools the notification of `transition` of `alert` (which must come from
    /// this dispatcher's service). Errors only when no notification could be made; targets
    /// whose spool failed are in [`Enqueued::failed`].
    pub fn notify(
        &mut self,
        alert: &Alert,
        transition: Transition,
    ) -> Result<Enqueued, NotifyError> {
        if alert.source != self.source {
            return Err(NotifyError::WrongSource {
                alert_id: alert.id,
                expected: self.source.clone(),
                found: alert.source.clone(),
            });
        }
        let sequence = self.sequence.allocate()?;
        let notification = Notification::new(
            alert,
            transition,
            &self.appliance,
            sequence,
            self.clock.now_ns(),
        );
        Ok(self.enqueue(&notification))
    }

    /// Spools an already built notification for every target whose minimum severity it
    /// meets. Enqueuing the same notification again is harmless to receivers that
    /// de-duplicate on `event_id`.
    pub fn enqueue(&mut self, notification: &Notification) -> Enqueued {
        let mut enqueued = Enqueued {
            event_id: notification.event_id.clone(),
            sequence: notification.sequence,
            spooled: Vec::new(),
            filtered: Vec::new(),
            dropped: Dropped::default(),
            failed: Vec::new(),
        };
        for lane in &mut self.lanes {
            let name = lane.route.name.clone();
            if notification.severity() < lane.route.min_severity {
                enqueued.filtered.push(name);
                continue;
            }
            match lane.spool.append(notification) {
                Ok(appended) => {
                    enqueued.dropped.add(appended.dropped);
                    enqueued.spooled.push(name);
                }
                Err(e) => {
                    tracing::error!(
                        target_name = %name,
                        event_id = %notification.event_id,
                        error = %e,
                        "cannot spool a notification; it will not reach this target"
                    );
                    enqueued.failed.push((name, e));
                }
            }
        }
        enqueued
    }

    /// Delivers what is due: for each target not waiting out a backoff, entries from the head
    /// of its spool until it is empty, a delivery fails, or [`MAX_DELIVERIES_PER_PUMP`] went.
    pub fn pump(&mut self) -> PumpReport {
        let mut report = PumpReport::default();
        for lane in &mut self.lanes {
            report
                .targets
                .push(pump_lane(lane, self.clock.as_ref(), &mut self.rng));
        }
        report
    }

    /// When [`Dispatcher::pump`] next has something to do: `Some(now or earlier)` when a
    /// target has entries and is not waiting, the earliest retry time when all are waiting,
    /// `None` when every spool is empty.
    pub fn next_due_ns(&self) -> Option<i64> {
        let now = self.clock.now_ns();
        self.lanes
            .iter()
            .filter(|l| !l.spool.is_empty())
            .map(|l| l.retry_at_ns.unwrap_or(now))
            .min()
    }

    pub fn targets(&self) -> Vec<TargetStatus> {
        self.lanes
            .iter()
            .map(|l| {
                let stats = l.spool.stats();
                TargetStatus {
                    name: l.route.name.clone(),
                    description: l.target.describe(),
                    pending: stats.pending,
                    pending_bytes: stats.bytes,
                    delivered: l.delivered,
                    set_aside: stats.set_aside,
                    dropped: stats.dropped,
                    failures: l.failures,
                    retry_at_ns: l.retry_at_ns,
                    last_error: l.last_error.clone(),
                }
            })
            .collect()
    }

    /// This dispatcher's own metrics, labelled by service and target, for the service's
    /// metrics closure.
    pub fn metrics(&self) -> Vec<Metric> {
        let mut pending = Metric::gauge(
            "tiervault_notify_pending",
            "Notifications waiting in a target's spool.",
        );
        let mut bytes = Metric::gauge(
            "tiervault_notify_pending_bytes",
            "Bytes of notifications waiting in a target's spool.",
        );
        let mut failing = Metric::gauge(
            "tiervault_notify_failures",
            "Failed deliveries in a row of the entry at the head of a target's spool.",
        );
        let mut delivered = Metric::counter(
            "tiervault_notify_delivered_total",
            "Notifications delivered since the service started.",
        );
        let mut aside = Metric::counter(
            "tiervault_notify_set_aside_total",
            "Notifications refused for good or found damaged, moved aside, since the service started.",
        );
        let mut dropped = Metric::counter(
            "tiervault_notify_dropped_total",
            "Notifications dropped to keep a spool within its caps since the service started.",
        );
        for status in self.targets() {
            let labels = [
                ("service", self.source.clone()),
                ("target", status.name.clone()),
            ];
            pending = pending.sample(labels.clone(), status.pending as f64);
            bytes = bytes.sample(labels.clone(), status.pending_bytes as f64);
            failing = failing.sample(labels.clone(), f64::from(status.failures));
            delivered = delivered.sample(labels.clone(), status.delivered as f64);
            aside = aside.sample(labels.clone(), status.set_aside as f64);
            dropped = dropped.sample(labels, status.dropped as f64);
        }
        vec![pending, bytes, failing, delivered, aside, dropped]
    }

    /// Directories under the root that are not a configured target's spool.
    pub fn orphan_spools(&self) -> Vec<PathBuf> {
        let Ok(listing) = fs::read_dir(&self.root) else {
            return Vec::new();
        };
        listing
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter(|e| {
                let name = e.file_name();
                !self.lanes.iter().any(|l| name == l.route.name.as_str())
            })
            .map(|e| e.path())
            .collect()
    }
}

fn pump_lane(lane: &mut Lane, clock: &dyn Clock, rng: &mut fastrand::Rng) -> TargetPump {
    let mut out = TargetPump {
        target: lane.route.name.clone(),
        delivered: 0,
        set_aside: 0,
        retry_at_ns: None,
        error: None,
        pending: lane.spool.len(),
    };
    if lane.spool.is_empty() {
        lane.failures = 0;
        lane.retry_at_ns = None;
        return out;
    }
    if let Some(at) = lane.retry_at_ns {
        let now = clock.now_ns();
        // A retry time beyond the longest backoff means the clock stepped back: go now
        // rather than wait out the step.
        let longest = secs_ns(lane.route.backoff.max_secs);
        if now < at && at - now <= longest {
            out.retry_at_ns = Some(at);
            return out;
        }
    }
    let aside_before = lane.spool.stats().set_aside;
    for _ in 0..MAX_DELIVERIES_PER_PUMP {
        let queued = match lane.spool.head() {
            Ok(Some(queued)) => queued,
            Ok(None) => break,
            Err(e) => {
                fail(lane, &mut out, clock, rng, e.to_string(), None);
                break;
            }
        };
        match lane.target.deliver(&queued.notification) {
            Ok(()) => {
                lane.delivered += 1;
                out.delivered += 1;
                lane.failures = 0;
                lane.retry_at_ns = None;
                lane.last_error = None;
                tracing::debug!(
                    target_name = %lane.route.name,
                    event_id = %queued.notification.event_id,
                    "notification delivered"
                );
                if let Err(e) = lane.spool.complete(queued.seq) {
                    // Delivered but still spooled: it would be sent again (same event id).
                    // Waiting keeps a broken disk from turning into a flood of duplicates.
                    fail(lane, &mut out, clock, rng, e.to_string(), None);
                    break;
                }
            }
            Err(DeliveryError::Permanent { target, reason }) => {
                let why = format!("{target}: {reason}");
                tracing::warn!(
                    target_name = %lane.route.name,
                    event_id = %queued.notification.event_id,
                    reason = %why,
                    "the receiver refused a notification for good; setting it aside"
                );
                lane.last_error = Some(why.clone());
                out.error = Some(why.clone());
                if let Err(e) = lane.spool.set_aside(queued.seq, &why) {
                    fail(lane, &mut out, clock, rng, e.to_string(), None);
                    break;
                }
            }
            Err(error @ DeliveryError::Retryable { .. }) => {
                let retry_after = match &error {
                    DeliveryError::Retryable { retry_after, .. } => *retry_after,
                    DeliveryError::Permanent { .. } => None,
                };
                fail(lane, &mut out, clock, rng, error.to_string(), retry_after);
                break;
            }
        }
    }
    out.set_aside = (lane.spool.stats().set_aside - aside_before) as usize;
    out.pending = lane.spool.len();
    if out.delivered > 0 {
        tracing::info!(
            target_name = %lane.route.name,
            delivered = out.delivered,
            pending = out.pending,
            "notifications delivered"
        );
    }
    out
}

/// Records a failure of the head entry and schedules the next try.
fn fail(
    lane: &mut Lane,
    out: &mut TargetPump,
    clock: &dyn Clock,
    rng: &mut fastrand::Rng,
    error: String,
    retry_after: Option<Duration>,
) {
    lane.failures = lane.failures.saturating_add(1);
    let delay = lane.route.backoff.delay(lane.failures, retry_after, rng);
    let at = clock
        .now_ns()
        .saturating_add(i64::try_from(delay.as_nanos()).unwrap_or(i64::MAX));
    lane.retry_at_ns = Some(at);
    tracing::warn!(
        target_name = %lane.route.name,
        failures = lane.failures,
        retry_in_secs = delay.as_secs_f64(),
        pending = lane.spool.len(),
        error = %error,
        "notification delivery failed; will retry"
    );
    lane.last_error = Some(error.clone());
    out.error = Some(error);
    out.retry_at_ns = Some(at);
}

fn secs_ns(secs: u64) -> i64 {
    i64::try_from(u128::from(secs) * 1_000_000_000).unwrap_or(i64::MAX)
}
