//! The sections of the bundle: what is read, from where, within which bounds. Nothing here
//! fails the bundle: whatever cannot be had becomes a manifest item saying why.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use super::command::{self, Run};
use super::config::redact_toml;
use super::manifest::{Item, Status};
use super::secrets::{is_binary, Secrets};

pub const CONFIG_DIR: &str = "/etc/tiervault";
const STATE_BASE: &str = "/var/lib/tiervault";
const MAX_CONFIG: u64 = 1024 * 1024;
const MAX_CONFIG_FILES: usize = 2000;
const MAX_DEPTH: usize = 8;
const STATE_MAX: usize = 16 * 1024 * 1024;
const JOURNAL_MAX: usize = 64 * 1024 * 1024;
const SMART_MAX: usize = 4 * 1024 * 1024;
const SMALL_MAX: usize = 1024 * 1024;
const MAX_DISKS: usize = 64;

/// How long a command may run, and how much of its output is kept.
#[derive(Debug, Clone, Copy)]
struct Bound {
    timeout: Duration,
    max: usize,
}

const VERSION_RUN: Bound = Bound {
    timeout: Duration::from_secs(10),
    max: SMALL_MAX,
};
const JOURNAL_RUN: Bound = Bound {
    timeout: Duration::from_secs(300),
    max: JOURNAL_MAX,
};
const PROBE_RUN: Bound = Bound {
    timeout: Duration::from_secs(60),
    max: SMALL_MAX,
};
const SMART_RUN: Bound = Bound {
    timeout: Duration::from_secs(60),
    max: SMART_MAX,
};

/// The state files a service directory may hold; logs keep their tail, the rest its head.
const STATE_FILES: [(&str, Cut); 6] = [
    ("status.json", Cut::Head),
    ("alerts.json", Cut::Head),
    ("history.json", Cut::Head),
    ("state.json", Cut::Head),
    ("audit.log", Cut::Tail),
    // vault-healthd's archive of the BMC's event log: the latest records matter most.
    ("sel-archive.jsonl", Cut::Tail),
];

/// Which of them each service is known to write (reported missing when absent).
fn expected(service: &str) -> &'static [&'static str] {
    match service {
        "poold" => &["status.json", "alerts.json", "audit.log"],
        "ingestd" => &["history.json", "alerts.json", "audit.log"],
        "healthd" => &["status.json", "alerts.json"],
        _ => &[],
    }
}

#[derive(Debug, Clone, Copy)]
enum Cut {
    Head,
    Tail,
}

/// A file of the bundle, relative to its top directory.
pub struct Member {
    pub path: String,
    pub data: Vec<u8>,
    /// Its item in the manifest.
    pub item: usize,
}

pub struct Collector {
    root: Option<PathBuf>,
    since_epoch: i64,
    pub items: Vec<Item>,
    pub members: Vec<Member>,
    pub secrets: Secrets,
    /// (directory, the service whose config named it).
    state_dirs: Vec<(PathBuf, String)>,
    vaults: Vec<PathBuf>,
    mdadm_confs: Vec<PathBuf>,
}

fn why(e: &io::Error) -> (Status, String) {
    match e.kind() {
        io::ErrorKind::NotFound => (Status::Missing, "no such file".into()),
        io::ErrorKind::PermissionDenied => (Status::Unreadable, "permission denied".into()),
        _ => (Status::Unreadable, e.to_string()),
    }
}

/// Reads at most `max` bytes: the head, or the tail from a line start. Returns the bytes,
/// the file's size and whether it was cut.
fn read_bounded(path: &Path, max: usize, cut: Cut) -> io::Result<(Vec<u8>, u64, bool)> {
    let mut f = File::open(path)?;
    let meta = f.metadata()?;
    if meta.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::IsADirectory,
            "is a directory",
        ));
    }
    let len = meta.len();
    let mut buf = Vec::new();
    if let Cut::Tail = cut {
        if len > max as u64 {
            f.seek(SeekFrom::Start(len - max as u64))?;
            f.take(max as u64).read_to_end(&mut buf)?;
            if let Some(nl) = buf.iter().position(|&b| b == b'\n') {
                buf.drain(..=nl);
            }
            return Ok((buf, len, true));
        }
    }
    // procfs files say size 0: read one byte more than allowed to know whether it was cut.
    f.take(max as u64 + 1).read_to_end(&mut buf)?;
    let truncated = buf.len() > max;
    buf.truncate(max);
    let total = len.max(buf.len() as u64);
    Ok((buf, total, truncated))
}

/// `value` from a config in `dir`: absolute as is, relative to the config's directory.
fn resolve(dir: &Path, value: &str) -> PathBuf {
    let p = Path::new(value);
    let joined = if p.is_absolute() {
        p.to_path_buf()
    } else {
        dir.join(p)
    };
    // Lexically: a reference is compared with the files found, not opened through links.
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

/// The command line as a shell would take it (so an engineer can paste it).
fn shown(program: &str, args: &[OsString]) -> String {
    let mut s = program.to_owned();
    for a in args {
        let a = a.to_string_lossy();
        s.push(' ');
        if a.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=@,:".contains(&b))
        {
            s.push_str(&a);
        } else {
            s.push_str(&format!("'{}'", a.replace('\'', "'\\''")));
        }
    }
    s
}

/// Why a file under /etc/tiervault is taken for a secret, if it is.
pub fn secret_file(logical: &Path, bytes: &[u8], named_by: Option<&str>) -> Option<String> {
    if let Some(by) = named_by {
        return Some(format!("named as a secret file by {by}"));
    }
    let name = logical
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let words = [
        "password",
        "passwd",
        "passphrase",
        "secret",
        "token",
        "private",
        "credential",
    ];
    let exts = [".key", ".p12", ".pfx", ".jks", ".keystore"];
    if name == "key"
        || exts.iter().any(|e| name.ends_with(e))
        || words.iter().any(|w| name.contains(w))
    {
        return Some("its name says it holds a secret".into());
    }
    let in_secret_dir = logical.parent().is_some_and(|d| {
        d.components().any(|c| {
            matches!(c, Component::Normal(n) if ["secrets", "private", "keys"].contains(&n.to_string_lossy().as_ref()))
        })
    });
    if in_secret_dir {
        return Some("it lies in a directory for secrets".into());
    }
    if is_binary(bytes) {
        return Some("binary content: possibly key material".into());
    }
    let lower = bytes.to_ascii_lowercase();
    let pem = |m: &[u8]| lower.windows(m.len()).any(|w| w == m);
    if pem(b"private key-----") || pem(b"private key block-----") {
        return Some("holds a private key".into());
    }
    let t = bytes.trim_ascii();
    let keyish = |b: &u8| b.is_ascii_alphanumeric() || b"+/=_-".contains(b);
    if t.len() >= 32 && t.iter().all(keyish) {
        return Some("one line of hex or base64: possibly key material".into());
    }
    None
}

impl Collector {
    pub fn new(root: Option<PathBuf>, since_epoch: i64) -> Collector {
        Collector {
            root,
            since_epoch,
            items: Vec::new(),
            members: Vec::new(),
            secrets: Secrets::default(),
            state_dirs: Vec::new(),
            vaults: Vec::new(),
            mdadm_confs: Vec::new(),
        }
    }

    /// Where the appliance's `logical` path is read from (below --root).
    fn at(&self, logical: &Path) -> PathBuf {
        match &self.root {
            Some(r) => r.join(logical.strip_prefix("/").unwrap_or(logical)),
            None => logical.to_path_buf(),
        }
    }

    fn note(&mut self, item: Item) -> usize {
        self.items.push(item);
        self.items.len() - 1
    }

    fn add(&mut self, mut item: Item, path: String, data: Vec<u8>) -> usize {
        item.status = Status::Collected;
        item.bytes = Some(data.len() as u64);
        if item.source_bytes.is_none() {
            item.source_bytes = Some(data.len() as u64);
        }
        item.path = Some(path.clone());
        let idx = self.note(item);
        self.members.push(Member {
            path,
            data,
            item: idx,
        });
        idx
    }

    /// A file read as it is (state, logs); a missing one is noted when `required`.
    fn file(
        &mut self,
        section: &'static str,
        logical: &Path,
        max: usize,
        cut: Cut,
        required: bool,
    ) {
        let source = logical.display().to_string();
        match read_bounded(&self.at(logical), max, cut) {
            Ok((data, total, truncated)) => {
                let path = format!("{section}{source}");
                let mut item = Item::new(section, source, Status::Collected);
                item.source_bytes = Some(total);
                item.truncated = truncated;
                if truncated {
                    let kept = match cut {
                        Cut::Head => "the first",
                        Cut::Tail => "the last",
                    };
                    item.reason = Some(format!("larger than {} MiB: {kept} part only", max >> 20));
                }
                self.add(item, path, data);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound && !required => {}
            Err(e) => {
                let (status, reason) = why(&e);
                self.note(Item::new(section, source, status).reason(reason));
            }
        }
    }

    /// Runs a command found in $PATH; its output (stdout, else stderr when `or_stderr`)
    /// becomes `path`. Returns the run when it could be started.
    fn command(
        &mut self,
        section: &'static str,
        program: &str,
        args: &[OsString],
        path: &str,
        bound: Bound,
        or_stderr: bool,
    ) -> Option<Run> {
        let source = shown(program, args);
        let Some(exe) = command::find_in_path(program) else {
            self.note(Item::new(section, source, Status::Missing).reason("not found in $PATH"));
            return None;
        };
        let run = match command::run(&exe, args, bound.timeout, bound.max) {
            Ok(r) => r,
            Err(e) => {
                self.note(
                    Item::new(section, source, Status::Failed).reason(format!("cannot run: {e}")),
                );
                return None;
            }
        };
        let mut out = run.stdout.clone();
        let mut total = run.stdout_total;
        // Only a successful run's stderr is its output (mdadm --version); a failing one's is
        // the reason.
        if out.is_empty() && or_stderr && run.success() {
            out = run.stderr.clone();
            total = out.len() as u64;
        }
        let mut item = Item::new(section, source, Status::Collected);
        item.exit_code = match run.ended {
            command::Ended::Exit(c) => Some(c),
            _ => None,
        };
        if !run.success() {
            item.reason = Some(run.describe());
            item.detail = run.stderr_line();
        }
        if out.is_empty() && !run.success() {
            item.status = Status::Failed;
            self.note(item);
        } else {
            item.source_bytes = Some(total);
            item.truncated = run.truncated();
            self.add(item, path.to_owned(), out);
        }
        Some(run)
    }

    pub fn versions(&mut self) {
        let v = super::manifest::version();
        let text = format!(
            "vaultctl {}\ncommit {}\n",
            v.version,
            v.commit.unwrap_or("unknown (not recorded at build time)")
        );
        let item = Item::new("versions", "vaultctl --version", Status::Collected);
        self.add(item, "versions/vaultctl.txt".into(), text.into_bytes());
        let u = rustix::system::uname();
        let line = format!(
            "{} {} {} {} {}\n",
            u.sysname().to_string_lossy(),
            u.nodename().to_string_lossy(),
            u.release().to_string_lossy(),
            u.version().to_string_lossy(),
            u.machine().to_string_lossy()
        );
        let item = Item::new(
            "versions",
            "uname -a (uname(2) of the running kernel)",
            Status::Collected,
        );
        self.add(item, "versions/uname.txt".into(), line.into_bytes());
        let os = ["/etc/os-release", "/usr/lib/os-release"]
            .map(Path::new)
            .into_iter()
            .find(|p| self.at(p).exists())
            .unwrap_or(Path::new("/etc/os-release"));
        match read_bounded(&self.at(os), SMALL_MAX, Cut::Head) {
            Ok((data, ..)) => {
                let item = Item::new("versions", os.display().to_string(), Status::Collected);
                self.add(item, "versions/os-release".into(), data);
            }
            Err(e) => {
                let (status, reason) = why(&e);
                self.note(Item::new("versions", os.display().to_string(), status).reason(reason));
            }
        }
        // mdadm prints its version on stderr.
        self.command(
            "versions",
            "mdadm",
            &["--version".into()],
            "versions/mdadm.txt",
            VERSION_RUN,
            true,
        );
        self.command(
            "versions",
            "smartctl",
            &["--version".into()],
            "versions/smartctl.txt",
            VERSION_RUN,
            true,
        );
        self.command(
            "versions",
            "ipmitool",
            &["-V".into()],
            "versions/ipmitool.txt",
            VERSION_RUN,
            true,
        );
    }

    /// Lists the regular files below `dir`, noting what is not one.
    fn walk(&mut self, dir: &Path, depth: usize, out: &mut Vec<(PathBuf, u64)>) {
        let entries = match fs::read_dir(self.at(dir)) {
            Ok(e) => e,
            Err(e) => {
                let (status, mut reason) = why(&e);
                if status == Status::Missing {
                    reason = "no such directory".into();
                }
                self.note(Item::new("config", dir.display().to_string(), status).reason(reason));
                return;
            }
        };
        let mut names: Vec<OsString> = entries
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .collect();
        names.sort();
        for name in names {
            let logical = dir.join(&name);
            let source = logical.display().to_string();
            let Ok(meta) = fs::symlink_metadata(self.at(&logical)) else {
                continue;
            };
            let ft = meta.file_type();
            if out.len() >= MAX_CONFIG_FILES {
                self.note(
                    Item::new("config", source, Status::Skipped).reason("more than 2000 files"),
                );
                return;
            }
            if ft.is_symlink() {
                // A link could lead anywhere (/etc/shadow): named, never followed.
                let target = fs::read_link(self.at(&logical)).map(|t| t.display().to_string());
                let mut item = Item::new("config", source, Status::Skipped)
                    .reason("symbolic link, not followed");
                item.detail = target.ok().map(|t| format!("points to {t}"));
                self.note(item);
            } else if ft.is_dir() {
                if depth < MAX_DEPTH {
                    self.walk(&logical, depth + 1, out);
                } else {
                    self.note(
                        Item::new("config", source, Status::Skipped).reason("nested too deep"),
                    );
                }
            } else if ft.is_file() {
                out.push((logical, meta.len()));
            } else {
                self.note(
                    Item::new("config", source, Status::Skipped).reason("not a regular file"),
                );
            }
        }
    }

    /// /etc/tiervault (redacted, secrets left out) and mdadm.conf. Also learns the known
    /// secret values and where the services keep their state.
    pub fn configs(&mut self) {
        let mut files = Vec::new();
        self.walk(Path::new(CONFIG_DIR), 0, &mut files);
        let mut read = Vec::new();
        for (logical, size) in &files {
            if *size > MAX_CONFIG {
                let item = Item::new("config", logical.display().to_string(), Status::Skipped)
                    .reason("larger than 1 MiB: not a config");
                self.note(item);
                continue;
            }
            match fs::read(self.at(logical)) {
                Ok(b) => read.push((logical.clone(), b)),
                Err(e) => {
                    let (status, reason) = why(&e);
                    self.note(
                        Item::new("config", logical.display().to_string(), status).reason(reason),
                    );
                    self.secrets.note_unsearched(
                        &logical.display().to_string(),
                        "unreadable: if it holds a secret, the bundle is not searched for it",
                    );
                }
            }
        }
        // What the TOML files say: secret files and values, state directories, vaults.
        let mut named: Vec<(PathBuf, String)> = Vec::new();
        let mut scans = std::collections::HashMap::new();
        for (logical, bytes) in &read {
            let toml = logical.extension().is_some_and(|e| e == "toml");
            let Ok(text) = std::str::from_utf8(bytes) else {
                continue;
            };
            if !toml || is_binary(bytes) {
                continue;
            }
            let dir = logical.parent().unwrap_or(Path::new("/"));
            let service = logical
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let scan = redact_toml(text);
            for (key, path) in &scan.secret_files {
                let p = resolve(dir, path);
                if !named.iter().any(|(n, _)| *n == p) {
                    named.push((p, format!("{} ({key})", logical.display())));
                }
            }
            for (key, value) in &scan.values {
                let label = format!("{key} in {}", logical.display());
                self.secrets.add_value(&label, value.as_bytes());
            }
            for env in &scan.secret_envs {
                if let Some(v) = std::env::var_os(env) {
                    use std::os::unix::ffi::OsStrExt;
                    self.secrets.add_value(&format!("${env}"), v.as_bytes());
                }
            }
            for (_, key, value) in &scan.settings {
                match key.as_str() {
                    "state-dir" => self.state_dirs.push((resolve(dir, value), service.clone())),
                    "vault" if value.starts_with('/') => self.vaults.push(resolve(dir, value)),
                    "mdadm-conf" => self.mdadm_confs.push(resolve(dir, value)),
                    _ => {}
                }
            }
            scans.insert(logical.clone(), scan);
        }
        for (logical, bytes) in read {
            let source = logical.display().to_string();
            let by = named
                .iter()
                .find(|(p, _)| *p == logical)
                .map(|(_, by)| by.as_str());
            if let Some(detail) = secret_file(&logical, &bytes, by) {
                self.secrets.add_file(&source, &bytes);
                self.note(
                    Item::new("config", source, Status::Omitted)
                        .reason("secret")
                        .detail(detail),
                );
                continue;
            }
            let (data, redactions) = match scans.remove(&logical) {
                Some(scan) => (scan.text.into_bytes(), scan.redacted),
                None => (bytes, 0),
            };
            let mut item = Item::new("config", source.clone(), Status::Collected);
            item.redactions = redactions;
            self.add(item, format!("config{source}"), data);
        }
        // Secret files named outside /etc/tiervault, or absent: searched for, never taken.
        for (p, by) in named {
            if files.iter().any(|(f, _)| *f == p) {
                continue;
            }
            let source = p.display().to_string();
            let detail = match read_bounded(&self.at(&p), SMALL_MAX, Cut::Head) {
                Ok((b, ..)) => {
                    self.secrets.add_file(&source, &b);
                    format!("named as a secret file by {by}; not collected, only searched for")
                }
                Err(e) => {
                    let (_, reason) = why(&e);
                    self.secrets
                        .note_unsearched(&source, &format!("could not be read: {reason}"));
                    format!("named as a secret file by {by}; could not be read ({reason}), so the bundle is not searched for its content")
                }
            };
            self.note(
                Item::new("config", source, Status::Omitted)
                    .reason("secret")
                    .detail(detail),
            );
        }
        let mut confs = vec![PathBuf::from("/etc/mdadm/mdadm.conf")];
        for c in std::mem::take(&mut self.mdadm_confs) {
            if !confs.contains(&c) {
                confs.push(c);
            }
        }
        for c in confs {
            self.file("config", &c, SMALL_MAX, Cut::Head, true);
        }
    }

    /// The services' state files, and replication's status beside each vault.
    pub fn state(&mut self) {
        let base = Path::new(STATE_BASE);
        let mut dirs: Vec<(PathBuf, String)> = std::mem::take(&mut self.state_dirs);
        for service in ["poold", "ingestd", "healthd"] {
            if !dirs.iter().any(|(_, s)| s == service) {
                dirs.push((base.join(service), service.to_owned()));
            }
        }
        match fs::read_dir(self.at(base)) {
            Ok(entries) => {
                let mut names: Vec<OsString> = entries
                    .filter_map(|e| e.ok())
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.file_name())
                    .collect();
                names.sort();
                for n in names {
                    dirs.push((base.join(&n), n.to_string_lossy().into_owned()));
                }
            }
            Err(e) => {
                let (status, _) = why(&e);
                let reason = if status == Status::Missing {
                    "no such directory".into()
                } else {
                    e.to_string()
                };
                self.note(Item::new("state", STATE_BASE, status).reason(reason));
            }
        }
        let mut seen: Vec<PathBuf> = Vec::new();
        for (dir, service) in dirs {
            if seen.contains(&dir) {
                continue;
            }
            seen.push(dir.clone());
            for (name, cut) in STATE_FILES {
                let required = expected(&service).contains(&name);
                self.file("state", &dir.join(name), STATE_MAX, cut, required);
            }
        }
        let vaults = std::mem::take(&mut self.vaults);
        if vaults.is_empty() {
            let item = Item::new("state", "<vault>/replication/status.json", Status::Skipped)
                .reason(format!("no vault named in {CONFIG_DIR}/*.toml"));
            self.note(item);
        }
        let mut done = Vec::new();
        for v in vaults {
            if done.contains(&v) {
                continue;
            }
            let dir = v.join("replication");
            self.file(
                "state",
                &dir.join("status.json"),
                STATE_MAX,
                Cut::Head,
                true,
            );
            self.file("state", &dir.join("audit.log"), STATE_MAX, Cut::Tail, false);
            self.file(
                "state",
                &dir.join("alerts.json"),
                STATE_MAX,
                Cut::Head,
                false,
            );
            done.push(v);
        }
    }

    /// The services' journal since `--since`.
    pub fn logs(&mut self) {
        let mut args: Vec<OsString> = vec![
            "-u".into(),
            "vault-*".into(),
            "--since".into(),
            format!("@{}", self.since_epoch).into(),
            "-o".into(),
            "short-iso".into(),
            "--no-pager".into(),
        ];
        if self.root.is_some() {
            // The journal of the tree being collected, not of this machine.
            let mut d = OsString::from("--directory=");
            d.push(self.at(Path::new("/var/log/journal")));
            args.push(d);
        }
        self.command(
            "logs",
            "journalctl",
            &args,
            "logs/journal.txt",
            JOURNAL_RUN,
            false,
        );
    }

    pub fn hardware(&mut self) {
        let (sys, proc) = (self.at(Path::new("/sys")), self.at(Path::new("/proc")));
        let source = "vaultctl hw dump --json";
        let mut disks: Vec<String> = Vec::new();
        match tiervault_sys::read_hardware(&sys, &proc) {
            Ok(hw) => {
                disks = hw.disks.iter().map(|d| d.name.clone()).collect();
                match serde_json::to_vec_pretty(&hw) {
                    Ok(json) => {
                        self.add(
                            Item::new("hardware", source, Status::Collected),
                            "hardware/hw.json".into(),
                            json,
                        );
                    }
                    Err(e) => {
                        self.note(
                            Item::new("hardware", source, Status::Failed).reason(e.to_string()),
                        );
                    }
                }
            }
            Err(e) => {
                // With its cause: "…/cpuinfo: cannot read: No such file or directory".
                let reason = format!("{:#}", anyhow::Error::from(e));
                self.note(Item::new("hardware", source, Status::Failed).reason(reason));
            }
        }
        self.file(
            "hardware",
            Path::new("/proc/mdstat"),
            SMALL_MAX,
            Cut::Head,
            true,
        );
        let cols: Vec<OsString> = ["-J", "-o", "NAME,SERIAL,SIZE,TYPE,MOUNTPOINT,MODEL"]
            .map(OsString::from)
            .into();
        self.command(
            "hardware",
            "lsblk",
            &cols,
            "hardware/lsblk.json",
            PROBE_RUN,
            false,
        );
        let ipmi = ["/dev/ipmi0", "/dev/ipmi/0", "/dev/ipmidev/0"]
            .iter()
            .any(|d| self.at(Path::new(d)).exists());
        if ipmi {
            for (args, path) in [
                (["fru", "print"], "hardware/ipmi-fru.txt"),
                (["sdr", "elist"], "hardware/ipmi-sdr.txt"),
            ] {
                let args: Vec<OsString> = args.map(OsString::from).into();
                self.command("hardware", "ipmitool", &args, path, PROBE_RUN, false);
            }
        } else {
            let item = Item::new(
                "hardware",
                "ipmitool fru print; ipmitool sdr elist",
                Status::Skipped,
            )
            .reason("no /dev/ipmi0: no local BMC interface");
            self.note(item);
        }
        if disks.len() > MAX_DISKS {
            let item =
                Item::new("hardware", "smartctl --json -x", Status::Skipped).reason(format!(
                    "{} disks: only the first {MAX_DISKS} are queried",
                    disks.len()
                ));
            self.note(item);
            disks.truncate(MAX_DISKS);
        }
        if !disks.is_empty() && command::find_in_path("smartctl").is_none() {
            self.note(
                Item::new("hardware", "smartctl --json -x", Status::Missing)
                    .reason("not found in $PATH"),
            );
            return;
        }
        for d in disks {
            let dev = self.at(&Path::new("/dev").join(&d));
            let args: Vec<OsString> = vec!["--json".into(), "-x".into(), dev.into_os_string()];
            let path = format!("hardware/smart/{d}.json");
            self.command("hardware", "smartctl", &args, &path, SMART_RUN, false);
        }
    }

    /// Known values from this vaultctl's own inputs: $VAULT_PASSPHRASE, --passphrase-file,
    /// --key-file (never collected; searched for).
    pub fn own_secrets(&mut self, files: &[&Path]) {
        use std::os::unix::ffi::OsStrExt;
        if let Some(p) = std::env::var_os("VAULT_PASSPHRASE") {
            self.secrets.add_value("$VAULT_PASSPHRASE", p.as_bytes());
        }
        for f in files {
            if let Ok((b, ..)) = read_bounded(f, SMALL_MAX, Cut::Head) {
                self.secrets.add_file(&f.display().to_string(), &b);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_files_by_reference_name_and_content() {
        let p = |s: &str| PathBuf::from(s);
        assert!(secret_file(
            &p("/etc/tiervault/a.toml"),
            b"x = 1\n",
            Some("b.toml (key-file)")
        )
        .is_some());
        for name in [
            "/etc/tiervault/vault.key",
            "/etc/tiervault/bmc.password",
            "/etc/tiervault/psa-token",
            "/etc/tiervault/secrets/x",
        ] {
            assert!(
                secret_file(&p(name), b"harmless\n", None).is_some(),
                "{name}"
            );
        }
        assert!(secret_file(&p("/etc/tiervault/blob"), &[0, 1, 2, 3], None).is_some());
        assert!(secret_file(
            &p("/etc/tiervault/a.pem"),
            b"-----BEGIN EC PRIVATE KEY-----\nMHc\n",
            None
        )
        .is_some());
        assert!(secret_file(
            &p("/etc/tiervault/k"),
            format!("{}\n", "ab".repeat(32)).as_bytes(),
            None
        )
        .is_some());
        assert!(secret_file(
            &p("/etc/tiervault/ingestd.toml"),
            b"vault = \"/srv\"\n",
            None
        )
        .is_none());
        assert!(secret_file(
            &p("/etc/tiervault/ca.pem"),
            b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
            None
        )
        .is_none());
    }

    #[test]
    fn bounded_reads_cut_at_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("log");
        fs::write(&f, "aaaa\nbbbb\ncccc\n").expect("write");
        let (tail, total, cut) = read_bounded(&f, 7, Cut::Tail).expect("tail");
        assert_eq!((tail.as_slice(), total, cut), (&b"cccc\n"[..], 15, true));
        let (head, _, cut) = read_bounded(&f, 7, Cut::Head).expect("head");
        assert_eq!((head.as_slice(), cut), (&b"aaaa\nbb"[..], true));
    }

    #[test]
    fn relative_references_resolve_against_the_config() {
        assert_eq!(
            resolve(Path::new("/etc/tiervault"), "./k/../vault.key"),
            PathBuf::from("/etc/tiervault/vault.key")
        );
        assert_eq!(
            resolve(Path::new("/etc/tiervault"), "/x"),
            PathBuf::from("/x")
        );
    }
}
