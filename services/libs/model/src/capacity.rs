//! Usable capacity of a server's data arrays and the dedup index's memory rule.
//!
//! Capacity rule: each array gives (members − parity) × disk size, where parity is 1 for
//! RAID5, 2 for RAID6, half the members for RAID10 and all but one for RAID1; disk sizes are
//! the profile's vendor sizes (1 TB = 10^12 bytes). Only the data disk groups count (the
//! OS/dedup-DB array holds no backup data). In TiB (2^40 bytes), rounded down, this is the
//! seed's "Available Capacity" row.

use crate::profile::{Role, Server};
use crate::size::{ByteSize, TIB};

/// The average chunk size the index is sized for (FastCDC's target, `vaultctl init` default).
pub const AVG_CHUNK_BYTES: u64 = 128 * 1024;
/// The most RAM one index entry may take.
pub const INDEX_ENTRY_BYTES: u64 = 4;
/// The index budget must stay at or below RAM / this.
pub const INDEX_RAM_SHARE_DIVISOR: u64 = 4;

/// Usable bytes of the server's data arrays.
pub fn usable_bytes(server: &Server) -> u64 {
    server
        .disk_groups
        .iter()
        .filter(|g| g.role == Role::Data)
        .flat_map(|g| {
            g.arrays.iter().map(move |a| {
                u64::from(a.count)
                    .saturating_mul(u64::from(a.level.data_members(a.members)))
                    .saturating_mul(g.size.0)
            })
        })
        .fold(0u64, u64::saturating_add)
}

/// Usable capacity in TiB, rounded down.
pub fn usable_tib(server: &Server) -> u64 {
    usable_bytes(server) / TIB
}

/// Index entries a full server holds: one per average chunk of usable capacity.
pub fn index_entries(usable: u64) -> u64 {
    usable.div_ceil(AVG_CHUNK_BYTES)
}

/// The least index budget a server of this usable capacity needs.
pub fn index_bytes_needed(usable: u64) -> ByteSize {
    ByteSize(index_entries(usable).saturating_mul(INDEX_ENTRY_BYTES))
}
