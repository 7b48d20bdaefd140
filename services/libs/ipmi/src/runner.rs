//! Running a command with a deadline. [`Runner`] is the seam: [`ProcessRunner`] starts real
//! processes; unit tests implement it to answer with captured output.

use std::fmt;
use std::io::{self, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// The most output kept from one stream. ipmitool prints kilobytes; anything near this is a
/// runaway, and keeping it would only cost memory.
pub const OUTPUT_LIMIT: usize = 8 << 20;

/// One command to run.
#[derive(Clone)]
pub struct Invocation {
    pub program: PathBuf,
    pub args: Vec<String>,
    /// Variables added to the inherited environment. May hold a password: never printed.
    pub env: Vec<(String, String)>,
    pub timeout: Duration,
}

impl fmt::Debug for Invocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let env: Vec<&str> = self.env.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("Invocation")
            .field("program", &self.program)
            .field("args", &self.args)
            .field("env (values hidden)", &env)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// What a finished command printed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunOutput {
    /// The exit code; `None` when a signal ended it.
    pub code: Option<i32>,
    /// Standard output, invalid UTF-8 replaced.
    pub stdout: String,
    pub stderr: String,
    /// Whether a stream passed [`OUTPUT_LIMIT`] and was cut.
    pub truncated: bool,
}

impl RunOutput {
    /// A successful run that printed `stdout`.
    pub fn ok(stdout: impl Into<String>) -> Self {
        RunOutput {
            code: Some(0),
            stdout: stdout.into(),
            ..RunOutput::default()
        }
    }
}

/// Why a command produced no [`RunOutput`].
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("program not found")]
    NotFound,
    #[error("timed out after {0:?}")]
    TimedOut(Duration),
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Runs commands.
pub trait Runner: Send + Sync {
    fn run(&self, invocation: &Invocation) -> Result<RunOutput, RunError>;
}

/// Runs real processes: stdin closed (so nothing ever waits for a password prompt), output
/// collected by two threads (so neither pipe fills and blocks the child), killed at the
/// deadline.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessRunner;

impl Runner for ProcessRunner {
    fn run(&self, inv: &Invocation) -> Result<RunOutput, RunError> {
        let mut child = Command::new(&inv.program)
            .args(&inv.args)
            .envs(inv.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| match e.kind() {
                io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied => RunError::NotFound,
                _ => RunError::Io(e),
            })?;
        let stdout = child.stdout.take().map(collect);
        let stderr = child.stderr.take().map(collect);
        let Some(status) = wait_until(&mut child, Instant::now() + inv.timeout)? else {
            // The readers are left to finish on their own: a grandchild may still hold the
            // pipes open, and the caller must not wait for it.
            return Err(RunError::TimedOut(inv.timeout));
        };
        let (stdout, cut_out) = joined(stdout);
        let (stderr, cut_err) = joined(stderr);
        Ok(RunOutput {
            code: status.code(),
            stdout,
            stderr,
            truncated: cut_out || cut_err,
        })
    }
}

/// Waits for the child until the deadline, then kills it. `None` when it was killed.
fn wait_until(
    child: &mut Child,
    deadline: Instant,
) -> io::Result<Option<std::process::ExitStatus>> {
    // Polling costs at most a few milliseconds per call; a thread blocked in wait() could not
    // be told to give up.
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        let now = Instant::now();
        if now >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

type Collector = thread::JoinHandle<(Vec<u8>, bool)>;

fn collect(stream: impl Read + Send + 'static) -> Collector {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let mut limited = stream.take(OUTPUT_LIMIT as u64 + 1);
        let _ = limited.read_to_end(&mut buf);
        let cut = buf.len() > OUTPUT_LIMIT;
        buf.truncate(OUTPUT_LIMIT);
        // Keep draining so a chatty child is not blocked on a full pipe until the deadline.
        let _ = io::copy(&mut limited.into_inner(), &mut io::sink());
        (buf, cut)
    })
}

fn joined(collector: Option<Collector>) -> (String, bool) {
    match collector.map(|c| c.join()) {
        Some(Ok((bytes, cut))) => (String::from_utf8_lossy(&bytes).into_owned(), cut),
        _ => (String::new(), false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str, timeout: Duration) -> Invocation {
        Invocation {
            program: "sh".into(),
            args: vec!["-c".into(), script.into()],
            env: vec![("TV_SECRET".into(), "hunter2".into())],
            timeout,
        }
    }

    #[test]
    fn collects_both_streams_and_the_code() {
        let out = ProcessRunner
            .run(&sh(
                "echo out; echo err >&2; echo $TV_SECRET; exit 3",
                Duration::from_secs(10),
            ))
            .expect("runs");
        assert_eq!(out.code, Some(3));
        assert_eq!(out.stdout, "out\nhunter2\n");
        assert_eq!(out.stderr, "err\n");
        assert!(!out.truncated);
    }

    #[test]
    fn a_hung_command_is_killed_at_the_deadline() {
        let started = Instant::now();
        let err = ProcessRunner
            .run(&sh("exec sleep 30", Duration::from_millis(300)))
            .expect_err("times out");
        assert!(matches!(err, RunError::TimedOut(_)), "{err:?}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn a_missing_program_is_not_found() {
        let inv = Invocation {
            program: "/nonexistent/ipmitool".into(),
            args: vec![],
            env: vec![],
            timeout: Duration::from_secs(1),
        };
        assert!(matches!(ProcessRunner.run(&inv), Err(RunError::NotFound)));
    }

    #[test]
    fn stdin_is_closed() {
        // A tool that prompts must see end of input at once, not wait for the deadline.
        let out = ProcessRunner
            .run(&sh("read line; echo \"rc=$?\"", Duration::from_secs(10)))
            .expect("runs");
        assert_eq!(out.stdout, "rc=1\n");
    }

    #[test]
    fn the_debug_form_hides_environment_values() {
        let text = format!("{:?}", sh("true", Duration::from_secs(1)));
        assert!(
            text.contains("TV_SECRET") && !text.contains("hunter2"),
            "{text}"
        );
    }
}
