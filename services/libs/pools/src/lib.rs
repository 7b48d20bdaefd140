//! Tiervault's disk pools: Linux md RAID arrays laid out from the hardware tier's plan, built
//! with mdadm, watched through md sysfs and udev, and the disk-safety checks that guard every
//! destructive operation.
//!
//! - [`layout`]: what the pool must look like (arrays, spares, mounts), from the plan;
//! - [`host`]: the narrow seam to the machine ([`host::Host`]); [`fake`] simulates it for
//!   tests, `real` runs mdadm and reads sysfs;
//! - [`ops`]: the operations and their exact command lines (`--dry-run` prints them);
//! - [`provision`]: the operations still missing, idempotent, refusing disks that carry data;
//! - [`health`]: array and disk states and the alerts their changes raise;
//! - [`maintain`]: spares (faulty out, lent to a degraded sibling, blank disks in) and
//!   `pool replace`;
//! - [`parse`]: pure parsers of mdadm, /proc/mdstat, md sysfs and mountinfo; [`probe`]: disk
//!   signatures.

pub mod config;
pub mod fake;
pub mod health;
pub mod host;
pub mod layout;
pub mod maintain;
pub mod ops;
pub mod parse;
pub mod probe;
pub mod provision;
pub mod real;
