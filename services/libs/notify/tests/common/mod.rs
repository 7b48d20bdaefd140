//! Shared by the integration tests: real receivers on loopback, alerts from a real store, and
//! a tracing subscriber that captures log lines.

// Each test binary uses a different part of this module.
#![allow(dead_code)]

pub mod http;

use std::fmt::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex};

use tiervault_alerts::{Alert, AlertStore, NewAlert, Severity};
use tiervault_notify::Appliance;

pub const SOURCE: &str = "poold";
/// 2025-03-01T12:00:00Z.
pub const T0: i64 = 1_740_830_400_000_000_000;

pub fn appliance() -> Appliance {
    Appliance {
        id: "tv-0007".into(),
        hostname: "site-appliance-7".into(),
        site: "Leeds DC".into(),
        customer: "Acme Ltd".into(),
    }
}

/// An alert store of the test's service, as services keep them.
pub fn store(dir: &Path) -> AlertStore {
    AlertStore::open(&dir.join("alerts.json"), SOURCE, 100)
        .expect("alert store")
        .0
}

/// Raises an alert in `store` and returns it as stored.
pub fn raise(store: &mut AlertStore, key: &str, severity: u8, summary: &str) -> Alert {
    let raised = store
        .raise(
            NewAlert {
                class: "pool.failed".into(),
                key: key.into(),
                severity: Severity::try_from(severity).expect("severity"),
                summary: summary.into(),
                detail: format!("array {key}: 2 of 6 members missing\nsdc, sdf"),
            },
            T0,
        )
        .expect("raise");
    store.get(raised.id).expect("raised alert").clone()
}

/// A subscriber that keeps every event's fields as text, to check what logs would show.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<String>>);

impl Captured {
    pub fn text(&self) -> String {
        self.0.lock().expect("lock").clone()
    }
}

struct FieldText<'a>(&'a mut String);

impl tracing::field::Visit for FieldText<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, "{}={:?} ", field.name(), value);
    }
}

impl tracing::Subscriber for Captured {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }

    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        let mut line = String::new();
        event.record(&mut FieldText(&mut line));
        let mut all = self.0.lock().expect("lock");
        all.push_str(&line);
        all.push('\n');
    }

    fn enter(&self, _: &tracing::span::Id) {}

    fn exit(&self, _: &tracing::span::Id) {}
}
