//! Tiervault's BMC reader: what the baseboard management controller knows about the
//! appliance's hardware (sensors, the System Event Log, FRU inventory, chassis status), for
//! the health service.
//!
//! - [`Bmc`]: the narrow seam the health service (and its fakes) use;
//! - [`IpmiTool`]: the implementation, driving `ipmitool` over the kernel driver
//!   (`/dev/ipmiN`) or IPMI-over-LAN ([`Transport`]), every call under a timeout;
//! - [`runner`]: how a command is run ([`runner::Runner`]), so tests can feed captured output;
//! - [`parse`]: pure parsers of ipmitool's output, tested on captures from OpenIPMI's
//!   `ipmi_sim` (`testdata/`);
//! - [`model`]: what they produce; [`config`]: the TOML-friendly transport settings;
//!   [`error`]: the typed errors.

pub mod config;
pub mod error;
pub mod ipmitool;
pub mod model;
pub mod parse;
pub mod runner;

pub use config::{IpmiConfig, LanConfig, Transport};
pub use error::{Error, Result};
pub use ipmitool::IpmiTool;
pub use model::{
    ChassisStatus, EventDirection, FruDevice, SelEntry, Sensor, SensorKind, SensorStatus,
    Thresholds,
};

/// What the health service reads from a BMC. Every method is one round of questions to the
/// BMC; none caches.
pub trait Bmc {
    /// Every sensor with its reading, status and thresholds.
    fn sensors(&self) -> Result<Vec<Sensor>>;
    /// The System Event Log, oldest first.
    fn sel(&self) -> Result<Vec<SelEntry>>;
    /// The FRU inventory: the built-in FRU device and every FRU the SDRs locate.
    fn fru(&self) -> Result<Vec<FruDevice>>;
    /// Chassis power and fault summary.
    fn chassis(&self) -> Result<ChassisStatus>;
    /// Erases the System Event Log (once its entries have been raised as alerts).
    fn sel_clear(&self) -> Result<()>;
}
