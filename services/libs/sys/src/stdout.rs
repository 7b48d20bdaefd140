//! Standard output for command-line tools, with the Unix behaviour when the reader goes away.
//!
//! Rust ignores SIGPIPE, so that sockets and pipes to children fail with EPIPE rather than end
//! the process; `println!` then panics (with a backtrace) when the reader of standard output
//! is gone, as in `vaultctl ls latest | head`. Writing through [`outln!`](crate::outln),
//! [`out!`](crate::out) or [`Stdout`] ends the process the way SIGPIPE ends `cat` or `grep`:
//! quietly, with status 141 ([`READER_GONE_STATUS`]), which a shell's `pipefail` sees. Any
//! other failure (`> /dev/full`) prints one error line and exits with status 1. Exiting there
//! is no worse than `kill -9`, which every Tiervault command and service survives.

use std::io::Write;

/// Exit status of a command whose standard output was closed by its reader: what a shell
/// reports for a process SIGPIPE ended.
pub const READER_GONE_STATUS: i32 = 128 + libc::SIGPIPE;

/// Write formatted text to standard output and flush it (what [`outln!`](crate::outln) and
/// [`out!`](crate::out) expand to); a failure ends the process as [`failed`] does.
pub fn write_fmt(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.flush()) {
        failed(e);
    }
}

/// The end of a write to standard output that failed: quietly with [`READER_GONE_STATUS`] when
/// the reader went away, else an error line and status 1.
pub fn failed(e: std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(READER_GONE_STATUS);
    }
    eprintln!("error: writing to standard output: {e}");
    std::process::exit(1);
}

/// Standard output as a `Write`, for bulk output (wrap it in a `BufWriter`); failures end the
/// process as [`failed`] does.
pub struct Stdout(std::io::StdoutLock<'static>);

impl Stdout {
    pub fn lock() -> Stdout {
        Stdout(std::io::stdout().lock())
    }
}

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.0.write(buf) {
            Err(e) if e.kind() != std::io::ErrorKind::Interrupted => failed(e),
            r => r,
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush().or_else(|e| failed(e))
    }
}

/// `println!` through [`write_fmt`]: ends the process quietly when the reader went away.
#[macro_export]
macro_rules! outln {
    () => {
        $crate::stdout::write_fmt(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::stdout::write_fmt(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` through [`write_fmt`].
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::stdout::write_fmt(format_args!($($arg)*))
    };
}
