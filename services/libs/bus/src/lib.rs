//! What every Tiervault service needs to be on D-Bus, in one place so the API stays coherent
//! across services: connecting and taking the service's name ([`connect`]), the named errors
//! every method returns ([`BusError`]), who called ([`Caller`]), the audit log of
//! state-changing calls ([`Audit`]), and the appliance's alerts as D-Bus objects
//! ([`AlertBoard`], interface `org.tiervault.Alert1`).
//!
//! zbus is async; the services are threads over a synchronous engine. Interface methods are
//! short and never block on the engine: long work runs on the service's own threads and is
//! reported through job objects.

mod alert;
mod audit;
mod caller;
pub mod client;
mod connect;
mod error;
mod mirror;
pub mod reply;

pub use alert::{AlertBoard, AlertObject, ALERT_INTERFACE};
pub use audit::{Audit, AuditError};
pub use caller::Caller;
pub use connect::{choose_bus, connect, serve, take_name, BusAddress, ConnectError};
pub use error::BusError;
pub use mirror::{prop, Mirror, Props};

/// Microseconds since the epoch, the unit systemd and UDisks use for timestamps on D-Bus.
pub fn usec(ns: i64) -> u64 {
    (ns.max(0) / 1000) as u64
}

/// A D-Bus object path element for any text: `[A-Za-z0-9]` kept, every other byte as `_xx`
/// (hex), as systemd escapes unit names, so names with `-` or `.` still make valid paths.
pub fn path_element(text: &str) -> String {
    if text.is_empty() {
        return "_".into();
    }
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() {
            out.push(b as char);
        } else {
            out.push_str(&format!("_{b:02x}"));
        }
    }
    out
}

/// Every service's name and object paths live under this prefix.
pub const PREFIX: &str = "org.tiervault";
