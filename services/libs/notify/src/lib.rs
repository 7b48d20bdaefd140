//! How alerts leave the appliance.
//!
//! A Tiervault appliance sits at a customer site for years and nobody logs into it: its
//! alerts ([`tiervault_alerts`]) are only worth something once they reach the MSP. This crate
//! turns alert transitions into [`Notification`]s with stable event ids, keeps them in a
//! durable, bounded [`Spool`] per target until the target confirmed them, and delivers them in
//! order to webhooks ([`WebhookTarget`]) and mail relays ([`SmtpTarget`]) with exponential
//! backoff ([`Backoff`]), through a [`Dispatcher`] that a service's loop pumps. It also renders
//! Prometheus metrics ([`prometheus`]) and serves them over a tiny HTTP server
//! ([`MetricsServer`]).
//!
//! Like the alerts crate, it is plain synchronous code: a service calls
//! [`Dispatcher::notify`] when an alert changes and [`Dispatcher::pump`] from its loop (or a
//! thread of its own) when [`Dispatcher::next_due_ns`] says so.
//!
//! # Delivery guarantees
//!
//! - **Durable**: a notification is on disk in every target's spool before `notify` returns,
//!   and leaves a spool only once its target confirmed it (HTTP 2xx, SMTP 250 after DATA).
//! - **At least once, de-duplicable**: a crash between confirmation and removal sends it
//!   again with the same `event_id`; receivers de-duplicate on it.
//! - **In order per target**: the head is retried until it succeeds; later entries wait.
//!   A permanent refusal (HTTP 4xx other than 408/429, SMTP 5xx) sets the head aside (in the
//!   spool's `set-aside/` directory, with a `.why` file) so the queue moves on.
//! - **Bounded**: over a spool's caps the least important entries go first (`record`, then
//!   `notify`, then P3, P2, P1; oldest first within each), logged with their count.
//!
//! # Notification JSON (schema `tiervault-notification/1`)
//!
//! What a webhook receives as its POST body (`Content-Type: application/json`, with the header
//! `Idempotency-Key: <event_id>`) and what a spool file holds. Field names are stable: within
//! `/1`, fields may be added but none is renamed, removed or changes meaning, so receivers
//! must ignore fields they do not know. Times are RFC 3339 in UTC with up to nanosecond
//! precision (nanosecond counts would exceed what JavaScript reads exactly).
//!
//! ```json
//! {
//!   "schema": "tiervault-notification/1",
//!   "event_id": "tv-0007:poold:42:1825361100800007",
//!   "sequence": 1825361100800007,
//!   "transition": "raised",
//!   "at": "2025-03-01T12:00:00.5Z",
//!   "appliance": {
//!     "id": "tv-0007",
//!     "hostname": "site-appliance-7",
//!     "site": "Leeds DC",
//!     "customer": "Acme Ltd"
//!   },
//!   "alert": {
//!     "id": 42,
//!     "source": "poold",
//!     "class": "pool.failed",
//!     "key": "vault-data1",
//!     "severity": 10,
//!     "priority": "P1",
//!     "summary": "array vault-data1 has failed",
//!     "detail": "2 of 6 members missing",
//!     "raised_at": "2025-03-01T12:00:00.123456789Z",
//!     "last_seen_at": "2025-03-01T12:00:00.123456789Z",
//!     "count": 1,
//!     "cleared_at": null,
//!     "ack": null
//!   }
//! }
//! ```
//!
//! | field | type | meaning |
//! |---|---|---|
//! | `schema` | string | always `tiervault-notification/1` |
//! | `event_id` | string | `<appliance id>:<source>:<alert id>:<sequence>`; unique for the appliance's life and the same on every retry and every target: the de-duplication key. Opaque: compare, do not parse |
//! | `sequence` | integer | per-source number, growing with each notification of the service (with gaps); below 2^53 |
//! | `transition` | string | `raised`, `escalated` (severity went up), `re-raised` (raised again, same or lower severity), `cleared`, `acknowledged` |
//! | `at` | string | when the transition was noticed |
//! | `appliance.id` | string | the appliance's configured id, `A-Z a-z 0-9 . _ -` |
//! | `appliance.hostname`, `.site`, `.customer` | string | from the appliance's configuration; site and customer may be empty |
//! | `alert.id` | integer | the alert's id in its service's store; stable while the alert lives |
//! | `alert.source` | string | the service that raised it (`poold`, `ingestd`, ...) |
//! | `alert.class` | string | dotted kind of problem, e.g. `pool.degraded`, `job.failed` |
//! | `alert.key` | string | which instance (array, job); may be empty |
//! | `alert.severity` | integer | 1–10, the highest seen while active |
//! | `alert.priority` | string | from the severity: `P1` (10–9), `P2` (8–7), `P3` (6–5), `notify` (4–3), `record` (2–1) |
//! | `alert.summary` | string | one line |
//! | `alert.detail` | string | free text, may span lines or be empty |
//! | `alert.raised_at`, `.last_seen_at` | string | first and latest raise |
//! | `alert.count` | integer | raises while active, at least 1 |
//! | `alert.cleared_at` | string or null | when it cleared |
//! | `alert.ack` | object or null | `{"by": string, "at": string, "comment": string}` |
//!
//! # Configuration
//!
//! [`NotifyConfig`] and [`MetricsConfig`], e.g. as sections of a service's TOML file:
//!
//! ```toml
//! [notify]
//! spool-dir = "/var/lib/tiervault/poold/notify"
//! spool = { max-entries = 10000, max-bytes = 67108864, max-set-aside = 1000 }
//!
//! [[notify.webhook]]
//! name = "psa"
//! url = "https://psa.msp.example/hooks/tiervault"
//! token-file = "/etc/tiervault/secrets/psa-token"    # Authorization: Bearer <token>
//! header = { name = "X-Api-Key", value-file = "/etc/tiervault/secrets/psa-key" }
//! min-severity = 3                                    # default: all but record-only
//! timeout-secs = 10
//! backoff = { initial-secs = 10, max-secs = 900 }
//! # ca-file = "/etc/tiervault/msp-ca.pem"             # default: Mozilla's roots
//!
//! [[notify.smtp]]
//! name = "noc-mail"
//! host = "smtp.msp.example"
//! port = 587
//! starttls = true                                     # required when logging in
//! from = "vault-7@msp.example"
//! to = ["noc@msp.example"]
//! user = "vault-7"
//! password-file = "/etc/tiervault/secrets/smtp-password"
//! min-severity = 5                                    # default: P1 to P3
//!
//! [metrics]
//! listen = "127.0.0.1:9465"                           # loopback unless allow-remote = true
//! ```
//!
//! Tokens, passwords and header values are [`Secret`]s: never in logs, errors or `Debug`
//! output; webhook URLs are shown as scheme, host and port only, since their path often
//! holds a key.

mod backoff;
mod config;
mod dispatcher;
mod error;
pub mod mail;
mod metrics_server;
mod notification;
pub mod prometheus;
mod secret;
mod sequence;
mod smtp;
mod spool;
mod target;
mod trust;
mod webhook;

pub use backoff::{Backoff, Clock, ManualClock, SystemClock};
pub use config::{HeaderConfig, MetricsConfig, NotifyConfig, SmtpConfig, WebhookConfig};
pub use dispatcher::{
    Dispatcher, Enqueued, PumpReport, Route, TargetPump, TargetStatus, MAX_DELIVERIES_PER_PUMP,
};
pub use error::NotifyError;
pub use metrics_server::{MetricsServer, ServerLimits};
pub use notification::{
    event_id, AckSnapshot, AlertSnapshot, Appliance, Notification, Schema, Transition, SCHEMA,
};
pub use prometheus::{Metric, MetricKind};
pub use secret::Secret;
pub use smtp::SmtpTarget;
pub use spool::{
    Appended, Dropped, Queued, SetAside, Spool, SpoolCaps, SpoolOpenReport, SpoolStats,
    SET_ASIDE_DIR,
};
pub use target::{DeliveryError, Target};
pub use webhook::WebhookTarget;
