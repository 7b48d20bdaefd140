//! Runs one child process and measures its wall time and peak RSS (`wait4` rusage).
//!
//! Peak RSS needs care: at `execve` Linux folds the high-water RSS of the process image being
//! replaced into the new program's `ru_maxrss`. std spawns with `vfork` semantics, so a child of
//! the bench process would report at least the bench's own peak (hundreds of MB after the stage
//! measurements). Every timed command therefore runs under a small helper — a fresh
//! `vaultctl bench --measure-child SPEC` process (a few MB) — which spawns the real command,
//! waits for it with `wait4`, and prints the figures as JSON.

use std::ffi::OsString;
use std::fs;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone)]
pub struct ChildRun {
    pub wall: Duration,
    /// Peak resident set size of the child, KiB (`ru_maxrss`).
    pub max_rss_kib: u64,
    pub status: ExitStatus,
    /// The last lines of the child's stderr (for error reports).
    pub stderr_tail: String,
}

impl ChildRun {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// "exit status 1: error: …" for reports.
    pub fn failure(&self) -> String {
        let tail = self.stderr_tail.trim();
        if tail.is_empty() {
            format!("{}", self.status)
        } else {
            format!("{}: {tail}", self.status)
        }
    }
}

/// Waits for `pid` and returns its raw wait status and peak RSS in KiB.
#[allow(unsafe_code)]
fn wait_with_rusage(pid: libc::pid_t) -> std::io::Result<(i32, u64)> {
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: `libc::rusage` is plain old data, so all-zero bytes are a valid value.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: `status` and `usage` are valid, exclusively borrowed locals for the duration
        // of the call; `pid` is our own unwaited child, so no other code reaps it.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            return Ok((status, usage.ru_maxrss.max(0) as u64));
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Spawns `cmd` (stdio already set) and reaps it with `wait4`: (wall, raw status, peak RSS KiB).
fn spawn_and_wait(cmd: &mut Command) -> Result<(Duration, i32, u64)> {
    let start = Instant::now();
    let child = cmd
        .spawn()
        .with_context(|| format!("starting {:?}", cmd.get_program()))?;
    let pid = libc::pid_t::try_from(child.id()).context("child pid out of range")?;
    let (raw, rss) =
        wait_with_rusage(pid).with_context(|| format!("waiting for {:?}", cmd.get_program()))?;
    let wall = start.elapsed();
    // The child is reaped: dropping the handle neither waits nor kills.
    drop(child);
    Ok((wall, raw, rss))
}

fn stderr_tail(path: &Path) -> String {
    let stderr = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(3)..].join(" | ")
}

fn log_files(log: &Path) -> Result<(PathBuf, PathBuf, fs::File, fs::File)> {
    let out_path = log.with_extension("out");
    let err_path = log.with_extension("err");
    let out =
        fs::File::create(&out_path).with_context(|| format!("creating {}", out_path.display()))?;
    let err =
        fs::File::create(&err_path).with_context(|| format!("creating {}", err_path.display()))?;
    Ok((out_path, err_path, out, err))
}

/// Runs `cmd` directly (stdin closed, stdout/stderr to `<log>.out` / `<log>.err`). Its peak RSS
/// includes this process's own peak (see the module comment): use `run_measured` for figures.
pub fn run_direct(cmd: &mut Command, log: &Path) -> Result<ChildRun> {
    let (_, err_path, out, err) = log_files(log)?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err));
    let (wall, raw, max_rss_kib) = spawn_and_wait(cmd)?;
    Ok(ChildRun {
        wall,
        max_rss_kib,
        status: ExitStatus::from_raw(raw),
        stderr_tail: stderr_tail(&err_path),
    })
}

/// An argument: text when it is UTF-8 (readable in `<log>.cmd.json`), else raw bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
enum Arg {
    Text(String),
    Bytes(Vec<u8>),
}

impl Arg {
    fn new(s: &std::ffi::OsStr) -> Self {
        match s.to_str() {
            Some(t) => Arg::Text(t.to_string()),
            None => Arg::Bytes(s.as_bytes().to_vec()),
        }
    }

    fn os(self) -> OsString {
        match self {
            Arg::Text(t) => OsString::from(t),
            Arg::Bytes(b) => OsString::from_vec(b),
        }
    }
}

/// A command as the helper process receives it.
#[derive(Debug, Serialize, Deserialize)]
pub struct ChildSpec {
    program: Arg,
    args: Vec<Arg>,
    /// Variables to set (`Some`) or remove (`None`) on top of the inherited environment.
    env: Vec<(Arg, Option<Arg>)>,
    log: PathBuf,
}

impl ChildSpec {
    fn new(cmd: &Command, log: &Path) -> Self {
        ChildSpec {
            program: Arg::new(cmd.get_program()),
            args: cmd.get_args().map(Arg::new).collect(),
            env: cmd
                .get_envs()
                .map(|(k, v)| (Arg::new(k), v.map(Arg::new)))
                .collect(),
            log: log.to_path_buf(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct ChildOutcome {
    wall_ns: u64,
    max_rss_kib: u64,
    status: i32,
}

/// Runs `cmd` under the measuring helper (see the module comment); stdout/stderr go to
/// `<log>.out` / `<log>.err` and the exact command to `<log>.cmd.json`.
pub fn run_measured(cmd: &Command, log: &Path) -> Result<ChildRun> {
    let spec = ChildSpec::new(cmd, log);
    let spec_path = log.with_extension("cmd.json");
    fs::write(&spec_path, serde_json::to_vec_pretty(&spec)?)
        .with_context(|| format!("writing {}", spec_path.display()))?;
    let exe = std::env::current_exe().context("locating the vaultctl executable")?;
    let out = Command::new(&exe)
        .arg("bench")
        .arg("--measure-child")
        .arg(&spec_path)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("starting the measuring helper {}", exe.display()))?;
    if !out.status.success() {
        bail!(
            "measuring helper failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let o: ChildOutcome = serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "measuring helper printed {:?}",
            String::from_utf8_lossy(&out.stdout)
        )
    })?;
    Ok(ChildRun {
        wall: Duration::from_nanos(o.wall_ns),
        max_rss_kib: o.max_rss_kib,
        status: ExitStatus::from_raw(o.status),
        stderr_tail: stderr_tail(&log.with_extension("err")),
    })
}

/// The helper's side of `run_measured`: run the command in `spec_path`, print the figures.
pub fn measure_child_main(spec_path: &Path) -> Result<()> {
    let bytes = fs::read(spec_path).with_context(|| format!("reading {}", spec_path.display()))?;
    let spec: ChildSpec = serde_json::from_slice(&bytes)
        .with_context(|| format!("parsing {}", spec_path.display()))?;
    let mut cmd = Command::new(spec.program.os());
    cmd.args(spec.args.into_iter().map(Arg::os));
    for (k, v) in spec.env {
        match v {
            Some(v) => cmd.env(k.os(), v.os()),
            None => cmd.env_remove(k.os()),
        };
    }
    let r = run_direct(&mut cmd, &spec.log)?;
    let o = ChildOutcome {
        wall_ns: u64::try_from(r.wall.as_nanos()).unwrap_or(u64::MAX),
        max_rss_kib: r.max_rss_kib,
        status: r.status.into_raw(),
    };
    outln!("{}", serde_json::to_string(&o)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_a_child() -> Result<()> {
        let dir = std::env::temp_dir().join(format!("tv-bench-run-{}", std::process::id()));
        fs::create_dir_all(&dir)?;
        let r = run_direct(
            Command::new("sh").args(["-c", "echo oops >&2; exit 3"]),
            &dir.join("t"),
        )?;
        assert_eq!(r.status.code(), Some(3));
        assert!(r.stderr_tail.contains("oops"));
        assert!(r.max_rss_kib > 0);
        let r = run_direct(Command::new("sh").args(["-c", "true"]), &dir.join("u"))?;
        assert!(r.success());
        fs::remove_dir_all(&dir)?;
        Ok(())
    }

    #[test]
    fn spec_roundtrip() -> Result<()> {
        let mut c = Command::new("restic");
        c.arg("-r").arg("/x y").env("A", "1").env_remove("B");
        c.arg(std::ffi::OsStr::from_bytes(b"\xff/bad"));
        let spec = ChildSpec::new(&c, Path::new("/tmp/l"));
        let text = serde_json::to_string(&spec)?;
        assert!(text.contains("\"/x y\""), "{text}");
        let back: ChildSpec = serde_json::from_str(&text)?;
        assert_eq!(back.args[1], Arg::Text("/x y".into()));
        assert_eq!(back.args[2].clone().os().as_bytes(), b"\xff/bad");
        assert_eq!(back.env.len(), 2);
        Ok(())
    }
}
