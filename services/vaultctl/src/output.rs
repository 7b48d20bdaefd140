//! Output helpers shared by commands: standard output that ends the process quietly when the
//! reader goes away, JSON shapes from docs/cli.md, byte paths, sizes.

use std::io::Write;

use serde_json::{json, Value};
use tiervault_store::{Entry, Snapshot};

/// Show raw path bytes: UTF-8 as is, other bytes as \xNN.
pub fn show(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

pub fn rfc3339_ns(ns: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(ns as i128)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ns.to_string())
}

pub fn snapshot_json(s: &Snapshot) -> Value {
    let b = &s.body;
    json!({
        "id": s.id.hex(),
        "short_id": s.short_id(),
        "time": rfc3339_ns(s.header.time_ns),
        "paths": b.paths.iter().map(|p| show(p)).collect::<Vec<_>>(),
        "hostname": b.hostname,
        "username": b.username,
        "kind": b.kind,
        "image": b.image,
        "status": if s.has_warnings() { "warnings" } else { "complete" },
        "parent": b.parent,
        "summary": {
            "files": b.summary.files,
            "dirs": b.summary.dirs,
            "bytes": b.summary.bytes,
            "stored_bytes": b.summary.stored_bytes,
            "new_blobs": b.summary.new_blobs,
            "skipped": b.summary.skipped,
            "duration_s": b.summary.duration_ns as f64 / 1e9,
        },
    })
}

pub fn entry_json(path: &[u8], e: &Entry) -> Value {
    let mut v = json!({
        "path": show(path),
        "type": e.kind.name(),
        "size": e.size.unwrap_or(0),
        "mode": format!("{:04o}", e.mode),
        "mtime": rfc3339_ns(e.mtime),
        "uid": e.uid,
        "gid": e.gid,
    });
    if let Some(t) = &e.target {
        v["target"] = Value::String(show(t));
    }
    v
}

/// Exit status of a command whose standard output was closed by its reader.
pub const SIGPIPE_STATUS: i32 = 128 + libc::SIGPIPE;

/// Write to standard output (what `outln!` and `out!` expand to). A reader that went away
/// (`vaultctl ls … | head`) ends the process as SIGPIPE ends `cat` or `grep`: quietly, with
/// status 141, which a shell's `pipefail` sees. (Rust ignores SIGPIPE so that sockets and
/// pipes to children fail with EPIPE; only standard output gets the Unix behaviour.) Exiting
/// here is no worse than `kill -9`, which every command survives: the vault is crash-safe.
pub fn stdout_fmt(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.flush()) {
        stdout_failed(e);
    }
}

/// The end of a write to standard output that failed: status 141 when the reader went away;
/// otherwise (a full disk behind a redirection) an error message and exit status 1, as a
/// failed command.
pub fn stdout_failed(e: std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        // The status a shell gives a process SIGPIPE killed (128 + 13), without a message.
        std::process::exit(SIGPIPE_STATUS);
    }
    eprintln!("error: writing to standard output: {e}");
    std::process::exit(1);
}

/// Standard output as a `Write` (for bulk output such as `cat`) whose failures end the process
/// as [`stdout_failed`] does.
pub struct Stdout(std::io::StdoutLock<'static>);

impl Stdout {
    pub fn lock() -> Stdout {
        Stdout(std::io::stdout().lock())
    }
}

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.0.write(buf) {
            Err(e) if e.kind() != std::io::ErrorKind::Interrupted => stdout_failed(e),
            r => r,
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush().or_else(|e| stdout_failed(e))
    }
}

pub fn print_json(v: &Value) {
    // Serialising a Value cannot fail.
    outln!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

/// Human-readable size (decimal units, as disk vendors and restic print them).
pub fn size(n: u64) -> String {
    const U: [&str; 6] = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1000.0 && i + 1 < U.len() {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", U[i])
    }
}

pub fn mode_string(e: &Entry) -> String {
    let t = match e.kind.name() {
        "dir" => 'd',
        "symlink" => 'l',
        "chardev" => 'c',
        "blockdev" => 'b',
        "fifo" => 'p',
        "socket" => 's',
        _ => '-',
    };
    let mut s = String::from(t);
    for shift in [6, 3, 0] {
        let b = (e.mode >> shift) & 7;
        s.push(if b & 4 != 0 { 'r' } else { '-' });
        s.push(if b & 2 != 0 { 'w' } else { '-' });
        s.push(if b & 1 != 0 { 'x' } else { '-' });
    }
    s
}

/// This process's peak resident set (`VmHWM`: reset at exec, unlike `ru_maxrss`), bytes;
/// `None` where /proc says nothing.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib << 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_utf8_bytes_are_escaped() {
        assert_eq!(show(b"a/\xffb"), "a/\\xffb");
        assert_eq!(show("é".as_bytes()), "é");
    }

    #[test]
    fn sizes_are_decimal() {
        assert_eq!(size(999), "999 B");
        assert_eq!(size(1_500_000), "1.5 MB");
    }
}
