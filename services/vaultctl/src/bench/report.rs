//! Figures, medians, machine facts, the JSON document and the human table.

use std::fmt::Write as _;
use std::fs;

use serde::Serialize;

use super::dataset::{EditStats, TreeStats};
use super::image::{ImageEditStats, ImageStats};
use super::stages::StageTimes;

pub const TIERVAULT: &str = "tiervault";
pub const TIERVAULT_NO_URING: &str = "tiervault-no-uring";
pub const RESTIC: &str = "restic";

pub const TREE: &str = "tree";
/// The image backed up as a file inside a directory (`backup DIR`).
pub const IMAGE_DIR: &str = "image-dir";
/// The image backed up with `backup --image FILE`.
pub const IMAGE_FILE: &str = "image-file";

pub const STEPS: [(&str, &str); 5] = [
    ("first", "first backup"),
    ("unchanged", "unchanged re-backup"),
    ("incremental", "incremental (v2)"),
    ("restore", "restore (v2)"),
    ("init", "init (incl. KDF)"),
];

/// One step of one run.
#[derive(Debug, Clone, Serialize)]
pub struct Measurement {
    pub run: usize,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub wall_s: f64,
    /// Logical bytes of the step's dataset (v1 for first/unchanged, v2 for incremental/restore).
    pub logical_bytes: u64,
    /// Logical MB/s (MB = 10^6 bytes).
    pub mbps: f64,
    pub max_rss_kib: u64,
    /// Size of the vault or repository directory after the step.
    pub repo_bytes: u64,
    /// Growth of the vault or repository directory during the step.
    pub stored_added: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verified: Option<bool>,
    /// Our backups only: the pipeline's own duration (`summary.duration_s` of `backup --json`),
    /// i.e. the wall time less process start, vault open and the passphrase KDF.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipeline_s: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Median {
    pub ok_runs: usize,
    pub wall_s: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipeline_s: Option<f64>,
    pub mbps: f64,
    pub max_rss_kib: f64,
    pub repo_bytes: f64,
    pub stored_added: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    pub dataset: String,
    pub tool: String,
    pub step: String,
    pub runs: Vec<Measurement>,
    pub median: Option<Median>,
}

pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

impl Figure {
    pub fn compute_median(&mut self) {
        let ok: Vec<&Measurement> = self.runs.iter().filter(|m| m.ok).collect();
        if ok.is_empty() {
            self.median = None;
            return;
        }
        let f = |g: &dyn Fn(&Measurement) -> f64| median(ok.iter().map(|m| g(m)).collect());
        self.median = Some(Median {
            ok_runs: ok.len(),
            wall_s: f(&|m| m.wall_s),
            pipeline_s: ok
                .iter()
                .all(|m| m.pipeline_s.is_some())
                .then(|| f(&|m| m.pipeline_s.unwrap_or(0.0))),
            mbps: f(&|m| m.mbps),
            max_rss_kib: f(&|m| m.max_rss_kib as f64),
            repo_bytes: f(&|m| m.repo_bytes as f64),
            stored_added: f(&|m| m.stored_added as f64),
        });
    }

    pub fn first_error(&self) -> Option<&str> {
        self.runs.iter().find_map(|m| m.error.as_deref())
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct StageRun {
    pub run: usize,
    pub times: StageTimes,
}

/// Stage figures derived from median seconds.
#[derive(Debug, Clone, Serialize)]
pub struct StageSummary {
    /// "tree" or "image".
    pub sample: String,
    /// "fastcdc" or "fixed-256KiB".
    pub chunking: String,
    pub runs: Vec<StageRun>,
    pub median: StageTimes,
    pub mbps_read: f64,
    pub mbps_chunk: f64,
    pub mbps_hash: f64,
    pub mbps_zstd: f64,
    pub mbps_aes_ring: f64,
    pub mbps_aes_rustcrypto: f64,
    pub faster_aes: String,
    pub cores: usize,
    pub ceiling_mbps: f64,
}

impl StageSummary {
    pub fn new(sample: &str, chunking: &str, runs: Vec<StageRun>, cores: usize) -> Self {
        let f = |g: &dyn Fn(&StageTimes) -> f64| median(runs.iter().map(|r| g(&r.times)).collect());
        let first = runs.first().map(|r| r.times.clone()).unwrap_or_default();
        let m = StageTimes {
            bytes: first.bytes,
            chunks: first.chunks,
            compressed_bytes: first.compressed_bytes,
            read_s: f(&|t| t.read_s),
            chunk_s: f(&|t| t.chunk_s),
            hash_s: f(&|t| t.hash_s),
            zstd_s: f(&|t| t.zstd_s),
            aes_ring_s: f(&|t| t.aes_ring_s),
            aes_rustcrypto_s: f(&|t| t.aes_rustcrypto_s),
        };
        StageSummary {
            sample: sample.to_string(),
            chunking: chunking.to_string(),
            mbps_read: m.mbps(m.read_s),
            mbps_chunk: m.mbps(m.chunk_s),
            mbps_hash: m.mbps(m.hash_s),
            mbps_zstd: m.mbps(m.zstd_s),
            mbps_aes_ring: m.mbps(m.aes_ring_s),
            mbps_aes_rustcrypto: m.mbps(m.aes_rustcrypto_s),
            faster_aes: if m.aes_ring_s <= m.aes_rustcrypto_s {
                "ring".into()
            } else {
                "aes-gcm".into()
            },
            cores,
            ceiling_mbps: m.ceiling_mbps(cores),
            median: m,
            runs,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub ram_bytes: u64,
    pub kernel: String,
    pub os: String,
    pub vaultctl_version: String,
    pub restic_version: Option<String>,
    pub mkfs_ext4: Option<String>,
}

fn read(path: &str) -> String {
    fs::read_to_string(path).unwrap_or_default()
}

impl Machine {
    pub fn probe(restic_version: Option<String>, mkfs: Option<String>) -> Self {
        let cpu = read("/proc/cpuinfo")
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        let ram_kib: u64 = read("/proc/meminfo")
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let os = read("/etc/os-release")
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_default();
        Machine {
            cpu,
            cores: cores(),
            ram_bytes: ram_kib * 1024,
            kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
            os,
            vaultctl_version: env!("CARGO_PKG_VERSION").to_string(),
            restic_version,
            mkfs_ext4: mkfs,
        }
    }
}

pub fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

#[derive(Debug, Clone, Serialize)]
pub struct TreeInfo {
    pub path: String,
    pub v1: TreeStats,
    pub v2_edit: Option<EditStats>,
    pub v2_bytes: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ImageInfo {
    pub path: String,
    pub v1: ImageStats,
    pub v2_edit: Option<ImageEditStats>,
}

/// ours/restic for one step.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub dataset: String,
    pub step: String,
    pub tool: String,
    pub restic_dataset: String,
    /// ours MB/s ÷ restic MB/s (> 1: ours faster).
    pub speed: f64,
    /// ours peak RSS ÷ restic peak RSS (≤ 1 is good).
    pub rss: f64,
    /// ours stored bytes ÷ restic stored bytes (≤ 1 is good).
    pub stored: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct CeilingUse {
    pub dataset: String,
    pub tool: String,
    /// First-backup MB/s over the bytes the ceiling was measured on (data extents for images).
    pub mbps: f64,
    pub ceiling_mbps: f64,
    pub fraction: f64,
    /// The same over the pipeline's own duration (ours only: excludes start-up and the KDF).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipeline_mbps: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipeline_fraction: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub schema: String,
    pub started: String,
    pub finished: String,
    pub quick: bool,
    pub runs: usize,
    pub dir: String,
    pub machine: Machine,
    pub notes: Vec<String>,
    pub tree: Option<TreeInfo>,
    pub image: Option<ImageInfo>,
    pub stages: Vec<StageSummary>,
    pub figures: Vec<Figure>,
    pub comparisons: Vec<Comparison>,
    pub ceiling_use: Vec<CeilingUse>,
    pub errors: Vec<String>,
}

impl Report {
    pub fn figure(&self, dataset: &str, tool: &str, step: &str) -> Option<&Figure> {
        self.figures
            .iter()
            .find(|f| f.dataset == dataset && f.tool == tool && f.step == step)
    }

    fn med(&self, dataset: &str, tool: &str, step: &str) -> Option<&Median> {
        self.figure(dataset, tool, step)?.median.as_ref()
    }

    pub fn stage(&self, sample: &str, chunking: &str) -> Option<&StageSummary> {
        self.stages
            .iter()
            .find(|s| s.sample == sample && s.chunking == chunking)
    }

    /// Medians, ratios and ceiling use, from the raw figures.
    pub fn finish(&mut self) {
        for f in &mut self.figures {
            f.compute_median();
        }
        let mut comps = Vec::new();
        for (ds, tool, rds) in [
            (TREE, TIERVAULT, TREE),
            (TREE, TIERVAULT_NO_URING, TREE),
            (IMAGE_DIR, TIERVAULT, IMAGE_DIR),
            (IMAGE_FILE, TIERVAULT, IMAGE_DIR),
        ] {
            for (step, _) in STEPS {
                if let (Some(o), Some(r)) = (self.med(ds, tool, step), self.med(rds, RESTIC, step))
                {
                    comps.push(Comparison {
                        dataset: ds.into(),
                        step: step.into(),
                        tool: tool.into(),
                        restic_dataset: rds.into(),
                        speed: o.mbps / r.mbps,
                        rss: o.max_rss_kib / r.max_rss_kib,
                        stored: o.stored_added / r.stored_added,
                    });
                }
            }
        }
        self.comparisons = comps;
        let mut uses = Vec::new();
        let alloc = self.image.as_ref().map(|i| i.v1.allocated_bytes as f64);
        for (ds, tool, sample, chunking) in [
            (TREE, TIERVAULT, "tree", "fastcdc"),
            (TREE, TIERVAULT_NO_URING, "tree", "fastcdc"),
            (TREE, RESTIC, "tree", "fastcdc"),
            (IMAGE_DIR, TIERVAULT, "image", "fastcdc"),
            (IMAGE_FILE, TIERVAULT, "image", "fixed-256KiB"),
            (IMAGE_DIR, RESTIC, "image", "fastcdc"),
        ] {
            let (Some(m), Some(s)) = (self.med(ds, tool, "first"), self.stage(sample, chunking))
            else {
                continue;
            };
            let bytes = if ds == TREE {
                m.mbps * m.wall_s * 1e6
            } else {
                match alloc {
                    Some(a) => a,
                    None => continue,
                }
            };
            let mbps = bytes / m.wall_s / 1e6;
            let pipeline_mbps = m.pipeline_s.filter(|p| *p > 0.0).map(|p| bytes / p / 1e6);
            uses.push(CeilingUse {
                dataset: ds.into(),
                tool: tool.into(),
                mbps,
                ceiling_mbps: s.ceiling_mbps,
                fraction: mbps / s.ceiling_mbps,
                pipeline_mbps,
                pipeline_fraction: pipeline_mbps.map(|p| p / s.ceiling_mbps),
            });
        }
        self.ceiling_use = uses;
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }

    /// The human table.
    pub fn render(&self) -> String {
        let mut o = String::new();
        let m = &self.machine;
        let _ = writeln!(
            o,
            "vaultctl bench{} — tiervault {} vs {}",
            if self.quick { " --quick" } else { "" },
            m.vaultctl_version,
            m.restic_version.as_deref().unwrap_or("(no restic)")
        );
        let _ = writeln!(
            o,
            "machine: {}, {} cores, {:.1} GiB RAM, Linux {}{}; medians of {} run(s)",
            m.cpu,
            m.cores,
            m.ram_bytes as f64 / (1u64 << 30) as f64,
            m.kernel,
            if m.os.is_empty() {
                String::new()
            } else {
                format!(" ({})", m.os)
            },
            self.runs
        );
        for n in &self.notes {
            let _ = writeln!(o, "note: {n}");
        }
        let _ = writeln!(o);
        if let Some(t) = &self.tree {
            let _ = write!(
                o,
                "tree:  {} files in {} dirs, {:.1} MB ({:.0}% text)",
                t.v1.files,
                t.v1.dirs,
                mb(t.v1.bytes as f64),
                100.0 * t.v1.text_bytes as f64 / t.v1.bytes.max(1) as f64
            );
            if let Some(e) = &t.v2_edit {
                let _ = write!(
                    o,
                    "; v2: {} modified ({} rewritten, {} with insertions, {} appended), {} added, {} deleted",
                    e.modified(),
                    e.rewritten,
                    e.inserted,
                    e.appended,
                    e.added,
                    e.deleted
                );
            }
            let _ = writeln!(o);
        }
        if let Some(i) = &self.image {
            let _ = write!(
                o,
                "image: {:.1} MB ext4 image, {:.1} MB allocated, {} files",
                mb(i.v1.image_size as f64),
                mb(i.v1.allocated_bytes as f64),
                i.v1.files
            );
            if let Some(e) = &i.v2_edit {
                let _ = write!(
                    o,
                    "; v2: {:.1} MB overwritten in {} runs",
                    mb(e.bytes as f64),
                    e.runs
                );
            }
            let _ = writeln!(o);
        }
        self.render_stages(&mut o);
        self.render_results(&mut o);
        if !self.ceiling_use.is_empty() {
            let _ = writeln!(
                o,
                "\nfirst backup against the stage ceiling (whole command; pipeline = without start-up and KDF):"
            );
            for u in &self.ceiling_use {
                let pipeline = match (u.pipeline_mbps, u.pipeline_fraction) {
                    (Some(p), Some(f)) => format!("; pipeline {p:.1} MB/s = {:.1}%", 100.0 * f),
                    _ => String::new(),
                };
                let _ = writeln!(
                    o,
                    "  {:<10} {:<19} {:>8.1} MB/s = {:>5.1}% of {:.1} MB/s{pipeline}",
                    u.dataset,
                    u.tool,
                    u.mbps,
                    100.0 * u.fraction,
                    u.ceiling_mbps
                );
            }
        }
        if !self.errors.is_empty() {
            let _ = writeln!(o, "\nERRORS ({}):", self.errors.len());
            for e in &self.errors {
                let _ = writeln!(o, "  {e}");
            }
        }
        o
    }

    fn render_stages(&self, o: &mut String) {
        if self.stages.is_empty() {
            return;
        }
        let _ = writeln!(
            o,
            "\nstage ceiling (each stage alone on one core; MB/s of logical bytes)"
        );
        let _ = write!(o, "  {:<36}", "stage");
        for s in &self.stages {
            let _ = write!(o, " {:>20}", format!("{} {}", s.sample, s.chunking));
        }
        let _ = writeln!(o);
        let row = |o: &mut String, name: &str, g: &dyn Fn(&StageSummary) -> String| {
            let _ = write!(o, "  {name:<36}");
            for s in &self.stages {
                let _ = write!(o, " {:>20}", g(s));
            }
            let _ = writeln!(o);
        };
        row(o, "sample (MB)", &|s| {
            format!("{:.1}", mb(s.median.bytes as f64))
        });
        row(o, "read: open+read+close, warm cache", &|s| {
            stage_mbps(s.mbps_read)
        });
        row(o, "chunk", &|s| stage_mbps(s.mbps_chunk));
        row(o, "keyed BLAKE3", &|s| stage_mbps(s.mbps_hash));
        row(o, "zstd -3", &|s| stage_mbps(s.mbps_zstd));
        row(o, "AES-256-GCM ring", &|s| stage_mbps(s.mbps_aes_ring));
        row(o, "AES-256-GCM aes-gcm (RustCrypto)", &|s| {
            stage_mbps(s.mbps_aes_rustcrypto)
        });
        row(o, "faster AES", &|s| s.faster_aes.clone());
        row(o, "chunks (mean KiB)", &|s| {
            format!(
                "{} ({:.0})",
                s.median.chunks,
                s.median.bytes as f64 / s.median.chunks.max(1) as f64 / 1024.0
            )
        });
        row(o, "zstd ratio", &|s| {
            format!(
                "{:.2}x",
                s.median.bytes as f64 / s.median.compressed_bytes.max(1) as f64
            )
        });
        row(o, "one core, all stages", &|s| {
            format!("{:.1}", s.median.mbps(s.median.total_s()))
        });
        row(o, "CEILING (cores / sum s-per-byte)", &|s| {
            format!("{:.1} ({} cores)", s.ceiling_mbps, s.cores)
        });
    }

    fn render_results(&self, o: &mut String) {
        let has_restic = self.figures.iter().any(|f| f.tool == RESTIC);
        let sections: [Section; 2] = [
            (
                "tree",
                &[
                    (TREE, TIERVAULT, ""),
                    (TREE, TIERVAULT_NO_URING, ", no io_uring"),
                ],
            ),
            (
                "image",
                &[
                    (IMAGE_DIR, TIERVAULT, ", dir"),
                    (IMAGE_FILE, TIERVAULT, ", --image"),
                ],
            ),
        ];
        for (title, rows) in sections {
            let restic_ds = if title == "tree" { TREE } else { IMAGE_DIR };
            let any = |ds: &str| self.figures.iter().any(|f| f.dataset == ds);
            if !rows.iter().any(|r| any(r.0)) && !any(restic_ds) {
                continue;
            }
            let _ = writeln!(
                o,
                "\n{title}: MB/s of logical bytes{}; stored = growth of the vault/repository",
                if title == "image" {
                    " (apparent image size)"
                } else {
                    ""
                }
            );
            let _ = write!(
                o,
                "  {:<32} {:>8} {:>8} {:>8} {:>9}",
                "tiervault", "MB/s", "wall s", "RSS MiB", "stored MB"
            );
            if has_restic {
                let _ = write!(
                    o,
                    " | {:>8} {:>8} {:>8} {:>9} | {:>6} {:>5} {:>6}",
                    "restic", "wall s", "RSS MiB", "stored MB", "speed", "RSS", "stored"
                );
            }
            let _ = writeln!(o);
            for (step, label) in STEPS {
                let restic = self.figure(restic_ds, RESTIC, step);
                let mut shown = false;
                for &(ds, tool, suffix) in rows {
                    let Some(f) = self.figure(ds, tool, step) else {
                        continue;
                    };
                    shown = true;
                    let _ = write!(o, "  {:<32}", format!("{label}{suffix}"));
                    let Some(m) = &f.median else {
                        let e = f.first_error().unwrap_or("failed");
                        let _ = writeln!(o, " FAILED: {}", truncate(e, 100));
                        continue;
                    };
                    let _ = write!(o, "{}", cells(m, step));
                    if let Some(r) = restic.and_then(|r| r.median.as_ref()) {
                        let _ = write!(o, " |{}", cells(r, step));
                        if step == "init" {
                            let _ = write!(
                                o,
                                " | {:>6} {:>5.2} {:>6}",
                                "-",
                                m.max_rss_kib / r.max_rss_kib,
                                "-"
                            );
                        } else {
                            let _ = write!(
                                o,
                                " | {:>5.2}x {:>5.2} {:>6}",
                                m.mbps / r.mbps,
                                m.max_rss_kib / r.max_rss_kib,
                                if step == "restore" {
                                    "-".to_string()
                                } else {
                                    format!("{:.2}", ratio(m.stored_added, r.stored_added))
                                }
                            );
                        }
                    }
                    let _ = writeln!(o);
                }
                // restic's figure on its own when our side did not run this step.
                let ours_ok = rows.iter().any(|&(ds, tool, _)| {
                    self.figure(ds, tool, step)
                        .is_some_and(|f| f.median.is_some())
                });
                if let (Some(r), false) = (restic, ours_ok) {
                    let _ = write!(
                        o,
                        "  {:<32} {:>8} {:>8} {:>8} {:>9}",
                        format!("{label}{}", if shown { " (restic)" } else { "" }),
                        "-",
                        "-",
                        "-",
                        "-"
                    );
                    match &r.median {
                        Some(m) => {
                            let _ = write!(o, " |{}", cells(m, step));
                        }
                        None => {
                            let e = r.first_error().unwrap_or("failed");
                            let _ = write!(o, " | FAILED: {}", truncate(e, 100));
                        }
                    }
                    let _ = writeln!(o);
                }
            }
        }
        if has_restic {
            let _ = writeln!(
                o,
                "\nratios are ours/restic: speed > 1 means faster; RSS and stored <= 1 mean smaller"
            );
        }
    }
}

/// MB/s, wall, peak RSS and stored MB of one median ("-" where a figure means nothing).
fn cells(m: &Median, step: &str) -> String {
    let mbps = if step == "init" {
        "-".to_string()
    } else {
        format!("{:.1}", m.mbps)
    };
    let stored = if step == "restore" {
        "-".to_string()
    } else {
        format!("{:.1}", mb(m.stored_added))
    };
    format!(
        " {:>8} {:>8.2} {:>8.1} {:>9}",
        mbps,
        m.wall_s,
        m.max_rss_kib / 1024.0,
        stored
    )
}

/// A stage's MB/s; stages too fast to time meaningfully read "free".
fn stage_mbps(v: f64) -> String {
    if v > 1e6 {
        "free".to_string()
    } else {
        format!("{v:.1}")
    }
}

/// A table section: title and its rows (dataset, tool, label suffix).
type Section<'a> = (&'a str, &'a [(&'a str, &'a str, &'a str)]);

fn ratio(a: f64, b: f64) -> f64 {
    if b == 0.0 {
        f64::NAN
    } else {
        a / b
    }
}

pub fn mb(bytes: f64) -> f64 {
    bytes / 1e6
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(vec![]).is_nan());
    }
}
