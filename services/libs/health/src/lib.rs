//! Tiervault's hardware health rules, pure and testable without hardware: what a reading or a
//! report means and which alert it raises. The sources (the BMC through `tiervault-ipmi`,
//! `smartctl`) and the service that polls them live elsewhere.
//!
//! - [`contract`]: support-contract and warranty expiry reminders;
//! - [`finding`]: a condition found, the alert it is while it lasts;
//! - [`level`]: a threshold sensor's level from its limits, with hysteresis;
//! - [`sensor_rules`]: the BMC's sensors (levels with hysteresis, power supplies), chassis
//!   faults and event-log records as findings;
//! - [`smart`]: the facts of `smartctl --json` for ATA and NVMe disks;
//! - [`smart_rules`]: what those facts mean (failing, sectors, wear, heat, self-tests);
//! - [`selftest`]: when each disk runs its self-tests, staggered within an array.

pub mod contract;
pub mod finding;
pub mod level;
pub mod selftest;
pub mod sensor_rules;
pub mod smart;
pub mod smart_rules;
