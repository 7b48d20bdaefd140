//! `vaultctl bench`: reproducible datasets, stage ceilings and a restic comparison.
//! What it measures and how to read it: docs/benchmarks.md.

pub mod dataset;
mod image;
mod report;
mod runner;
mod stages;
mod suite;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use clap::Args;
use serde::{Deserialize, Serialize};

use dataset::{TreeSpec, TreeStats, GENERATOR_VERSION};
use image::{ImageSpec, ImageStats};
use report::{ImageInfo, Machine, Report, StageSummary, TreeInfo};
use suite::{Progress, Suite};

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Working directory for datasets, vaults, restores and logs (datasets are reused)
    #[arg(long, value_name = "DIR", default_value = "bench-data")]
    pub dir: PathBuf,
    /// Repeat the whole measurement N times and report medians
    #[arg(long, value_name = "N", default_value_t = 3,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub runs: u32,
    /// Do not run restic (no comparison)
    #[arg(long)]
    pub skip_restic: bool,
    /// Datasets about 20 times smaller, for a smoke run
    #[arg(long)]
    pub quick: bool,
    /// Write all figures as JSON to FILE [default: DIR/results.json]
    #[arg(long, value_name = "FILE")]
    pub json_out: Option<PathBuf>,
    /// Internal: run the command described in FILE and print its wall time and peak RSS
    #[arg(long, value_name = "FILE", hide = true)]
    pub measure_child: Option<PathBuf>,
}

#[derive(Serialize, Deserialize)]
struct TreeMarker {
    generator: u32,
    spec: TreeSpec,
    stats: TreeStats,
}

#[derive(Serialize, Deserialize)]
struct ImageMarker {
    generator: u32,
    spec: ImageSpec,
    stats: ImageStats,
}

fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn restic_version(exe: &Path) -> Option<String> {
    let out = Command::new(exe).arg("version").output().ok()?;
    let s = String::from_utf8_lossy(&out.stdout);
    s.lines().next().map(|l| l.trim().to_string())
}

/// The v1 tree under `data/tree`, reused when its marker names the same generator and spec.
fn prepare_tree(data: &Path, spec: &TreeSpec, progress: &Progress) -> Result<(PathBuf, TreeStats)> {
    let dir = data.join("tree");
    let marker = data.join("tree.json");
    if let Ok(Ok(m)) = fs::read(&marker).map(|b| serde_json::from_slice::<TreeMarker>(&b)) {
        if m.generator == GENERATOR_VERSION && &m.spec == spec && dir.is_dir() {
            return Ok((dir, m.stats));
        }
    }
    progress.set(format!(
        "generating the tree ({} files, {:.0} MB) in {}",
        spec.files,
        spec.total_bytes as f64 / 1e6,
        dir.display()
    ));
    let _ = fs::remove_file(&marker);
    if dir.exists() {
        fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    let stats = dataset::generate_tree(&dir, spec)?;
    let m = TreeMarker {
        generator: GENERATOR_VERSION,
        spec: spec.clone(),
        stats: stats.clone(),
    };
    fs::write(&marker, serde_json::to_vec_pretty(&m)?)
        .with_context(|| format!("writing {}", marker.display()))?;
    Ok((dir, stats))
}

/// The v1 image `data/image.img`, reused when its marker names the same generator and spec.
fn prepare_image(
    mkfs: &Path,
    data: &Path,
    spec: &ImageSpec,
    progress: &Progress,
) -> Result<(PathBuf, ImageStats)> {
    let img = data.join("image.img");
    let marker = data.join("image.json");
    if let Ok(Ok(m)) = fs::read(&marker).map(|b| serde_json::from_slice::<ImageMarker>(&b)) {
        if m.generator == GENERATOR_VERSION && &m.spec == spec && img.is_file() {
            return Ok((img, m.stats));
        }
    }
    progress.set(format!(
        "generating the disk image ({:.0} MB of files in a {:.0} MB ext4 image)",
        spec.content_bytes as f64 / 1e6,
        spec.image_size as f64 / 1e6
    ));
    let _ = fs::remove_file(&marker);
    let stats = image::build_image(mkfs, &img, &data.join("image-src"), spec)?;
    let m = ImageMarker {
        generator: GENERATOR_VERSION,
        spec: spec.clone(),
        stats: stats.clone(),
    };
    fs::write(&marker, serde_json::to_vec_pretty(&m)?)
        .with_context(|| format!("writing {}", marker.display()))?;
    Ok((img, stats))
}

pub fn run(args: &BenchArgs, json: bool, quiet: bool) -> Result<()> {
    if let Some(spec) = &args.measure_child {
        return runner::measure_child_main(spec);
    }
    let started = now();
    fs::create_dir_all(&args.dir).with_context(|| format!("creating {}", args.dir.display()))?;
    let root =
        fs::canonicalize(&args.dir).with_context(|| format!("resolving {}", args.dir.display()))?;
    let json_out = args
        .json_out
        .clone()
        .unwrap_or_else(|| root.join("results.json"));
    let progress = Progress::new(quiet);
    let mut notes = Vec::new();

    let restic = if args.skip_restic {
        notes.push("restic skipped (--skip-restic): no comparison".to_string());
        None
    } else {
        match find_on_path("restic") {
            Some(p) => Some(p),
            None => {
                let msg = "restic not found: install it with apt-get install restic";
                progress.warn(msg);
                notes.push(format!("{msg}; comparison skipped"));
                None
            }
        }
    };
    let restic_ver = restic.as_deref().and_then(restic_version);
    let mkfs = image::find_mkfs();
    if mkfs.is_none() {
        let msg = "mkfs.ext4 not found: install it with apt-get install e2fsprogs; skipping the disk image";
        progress.warn(msg);
        notes.push(msg.to_string());
    }
    notes.push(
        "both tools read a warm page cache (a vault or repository is read once, untimed, before each restore); sync(2) runs before every timed step".to_string(),
    );
    if restic.is_some() {
        notes.push(
            "restic restores the image without --sparse (restic 0.14 has none): it writes the holes as zeros"
                .to_string(),
        );
    }

    let (tree_spec, image_spec) = if args.quick {
        (TreeSpec::small(), ImageSpec::small())
    } else {
        (TreeSpec::standard(), ImageSpec::standard())
    };
    let data = root
        .join("data")
        .join(if args.quick { "quick" } else { "standard" });
    fs::create_dir_all(&data).with_context(|| format!("creating {}", data.display()))?;
    let (tree_dir, tree_stats) = prepare_tree(&data, &tree_spec, &progress)?;
    let image = match &mkfs {
        Some(m) => Some(prepare_image(m, &data, &image_spec, &progress)?),
        None => None,
    };

    let machine = Machine::probe(restic_ver, mkfs.as_ref().map(|p| p.display().to_string()));
    let cores = machine.cores;
    let report = Report {
        schema: "tiervault-bench/1".into(),
        started,
        finished: String::new(),
        quick: args.quick,
        runs: args.runs as usize,
        dir: root.display().to_string(),
        machine,
        notes,
        tree: Some(TreeInfo {
            path: tree_dir.display().to_string(),
            v1: tree_stats,
            v2_edit: None,
            v2_bytes: None,
        }),
        image: image.as_ref().map(|(p, s)| ImageInfo {
            path: p.display().to_string(),
            v1: s.clone(),
            v2_edit: None,
        }),
        stages: Vec::new(),
        figures: Vec::new(),
        comparisons: Vec::new(),
        ceiling_use: Vec::new(),
        errors: Vec::new(),
    };
    let mut suite = Suite {
        exe: std::env::current_exe().context("locating the vaultctl executable")?,
        restic,
        root: root.clone(),
        runs: args.runs as usize,
        stage_limit: if args.quick {
            512_000_000 / 20
        } else {
            512_000_000
        },
        progress,
        report,
        tree_stage_runs: Vec::new(),
        image_cdc_runs: Vec::new(),
        image_fixed_runs: Vec::new(),
    };
    for run in 1..=args.runs as usize {
        suite.run_tree(run, &tree_dir, &tree_spec)?;
        if let Some((img, _)) = &image {
            suite.run_image(run, img, &image_spec)?;
        }
    }
    let _ = fs::remove_dir_all(root.join("run"));
    suite.progress.finish();

    let mut report = suite.report;
    report.stages.push(StageSummary::new(
        "tree",
        "fastcdc",
        suite.tree_stage_runs,
        cores,
    ));
    if !suite.image_cdc_runs.is_empty() {
        report.stages.push(StageSummary::new(
            "image",
            "fastcdc",
            suite.image_cdc_runs,
            cores,
        ));
        report.stages.push(StageSummary::new(
            "image",
            "fixed-256KiB",
            suite.image_fixed_runs,
            cores,
        ));
    }
    report.finished = now();
    report.finish();
    let doc = report.to_json();
    if let Some(parent) = json_out.parent() {
        fs::create_dir_all(parent).ok();
    }
    fs::write(&json_out, &doc).with_context(|| format!("writing {}", json_out.display()))?;
    if json {
        outln!("{doc}");
    } else {
        out!("{}", report.render());
        outln!("raw figures: {}", json_out.display());
    }
    if !report.errors.is_empty() {
        anyhow::bail!(
            "bench finished with {} error(s), first: {}; logs in {}",
            report.errors.len(),
            report.errors[0],
            root.join("logs").display()
        );
    }
    Ok(())
}
