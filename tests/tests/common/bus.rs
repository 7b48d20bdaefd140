//! A private D-Bus system bus with the project's bus policy, the ingest service on it, and
//! the clients nobody here wrote (`busctl`, `gdbus`), run as root or as test users in the
//! groups the policy names. Tier 2: each test says SKIPPED when a tool or root is missing.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::cli::workspace_bin;

pub const NAME: &str = "org.tiervault.Ingest1";
pub const ROOT: &str = "/org/tiervault/Ingest1";
pub const MANAGER: &str = "org.tiervault.Ingest1.Manager";
pub const JOB: &str = "org.tiervault.Ingest1.Job";

/// Test users: (name, supplementary group).
pub const ADMIN: (&str, &str) = ("tv-admin", "vault-admin");
pub const SUPPORT: (&str, &str) = ("tv-support", "vault-support");
pub const GUEST: (&str, &str) = ("tv-guest", "");

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
        .to_path_buf()
}

pub fn ingestd() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| workspace_bin("VAULT_INGESTD_BIN", "tiervault-ingestd", "vault-ingestd"))
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Why the tier-2 bus tests cannot run here, if they cannot.
pub fn missing() -> Option<String> {
    if !super::fsx::is_root() {
        return Some("not root: the bus policy tests switch users with runuser".into());
    }
    for tool in [
        "dbus-daemon",
        "busctl",
        "gdbus",
        "runuser",
        "useradd",
        "groupadd",
    ] {
        if !have(tool) {
            return Some(format!("{tool} is not installed (apt-get install dbus libglib2.0-bin systemd passwd util-linux)"));
        }
    }
    None
}

/// Creates the groups the policy names and one user per role (idempotent).
pub fn ensure_users() {
    for group in ["vault-admin", "vault-support"] {
        let _ = Command::new("groupadd").args(["-f", "-r", group]).status();
    }
    for (user, group) in [ADMIN, SUPPORT, GUEST] {
        let exists = Command::new("id")
            .arg(user)
            .output()
            .is_ok_and(|o| o.status.success());
        if !exists {
            let mut cmd = Command::new("useradd");
            cmd.args(["-M", "-N", "-s", "/usr/sbin/nologin"]);
            if !group.is_empty() {
                cmd.args(["-G", group]);
            }
            // Tests run in parallel: another one may have created the user meanwhile.
            let _ = cmd.arg(user).output();
            let made = Command::new("id")
                .arg(user)
                .output()
                .is_ok_and(|o| o.status.success());
            assert!(made, "useradd {user} failed");
        }
    }
}

/// A private bus daemon configured as a system bus with the project's policy file.
pub struct Bus {
    pub dir: tempfile::TempDir,
    pub address: String,
    daemon: Child,
}

impl Bus {
    pub fn start() -> Bus {
        let dir = tempfile::Builder::new()
            .prefix("tiervault-bus-")
            .tempdir()
            .expect("tempdir");
        // Test users must reach the socket.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
        let socket = dir.path().join("bus");
        // Every service's policy, as the system bus includes all of system.d/.
        let policies = repo_root().join("systemd/dbus/system.d");
        let mut includes: Vec<String> = fs::read_dir(&policies)
            .unwrap_or_else(|e| panic!("{}: {e}", policies.display()))
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|x| x == "conf"))
            .map(|p| format!("  <include>{}</include>\n", p.display()))
            .collect();
        includes.sort();
        assert!(!includes.is_empty(), "no policy in {}", policies.display());
        // The defaults of Debian's /usr/share/dbus-1/system.conf, then the project's policies.
        let conf = format!(
            r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Peer"/>
  </policy>
{policy}</busconfig>
"#,
            socket = socket.display(),
            policy = includes.concat()
        );
        let conf_path = dir.path().join("bus.conf");
        fs::write(&conf_path, conf).expect("bus.conf");
        let mut daemon = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", conf_path.display()))
            .args(["--nofork", "--print-address=1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("dbus-daemon");
        let mut first = String::new();
        let mut out = daemon.stdout.take().expect("stdout");
        let mut byte = [0u8; 1];
        while out.read(&mut byte).is_ok_and(|n| n == 1) && byte[0] != b'\n' {
            first.push(byte[0] as char);
        }
        assert!(
            first.starts_with("unix:"),
            "dbus-daemon did not start: {first:?} {}",
            read_all(daemon.stderr.take())
        );
        Bus {
            dir,
            address: format!("unix:path={}", socket.display()),
            daemon,
        }
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}

fn read_all<R: Read>(r: Option<R>) -> String {
    let mut s = String::new();
    if let Some(mut r) = r {
        let _ = r.read_to_string(&mut s);
    }
    s
}

/// The ingest service on a bus, with its own vault, state and roots.
pub struct Service {
    pub config: PathBuf,
    pub state: PathBuf,
    pub log: PathBuf,
    pub address: String,
    child: Option<Child>,
}

impl Service {
    /// Writes `config` (TOML) next to the vault and starts the service; waits for its name.
    pub fn start(bus: &Bus, work: &Path, config: &str) -> Service {
        let path = work.join("ingestd.toml");
        fs::write(&path, config).expect("ingestd.toml");
        let mut s = Service {
            config: path,
            state: work.join("state"),
            log: work.join("ingestd.log"),
            address: bus.address.clone(),
            child: None,
        };
        s.restart();
        s
    }

    /// Starts the process (again); waits until it owns its name.
    pub fn restart(&mut self) {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log");
        let child = Command::new(ingestd())
            .arg("--config")
            .arg(&self.config)
            .arg("--bus")
            .arg(&self.address)
            .env("INGESTD_LOG", "info")
            .env_remove("NOTIFY_SOCKET")
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("vault-ingestd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if has_owner(&self.address, NAME) {
                return;
            }
            if let Some(Ok(Some(st))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("vault-ingestd exited ({st}):\n{}", self.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "vault-ingestd did not take its name:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: no chance to clean up, as in a crash.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        c.wait().expect("wait")
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// `busctl --address=A ARGS`, as `user` when given.
pub fn busctl(address: &str, user: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = as_user(user, "busctl");
    cmd.arg(format!("--address={address}")).args(args);
    cmd.output().expect("busctl")
}

/// `gdbus ARGS --address A`, as `user` when given.
pub fn gdbus(address: &str, user: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = as_user(user, "gdbus");
    cmd.arg(args[0])
        .args(["--address", address])
        .args(&args[1..]);
    cmd.output().expect("gdbus")
}

/// `gdbus call` of `method` (INTERFACE.Member) on `path` of `service`, as `user` when given.
pub fn call_as(
    address: &str,
    user: Option<&str>,
    service: &str,
    path: &str,
    method: &str,
    args: &[&str],
) -> Output {
    let mut all = vec![
        "call",
        "--dest",
        service,
        "--object-path",
        path,
        "--method",
        method,
    ];
    all.extend_from_slice(args);
    gdbus(address, user, &all)
}

fn as_user(user: Option<&str>, tool: &str) -> Command {
    match user {
        Some(u) => {
            let mut c = Command::new("runuser");
            c.args(["-u", u, "--", tool]);
            c
        }
        None => Command::new(tool),
    }
}

/// The `data` of `busctl --json=short` output.
pub fn json_data(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "busctl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("busctl json: {e}: {}", String::from_utf8_lossy(&out.stdout)));
    v["data"].clone()
}

/// Path → interface → property → value.
pub type Objects = BTreeMap<String, BTreeMap<String, BTreeMap<String, Value>>>;

/// Every object of `service` under `root` (its ObjectManager), read as root.
pub fn managed_objects(address: &str, service: &str, root: &str) -> Objects {
    let out = busctl(
        address,
        None,
        &[
            "--json=short",
            "call",
            service,
            root,
            "org.freedesktop.DBus.ObjectManager",
            "GetManagedObjects",
        ],
    );
    let data = json_data(&out);
    let mut all = BTreeMap::new();
    for (path, ifaces) in data[0].as_object().expect("a{oa{sa{sv}}}") {
        let mut by_iface = BTreeMap::new();
        for (iface, props) in ifaces.as_object().expect("a{sa{sv}}") {
            let props = props
                .as_object()
                .expect("a{sv}")
                .iter()
                .map(|(k, v)| (k.clone(), v["data"].clone()))
                .collect();
            by_iface.insert(iface.clone(), props);
        }
        all.insert(path.clone(), by_iface);
    }
    all
}

/// A property as JSON.
pub fn get(address: &str, path: &str, iface: &str, prop: &str) -> Value {
    json_data(&busctl(
        address,
        None,
        &["--json=short", "get-property", NAME, path, iface, prop],
    ))
}

/// Calls a Manager method as root; returns the job path it answered.
pub fn call_job(
    address: &str,
    user: Option<&str>,
    method: &str,
    sig: &str,
    args: &[&str],
) -> String {
    let mut a = vec!["--json=short", "call", NAME, ROOT, MANAGER, method];
    if !sig.is_empty() {
        a.push(sig);
        a.extend_from_slice(args);
    }
    let out = busctl(address, user, &a);
    let data = json_data(&out);
    data[0].as_str().expect("an object path").to_string()
}

/// Waits until the job at `path` has finished; returns its final status.
pub fn wait_job(address: &str, path: &str, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let status = get(address, path, JOB, "Status");
        let s = status.as_str().unwrap_or_default().to_string();
        if !matches!(s.as_str(), "queued" | "running") {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "job {path} still {s} after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The error name in a failed busctl/gdbus call's stderr, e.g. `org.tiervault.Error.NotFound`
/// or the bus's `AccessDenied`.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Whether `name` has an owner on the bus at `address`.
pub fn has_owner(address: &str, name: &str) -> bool {
    let out = busctl(
        address,
        None,
        &[
            "--json=short",
            "call",
            "org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus",
            "NameHasOwner",
            "s",
            name,
        ],
    );
    out.status.success() && String::from_utf8_lossy(&out.stdout).contains("true")
}

/// The `<interface name="…">…</interface>` blocks of Tiervault's interfaces in an
/// introspection document, by name.
fn tiervault_interfaces(xml: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find("<interface name=\"org.tiervault.") {
        let block = &rest[start..];
        let end = block.find("</interface>").expect("closed interface") + "</interface>".len();
        let name_start = "<interface name=\"".len();
        let name_end = block[name_start..].find('"').expect("name") + name_start;
        // Indentation follows the object's depth in the tree: compare the lines alone.
        let text: Vec<&str> = block[..end].lines().map(str::trim).collect();
        out.push((
            block[name_start..name_end].to_string(),
            text.join("\n") + "\n",
        ));
        rest = &block[end..];
    }
    out
}

/// Checks the introspection of `objects` of the service `service` (read over the bus, as
/// `busctl introspect` does) against `docs/dbus/<interface>.xml`, so the API changes only on
/// purpose (`TIERVAULT_BLESS_DBUS=1` rewrites the files). Returns the interfaces seen, and
/// checks that every file `mine` claims describes one of them.
pub fn check_introspection(
    address: &str,
    service: &str,
    objects: &[String],
    mine: impl Fn(&str) -> bool,
) -> Vec<String> {
    let docs = repo_root().join("docs/dbus");
    let bless = std::env::var_os("TIERVAULT_BLESS_DBUS").is_some();
    let mut seen = Vec::new();
    for path in objects {
        let out = busctl(
            address,
            None,
            &["--xml-interface", "introspect", service, path],
        );
        assert!(out.status.success(), "{path}: {}", stderr(&out));
        for (name, xml) in tiervault_interfaces(&String::from_utf8_lossy(&out.stdout)) {
            let file = docs.join(format!("{name}.xml"));
            if bless {
                fs::create_dir_all(&docs).expect("docs/dbus");
                fs::write(&file, &xml).expect("write");
            }
            let want = fs::read_to_string(&file).unwrap_or_else(|e| {
                panic!(
                    "{}: {e} (run with TIERVAULT_BLESS_DBUS=1 to write it)",
                    file.display()
                )
            });
            assert!(
                want == xml,
                "{name} differs from {} — the API changed; if on purpose, re-run with TIERVAULT_BLESS_DBUS=1 and commit.\n--- checked in\n{want}\n--- running service\n{xml}",
                file.display()
            );
            seen.push(name);
        }
    }
    seen.sort();
    seen.dedup();
    for e in fs::read_dir(&docs).expect("docs/dbus") {
        let name = e
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .trim_end_matches(".xml")
            .to_string();
        assert!(
            !mine(&name) || seen.contains(&name),
            "docs/dbus/{name}.xml describes an interface {service} no longer has"
        );
    }
    seen
}

/// `gdbus monitor` of one service's signals, collected until [`Monitor::finish`].
pub struct Monitor(std::process::Child);

impl Monitor {
    /// Starts watching `service` on `address`; returns once gdbus has subscribed.
    pub fn start(address: &str, service: &str) -> Monitor {
        let child = Command::new("gdbus")
            .args(["monitor", "--address", address, "--dest", service])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("gdbus monitor");
        std::thread::sleep(Duration::from_millis(500));
        Monitor(child)
    }

    /// Waits `settle` for late signals, stops gdbus and returns what it printed.
    pub fn finish(mut self, settle: Duration) -> String {
        std::thread::sleep(settle);
        let _ = self.0.kill();
        let mut text = String::new();
        if let Some(mut out) = self.0.stdout.take() {
            let _ = out.read_to_string(&mut text);
        }
        let _ = self.0.wait();
        text
    }
}
