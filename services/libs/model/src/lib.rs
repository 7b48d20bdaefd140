//! Tiervault's shared model: the hardware-profile schema and its checks, the recorded
//! hardware description, and the provisioning planner that matches one against the other.
//!
//! Everything here is pure: no file is read except by the explicit `load` functions, and no
//! device is touched (reading sysfs is `tiervault-sys`'s job).
//!
//! ```
//! use std::path::Path;
//! use tiervault_model::{dedup_cache_bytes, parse_profile, GIB};
//!
//! let text = r#"
//! schema = 1
//! name = "tier-150"
//! marketing-capacity-tb = 150
//! composed-of = ["tier-100", "tier-50"]
//! "#;
//! let p = parse_profile(Path::new("tier-150.toml"), text).expect("a valid composition");
//! assert_eq!(p.name, "tier-150");
//! assert_eq!(dedup_cache_bytes(150.0), 240 * GIB);
//! ```

mod appliance;
mod capacity;
mod dedup_cache;
mod error;
mod hardware;
mod plan;
mod profile;
mod profiles;
mod size;
mod validate;

pub use appliance::{
    setting, ApplianceConfig, ApplianceError, SettingSource, APPLIANCE_SCHEMA,
    DEFAULT_APPLIANCE_CONFIG,
};
pub use capacity::{
    index_bytes_needed, index_entries, usable_bytes, usable_tib, AVG_CHUNK_BYTES,
    INDEX_ENTRY_BYTES, INDEX_RAM_SHARE_DIVISOR,
};
pub use dedup_cache::{dedup_cache_bytes, dedup_cache_gib, GB_PER_TB_BEYOND, TABLE9};
pub use error::ProfileError;
pub use hardware::{
    Bus, CpuInfo, DiskInfo, HardwareDescription, HardwareError, MemoryInfo, HARDWARE_SCHEMA,
};
pub use plan::{
    choose, plan, ArrayPlan, ChooseError, DiskRef, Mismatch, Plan, SparePlan, TierRequest,
    RAM_TOLERANCE_SIXTEENTHS,
};
pub use profile::{
    ArraySpec, Chassis, Cpu, DiskClass, DiskGroup, Memory, Network, Power, Profile, ProfileFile,
    ProfileKind, RaidLevel, Role, Server, PROFILE_SCHEMA,
};
pub use profiles::Profiles;
pub use size::{ByteSize, SizeError, GB, GIB, KIB, MIB, TB, TIB};
pub use validate::parse_profile;
