//! One measurement run: the tree and the image, backed up and restored by tiervault (as a child
//! process) and by restic, with stage figures measured on the same bytes.

use std::ffi::OsStr;
use std::fs;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};

use super::dataset::{digest_path, dir_bytes, edit_tree, Digest, TreeSpec};
use super::image::{copy_sparse, edit_image, ImageSpec};
use super::report::{
    Figure, Measurement, Report, StageRun, IMAGE_DIR, IMAGE_FILE, RESTIC, TIERVAULT,
    TIERVAULT_NO_URING, TREE,
};
use super::runner::run_measured;
use super::stages::{image_sample, measure, tree_sample, Chunking};

/// The passphrase of every timed vault and repository (both tools pay their KDF: Argon2id
/// calibrated to ~0.5 s for ours, scrypt for restic).
pub const PASSPHRASE: &str = "tiervault-bench-passphrase";

/// A progress line on stderr: a spinner on a terminal, plain lines otherwise, nothing if quiet.
pub struct Progress {
    bar: Option<ProgressBar>,
    plain: bool,
}

impl Progress {
    pub fn new(quiet: bool) -> Self {
        if quiet {
            return Progress {
                bar: None,
                plain: false,
            };
        }
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new_spinner();
            if let Ok(style) = ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}") {
                bar.set_style(style);
            }
            bar.enable_steady_tick(Duration::from_millis(250));
            Progress {
                bar: Some(bar),
                plain: false,
            }
        } else {
            Progress {
                bar: None,
                plain: true,
            }
        }
    }

    pub fn set(&self, msg: impl Into<String>) {
        let msg = msg.into();
        if let Some(b) = &self.bar {
            b.set_message(msg);
        } else if self.plain {
            eprintln!("bench: {msg}");
        }
    }

    /// A line that stays (warnings), printed even when quiet.
    pub fn warn(&self, msg: &str) {
        match &self.bar {
            Some(b) => b.println(format!("warning: {msg}")),
            None => eprintln!("warning: {msg}"),
        }
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

pub struct Suite {
    pub exe: PathBuf,
    pub restic: Option<PathBuf>,
    /// Absolute bench directory.
    pub root: PathBuf,
    pub runs: usize,
    pub stage_limit: u64,
    pub progress: Progress,
    pub report: Report,
    pub tree_stage_runs: Vec<StageRun>,
    pub image_cdc_runs: Vec<StageRun>,
    pub image_fixed_runs: Vec<StageRun>,
}

fn sync_all() {
    rustix::fs::sync();
}

/// Memory to recycle before a timed step beyond the step's logical bytes: room for the
/// inodes, dentries and process heaps of a 60,000-file restore.
const RECYCLE_SLACK: u64 = 256 << 20;

/// Touch `bytes` of memory and free it again, so the timed step that follows writes into
/// pages the hypervisor already backs (docs/benchmarks.md, "Memory"). On the VMs we measure
/// on, the host backs guest memory lazily and takes free memory back within seconds: a
/// write into a page the guest has not used lately costs a host fault (2 GiB buffered by
/// `dd`: 370 MB/s into such pages, 4.8 GB/s into recycled ones). Without this, whichever tool
/// ran second reused the page cache the first had just freed. On a physical machine it
/// changes nothing. Only free memory is used, never more: taking more would evict the warm
/// dataset from the page cache.
fn recycle_memory(bytes: u64) {
    let free = mem_free().saturating_sub(RECYCLE_SLACK);
    let Ok(n) = usize::try_from(bytes.min(free)) else {
        return;
    };
    // Non-zero, so every page is written (a zeroed allocation could stay untouched).
    let v = vec![1u8; n];
    std::hint::black_box(&v);
}

/// Read every file under `dir` once (untimed) so a restore reads the vault or repository from
/// the page cache: we write packs with O_DIRECT (uncached) and restic writes through the
/// cache, so without this the two restores would not start from the same state.
fn warm(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() => warm(&path),
            Ok(t) if t.is_file() => {
                if let Ok(mut f) = fs::File::open(&path) {
                    let _ = std::io::copy(&mut f, &mut std::io::sink());
                }
            }
            _ => {}
        }
    }
}

/// The bytes a vault or repository holds, without derived caches: a vault's `index.cache/`
/// is rebuilt from its packs and index parts (`vaultctl index rebuild`) as restic rebuilds
/// its cache, which lives outside the repository (`--cache-dir`) and is not counted either.
fn repo_bytes(repo: &Path) -> u64 {
    let all = dir_bytes(repo).unwrap_or(0);
    all.saturating_sub(dir_bytes(&repo.join("index.cache")).unwrap_or(0))
}

/// `MemFree` of /proc/meminfo in bytes (0 when unknown).
fn mem_free() -> u64 {
    fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemFree:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kib| kib * 1024)
}

fn rm(path: &Path) {
    if path.is_dir() {
        let _ = fs::remove_dir_all(path);
    } else {
        let _ = fs::remove_file(path);
    }
}

/// restic's cache directory for repository `repo`: beside it, removed with it.
fn restic_cache(repo: &Path) -> PathBuf {
    repo.with_extension("cache")
}

fn rel_to_root(p: &Path) -> &Path {
    p.strip_prefix("/").unwrap_or(p)
}

impl Suite {
    /// Where run `run` works. Each run has its own: the restored trees stay until the bench
    /// ends (see `run_tree`).
    fn run_dir(&self, run: usize) -> PathBuf {
        self.root.join("run").join(run.to_string())
    }

    fn log_path(&self, run: usize, dataset: &str, tool: &str, step: &str) -> Result<PathBuf> {
        let d = self.root.join("logs");
        fs::create_dir_all(&d)?;
        Ok(d.join(format!("run{run}-{dataset}-{tool}-{step}")))
    }

    fn ours(&self, vault: &Path, no_uring: bool) -> Command {
        let mut c = Command::new(&self.exe);
        c.arg("--vault")
            .arg(vault)
            .arg("--quiet")
            .env("VAULT_PASSPHRASE", PASSPHRASE)
            .env_remove("VAULT_DIR");
        if no_uring {
            c.env("TIERVAULT_NO_URING", "1");
        } else {
            c.env_remove("TIERVAULT_NO_URING");
        }
        c
    }

    fn restic_cmd(&self, exe: &Path, repo: &Path) -> Command {
        let mut c = Command::new(exe);
        c.arg("-r")
            .arg(repo)
            .arg("--cache-dir")
            .arg(restic_cache(repo))
            .arg("-q")
            .env("RESTIC_PASSWORD", PASSPHRASE)
            .env_remove("RESTIC_REPOSITORY")
            .env_remove("RESTIC_PASSWORD_FILE")
            .env_remove("RESTIC_PASSWORD_COMMAND");
        c
    }

    fn record(&mut self, dataset: &str, tool: &str, step: &str, m: Measurement) {
        if let Some(e) = &m.error {
            let msg = format!("run {}: {dataset} {tool} {step}: {e}", m.run);
            self.progress.warn(&msg);
            self.report.errors.push(msg);
        }
        match self
            .report
            .figures
            .iter_mut()
            .find(|f| f.dataset == dataset && f.tool == tool && f.step == step)
        {
            Some(f) => f.runs.push(m),
            None => self.report.figures.push(Figure {
                dataset: dataset.into(),
                tool: tool.into(),
                step: step.into(),
                runs: vec![m],
                median: None,
            }),
        }
    }

    /// Runs one timed step; returns whether it succeeded.
    #[allow(clippy::too_many_arguments)]
    fn step(
        &mut self,
        run: usize,
        dataset: &str,
        tool: &str,
        step: &str,
        cmd: Command,
        logical: u64,
        repo: &Path,
    ) -> bool {
        self.progress
            .set(format!("run {run}/{}: {dataset}: {tool} {step}", self.runs));
        sync_all();
        if logical > 0 {
            recycle_memory(logical + RECYCLE_SLACK);
        }
        let before = repo_bytes(repo);
        let res = self
            .log_path(run, dataset, tool, step)
            .and_then(|log| run_measured(&cmd, &log));
        let after = repo_bytes(repo);
        let m = match res {
            Ok(r) => {
                let wall = r.wall.as_secs_f64();
                Measurement {
                    run,
                    ok: r.success(),
                    error: (!r.success()).then(|| r.failure()),
                    wall_s: wall,
                    logical_bytes: logical,
                    mbps: logical as f64 / wall / 1e6,
                    max_rss_kib: r.max_rss_kib,
                    repo_bytes: after,
                    stored_added: after as i64 - before as i64,
                    verified: None,
                    pipeline_s: None,
                }
            }
            Err(e) => Measurement {
                run,
                ok: false,
                error: Some(format!("{e:#}")),
                wall_s: 0.0,
                logical_bytes: logical,
                mbps: 0.0,
                max_rss_kib: 0,
                repo_bytes: after,
                stored_added: 0,
                verified: None,
                pipeline_s: None,
            },
        };
        let ok = m.ok;
        self.record(dataset, tool, step, m);
        ok
    }

    /// A timed restore followed by a content check of `restored` against `expected`. The
    /// caller removes `target`.
    #[allow(clippy::too_many_arguments)]
    fn restore_step(
        &mut self,
        run: usize,
        dataset: &str,
        tool: &str,
        cmd: Command,
        repo: &Path,
        target: &Path,
        restored: &Path,
        expected: &Digest,
    ) {
        rm(target);
        warm(repo);
        let ok = self.step(run, dataset, tool, "restore", cmd, expected.bytes, repo);
        if ok {
            self.progress.set(format!(
                "run {run}/{}: {dataset}: checking {tool} restore",
                self.runs
            ));
            let verdict = match digest_path(restored) {
                Ok(d) if &d == expected => Ok(()),
                Ok(d) => Err(format!(
                    "RESTORE MISMATCH: {} holds {} files, {} bytes, blake3 {}; the source has {} files, {} bytes, blake3 {}",
                    restored.display(),
                    d.files,
                    d.bytes,
                    d.blake3,
                    expected.files,
                    expected.bytes,
                    expected.blake3
                )),
                Err(e) => Err(format!("RESTORE CHECK FAILED: {e:#}")),
            };
            if let Some(m) = self
                .report
                .figures
                .iter_mut()
                .find(|f| f.dataset == dataset && f.tool == tool && f.step == "restore")
                .and_then(|f| f.runs.last_mut())
            {
                m.verified = Some(verdict.is_ok());
                if let Err(e) = &verdict {
                    m.ok = false;
                    m.error = Some(e.clone());
                }
            }
            if let Err(e) = verdict {
                let msg = format!("run {run}: {dataset} {tool} restore: {e}");
                self.progress.warn(&msg);
                self.report.errors.push(msg);
            }
        }
    }

    fn init_ours(&mut self, run: usize, dataset: &str, tool: &str, vault: &Path) -> bool {
        rm(vault);
        let mut c = self.ours(vault, tool == TIERVAULT_NO_URING);
        c.args(["init", "--kdf-time-ms", "500"]);
        self.step(run, dataset, tool, "init", c, 0, vault)
    }

    fn init_restic(&mut self, run: usize, dataset: &str, repo: &Path) -> Option<PathBuf> {
        let exe = self.restic.clone()?;
        rm(repo);
        let mut c = self.restic_cmd(&exe, repo);
        c.args(["init", "--repository-version", "2"]);
        self.step(run, dataset, RESTIC, "init", c, 0, repo)
            .then_some(exe)
    }

    #[allow(clippy::too_many_arguments)]
    fn restic_backup(
        &mut self,
        run: usize,
        dataset: &str,
        step: &str,
        exe: &Path,
        repo: &Path,
        path: &Path,
        logical: u64,
    ) -> bool {
        let mut c = self.restic_cmd(exe, repo);
        c.args(["backup", "--compression", "auto", "--host", "bench"])
            .arg(path);
        self.step(run, dataset, RESTIC, step, c, logical, repo)
    }

    #[allow(clippy::too_many_arguments)]
    fn ours_backup(
        &mut self,
        run: usize,
        dataset: &str,
        tool: &str,
        step: &str,
        vault: &Path,
        args: &[&OsStr],
        logical: u64,
    ) -> bool {
        let mut c = self.ours(vault, tool == TIERVAULT_NO_URING);
        c.arg("backup").arg("--json").args(args);
        let ok = self.step(run, dataset, tool, step, c, logical, vault);
        // The pipeline's own duration, from the snapshot summary printed with --json.
        let pipeline = self
            .log_path(run, dataset, tool, step)
            .ok()
            .and_then(|log| fs::read(log.with_extension("out")).ok())
            .and_then(|out| serde_json::from_slice::<serde_json::Value>(&out).ok())
            .and_then(|v| v["summary"]["duration_s"].as_f64());
        if let Some(m) = self
            .report
            .figures
            .iter_mut()
            .find(|f| f.dataset == dataset && f.tool == tool && f.step == step)
            .and_then(|f| f.runs.last_mut())
        {
            m.pipeline_s = pipeline;
        }
        ok
    }

    /// Tree: first, unchanged and incremental backups and a restore, ours and restic.
    pub fn run_tree(&mut self, run: usize, pristine: &Path, spec: &TreeSpec) -> Result<()> {
        let rd = self.run_dir(run);
        let work = rd.join("tree");
        self.progress.set(format!(
            "run {run}/{}: tree: copying the pristine tree",
            self.runs
        ));
        rm(&work);
        fs::create_dir_all(&rd)?;
        let st = Command::new("cp")
            .arg("-a")
            .arg(pristine)
            .arg(&work)
            .status()
            .context("running cp -a")?;
        anyhow::ensure!(
            st.success(),
            "cp -a {} {} failed",
            pristine.display(),
            work.display()
        );
        sync_all();
        let v1_bytes = dir_bytes(&work)?;

        self.progress
            .set(format!("run {run}/{}: tree: stage ceiling", self.runs));
        let sample = tree_sample(&work, self.stage_limit)?;
        let times = measure(&sample, Chunking::Cdc)?;
        drop(sample);
        self.tree_stage_runs.push(StageRun { run, times });

        let ours_v = rd.join("vault-tree");
        let nour_v = rd.join("vault-tree-nouring");
        let repo = rd.join("restic-tree");
        let w = work.as_os_str();

        let mut ours = self.init_ours(run, TREE, TIERVAULT, &ours_v);
        ours = ours && self.ours_backup(run, TREE, TIERVAULT, "first", &ours_v, &[w], v1_bytes);
        if self.init_ours(run, TREE, TIERVAULT_NO_URING, &nour_v) {
            self.ours_backup(
                run,
                TREE,
                TIERVAULT_NO_URING,
                "first",
                &nour_v,
                &[w],
                v1_bytes,
            );
        }
        rm(&nour_v);
        ours = ours && self.ours_backup(run, TREE, TIERVAULT, "unchanged", &ours_v, &[w], v1_bytes);

        let mut restic = self.init_restic(run, TREE, &repo);
        if let Some(exe) = restic.clone() {
            let ok = self.restic_backup(run, TREE, "first", &exe, &repo, &work, v1_bytes)
                && self.restic_backup(run, TREE, "unchanged", &exe, &repo, &work, v1_bytes);
            if !ok {
                restic = None;
            }
        }

        self.progress.set(format!(
            "run {run}/{}: tree: applying the v2 edit",
            self.runs
        ));
        let edit = edit_tree(&work, spec)?;
        let expected = digest_path(&work)?;
        if let Some(t) = &mut self.report.tree {
            t.v2_edit = Some(edit);
            t.v2_bytes = Some(expected.bytes);
        }
        sync_all();
        ours = ours
            && self.ours_backup(
                run,
                TREE,
                TIERVAULT,
                "incremental",
                &ours_v,
                &[w],
                expected.bytes,
            );
        if let Some(exe) = restic.clone() {
            if !self.restic_backup(run, TREE, "incremental", &exe, &repo, &work, expected.bytes) {
                restic = None;
            }
        }

        if ours {
            let target = rd.join("restore-ours-tree");
            let mut c = self.ours(&ours_v, false);
            c.args(["restore", "latest", "--target"]).arg(&target);
            self.restore_step(
                run,
                TREE,
                TIERVAULT,
                c,
                &ours_v,
                &target,
                &target.join("tree"),
                &expected,
            );
        }
        if let Some(exe) = restic {
            let target = rd.join("restore-restic-tree");
            let mut c = self.restic_cmd(&exe, &repo);
            c.args(["restore", "latest", "--target"]).arg(&target);
            let restored = target.join(rel_to_root(&work));
            self.restore_step(run, TREE, RESTIC, c, &repo, &target, &restored, &expected);
        }
        // The work tree and both restored trees (60,000 files each) stay until the bench ends.
        // Creating many files soon after deleting many is slow on ext4 (its inode allocator
        // skips inodes deleted in the last minute, reading their inode blocks: five restores
        // of the tree in a row, each target deleted before the next, took 1.9, 4.9, 8.5,
        // 12.5 and 13.0 s), and whichever restore came after a deletion paid for it.
        for p in [&ours_v, &repo, &restic_cache(&repo)] {
            rm(p);
        }
        Ok(())
    }

    /// Image: as a file inside a directory (ours and restic) and with `backup --image` (ours).
    pub fn run_image(&mut self, run: usize, pristine: &Path, spec: &ImageSpec) -> Result<()> {
        let rd = self.run_dir(run);
        let dir = rd.join("img");
        let file = dir.join("disk.img");
        self.progress.set(format!(
            "run {run}/{}: image: sparse copy of the v1 image",
            self.runs
        ));
        rm(&dir);
        fs::create_dir_all(&dir)?;
        copy_sparse(pristine, &file)?;
        sync_all();
        let size = fs::metadata(&file)?.len();

        self.progress
            .set(format!("run {run}/{}: image: stage ceiling", self.runs));
        let sample = image_sample(&file, self.stage_limit)?;
        let cdc = measure(&sample, Chunking::Cdc)?;
        let fixed = measure(&sample, Chunking::Fixed)?;
        drop(sample);
        self.image_cdc_runs.push(StageRun { run, times: cdc });
        self.image_fixed_runs.push(StageRun { run, times: fixed });

        let vd = rd.join("vault-image-dir");
        let vf = rd.join("vault-image-file");
        let repo = rd.join("restic-image");
        let d_args = [dir.as_os_str()];
        let f_args = [OsStr::new("--image"), file.as_os_str()];

        let mut od = self.init_ours(run, IMAGE_DIR, TIERVAULT, &vd);
        od = od && self.ours_backup(run, IMAGE_DIR, TIERVAULT, "first", &vd, &d_args, size);
        od = od && self.ours_backup(run, IMAGE_DIR, TIERVAULT, "unchanged", &vd, &d_args, size);
        let mut of = self.init_ours(run, IMAGE_FILE, TIERVAULT, &vf);
        of = of && self.ours_backup(run, IMAGE_FILE, TIERVAULT, "first", &vf, &f_args, size);
        of = of && self.ours_backup(run, IMAGE_FILE, TIERVAULT, "unchanged", &vf, &f_args, size);
        let mut restic = self.init_restic(run, IMAGE_DIR, &repo);
        if let Some(exe) = restic.clone() {
            let ok = self.restic_backup(run, IMAGE_DIR, "first", &exe, &repo, &dir, size)
                && self.restic_backup(run, IMAGE_DIR, "unchanged", &exe, &repo, &dir, size);
            if !ok {
                restic = None;
            }
        }

        self.progress.set(format!(
            "run {run}/{}: image: applying the v2 edit",
            self.runs
        ));
        let edit = edit_image(&file, spec)?;
        if let Some(i) = &mut self.report.image {
            i.v2_edit = Some(edit);
        }
        let expected_dir = digest_path(&dir)?;
        let expected_file = digest_path(&file)?;
        sync_all();
        od = od && self.ours_backup(run, IMAGE_DIR, TIERVAULT, "incremental", &vd, &d_args, size);
        of = of
            && self.ours_backup(
                run,
                IMAGE_FILE,
                TIERVAULT,
                "incremental",
                &vf,
                &f_args,
                size,
            );
        if let Some(exe) = restic.clone() {
            if !self.restic_backup(run, IMAGE_DIR, "incremental", &exe, &repo, &dir, size) {
                restic = None;
            }
        }

        if od {
            let target = rd.join("restore-ours-image-dir");
            let mut c = self.ours(&vd, false);
            c.args(["restore", "latest", "--target"]).arg(&target);
            self.restore_step(
                run,
                IMAGE_DIR,
                TIERVAULT,
                c,
                &vd,
                &target,
                &target.join("img"),
                &expected_dir,
            );
            rm(&target);
        }
        if of {
            let target = rd.join("restore-ours-image-file");
            let mut c = self.ours(&vf, false);
            c.args(["restore", "latest", "--target"]).arg(&target);
            self.restore_step(
                run,
                IMAGE_FILE,
                TIERVAULT,
                c,
                &vf,
                &target,
                &target.join("disk.img"),
                &expected_file,
            );
            rm(&target);
        }
        if let Some(exe) = restic {
            let target = rd.join("restore-restic-image");
            let mut c = self.restic_cmd(&exe, &repo);
            c.args(["restore", "latest", "--target"]).arg(&target);
            let restored = target.join(rel_to_root(&dir));
            self.restore_step(
                run,
                IMAGE_DIR,
                RESTIC,
                c,
                &repo,
                &target,
                &restored,
                &expected_dir,
            );
            rm(&target);
        }
        for p in [&vd, &vf, &repo, &dir, &restic_cache(&repo)] {
            rm(p);
        }
        Ok(())
    }
}
