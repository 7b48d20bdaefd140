//! Why a hardware profile (or a directory of them) was refused.
//!
//! Policy: every variant names the file and, where one is at fault, the field (as a path
//! into the file: `disk-group[1].arrays[0].members`), so `vaultctl` prints one line an
//! operator can act on. `Display` never repeats the `#[source]`. All of these are permanent:
//! the file must be fixed.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("{}: cannot read", file.display())]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{line}:{column}: {message}", file.display())]
    Parse {
        file: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{}: schema: version {found} is not supported (this build reads {supported})", file.display())]
    Schema {
        file: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error("{}: name: {name:?} does not match the file name (expected {expected:?})", file.display())]
    NameMismatch {
        file: PathBuf,
        name: String,
        expected: String,
    },
    #[error("{}: {field}: missing ({why})", file.display())]
    Missing {
        file: PathBuf,
        field: &'static str,
        why: &'static str,
    },
    #[error("{}: {field}: not allowed in a composition of servers (describe the servers in their own profiles)", file.display())]
    NotInComposition { file: PathBuf, field: &'static str },
    #[error("{}: {field}: {reason}", file.display())]
    Invalid {
        file: PathBuf,
        field: String,
        reason: String,
    },
    #[error("{}: {field}: a {level} needs at least {min} disks, got {members}", file.display())]
    ArrayTooSmall {
        file: PathBuf,
        field: String,
        level: &'static str,
        members: u32,
        min: u32,
    },
    #[error("{}: {field}: {spares} hot spare(s) but the group has only {disks} disk(s)", file.display())]
    SparesExceedDisks {
        file: PathBuf,
        field: String,
        spares: u32,
        disks: u32,
    },
    #[error("{}: {field}: the arrays take {in_arrays} disk(s) and there are {spares} spare(s), which is {} but count is {count}", file.display(), in_arrays + u64::from(*spares))]
    DiskCount {
        file: PathBuf,
        field: String,
        in_arrays: u64,
        spares: u32,
        count: u32,
    },
    #[error("{}: available-capacity-tib: the data arrays give {computed} TiB (usable bytes / 2^40, rounded down), not {stated}", file.display())]
    Capacity {
        file: PathBuf,
        computed: u64,
        stated: u64,
    },
    #[error("{}: memory.index-budget: {budget} is less than the index needs ({needed}: {entries} entries of {entry_bytes} bytes, one per 128 KiB of usable capacity)", file.display())]
    IndexBudgetTooSmall {
        file: PathBuf,
        budget: String,
        needed: String,
        entries: u64,
        entry_bytes: u64,
    },
    #[error("{}: memory.index-budget: {budget} is more than a quarter of the RAM ({ram})", file.display())]
    IndexBudgetTooLarge {
        file: PathBuf,
        budget: String,
        ram: String,
    },
    #[error("{}: {field}: unknown tier {name:?} (known: {known})", file.display())]
    UnknownTier {
        file: PathBuf,
        field: String,
        name: String,
        known: String,
    },
    #[error("{}: {field}: {name:?} is itself a composition; name single-server tiers", file.display())]
    NestedComposition {
        file: PathBuf,
        field: String,
        name: String,
    },
    #[error("{}: no tier-*.toml profiles found", dir.display())]
    Empty { dir: PathBuf },
}
