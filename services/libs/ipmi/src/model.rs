//! What a BMC reports, independent of the tool that asked: sensors, SEL entries, FRU devices
//! and the chassis status. Serializable so the health service can pass them on as they are.

use serde::{Deserialize, Serialize};

/// What a sensor measures, as far as the health service's rules care.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SensorKind {
    Temperature,
    Fan,
    Voltage,
    Current,
    /// Power in watts (a PSU's input power, the system's consumption).
    Power,
    /// A power supply's state (presence, failure, AC lost): a discrete sensor.
    PowerSupply,
    Other,
}

/// A sensor's state. Threshold sensors report how far past their thresholds they are
/// (ipmitool's `ok`/`nc`/`cr`/`nr`); discrete sensors report which of their states are
/// asserted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SensorStatus {
    Ok,
    /// Past a non-critical threshold (`nc`).
    NonCritical,
    /// Past a critical threshold (`cr`).
    Critical,
    /// Past a non-recoverable threshold (`nr`).
    NonRecoverable,
    /// No reading: the sensor is absent, disabled or not scanning (`na`, `ns`), or its status
    /// could not be read (then [`Sensor::anomaly`] says why).
    NotAvailable,
    /// A discrete sensor's asserted state bits (bit n = offset n of its sensor type's table in
    /// the IPMI specification) and their names as ipmitool prints them (`Presence detected`,
    /// `Failure detected`).
    Discrete {
        bits: u16,
        states: Vec<String>,
    },
}

/// A threshold sensor's thresholds; `None` where the BMC has none (ipmitool's `na`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    /// Lower non-recoverable.
    pub lnr: Option<f64>,
    /// Lower critical.
    pub lcr: Option<f64>,
    /// Lower non-critical.
    pub lnc: Option<f64>,
    /// Upper non-critical.
    pub unc: Option<f64>,
    /// Upper critical.
    pub ucr: Option<f64>,
    /// Upper non-recoverable.
    pub unr: Option<f64>,
}

/// One sensor of the BMC's Sensor Data Records, with its current reading.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sensor {
    /// The SDR's ID string (`CPU_Temp`, `FAN1`); not unique on every BMC.
    pub name: String,
    pub kind: SensorKind,
    /// The converted reading; `None` when there is none or it was implausible.
    pub value: Option<f64>,
    /// The unit as ipmitool names it (`degrees C`, `RPM`, `Volts`, `Watts`, `discrete`), empty
    /// when the BMC gave no reading.
    pub unit: String,
    pub status: SensorStatus,
    pub thresholds: Thresholds,
    /// Why a reading, threshold or status was discarded (NaN, an absurd magnitude, an unknown
    /// status word). The row is kept so the health service still sees the sensor.
    pub anomaly: Option<String>,
}

impl Sensor {
    /// Whether a discrete state of this name is asserted (case-insensitive), e.g.
    /// `has_state("Failure detected")` on a power supply status sensor.
    pub fn has_state(&self, state: &str) -> bool {
        match &self.status {
            SensorStatus::Discrete { states, .. } => {
                states.iter().any(|s| s.eq_ignore_ascii_case(state))
            }
            _ => false,
        }
    }
}

/// Whether a SEL event is the start (assertion) or the end (deassertion) of a condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventDirection {
    Asserted,
    Deasserted,
}

/// One record of the System Event Log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SelEntry {
    /// The record ID (ipmitool prints it in hex).
    pub id: u16,
    /// The timestamp as printed: `11/23/26 08:37:15 UTC`, or `Pre-Init 0000061862` for events
    /// logged before the BMC's clock was set; empty for records without one.
    pub timestamp: String,
    /// Seconds since the Unix epoch, when the timestamp is a UTC date and time.
    pub unix_time: Option<i64>,
    /// The sensor column as printed: sensor type and name (`Fan FAN1`), type and number
    /// (`Fan #0x03`), or `OEM record c0`.
    pub sensor: String,
    /// The IPMI sensor type at the start of [`Self::sensor`], when it is a known one.
    pub sensor_type: Option<String>,
    /// The rest of [`Self::sensor`] after its type (`FAN1`, `#0x03`).
    pub sensor_name: Option<String>,
    /// What happened (`Lower Critical going low`, `Failure detected`), or an OEM record's data.
    pub event: String,
    /// `None` for OEM records, which have no direction.
    pub direction: Option<EventDirection>,
    /// Anything after the direction (`Reading 300 < Threshold 500 RPM`).
    pub detail: Option<String>,
}

/// One FRU (field-replaceable unit) device and its inventory fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FruDevice {
    /// The device's description (`Builtin FRU Device`, `PSU1_FRU`).
    pub name: String,
    /// The FRU device ID, when printed.
    pub id: Option<u8>,
    /// The fields in the order printed (`Chassis Serial`, `Board Part Number`, ...). Keys may
    /// repeat (`Board Extra`).
    pub fields: Vec<(String, String)>,
    /// What ipmitool said instead of fields (`Device not present (...)`).
    pub note: Option<String>,
}

impl FruDevice {
    /// The first field of this name (case-insensitive).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }

    pub fn chassis_serial(&self) -> Option<&str> {
        self.get("Chassis Serial")
    }

    pub fn board_serial(&self) -> Option<&str> {
        self.get("Board Serial")
    }

    pub fn product_serial(&self) -> Option<&str> {
        self.get("Product Serial")
    }
}

/// The chassis status (IPMI Get Chassis Status).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChassisStatus {
    pub power_on: bool,
    pub power_overload: bool,
    pub power_interlock: bool,
    pub main_power_fault: bool,
    pub power_control_fault: bool,
    /// `always-off`, `previous`, `always-on` or `unknown`; empty when not printed.
    pub power_restore_policy: String,
    /// What caused the last power change (`ac-failed`, `overload`, `fault`, `command`), empty
    /// when none is recorded.
    pub last_power_event: String,
    pub intrusion: bool,
    pub front_panel_lockout: bool,
    pub drive_fault: bool,
    pub fan_fault: bool,
}
