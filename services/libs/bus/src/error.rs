//! Named D-Bus errors, so a client (busctl, gdbus, a support script) can tell "no such job"
//! from "not allowed" without parsing messages.

/// Errors returned by Tiervault's D-Bus methods, as `org.tiervault.Error.<Variant>`.
#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "org.tiervault.Error")]
pub enum BusError {
    #[zbus(error)]
    ZBus(zbus::Error),
    /// The named object (job, snapshot, alert, run) does not exist.
    NotFound(String),
    /// An argument is malformed or out of range.
    InvalidArgument(String),
    /// A path lies outside the roots the service is configured to read or write.
    PathNotAllowed(String),
    /// The operation conflicts with one already running.
    Busy(String),
    /// The service is not configured for this operation.
    NotConfigured(String),
    /// The operation was accepted but failed.
    Failed(String),
}
