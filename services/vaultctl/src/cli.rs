//! Command-line definitions. The contract is documented in docs/cli.md.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Operate a Tiervault vault directly (embedded mode: no daemons, no root).
///
/// A vault is a directory holding encrypted, deduplicated, compressed snapshots of file trees
/// and streams. Every command opens it with the passphrase from $VAULT_PASSPHRASE,
/// --passphrase-file or a prompt, or with --key-file.
///
/// Exit codes: 0 success; 1 failure (nothing committed); 2 usage error; 3 committed with
/// warnings (files skipped); 4 verify found damage.
#[derive(Debug, Parser)]
#[command(
    name = "vaultctl",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Accepted before or after the subcommand; listed under their own heading so that each
/// command's `--help` shows its own options first.
#[derive(Debug, Args, Clone)]
#[command(next_help_heading = "Global options")]
pub struct Global {
    /// Vault directory [default: $VAULT_DIR, else ./vault]
    #[arg(long, global = true, env = "VAULT_DIR", value_name = "DIR")]
    pub vault: Option<PathBuf>,
    /// Print machine-readable JSON on stdout
    #[arg(long, global = true)]
    pub json: bool,
    /// No progress bars or human summaries; errors still go to stderr
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// Read the passphrase from the first line of FILE
    #[arg(long, global = true, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
    /// Use the raw key in FILE instead of a passphrase (init creates FILE when absent)
    #[arg(long, global = true, value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// Memory the chunk index may hold, in MiB (default: the hardware tier's index budget
    /// from the appliance config, else 256; at least 16)
    #[arg(
        long,
        global = true,
        env = "VAULT_INDEX_MIB",
        value_name = "MIB",
        value_parser = clap::value_parser!(u64).range(16..)
    )]
    pub index_mib: Option<u64>,
    /// The appliance config `vaultctl provision` wrote: the tier's index budget and dedup
    /// cache size (absent in embedded mode)
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        env = "VAULT_APPLIANCE_CONFIG",
        default_value = tiervault_model::DEFAULT_APPLIANCE_CONFIG
    )]
    pub appliance_config: PathBuf,
    /// Go through the appliance's services over D-Bus: `system`, or a bus address such as
    /// unix:path=/run/test/bus. Without it, vaultctl uses the services when the ingest
    /// service's name is on the system bus and no --vault is given, and opens the vault
    /// itself otherwise (embedded mode). `job` and `alert` always need the service.
    #[arg(long, global = true, env = "VAULT_BUS", value_name = "ADDRESS")]
    pub bus: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The ingest service's backup jobs: list, start, history, show, cancel (needs the service)
    #[command(subcommand)]
    Job(JobCmd),
    /// The appliance's alerts: list and acknowledge (needs the service)
    #[command(subcommand)]
    Alert(AlertCmd),
    /// Create a new, encrypted vault
    Init(InitArgs),
    /// Back up file trees, standard input or a disk image into a new snapshot
    Backup(BackupArgs),
    /// List snapshots, oldest first
    Snapshots(SnapshotsArgs),
    /// List the entries of a snapshot
    Ls(LsArgs),
    /// Restore a snapshot (or part of it) into a directory or in place
    Restore(RestoreArgs),
    /// Write one file of a snapshot to standard output
    Cat(CatArgs),
    /// Show what changed between two snapshots
    Diff(DiffArgs),
    /// Read and authenticate every stored byte and report damage
    Verify(VerifyArgs),
    /// Show logical and stored sizes, dedup and compression ratios
    Stats,
    /// Copy snapshots to a replica directory, sending only the blobs it lacks
    Replicate(ReplicateArgs),
    /// Recreate the vault (or add missing snapshots to it) from the remote vault, e.g. after
    /// losing it entirely; then restore from it as usual
    Pull(PullArgs),
    /// Write snapshots to a directory (a transfer drive): everything, or with --lacking-on only
    /// the blobs and snapshots a remote lacks (import it there with `vault-remoted import`)
    Export(ExportArgs),
    /// Ingest an export directory (e.g. a transfer drive shipped from the remote) into this vault
    Import(ImportArgs),
    /// Replication state written by vault-replicad: lag, last success, last error
    #[command(subcommand)]
    Replication(ReplicationCmd),
    /// Remove snapshots, by id or by keep rules (--keep-last, --keep-daily, ...)
    Forget(ForgetArgs),
    /// Delete the packs no snapshot needs any more, while backups keep running
    Gc(GcArgs),
    /// Measure backup and restore speed against the stage ceiling and restic
    Bench(crate::bench::BenchArgs),
    /// Initialise ./vault, back up a tree, list, restore, verify and print the stats
    Quickstart(QuickstartArgs),
    /// Match this machine's disks, RAM and CPUs against a hardware tier, print the plan
    /// (arrays, hot spares, index memory, cache size) and record it in the appliance config
    #[command(after_long_help = PROVISION_EXAMPLES)]
    Provision(ProvisionArgs),
    /// Hardware inventory as provisioning sees it
    #[command(subcommand)]
    Hw(HwCmd),
    /// The chunk index cache: its state, or a rebuild from the index parts
    #[command(subcommand)]
    Index(IndexCmd),
    /// The vault's data directories (one per data array): list, add, mark a replaced one
    #[command(subcommand)]
    DataDir(DataDirCmd),
    /// The vault's keys (passphrases and key files): list, add, remove, replace one
    #[command(subcommand, after_long_help = KEY_EXAMPLES)]
    Key(KeyCmd),
    /// The disk pool: md RAID arrays from the tier's plan — status, provision, replace, scrub
    #[command(subcommand)]
    Pool(crate::cmd::pool::PoolCmd),
    /// The hardware's health: BMC sensors, chassis, FRU inventory, SMART of every disk,
    /// active alerts; clearing the BMC's event log
    #[command(subcommand)]
    Health(crate::cmd::health::HealthCmd),
    /// Collect versions, configs (secrets redacted), service state, the journal and the
    /// hardware inventory into one .tar.zst to attach to a support ticket
    #[command(after_long_help = crate::cmd::bundle::HELP)]
    SupportBundle(crate::cmd::bundle::SupportBundleArgs),
}

#[derive(Debug, Subcommand)]
pub enum IndexCmd {
    /// Show the index cache (entries, size on disk, parts absorbed) and the memory budget
    Status,
    /// Rebuild the index cache from the index parts (after damage, or to compact it); the
    /// vault stays usable meanwhile
    Rebuild,
}

const KEY_EXAMPLES: &str = "\
Examples:
  vaultctl key list                               # needs no secret
  VAULT_NEW_PASSPHRASE='the new one' vaultctl key passwd     # opens with $VAULT_PASSPHRASE
  vaultctl key add --new-key-file /root/vault.key # a second way in (created when absent)
  vaultctl --key-file /root/vault.key key remove 3f2a...     # by name, from `key list`

Every key wraps the same master key, so adding or removing one rewrites no data. The new
passphrase comes from --new-passphrase-file, else $VAULT_NEW_PASSPHRASE, else a prompt (asked
twice). A key is never removed by a command opened with it, and the last key never: a mistyped
new passphrase cannot lock the vault. `passwd` adds the new key before it removes the old.
New passphrases get Argon2id calibrated to --kdf-time-ms on this machine, so `key passwd` also
brings the parameters of an older key up to date.";

const PROVISION_EXAMPLES: &str = "\
Examples:
  # What would this machine become? Change nothing.
  vaultctl provision --tier auto --dry-run

  # Provision as tier-20 (exit 1 with one line naming what is missing if it does not fit)
  vaultctl provision --tier tier-20

  # Plan against a recorded description (from `vaultctl hw dump`), as JSON
  vaultctl hw dump > server.toml
  vaultctl provision --hardware server.toml --dry-run --json

Provisioning never touches a disk: it plans which disks (by serial) form which array and which
are hot spares, and writes that plan to the appliance config (TOML, written atomically), which
the pools and ingest services read. Exit codes: 0 planned (and recorded unless --dry-run);
1 the hardware does not fit (one line: the tier, what it needs, what was found), or a bad
profile, description or config path.";

const HW_DUMP_EXAMPLES: &str = "\
Examples:
  vaultctl hw dump                      # this machine, TOML
  vaultctl hw dump --json
  vaultctl hw dump --sysfs-root /tmp/fake/sys --proc-root /tmp/fake/proc > fixture.toml

The output is the recorded hardware description (docs/hardware.md) that
`vaultctl provision --hardware FILE` reads. Loop, ram, zram, dm, md, nbd and optical devices
are left out.";

/// Where the hardware description comes from.
#[derive(Debug, Args)]
pub struct HwSource {
    /// The sysfs root to read disks from
    #[arg(long, value_name = "DIR", default_value = "/sys")]
    pub sysfs_root: PathBuf,
    /// The procfs root to read meminfo and cpuinfo from
    #[arg(long, value_name = "DIR", default_value = "/proc")]
    pub proc_root: PathBuf,
}

#[derive(Debug, Args)]
pub struct ProvisionArgs {
    /// The tier: "auto" (the largest tier this hardware satisfies) or a profile name (tier-5,
    /// tier-10, ..., tier-100)
    #[arg(long, value_name = "auto|tier-N", default_value = "auto")]
    pub tier: String,
    /// Print the plan; write nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Read a recorded hardware description (TOML, or JSON when FILE ends in .json) instead of
    /// this machine's sysfs and procfs
    #[arg(long, value_name = "FILE")]
    pub hardware: Option<PathBuf>,
    /// Directory of hardware profiles (tier-*.toml)
    #[arg(
        long,
        value_name = "DIR",
        env = "VAULT_PROFILES",
        default_value = "/usr/share/tiervault/hardware-profiles"
    )]
    pub profiles: PathBuf,
    /// The appliance config to write
    #[arg(
        long,
        value_name = "FILE",
        env = "VAULT_APPLIANCE_CONFIG",
        default_value = tiervault_model::DEFAULT_APPLIANCE_CONFIG
    )]
    pub config: PathBuf,
    #[command(flatten)]
    pub source: HwSource,
}

#[derive(Debug, Subcommand)]
pub enum HwCmd {
    /// Print this machine's hardware description (disks from sysfs, RAM and CPUs from
    /// procfs) in the format `provision --hardware` reads (TOML; JSON with --json)
    #[command(after_long_help = HW_DUMP_EXAMPLES)]
    Dump(HwSource),
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Minimum chunk size in bytes
    #[arg(long, default_value_t = 32 * 1024, value_name = "BYTES")]
    pub chunk_min: u32,
    /// Average chunk size in bytes
    #[arg(long, default_value_t = 128 * 1024, value_name = "BYTES")]
    pub chunk_avg: u32,
    /// Maximum chunk size in bytes
    #[arg(long, default_value_t = 512 * 1024, value_name = "BYTES")]
    pub chunk_max: u32,
    /// Fixed chunk size for --image backups, in bytes
    #[arg(long, default_value_t = 256 * 1024, value_name = "BYTES")]
    pub image_chunk: u32,
    /// zstd compression level for new chunks (1-19)
    #[arg(long, default_value_t = 3, value_name = "LEVEL")]
    pub compression: i32,
    /// Target time of one passphrase derivation (Argon2id), in milliseconds
    #[arg(long, default_value_t = 500, value_name = "MS")]
    pub kdf_time_ms: u64,
    /// A data directory for packs: absolute (e.g. an array's mount point), or relative to
    /// the vault directory; absent or empty. Repeatable, in order (default: `data` in the
    /// vault). New packs go to the usable one with the most free space.
    #[arg(long = "data-dir", value_name = "PATH")]
    pub data_dirs: Vec<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum KeyCmd {
    /// Each key: name, kind (passphrase or key file), KDF parameters, created (needs no
    /// secret)
    List,
    /// Add a passphrase or key file that opens the vault as well
    Add(NewKeyArgs),
    /// Remove the key NAME (see `key list`); never the one this command is opened with,
    /// never the last one
    Remove {
        /// The key's name, as `key list` shows it
        name: String,
    },
    /// Replace the key this command is opened with by a new passphrase or key file
    Passwd(NewKeyArgs),
}

#[derive(Debug, Args)]
pub struct NewKeyArgs {
    /// The new passphrase is the first line of FILE [default: $VAULT_NEW_PASSPHRASE, else
    /// a prompt]
    #[arg(long, value_name = "FILE", conflicts_with = "new_key_file")]
    pub new_passphrase_file: Option<PathBuf>,
    /// A raw key file instead of a passphrase (created with 32 random bytes when absent)
    #[arg(long, value_name = "FILE")]
    pub new_key_file: Option<PathBuf>,
    /// Target time of one derivation of the new passphrase (Argon2id), in milliseconds
    #[arg(long, default_value_t = 500, value_name = "MS")]
    pub kdf_time_ms: u64,
}

#[derive(Debug, Subcommand)]
pub enum DataDirCmd {
    /// Each data directory: number, path, usable or why not, free and total bytes, packs
    /// (needs no key)
    List,
    /// Append a data directory (absolute, or relative to the vault; absent or empty) to the
    /// vault. Needs the vault to itself: stop the services first (needs no key)
    Add {
        /// The directory, e.g. the mount point of a new array
        path: PathBuf,
    },
    /// Make data directory N usable again after its array was lost and replaced by a new,
    /// empty file system: writes its marker (the directory must be empty). Its packs stay
    /// missing until `verify --heal-from` restores them (needs no key)
    Mark {
        /// The data directory's number (as `data-dir list` shows it)
        dir: u16,
    },
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Files or directories to back up; each is stored under its base name
    #[arg(value_name = "PATH", required_unless_present_any = ["stdin", "image"], conflicts_with_all = ["stdin", "image"])]
    pub paths: Vec<PathBuf>,
    /// Back up standard input as one stream, stored as the file NAME
    #[arg(long, requires = "name", conflicts_with = "image")]
    pub stdin: bool,
    /// Name of the stream read with --stdin
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Fail unless exactly BYTES arrive on standard input (detects a truncated stream)
    #[arg(long, value_name = "BYTES", requires = "stdin")]
    pub stdin_size: Option<u64>,
    /// Back up a disk image or block device as one stream with fixed-size chunks
    #[arg(long, value_name = "FILE")]
    pub image: Option<PathBuf>,
    /// Read every file even when size, mtime, ctime and inode match the parent snapshot
    #[arg(long)]
    pub force_reread: bool,
    /// Leave out the entries below the PATHs that match the glob PATTERN (repeatable)
    ///
    /// Patterns are matched against absolute paths, byte for byte: `*`, `?` and `[...]` stay
    /// within one path component and `**` spans directories. A pattern starting with / is
    /// anchored at the file system root (/srv/share/cache); any other matches at any depth,
    /// so a bare name matches that file or directory name anywhere (*.tmp, node_modules). A
    /// trailing / is ignored. An excluded directory is not read at all. The PATHs themselves
    /// are never excluded. Excluded entries are not warnings; --json counts them in
    /// "excluded". A bad pattern is a usage error (exit 2).
    #[arg(
        long,
        value_name = "PATTERN",
        conflicts_with_all = ["stdin", "image"],
        value_parser = |p: &str| {
            tiervault_store::backup::Filter::check_pattern(p).map(|()| p.to_owned())
        }
    )]
    pub exclude: Vec<String>,
    /// Back up only the files (and symlinks, special files) that match PATTERN or lie below a
    /// directory that does (repeatable)
    ///
    /// Patterns are as for --exclude. Directories are always descended and kept, possibly
    /// empty, so paths stay intact. --exclude and --exclude-from win over --include. The
    /// PATHs themselves are always backed up.
    #[arg(
        long,
        value_name = "PATTERN",
        conflicts_with_all = ["stdin", "image"],
        value_parser = |p: &str| {
            tiervault_store::backup::Filter::check_pattern(p).map(|()| p.to_owned())
        }
    )]
    pub include: Vec<String>,
    /// Read --exclude patterns from FILE, one per line (repeatable)
    ///
    /// Surrounding whitespace is ignored, and so are blank lines and lines starting with #.
    /// An unreadable FILE or a bad pattern in it is a usage error (exit 2) naming the line.
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with_all = ["stdin", "image"],
        value_parser = |f: &str| {
            tiervault_store::backup::Filter::patterns_from_file(f.as_ref()).map(|_| PathBuf::from(f))
        }
    )]
    pub exclude_from: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct SnapshotsArgs {
    /// Only snapshots that include this path
    #[arg(long, value_name = "PATH")]
    pub path: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Snapshot: full id, unique prefix, or "latest"
    pub snapshot: String,
    /// Directory or file inside the snapshot (for example src/lib)
    pub path: Option<String>,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// Snapshot: full id, unique prefix, or "latest"
    pub snapshot: String,
    /// Directory to restore into
    #[arg(
        long,
        value_name = "DIR",
        required_unless_present = "in_place",
        conflicts_with = "in_place"
    )]
    pub target: Option<PathBuf>,
    /// Restore each backed-up path to where it was backed up from, overwriting
    #[arg(long)]
    pub in_place: bool,
    /// Restore only this file or directory of the snapshot (for example src/lib)
    #[arg(long, value_name = "PATH")]
    pub path: Option<String>,
    /// Allow restoring into a non-empty target, replacing files of the same name
    #[arg(long)]
    pub overwrite: bool,
}

#[derive(Debug, Args)]
pub struct CatArgs {
    /// Snapshot: full id, unique prefix, or "latest"
    pub snapshot: String,
    /// File inside the snapshot
    pub path: String,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// Older snapshot
    pub from: String,
    /// Newer snapshot
    pub to: String,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Check structure only (pack footers, index parts, snapshots, trees); do not read data
    #[arg(long)]
    pub quick: bool,
    /// Replace damaged or missing blobs with good copies from this remote vault
    /// (tiervault://HOST[:PORT], with --ca/--cert/--key) or replica directory, then verify again
    #[arg(long, value_name = "URL|DIR")]
    pub heal_from: Option<PathBuf>,
    #[command(flatten)]
    pub tls: RemoteTls,
}

#[derive(Debug, Args)]
pub struct QuickstartArgs {
    /// Back up this directory instead of a generated sample tree
    #[arg(long, value_name = "DIR")]
    pub source: Option<PathBuf>,
}

/// Where replication sends snapshots.
#[derive(Debug, Args)]
pub struct ReplicateArgs {
    /// A remote vault (tiervault://HOST[:PORT], needs --ca, --cert and --key) or a replica
    /// directory (created as a replica of this vault when absent or empty; the same
    /// passphrase opens it; refused when it holds another vault)
    #[arg(long, value_name = "URL|DIR")]
    pub to: PathBuf,
    #[command(flatten)]
    pub tls: RemoteTls,
    /// Replicate only this snapshot (full id, unique prefix or "latest"); repeatable
    #[arg(long, value_name = "SNAP")]
    pub snapshot: Vec<String>,
    /// Ask the target about every blob instead of trusting the cache of ids it holds
    #[arg(long)]
    pub no_cache: bool,
    /// Bandwidth limit to a remote, e.g. 2MB/s, 800kB/s, 100Mbit/s (default: unlimited)
    #[arg(long, value_name = "RATE", conflicts_with = "schedule")]
    pub limit: Option<String>,
    /// Bandwidth schedule: a TOML file with a [bandwidth] table (default rate and
    /// [[bandwidth.window]] entries with days, from, to, rate; times in UTC); re-read when it
    /// changes, without restarting
    #[arg(long, value_name = "FILE")]
    pub schedule: Option<PathBuf>,
    /// Unacknowledged bytes kept in flight to a remote, in MiB (more hides longer round trips)
    #[arg(long, value_name = "MIB", default_value_t = 64)]
    pub window_mib: u64,
    /// Memory bound of the cache of blob ids the target holds, in MiB (default: the hardware
    /// tier's dedup cache size from the appliance config, else 4096); past it, some ids are
    /// asked about again
    #[arg(long, value_name = "MIB", value_parser = clap::value_parser!(u64).range(1..))]
    pub cache_mib: Option<u64>,
}

/// Which snapshots to remove. Keep rules apply per set of backed-up paths, newest first,
/// in UTC; a snapshot kept by any rule stays.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).multiple(true)
    .args(["snapshots", "keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly", "keep_within"])))]
pub struct ForgetArgs {
    /// Snapshots to remove (full id or unique prefix); conflicts with the keep rules
    #[arg(value_name = "SNAP", conflicts_with_all = ["keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly", "keep_within"])]
    pub snapshots: Vec<String>,
    /// Keep the N newest snapshots
    #[arg(long, value_name = "N")]
    pub keep_last: Option<u32>,
    /// Keep the newest snapshot of each of the last N hours that have one
    #[arg(long, value_name = "N")]
    pub keep_hourly: Option<u32>,
    /// Keep the newest snapshot of each of the last N days that have one
    #[arg(long, value_name = "N")]
    pub keep_daily: Option<u32>,
    /// Keep the newest snapshot of each of the last N ISO weeks that have one
    #[arg(long, value_name = "N")]
    pub keep_weekly: Option<u32>,
    /// Keep the newest snapshot of each of the last N months that have one
    #[arg(long, value_name = "N")]
    pub keep_monthly: Option<u32>,
    /// Keep the newest snapshot of each of the last N years that have one
    #[arg(long, value_name = "N")]
    pub keep_yearly: Option<u32>,
    /// Keep every snapshot younger than DURATION before the newest (e.g. 30d, 2w, 1y6m)
    #[arg(long, value_name = "DURATION")]
    pub keep_within: Option<String>,
    /// Show what would be removed; change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Collect garbage afterwards (as `vaultctl gc`)
    #[arg(long)]
    pub prune: bool,
}

#[derive(Debug, Args)]
pub struct GcArgs {
    /// Rewrite a pack when at least this fraction of its bytes is unreferenced (0-1)
    #[arg(long, default_value_t = 0.25, value_name = "FRACTION")]
    pub max_unused: f64,
    /// Show what would be deleted; change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Give up after waiting this many seconds for older sessions (default: wait)
    #[arg(long, value_name = "SECONDS")]
    pub max_wait: Option<u64>,
}

#[derive(Debug, Subcommand)]
pub enum ReplicationCmd {
    /// How far the target is behind: snapshots pending, the oldest one's age, bytes pending,
    /// and the last run of vault-replicad (from <vault>/replication/status.json)
    Status,
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// The remote vault: tiervault://HOST[:PORT]
    #[arg(long, value_name = "URL")]
    pub from: String,
    #[command(flatten)]
    pub tls: RemoteTls,
    /// Pull only snapshots whose id starts with this (repeatable; default: all)
    #[arg(long, value_name = "ID")]
    pub snapshot: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Directory to write (created; or an earlier export of this vault to add to)
    #[arg(long, value_name = "DIR")]
    pub to: PathBuf,
    /// Export only what this remote vault (tiervault://HOST[:PORT]) lacks
    #[arg(long, value_name = "URL")]
    pub lacking_on: Option<String>,
    #[command(flatten)]
    pub tls: RemoteTls,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The export directory
    #[arg(long, value_name = "DIR")]
    pub from: PathBuf,
}

/// How to reach a remote vault (tiervault://): mutual TLS files.
#[derive(Debug, Args, Clone)]
pub struct RemoteTls {
    /// CA certificate (PEM) that issued the remote vault's certificate
    #[arg(long, value_name = "FILE", env = "VAULT_REMOTE_CA")]
    pub ca: Option<PathBuf>,
    /// This appliance's client certificate (PEM), bound to its tenant
    #[arg(long, value_name = "FILE", env = "VAULT_REMOTE_CERT")]
    pub cert: Option<PathBuf>,
    /// The client certificate's private key (PEM)
    #[arg(long, value_name = "FILE", env = "VAULT_REMOTE_KEY")]
    pub key: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum JobCmd {
    /// The backup jobs of the service's config, their schedules and last results
    List,
    /// Run a backup job now and follow it (exit 3 if it skipped files)
    Start {
        /// The job's name, as in the service's config
        name: String,
        /// Print the new job's object path and return at once
        #[arg(long)]
        no_wait: bool,
    },
    /// The latest jobs (backups, restores, verifies, replications), oldest first
    History {
        /// How many to show
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Everything about one job: status, times, bytes, ratios, warnings
    Show {
        /// The job's number (the last element of its object path)
        id: u64,
    },
    /// Cancel a queued job, or stop a running backup (no snapshot is written)
    Cancel {
        /// The job's number
        id: u64,
    },
}

#[derive(Debug, Subcommand)]
pub enum AlertCmd {
    /// Active alerts (with --all, cleared ones too), with severity and priority
    List {
        /// Include cleared alerts
        #[arg(long)]
        all: bool,
    },
    /// Acknowledge an alert: records who, when and the comment
    Ack {
        /// The alert's number
        id: u64,
        /// Why, or what was done (shown to the next engineer)
        #[arg(long, default_value = "")]
        comment: String,
    },
}
