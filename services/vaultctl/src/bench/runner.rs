//! Runs one child process and measures its wall time and peak RSS (`wait4` rusage).

use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

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

/// Runs `cmd` with stdin closed and stdout/stderr sent to `<log>.out` / `<log>.err`.
pub fn run_measured(cmd: &mut Command, log: &Path) -> Result<ChildRun> {
    let out_path = log.with_extension("out");
    let err_path = log.with_extension("err");
    let out =
        fs::File::create(&out_path).with_context(|| format!("creating {}", out_path.display()))?;
    let err =
        fs::File::create(&err_path).with_context(|| format!("creating {}", err_path.display()))?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err));
    let start = Instant::now();
    let child = cmd
        .spawn()
        .with_context(|| format!("starting {:?}", cmd.get_program()))?;
    let pid = libc::pid_t::try_from(child.id()).context("child pid out of range")?;
    let (raw, max_rss_kib) =
        wait_with_rusage(pid).with_context(|| format!("waiting for {:?}", cmd.get_program()))?;
    let wall = start.elapsed();
    // The child is reaped: dropping the handle neither waits nor kills.
    drop(child);
    let stderr = fs::read_to_string(&err_path).unwrap_or_default();
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    let stderr_tail = lines[lines.len().saturating_sub(3)..].join(" | ");
    Ok(ChildRun {
        wall,
        max_rss_kib,
        status: ExitStatus::from_raw(raw),
        stderr_tail,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_a_child() -> Result<()> {
        let dir = std::env::temp_dir().join(format!("tv-bench-run-{}", std::process::id()));
        fs::create_dir_all(&dir)?;
        // A child that touches ~64 MiB.
        let r = run_measured(
            Command::new("sh").args([
                "-c",
                "head -c 67108864 /dev/zero | tail -c 1 >/dev/null; echo oops >&2; exit 3",
            ]),
            &dir.join("t"),
        )?;
        assert_eq!(r.status.code(), Some(3));
        assert!(r.stderr_tail.contains("oops"));
        assert!(r.max_rss_kib > 0);
        let r = run_measured(Command::new("sh").args(["-c", "true"]), &dir.join("u"))?;
        assert!(r.success());
        fs::remove_dir_all(&dir)?;
        Ok(())
    }
}
