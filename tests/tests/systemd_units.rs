//! Tier 2: the packaging files in systemd/ are valid for the tools that read them.
//!
//! - the units pass `systemd-analyze verify` (with ExecStart pointing at the binaries just
//!   built), and `systemd-analyze security --offline=yes` scores each at most 4.0 (6.0 for a
//!   unit that says why on a `# Exposure:` comment line);
//! - sysusers.d and tmpfiles.d create the users, groups and directories in an empty root;
//! - the D-Bus policy loads in dbus-daemon and, on a private bus, enforces its rules for
//!   root, the service user, vault-admin, vault-support and everyone else; the activation
//!   file names the unit's bus name and alias.
//!
//! Each check is skipped, and says so, where the tool it needs is missing (or root is needed).

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::cli::workspace_bin;
use common::fsx::is_root;
use common::skip;

/// Exposure allowed for a unit, and for one carrying a `# Exposure:` line that gives the reason
/// (raw device access: pools, health).
const MAX_EXPOSURE: f64 = 4.0;
const MAX_EXPOSURE_JUSTIFIED: f64 = 6.0;

const BUS_NAME: &str = "org.tiervault.Ingest1";

fn systemd_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
        .join("systemd")
}

/// Whether `tool` runs at all (`tool --version`).
fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// The files of `dir` whose names end with `suffix`, sorted.
fn files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_file() && p.to_string_lossy().ends_with(suffix))
        .collect();
    out.sort();
    out
}

fn units() -> Vec<PathBuf> {
    let units = files(&systemd_dir(), ".service");
    assert!(units.len() >= 3, "too few units in systemd/: {units:?}");
    units
}

fn text(out: &Output) -> String {
    format!(
        "{}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn units_pass_systemd_analyze_verify() {
    if !have("systemd-analyze") {
        skip("systemd-analyze is not installed (apt-get install systemd)");
        return;
    }
    let bins = [
        (
            "vault-ingestd",
            workspace_bin("VAULT_INGESTD_BIN", "tiervault-ingestd", "vault-ingestd"),
        ),
        (
            "vault-replicad",
            workspace_bin("VAULT_REPLICAD_BIN", "tiervault-replicad", "vault-replicad"),
        ),
        (
            "vault-remoted",
            workspace_bin("VAULT_REMOTED_BIN", "tiervault-remoted", "vault-remoted"),
        ),
        (
            "vault-poold",
            workspace_bin("VAULT_POOLD_BIN", "tiervault-poold", "vault-poold"),
        ),
        (
            "vault-healthd",
            workspace_bin("VAULT_HEALTHD_BIN", "tiervault-healthd", "vault-healthd"),
        ),
    ];
    let tmp = tempfile::tempdir().expect("tmp");
    let mut staged = Vec::new();
    for path in units() {
        let mut text = fs::read_to_string(&path).expect("unit");
        for (name, bin) in &bins {
            text = text.replace(&format!("/usr/bin/{name}"), &bin.display().to_string());
        }
        let dest = tmp.path().join(path.file_name().expect("name"));
        fs::write(&dest, text).expect("write");
        staged.push(dest);
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg("--man=no")
        .args(&staged)
        .output()
        .expect("systemd-analyze");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && err.trim().is_empty(),
        "systemd-analyze verify: {}\n{err}",
        out.status
    );
}

/// "Overall exposure level for NAME: X.Y ..." from `systemd-analyze security`'s output.
fn overall_exposure(output: &str, unit: &str) -> Option<f64> {
    let key = format!("Overall exposure level for {unit}: ");
    let rest = &output[output.find(&key)? + key.len()..];
    rest.split_whitespace().next()?.parse().ok()
}

#[test]
fn units_exposure_is_within_budget() {
    if !have("systemd-analyze") {
        skip("systemd-analyze is not installed (apt-get install systemd)");
        return;
    }
    let mut failures = Vec::new();
    for path in units() {
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let unit = fs::read_to_string(&path).expect("unit");
        let justified = unit
            .lines()
            .any(|l| l.trim_start().starts_with("# Exposure:"));
        let limit = if justified {
            MAX_EXPOSURE_JUSTIFIED
        } else {
            MAX_EXPOSURE
        };
        let out = Command::new("systemd-analyze")
            .args(["security", "--offline=yes", "--no-pager"])
            .arg(&path)
            .output()
            .expect("systemd-analyze security");
        let all = text(&out);
        let score = overall_exposure(&all, &name)
            .unwrap_or_else(|| panic!("no overall exposure for {name} in:\n{all}"));
        eprintln!(
            "exposure {name}: {score:.1} (limit {limit:.1}{})",
            if justified { ", # Exposure: given" } else { "" }
        );
        if score > limit {
            failures.push(format!("{name}: {score:.1} > {limit:.1}\n{all}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The users (`u` lines) and groups (`g` lines, and each user's own group) of sysusers.d.
fn sysusers_names() -> (BTreeSet<String>, BTreeSet<String>) {
    let (mut users, mut groups) = (BTreeSet::new(), BTreeSet::new());
    for f in files(&systemd_dir().join("sysusers.d"), ".conf") {
        for line in fs::read_to_string(&f).expect("sysusers").lines() {
            let mut words = line.split_whitespace();
            match (words.next(), words.next()) {
                (Some("u"), Some(name)) => {
                    users.insert(name.to_string());
                    // A `u` line also makes the user's group.
                    groups.insert(name.to_string());
                }
                (Some("g"), Some(name)) => {
                    groups.insert(name.to_string());
                }
                _ => {}
            }
        }
    }
    (users, groups)
}

fn passwd_entry<'a>(passwd: &'a str, name: &str) -> Option<Vec<&'a str>> {
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.first() == Some(&name))
}

#[test]
fn sysusers_and_tmpfiles_apply_to_an_empty_root() {
    if !have("systemd-sysusers") {
        skip("systemd-sysusers is not installed (apt-get install systemd)");
        return;
    }
    let dir = systemd_dir();
    let root = tempfile::tempdir().expect("tmp");
    // sysusers needs the directory to lock and write its files in.
    fs::create_dir(root.path().join("etc")).expect("etc");
    let out = Command::new("systemd-sysusers")
        .arg(format!("--root={}", root.path().display()))
        .args(files(&dir.join("sysusers.d"), ".conf"))
        .output()
        .expect("systemd-sysusers");
    assert!(out.status.success(), "systemd-sysusers: {}", text(&out));
    let passwd = fs::read_to_string(root.path().join("etc/passwd")).expect("passwd");
    let group = fs::read_to_string(root.path().join("etc/group")).expect("group");
    let tiervault = passwd_entry(&passwd, "tiervault")
        .unwrap_or_else(|| panic!("no tiervault in passwd:\n{passwd}"));
    assert_eq!(tiervault[5], "/var/lib/tiervault", "home: {tiervault:?}");
    assert!(tiervault[6].ends_with("nologin"), "shell: {tiervault:?}");
    let remote = passwd_entry(&passwd, "tiervault-remote")
        .unwrap_or_else(|| panic!("no tiervault-remote in passwd:\n{passwd}"));
    assert!(remote[6].ends_with("nologin"), "shell: {remote:?}");
    for g in [
        "tiervault",
        "vault-admin",
        "vault-support",
        "tiervault-remote",
    ] {
        assert!(
            passwd_entry(&group, g).is_some(),
            "no group {g} in:\n{group}"
        );
    }

    if !have("systemd-tmpfiles") {
        skip("systemd-tmpfiles is not installed (apt-get install systemd)");
        return;
    }
    // tmpfiles resolves the owners in the root's etc/passwd and etc/group written above.
    let out = Command::new("systemd-tmpfiles")
        .arg(format!("--root={}", root.path().display()))
        .arg("--create")
        .args(files(&dir.join("tmpfiles.d"), ".conf"))
        .output()
        .expect("systemd-tmpfiles");
    let root_user = is_root();
    if root_user {
        assert!(out.status.success(), "systemd-tmpfiles: {}", text(&out));
    } else {
        // Everything but the chown works without root.
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.lines()
                .all(|l| l.contains("fchownat()") && l.contains("Operation not permitted")),
            "systemd-tmpfiles: {}",
            text(&out)
        );
        skip("not root: the owners set by tmpfiles.d are not checked");
    }
    let uid: u32 = tiervault[2].parse().expect("uid");
    let gid: u32 = tiervault[3].parse().expect("gid");
    for (path, mode, owner) in [
        ("srv/tiervault", 0o750, (uid, gid)),
        ("srv/tiervault/vault", 0o750, (uid, gid)),
        ("srv/tiervault/restore", 0o750, (uid, gid)),
        ("var/lib/tiervault", 0o750, (uid, gid)),
        ("etc/tiervault", 0o755, (0, 0)),
    ] {
        use std::os::unix::fs::MetadataExt;
        let md = fs::metadata(root.path().join(path))
            .unwrap_or_else(|e| panic!("tmpfiles did not create /{path}: {e}"));
        assert!(md.is_dir(), "/{path} is not a directory");
        assert_eq!(md.mode() & 0o7777, mode, "mode of /{path}");
        if root_user {
            assert_eq!((md.uid(), md.gid()), owner, "owner of /{path}");
        }
    }
}

/// `key=value` of a unit or D-Bus service file (the last one wins), whatever the section.
fn key<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix(key)?.strip_prefix('='))
        .map(str::trim)
}

#[test]
fn dbus_activation_file_names_the_unit() {
    let dir = systemd_dir().join("dbus");
    let unit = fs::read_to_string(systemd_dir().join("vault-ingestd.service")).expect("unit");
    let file = dir
        .join("system-services")
        .join(format!("{BUS_NAME}.service"));
    let svc = fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    assert!(svc.contains("[D-BUS Service]"), "{svc}");
    assert_eq!(key(&svc, "Name"), Some(BUS_NAME));
    assert_eq!(key(&unit, "BusName"), Some(BUS_NAME));
    assert_eq!(key(&svc, "User"), Some("root"));
    assert!(key(&svc, "Exec").is_some(), "no Exec= in {svc}");
    let alias = format!("dbus-{BUS_NAME}.service");
    assert_eq!(key(&svc, "SystemdService"), Some(alias.as_str()));
    assert_eq!(key(&unit, "Alias"), Some(alias.as_str()));
    assert!(dir
        .join("system.d")
        .join(format!("{BUS_NAME}.conf"))
        .is_file());
}

/// The `user="…"` and `group="…"` names a bus policy names.
fn policy_principals(policy: &str, attr: &str) -> BTreeSet<String> {
    let pat = format!("{attr}=\"");
    policy
        .match_indices(&pat)
        .filter(|(i, _)| !policy[..*i].ends_with("send_") && !policy[..*i].ends_with("receive_"))
        .filter_map(|(i, _)| {
            let rest = &policy[i + pat.len()..];
            Some(rest[..rest.find('"')?].to_string())
        })
        .collect()
}

fn policy_file() -> PathBuf {
    systemd_dir()
        .join("dbus/system.d")
        .join(format!("{BUS_NAME}.conf"))
}

#[test]
fn dbus_policy_names_only_users_and_groups_that_sysusers_creates() {
    // dbus-daemon only warns about an unknown user or group, and drops the rule.
    let (users, groups) = sysusers_names();
    let policies = files(&systemd_dir().join("dbus/system.d"), ".conf");
    assert!(policies.contains(&policy_file()), "{policies:?}");
    for file in policies {
        let policy = fs::read_to_string(&file).expect("policy");
        for u in policy_principals(&policy, "user") {
            assert!(
                u == "root" || users.contains(&u),
                "{}: policy user {u} is not in sysusers.d",
                file.display()
            );
        }
        for g in policy_principals(&policy, "group") {
            assert!(
                groups.contains(&g),
                "{}: policy group {g} is not in sysusers.d",
                file.display()
            );
        }
    }
}

/// A child killed (and reaped) when dropped.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The lines a child prints on stdout, read on a thread so that waiting can time out.
fn lines_of(stdout: ChildStdout) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// A private bus whose config has system.conf's default policy (no calls, no names, signals
/// and requested replies allowed) and includes the policy file, as the system bus does.
/// `wrap` runs dbus-daemon under a prefix command (the private /etc/passwd of the rule test).
struct Bus {
    daemon: Reaped,
    address: String,
    stderr: PathBuf,
}

fn write_bus_config(dir: &Path, services: Option<&Path>) -> PathBuf {
    let servicedir = services
        .map(|d| format!("  <servicedir>{}</servicedir>\n", d.display()))
        .unwrap_or_default();
    let config = format!(
        r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <listen>unix:path={dir}/bus</listen>
  <auth>EXTERNAL</auth>
{servicedir}  <policy context="default">
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
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Introspectable"/>
  </policy>
  <include>{policy}</include>
</busconfig>
"#,
        dir = dir.display(),
        policy = policy_file().display(),
    );
    let path = dir.join("bus.conf");
    fs::write(&path, config).expect("bus.conf");
    path
}

fn start_bus(dir: &Path, config: &Path, wrap: &[&str]) -> Result<Bus, String> {
    let stderr = dir.join("bus.err");
    let mut cmd = match wrap.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg("dbus-daemon");
            c
        }
        None => Command::new("dbus-daemon"),
    };
    let mut child = cmd
        .arg(format!("--config-file={}", config.display()))
        .args(["--nofork", "--print-address=1"])
        .stdout(Stdio::piped())
        .stderr(fs::File::create(&stderr).expect("bus.err"))
        .spawn()
        .map_err(|e| format!("dbus-daemon: {e}"))?;
    let lines = lines_of(child.stdout.take().expect("stdout"));
    let daemon = Reaped(child);
    match lines.recv_timeout(Duration::from_secs(20)) {
        Ok(address) if address.starts_with("unix:") => Ok(Bus {
            daemon,
            address,
            stderr,
        }),
        _ => Err(fs::read_to_string(&stderr).unwrap_or_default()),
    }
}

#[test]
fn dbus_policy_loads_in_dbus_daemon() {
    if !have("dbus-daemon") {
        skip("dbus-daemon is not installed (apt-get install dbus-daemon)");
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let services = tmp.path().join("services");
    fs::create_dir(&services).expect("services");
    let activation = format!("{BUS_NAME}.service");
    fs::copy(
        systemd_dir().join("dbus/system-services").join(&activation),
        services.join(&activation),
    )
    .expect("copy activation file");
    let config = write_bus_config(tmp.path(), Some(&services));
    let bus = start_bus(tmp.path(), &config, &[])
        .unwrap_or_else(|e| panic!("dbus-daemon rejected the policy:\n{e}"));
    if !have("dbus-send") {
        skip("dbus-send is not installed: the activation file is not read");
        return;
    }
    // The activation file parses: the bus lists its name as activatable.
    let out = Command::new("dbus-send")
        .arg(format!("--bus={}", bus.address))
        .args([
            "--print-reply",
            "--dest=org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus.ListActivatableNames",
        ])
        .output()
        .expect("dbus-send");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains(BUS_NAME),
        "ListActivatableNames: {}\n{}",
        text(&out),
        fs::read_to_string(&bus.stderr).unwrap_or_default()
    );
    drop(bus.daemon);
}

/// A stand-in for vault-ingestd (`serve`): takes the name, answers every method call with an
/// empty reply, broadcasts `Tick` every 100 ms, and prints the `org.example.Probe` signals it
/// receives. `listen`: exits 0 at the first signal from the name, 1 after 5 s without.
const STAND_IN: &str = r#"
import sys
import dbus, dbus.bus, dbus.lowlevel
from dbus.mainloop.glib import DBusGMainLoop
from gi.repository import GLib

DBusGMainLoop(set_as_default=True)
mode, address, name = sys.argv[1:4]
bus = dbus.bus.BusConnection(address)
loop = GLib.MainLoop()
if mode == "serve":
    try:
        r = bus.request_name(name, dbus.bus.NAME_FLAG_DO_NOT_QUEUE)
    except dbus.exceptions.DBusException as e:
        print("refused " + e.get_dbus_name(), flush=True)
        sys.exit(3)
    if r != dbus.bus.REQUEST_NAME_REPLY_PRIMARY_OWNER:
        print("not owner %d" % r, flush=True)
        sys.exit(4)
    def on_message(conn, msg):
        if isinstance(msg, dbus.lowlevel.MethodCallMessage):
            conn.send_message(dbus.lowlevel.MethodReturnMessage(msg))
            return dbus.lowlevel.HANDLER_RESULT_HANDLED
        if isinstance(msg, dbus.lowlevel.SignalMessage) and msg.get_interface() == "org.example.Probe":
            print("heard " + msg.get_member(), flush=True)
        return dbus.lowlevel.HANDLER_RESULT_NOT_YET_HANDLED
    bus.add_message_filter(on_message)
    bus.add_match_string("type='signal',interface='org.example.Probe'")
    def tick():
        bus.send_message(dbus.lowlevel.SignalMessage(
            "/org/tiervault/Ingest1", "org.tiervault.Ingest1.Manager", "Tick"))
        return True
    GLib.timeout_add(100, tick)
    print("ready", flush=True)
    loop.run()
else:
    got = []
    def on_signal(*args, **kw):
        got.append(kw["member"])
        loop.quit()
    bus.add_signal_receiver(on_signal, bus_name=name, member_keyword="member")
    GLib.timeout_add(5000, loop.quit)
    loop.run()
    print(got, flush=True)
    sys.exit(0 if got else 1)
"#;

const PYTHON: &str = "/usr/bin/python3";

/// Who runs a client: uid, the groups the bus sees (SO_PEERGROUPS), and a name for messages.
#[derive(Clone, Copy)]
struct Who {
    name: &'static str,
    uid: u32,
    groups: &'static [u32],
}

const TIERVAULT: Who = Who {
    name: "tiervault",
    uid: 61100,
    groups: &[61100],
};
const ADMIN: Who = Who {
    name: "vault-admin member",
    uid: 61101,
    groups: &[61101, 61110],
};
const SUPPORT: Who = Who {
    name: "vault-support member",
    uid: 61102,
    groups: &[61102, 61111],
};
const GUEST: Who = Who {
    name: "other user",
    uid: 61103,
    groups: &[61103],
};
const ROOT: Who = Who {
    name: "root",
    uid: 0,
    groups: &[0],
};

/// The private bus's /etc/passwd and /etc/group: dbus-daemon resolves the policy's names and
/// each connection's uid there.
fn write_accounts(dir: &Path) -> (PathBuf, PathBuf) {
    let passwd = "root:x:0:0:root:/root:/bin/sh\n\
                  tiervault:x:61100:61100::/var/lib/tiervault:/usr/sbin/nologin\n\
                  t-admin:x:61101:61101::/:/usr/sbin/nologin\n\
                  t-support:x:61102:61102::/:/usr/sbin/nologin\n\
                  t-guest:x:61103:61103::/:/usr/sbin/nologin\n";
    let group = "root:x:0:\n\
                 tiervault:x:61100:\n\
                 t-admin:x:61101:\n\
                 t-support:x:61102:\n\
                 t-guest:x:61103:\n\
                 vault-admin:x:61110:t-admin\n\
                 vault-support:x:61111:t-support\n";
    let (p, g) = (dir.join("passwd"), dir.join("group"));
    fs::write(&p, passwd).expect("passwd");
    fs::write(&g, group).expect("group");
    (p, g)
}

/// `setpriv` arguments running the rest as `who`.
fn as_user(who: Who) -> Command {
    let groups: Vec<String> = who.groups.iter().map(u32::to_string).collect();
    let mut c = Command::new("setpriv");
    c.arg(format!("--reuid={}", who.uid))
        .arg(format!("--regid={}", who.groups[0]))
        .arg(format!("--groups={}", groups.join(",")))
        .arg("--");
    c
}

#[test]
fn dbus_policy_enforces_the_access_rules() {
    let missing: Vec<&str> = ["dbus-daemon", "dbus-send", "setpriv", "unshare"]
        .into_iter()
        .filter(|t| !have(t))
        .collect();
    if !missing.is_empty() {
        skip(&format!(
            "missing {missing:?} (apt-get install dbus util-linux)"
        ));
        return;
    }
    if !is_root() {
        skip("the D-Bus rules test runs clients as several users: it needs root");
        return;
    }
    let py = Command::new(PYTHON)
        .args(["-c", "import dbus, dbus.mainloop.glib, gi"])
        .output();
    if !py.is_ok_and(|o| o.status.success()) {
        skip("/usr/bin/python3 lacks dbus or gi (apt-get install python3-dbus python3-gi)");
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    // The other users must reach the socket and the stand-in script.
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    let (passwd, group) = write_accounts(tmp.path());
    let script = tmp.path().join("stand_in.py");
    fs::write(&script, STAND_IN).expect("script");
    let config = write_bus_config(tmp.path(), None);
    // The daemon alone sees the test's accounts, through a private mount namespace.
    let mounts = format!(
        "mount --bind {} /etc/passwd && mount --bind {} /etc/group && exec \"$@\"",
        passwd.display(),
        group.display()
    );
    let wrap = [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        &mounts,
        "sh",
    ];
    let bus = match start_bus(tmp.path(), &config, &wrap) {
        Ok(bus) => bus,
        Err(e) if e.contains("unshare") || e.contains("mount") => {
            skip(&format!("no private mount namespace here: {e}"));
            return;
        }
        Err(e) => panic!("dbus-daemon did not start:\n{e}"),
    };
    let bus_log = || fs::read_to_string(&bus.stderr).unwrap_or_default();
    assert!(
        !bus_log().contains("Unknown"),
        "the policy names unknown users or groups:\n{}",
        bus_log()
    );

    // Owning the name: refused to everyone but the service user (and root).
    for who in [GUEST, SUPPORT, ADMIN] {
        let out = as_user(who)
            .arg(PYTHON)
            .arg(&script)
            .args(["serve", &bus.address, BUS_NAME])
            .output()
            .expect("stand-in");
        assert!(
            String::from_utf8_lossy(&out.stdout)
                .contains("refused org.freedesktop.DBus.Error.AccessDenied"),
            "{} could take {BUS_NAME}: {}",
            who.name,
            text(&out)
        );
    }
    let mut child = as_user(TIERVAULT)
        .arg(PYTHON)
        .arg(&script)
        .args(["serve", &bus.address, BUS_NAME])
        .stdout(Stdio::piped())
        .spawn()
        .expect("stand-in");
    let heard = lines_of(child.stdout.take().expect("stdout"));
    let service = Reaped(child);
    assert_eq!(
        heard.recv_timeout(Duration::from_secs(20)).ok().as_deref(),
        Some("ready"),
        "the service user could not take {BUS_NAME}:\n{}",
        bus_log()
    );

    let call = |who: Who, method: &str| -> Result<(), String> {
        let out = as_user(who)
            .arg("dbus-send")
            .arg(format!("--bus={}", bus.address))
            .args(["--print-reply", "--reply-timeout=10000"])
            .arg(format!("--dest={BUS_NAME}"))
            .args(["/org/tiervault/Ingest1", method])
            .output()
            .expect("dbus-send");
        if out.status.success() && String::from_utf8_lossy(&out.stdout).contains("method return") {
            Ok(())
        } else {
            Err(text(&out))
        }
    };
    let cases: &[(Who, &str, bool)] = &[
        (ROOT, "org.tiervault.Ingest1.Manager.Restore", true),
        (ROOT, "org.freedesktop.DBus.Properties.Set", true),
        (ADMIN, "org.tiervault.Ingest1.Manager.Restore", true),
        (ADMIN, "org.tiervault.Ingest1.Manager.Forget", true),
        (ADMIN, "org.freedesktop.DBus.Properties.Set", true),
        (ADMIN, "org.freedesktop.DBus.Properties.Get", true),
        (SUPPORT, "org.freedesktop.DBus.Properties.Get", true),
        (SUPPORT, "org.freedesktop.DBus.Properties.GetAll", true),
        (SUPPORT, "org.freedesktop.DBus.Properties.Set", false),
        (
            SUPPORT,
            "org.freedesktop.DBus.ObjectManager.GetManagedObjects",
            true,
        ),
        (SUPPORT, "org.freedesktop.DBus.Peer.Ping", true),
        (
            SUPPORT,
            "org.freedesktop.DBus.Introspectable.Introspect",
            true,
        ),
        (SUPPORT, "org.tiervault.Ingest1.Manager.Verify", true),
        (SUPPORT, "org.tiervault.Ingest1.Manager.Replicate", true),
        (SUPPORT, "org.tiervault.Ingest1.Manager.Restore", false),
        (SUPPORT, "org.tiervault.Ingest1.Jobs.Verify", false),
        (
            GUEST,
            "org.freedesktop.DBus.Introspectable.Introspect",
            true,
        ),
        (GUEST, "org.freedesktop.DBus.Properties.Get", false),
        (GUEST, "org.freedesktop.DBus.Properties.GetAll", false),
        (GUEST, "org.freedesktop.DBus.Peer.Ping", false),
        (GUEST, "org.tiervault.Ingest1.Manager.Verify", false),
        (GUEST, "org.tiervault.Ingest1.Manager.Restore", false),
        (TIERVAULT, "org.tiervault.Ingest1.Manager.Restore", false),
    ];
    let mut wrong = Vec::new();
    for &(who, method, allowed) in cases {
        match (call(who, method), allowed) {
            (Ok(()), true) => {}
            (Err(e), false) if e.contains("org.freedesktop.DBus.Error.AccessDenied") => {}
            (got, _) => wrong.push(format!(
                "{} calling {method}: expected {}, got {got:?}",
                who.name,
                if allowed { "a reply" } else { "AccessDenied" }
            )),
        }
    }
    assert!(wrong.is_empty(), "{}\n{}", wrong.join("\n"), bus_log());

    // The service's signals reach any subscriber.
    let out = as_user(GUEST)
        .arg(PYTHON)
        .arg(&script)
        .args(["listen", &bus.address, BUS_NAME])
        .output()
        .expect("listener");
    assert!(
        out.status.success(),
        "a subscriber got no signal from the service: {}",
        text(&out)
    );

    // Other users' broadcast signals reach the service; a unicast signal to it does not.
    let signal = |dest: Option<&str>, member: &str| {
        let mut c = as_user(GUEST);
        c.arg("dbus-send")
            .arg(format!("--bus={}", bus.address))
            .arg("--type=signal");
        if let Some(d) = dest {
            c.arg(format!("--dest={d}"));
        }
        let out = c
            .args(["/org/example/Probe", &format!("org.example.Probe.{member}")])
            .output()
            .expect("dbus-send");
        assert!(out.status.success(), "dbus-send signal: {}", text(&out));
    };
    signal(Some(BUS_NAME), "Unicast");
    signal(None, "Broadcast");
    let first = heard.recv_timeout(Duration::from_secs(10)).ok();
    assert_eq!(
        first.as_deref(),
        Some("heard Broadcast"),
        "the service should hear the broadcast and only it:\n{}",
        bus_log()
    );
    drop(service);
    drop(bus.daemon);
}
