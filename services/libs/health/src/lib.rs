//! Tiervault's hardware health rules, pure and testable without hardware: what a reading or a
//! report means and which alert it raises. The sources (the BMC through `tiervault-ipmi`,
//! `smartctl`) and the service that polls them live elsewhere.
//!
//! - [`level`]: a threshold sensor's level from its limits, with hysteresis;
//! - [`smart`]: the facts of `smartctl --json` for ATA and NVMe disks.

pub mod level;
pub mod smart;
