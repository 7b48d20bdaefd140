//! One alert model for the whole appliance.
//!
//! Every Tiervault service (ingest now; pools, health and replication later) reports problems
//! the same way: an alert has a class (`job.failed`), a key that tells instances apart and
//! de-duplicates them (the job's name), a severity 1–10 that maps to the priorities of the
//! MSP's service definition ([`Severity::priority`]: 10–9 P1, 8–7 P2, 6–5 P3, 4–3 notify
//! only, 2–1 record only), raised, last-seen and cleared times, and an operator's
//! acknowledgement. Sharing one model means one set of rules, one on-disk format and one way
//! for operators and the MSP to read alerts, whichever service raised them.
//!
//! This crate owns the model and its durable per-service [`AlertStore`]: an appliance runs
//! unattended for years, so alerts must survive restarts and crashes (every change is on disk
//! before it is reported done) yet never fill the disk (cleared history is bounded, active
//! alerts capped). It deliberately does no delivery: exposing alerts on D-Bus, e-mail or
//! forwarding to the MSP are built on top of this API, and it stays a plain synchronous
//! library that any service, test or tool can use.

mod alert;
mod error;
pub mod finding;
mod severity;
mod store;

pub use alert::{clip, Ack, Alert, NewAlert, MAX_ID_LEN, MAX_TEXT_LEN};
pub use error::AlertError;
pub use finding::{changes, Finding};
pub use severity::{Priority, Severity};
pub use store::{read_store, AlertStore, OpenReport, Raised, MAX_ACTIVE};

/// The wall clock as Unix nanoseconds, the time unit of every alert field; negative before
/// 1970 and saturated after 2262, so a wrong clock never panics a service.
pub fn now_ns() -> i64 {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_nanos()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_nanos()).map_or(i64::MIN, |ns| -ns),
    }
}
