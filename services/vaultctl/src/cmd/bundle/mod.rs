//! `vaultctl support-bundle`: the escalation bundle an MSP engineer attaches to a ticket.
//!
//! The order matters: the configs are read first because they name the secret files and
//! hold the inline values that every later section is searched for; every member is then
//! redacted ([`redact`]); the archive is written to a temporary file, read back and
//! searched again with the same rules (a finding aborts: defence in depth against a rule
//! that missed something, e.g. a secret in a file's name), and only then renamed into place,
//! never over an existing file.

mod collect;
mod command;
mod config;
mod manifest;
mod redact;
mod secrets;

use std::fs::{self, File, OpenOptions};
use std::io::{IsTerminal, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use tiervault_model::ByteSize;
use tiervault_store::retention::parse_duration;

use crate::cli::Global;
use crate::Outcome;
use collect::Collector;
use manifest::{Found, Item, Manifest, Status, Unsearched};
use redact::Rule;
use secrets::Secrets;

pub const HELP: &str = "\
What is collected (each under a top directory named like FILE, without .tar.zst):
  MANIFEST.json  every item: its source, status (collected, missing, unreadable, failed,
                 omitted, skipped), sizes, redactions, and why anything is not there
  versions/      vaultctl, the kernel (uname -a), /etc/os-release, mdadm, smartctl, ipmitool
  config/        /etc/tiervault/** and /etc/mdadm/mdadm.conf, secrets redacted
  state/         the services' status.json (sensors, disks, pool), alerts.json, history.json,
                 audit.log and the BMC event-log archive sel-archive.jsonl (last 16 MiB)
                 under /var/lib/tiervault/* and the state directories the configs name;
                 replication/status.json and alerts.json beside each vault they name
  logs/          journalctl -u 'vault-*' since --since (last 64 MiB)
  hardware/      vaultctl hw dump --json, /proc/mdstat, lsblk -J, ipmitool fru print and
                 sdr elist (when /dev/ipmi0 exists), smartctl --json -x per disk

Secrets never leave the machine:
  - key, token, passphrase and password files (named by a config's *-file or key setting,
    or taken for one by name, by being binary, or by holding a private key) are left out and
    listed as omitted, reason \"secret\";
  - the value of any config key whose name contains password, passphrase, secret, token,
    api-key, private or credential, or is key/*-key or a header's value, becomes <redacted>;
    paths (*-file, *-path) stay readable; every line of the config is kept;
  - URLs lose their user and password (and, in configs, their path), Bearer and Basic
    credentials are redacted, PEM private key blocks too;
  - every value of those files and settings is searched for in everything collected, also
    as hex and base64; where found it is redacted and listed in known_values_found (a
    service is leaking it: report that).
The finished archive is read back and searched again; if anything is still found, nothing
is written and the error names the member.

A missing file, directory or command never fails the bundle: the manifest says why. The
bundle is written to a temporary file in FILE's directory, synced, and renamed; an existing
FILE is never replaced. Commands are run with a deadline (journalctl 5 min, probes 1 min).

Exit codes: 0 written; 1 not written (FILE exists, its directory is not writable, or the
final search found a secret); 2 usage error.

Examples:
  vaultctl support-bundle
  vaultctl support-bundle --since 2d --output /tmp/ticket-4711.tar.zst
  vaultctl support-bundle --json | jq '.items[] | select(.status != \"collected\")'
  zstd -dc tiervault-support-*.tar.zst | tar -t";

fn parse_since(s: &str) -> Result<String, String> {
    parse_duration(s)
        .map(|_| s.to_owned())
        .map_err(|e| e.to_string())
}

#[derive(Debug, Args)]
pub struct SupportBundleArgs {
    /// Write the bundle to FILE [default: ./tiervault-support-<hostname>-<UTC time>.tar.zst].
    /// An existing FILE is never replaced
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// How far back the journal goes: numbers with units h, d, w, m (30 days), y; e.g. 12h, 2w,
    /// 1d12h
    #[arg(long, value_name = "DURATION", default_value = "7d", value_parser = parse_since)]
    pub since: String,
    /// Advanced: read every file below DIR instead of / (a mounted copy of an appliance's
    /// disk, or a test tree): configs, state, /proc, /sys, /dev; journalctl reads
    /// DIR/var/log/journal. Commands still run on this machine, found in $PATH
    #[arg(long, value_name = "DIR", hide_short_help = true)]
    pub root: Option<PathBuf>,
}

/// The machine's name as a file name can hold it.
fn hostname() -> String {
    let raw = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    let clean: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean.is_empty() {
        "unknown".into()
    } else {
        clean
    }
}

/// The top directory: FILE's name without .tar.zst (or .tzst, or its extension).
fn top_name(output: &Path) -> String {
    let name = output
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = [".tar.zst", ".tzst", ".tar"]
        .iter()
        .find_map(|s| name.strip_suffix(s))
        .map(str::to_owned)
        .or_else(|| output.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_default();
    if stem.is_empty() || stem.starts_with('.') {
        "tiervault-support".into()
    } else {
        stem
    }
}

/// One line (and on a terminal, a spinner) per section on stderr.
struct Steps {
    show: bool,
}

impl Steps {
    fn section(&self, c: &mut Collector, name: &str, f: impl FnOnce(&mut Collector)) {
        let before = c.items.len();
        let spinner = (self.show && std::io::stderr().is_terminal()).then(|| {
            let s = indicatif::ProgressBar::new_spinner();
            s.set_message(format!("{name}…"));
            s.enable_steady_tick(Duration::from_millis(100));
            s
        });
        f(c);
        if let Some(s) = spinner {
            s.finish_and_clear();
        }
        if self.show {
            eprintln!("{name:<9} {}", counts(&c.items[before..]));
        }
    }
}

fn counts(items: &[Item]) -> String {
    let parts: Vec<String> = Status::ALL
        .iter()
        .filter_map(|s| {
            let n = items.iter().filter(|i| i.status == *s).count();
            (n > 0).then(|| format!("{n} {}", s.name()))
        })
        .collect();
    if parts.is_empty() {
        "nothing".into()
    } else {
        parts.join(", ")
    }
}

pub fn run(g: &Global, a: &SupportBundleArgs) -> Result<Outcome> {
    let now = time::OffsetDateTime::now_utc();
    let since_ns = parse_duration(&a.since).with_context(|| format!("--since {}", a.since))?;
    let since_epoch = (now.unix_timestamp() - since_ns / 1_000_000_000).max(0);
    let host = hostname();
    let stamp = now
        .format(time::macros::format_description!(
            "[year][month][day]T[hour][minute][second]Z"
        ))
        .context("formatting the time")?;
    let output = a
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("tiervault-support-{host}-{stamp}.tar.zst")));
    // Checked before collecting for minutes; the final rename checks again, atomically.
    if fs::symlink_metadata(&output).is_ok() {
        bail!(
            "{}: already exists; not overwriting it (remove it or choose another --output)",
            output.display()
        );
    }
    let dir = match output.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        bail!(
            "{}: no such directory to write {} in",
            dir.display(),
            output.display()
        );
    }
    let top = top_name(&output);

    let steps = Steps {
        show: !g.quiet && !g.json,
    };
    let mut c = Collector::new(a.root.clone(), since_epoch);
    let own: Vec<&Path> = [&g.passphrase_file, &g.key_file]
        .into_iter()
        .flatten()
        .map(PathBuf::as_path)
        .collect();
    c.own_secrets(&own);
    steps.section(&mut c, "config", Collector::configs);
    steps.section(&mut c, "versions", Collector::versions);
    steps.section(&mut c, "state", Collector::state);
    steps.section(&mut c, "logs", Collector::logs);
    steps.section(&mut c, "hardware", Collector::hardware);

    let found = redact_all(&mut c);
    let rfc3339 = now
        .format(&time::format_description::well_known::Rfc3339)
        .context("formatting the time")?;
    let manifest = Manifest {
        format: "tiervault-support-bundle/1",
        name: top.clone(),
        created: rfc3339,
        hostname: host,
        vaultctl: manifest::version(),
        root: a
            .root
            .as_ref()
            .map_or("/".into(), |r| r.display().to_string()),
        since: a.since.clone(),
        summary: manifest::summary(&c.items),
        items: c.items.clone(),
        known_values_found: found.clone(),
        not_searched: c
            .secrets
            .unsearched()
            .iter()
            .map(|(s, w)| Unsearched {
                value_from: s.clone(),
                why: w.clone(),
            })
            .collect(),
    };
    let mut json = serde_json::to_vec_pretty(&manifest).context("encoding the manifest")?;
    json.push(b'\n');
    let mut members: Vec<(&str, &[u8])> = vec![("MANIFEST.json", &json)];
    members.extend(
        c.members
            .iter()
            .map(|m| (m.path.as_str(), m.data.as_slice())),
    );

    let bar = (steps.show && std::io::stderr().is_terminal()).then(|| {
        let s = indicatif::ProgressBar::new_spinner();
        s.set_message("writing and checking the bundle…");
        s.enable_steady_tick(Duration::from_millis(100));
        s
    });
    let written = write_bundle(
        &output,
        &dir,
        &top,
        &members,
        now.unix_timestamp(),
        &c.secrets,
    );
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let size = written?;

    if g.json {
        let mut v = serde_json::to_value(&manifest).context("encoding the manifest")?;
        if let Some(o) = v.as_object_mut() {
            o.insert("output".into(), output.display().to_string().into());
            o.insert("output_bytes".into(), size.into());
        }
        crate::output::print_json(&v);
    } else if !g.quiet {
        outln!(
            "wrote {} ({}): {}",
            output.display(),
            ByteSize(size).approx(true),
            counts(&manifest.items)
        );
        for i in manifest
            .items
            .iter()
            .filter(|i| i.status != Status::Collected)
        {
            let detail = i
                .detail
                .as_deref()
                .map(|d| format!(" ({d})"))
                .unwrap_or_default();
            outln!(
                "  {:<10} {}: {}{detail}",
                i.status.name(),
                i.source,
                i.reason.as_deref().unwrap_or("")
            );
        }
    }
    if !g.quiet && !found.is_empty() {
        eprintln!("warning: known secret values were found outside their files (redacted in the bundle); a service may be leaking them:");
        for f in &found {
            eprintln!(
                "warning:   {}: {} × the value of {}",
                f.path, f.count, f.value_from
            );
        }
    }
    Ok(Outcome::Ok)
}

/// Redacts every member, counts per item, and lists the known values found.
fn redact_all(c: &mut Collector) -> Vec<Found> {
    let mut found = Vec::new();
    for m in &mut c.members {
        let r = redact::redact(&m.data, &c.secrets);
        let known: usize = r.known.iter().map(|(_, n)| n).sum();
        if let Some(item) = c.items.get_mut(m.item) {
            item.redactions += r.by_rule + known;
            item.bytes = Some(r.text.len() as u64);
        }
        for (src, count) in r.known {
            found.push(Found {
                path: m.path.clone(),
                value_from: c.secrets.label(src).to_owned(),
                count,
            });
        }
        m.data = r.text;
    }
    // Texts from outside (a command's stderr, error messages, link targets) go into the
    // manifest: the same rules apply.
    for item in &mut c.items {
        for field in [&mut item.reason, &mut item.detail] {
            if let Some(t) = field.as_mut() {
                *t = String::from_utf8_lossy(&redact::redact(t.as_bytes(), &c.secrets).text)
                    .into_owned();
            }
        }
    }
    found
}

/// Removes the temporary file unless it was renamed into place.
struct Temp(Option<PathBuf>);

impl Drop for Temp {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = fs::remove_file(p);
        }
    }
}

fn write_bundle(
    output: &Path,
    dir: &Path,
    top: &str,
    members: &[(&str, &[u8])],
    mtime: i64,
    secrets: &Secrets,
) -> Result<u64> {
    let name = output
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp_path = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    // The bundle describes the appliance in detail: readable by its owner only.
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp_path)
        .with_context(|| format!("{}: cannot create", tmp_path.display()))?;
    let tmp = Temp(Some(tmp_path.clone()));
    let ctx = || format!("{}: cannot write", tmp_path.display());
    let encoder = zstd::stream::write::Encoder::new(file, 6).with_context(ctx)?;
    let mut tar = tar::Builder::new(encoder);
    for (path, data) in members {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(mtime.max(0) as u64);
        tar.append_data(&mut h, format!("{top}/{path}"), *data)
            .with_context(|| format!("{}: cannot add {path}", tmp_path.display()))?;
    }
    let encoder = tar.into_inner().with_context(ctx)?;
    let mut file = encoder.finish().with_context(ctx)?;
    file.flush().with_context(ctx)?;
    file.sync_all().with_context(ctx)?;
    let size = file.metadata().with_context(ctx)?.len();
    drop(file);

    let findings = search_written(&tmp_path, secrets)
        .with_context(|| format!("{}: cannot read back", tmp_path.display()))?;
    if !findings.is_empty() {
        bail!(
            "{}: not written: the finished bundle still holds secrets that redaction missed (please report this): {}",
            output.display(),
            findings.join("; ")
        );
    }
    rename_new(&tmp_path, output)?;
    drop(tmp);
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(size)
}

/// Renames without ever replacing `to` (RENAME_NOREPLACE, or a hard link where the file
/// system lacks it).
fn rename_new(from: &Path, to: &Path) -> Result<()> {
    use rustix::io::Errno;
    let exists = || anyhow::anyhow!("{}: already exists; not overwriting it", to.display());
    match rustix::fs::renameat_with(
        rustix::fs::CWD,
        from,
        rustix::fs::CWD,
        to,
        rustix::fs::RenameFlags::NOREPLACE,
    ) {
        Ok(()) => Ok(()),
        Err(Errno::EXIST) => Err(exists()),
        Err(Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP) => match fs::hard_link(from, to) {
            Ok(()) => {
                let _ = fs::remove_file(from);
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(exists()),
            Err(e) => Err(e).with_context(|| format!("{}: cannot create", to.display())),
        },
        Err(e) => {
            Err(std::io::Error::from(e)).with_context(|| format!("{}: cannot create", to.display()))
        }
    }
}

fn describe(rule: Rule, secrets: &Secrets) -> String {
    match rule {
        Rule::Known(s) => format!("the value of {}", secrets.label(s)),
        Rule::PemKey => "a PEM private key".into(),
        Rule::UrlUserinfo => "a URL's user name or password".into(),
        Rule::AuthHeader => "an Authorization credential".into(),
        Rule::Assignment => "an unredacted secret setting".into(),
    }
}

/// Reads the archive back and applies every rule to each member's name and content.
fn search_written(path: &Path, secrets: &Secrets) -> Result<Vec<String>> {
    let decoder = zstd::stream::read::Decoder::new(File::open(path)?)?;
    let mut archive = tar::Archive::new(decoder);
    let mut findings = Vec::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let name = entry.path_bytes().into_owned();
        // The name may be what holds the secret: never show it as it is.
        let shown = String::from_utf8_lossy(&redact::redact(&name, secrets).text).into_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data)?;
        let mut whats: Vec<String> = Vec::new();
        for (where_, bytes) in [("name", &name), ("content", &data)] {
            for s in redact::spans(bytes, secrets) {
                let what = format!("{} in its {where_}", describe(s.rule, secrets));
                if !whats.contains(&what) {
                    whats.push(what);
                }
            }
        }
        if !whats.is_empty() {
            findings.push(format!("{shown}: {}", whats.join("; ")));
        }
    }
    Ok(findings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_directory_follows_the_file_name() {
        assert_eq!(top_name(Path::new("/tmp/x/ticket-1.tar.zst")), "ticket-1");
        assert_eq!(top_name(Path::new("b.tzst")), "b");
        assert_eq!(top_name(Path::new("bundle.bin")), "bundle");
        assert_eq!(top_name(Path::new(".tar.zst")), "tiervault-support");
    }

    #[test]
    fn written_bundle_is_searched_and_refused_when_a_secret_remains() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut secrets = Secrets::default();
        secrets.add_value("the passphrase file", b"correct-horse-staple");
        let out = dir.path().join("b.tar.zst");
        let clean: Vec<(&str, &[u8])> = vec![
            ("MANIFEST.json", b"{\"reason\": \"secret\"}\n"),
            ("a.txt", b"fine"),
        ];
        write_bundle(&out, dir.path(), "b", &clean, 0, &secrets).expect("clean bundle");
        assert!(out.is_file());
        // Not over an existing file.
        let err = write_bundle(&out, dir.path(), "b", &clean, 0, &secrets).expect_err("exists");
        assert!(format!("{err:#}").contains("already exists"), "{err:#}");

        let out2 = dir.path().join("c.tar.zst");
        let dirty: Vec<(&str, &[u8])> = vec![
            ("notes-correct-horse-staple.txt", b"x"),
            ("k.pem", b"-----BEGIN PRIVATE KEY-----\n"),
        ];
        let err = write_bundle(&out2, dir.path(), "c", &dirty, 0, &secrets).expect_err("dirty");
        let msg = format!("{err:#}");
        assert!(msg.contains("c/notes-<redacted>.txt"), "{msg}");
        assert!(msg.contains("c/k.pem: a PEM private key"), "{msg}");
        assert!(!msg.contains("correct-horse-staple"), "{msg}");
        assert!(!out2.exists());
        let left: Vec<_> = fs::read_dir(dir.path())
            .expect("ls")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left.len(), 1, "only the first bundle remains: {left:?}");
    }
}
