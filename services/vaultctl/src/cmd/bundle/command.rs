//! Running the diagnostic commands (journalctl, smartctl, ipmitool, ...): found in $PATH, in
//! their own process group, killed with it at a deadline (a dying disk or a hung BMC must
//! not hang the bundle), output kept to a bounded tail.

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};

/// Standard error kept for the manifest.
const STDERR_TAIL: usize = 4096;

/// `name` in $PATH, as an executable file.
pub fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    Exit(i32),
    Signal(i32),
    TimedOut(Duration),
}

#[derive(Debug)]
pub struct Run {
    pub ended: Ended,
    /// The last `max_stdout` bytes of standard output.
    pub stdout: Vec<u8>,
    /// How many bytes the command wrote in all.
    pub stdout_total: u64,
    pub stderr: Vec<u8>,
}

impl Run {
    pub fn truncated(&self) -> bool {
        self.stdout_total > self.stdout.len() as u64
    }

    /// "exit code 2", "killed by signal 9", "timed out after 60 s".
    pub fn describe(&self) -> String {
        match &self.ended {
            Ended::Exit(c) => format!("exit code {c}"),
            Ended::Signal(s) => format!("killed by signal {s}"),
            Ended::TimedOut(d) => format!("timed out after {} s (killed)", d.as_secs()),
        }
    }

    pub fn success(&self) -> bool {
        self.ended == Ended::Exit(0)
    }

    /// The last line of standard error, for a one-line reason.
    pub fn stderr_line(&self) -> Option<String> {
        let text = String::from_utf8_lossy(&self.stderr);
        text.lines()
            .map(str::trim)
            .rfind(|l| !l.is_empty())
            .map(str::to_owned)
    }
}

/// Reads `r` to its end, keeping the last `cap` bytes; returns them and the total read.
fn read_tail(mut r: impl Read, cap: usize) -> (Vec<u8>, u64) {
    let mut chunks: VecDeque<Vec<u8>> = VecDeque::new();
    let mut held = 0usize;
    let mut total = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                total += n as u64;
                held += n;
                chunks.push_back(buf[..n].to_vec());
                while chunks.front().is_some_and(|f| held - f.len() >= cap) {
                    if let Some(f) = chunks.pop_front() {
                        held -= f.len();
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let mut out: Vec<u8> = chunks.into_iter().flatten().collect();
    if out.len() > cap {
        out.drain(..out.len() - cap);
    }
    (out, total)
}

/// Runs `program args` with no input, at most `timeout`, keeping the last `max_stdout`
/// bytes of its output. An error only when it cannot be started.
pub fn run<S: AsRef<OsStr>>(
    program: &Path,
    args: &[S],
    timeout: Duration,
    max_stdout: usize,
) -> std::io::Result<Run> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Plain, stable output: no pager, no colours, no translations.
        .env("LC_ALL", "C")
        .env("SYSTEMD_PAGER", "")
        .env("SYSTEMD_COLORS", "0")
        .env("PAGER", "cat")
        .process_group(0)
        .spawn()?;
    let out = child
        .stdout
        .take()
        .map(|o| std::thread::spawn(move || read_tail(o, max_stdout)));
    let err = child
        .stderr
        .take()
        .map(|e| std::thread::spawn(move || read_tail(e, STDERR_TAIL)));
    let deadline = Instant::now() + timeout;
    let ended = loop {
        match child.try_wait()? {
            Some(status) => {
                break match status.code() {
                    Some(c) => Ended::Exit(c),
                    None => Ended::Signal(status.signal().unwrap_or(0)),
                }
            }
            None if Instant::now() >= deadline => {
                // The whole group: a helper it started would keep the pipes open.
                let pid = rustix::process::Pid::from_child(&child);
                if let Err(e) =
                    rustix::process::kill_process_group(pid, rustix::process::Signal::Kill)
                {
                    tracing::warn!("{}: cannot kill its process group: {e}", program.display());
                    let _ = child.kill();
                }
                let _ = child.wait();
                break Ended::TimedOut(timeout);
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    let (stdout, stdout_total) = out.and_then(|h| h.join().ok()).unwrap_or_default();
    let (stderr, _) = err.and_then(|h| h.join().ok()).unwrap_or_default();
    Ok(Run {
        ended,
        stdout,
        stdout_total,
        stderr,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_end() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let (tail, total) = read_tail(&data[..], 1000);
        assert_eq!(total, 300_000);
        assert_eq!(tail, &data[data.len() - 1000..]);
    }

    #[test]
    fn exit_codes_output_and_timeouts() {
        let sh = Path::new("/bin/sh");
        let r = run(
            sh,
            &["-c", "echo out; echo err >&2; exit 3"],
            Duration::from_secs(10),
            100,
        )
        .expect("run");
        assert_eq!(r.ended, Ended::Exit(3));
        assert_eq!(r.stdout, b"out\n");
        assert_eq!(r.stderr_line().as_deref(), Some("err"));
        let started = Instant::now();
        let r = run(
            sh,
            &["-c", "sleep 30 & sleep 30"],
            Duration::from_millis(300),
            100,
        )
        .expect("run");
        assert!(matches!(r.ended, Ended::TimedOut(_)));
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the group was killed"
        );
    }
}
