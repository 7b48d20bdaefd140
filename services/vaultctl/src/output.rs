//! Output helpers shared by commands: JSON shapes from docs/cli.md, byte paths, sizes.
//! Everything printed goes through `outln!`/`out!` or [`Stdout`] (tiervault_sys::stdout), which
//! end a command quietly with status 141 when its reader goes away.

pub use tiervault_sys::stdout::Stdout;

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
