//! Tier 3, scenario 7: the project's systemd units under systemd as PID 1.
//!
//! One boot of a Debian root file system (`tests/vm/build-rootfs.sh`: debootstrap minbase,
//! the project installed as a package would install it, enabled units) under qemu TCG with the
//! Debian kernel. Inside, `tiervault-scenario7.service` (After=multi-user.target) runs the
//! checks and reports each finding as one `TIERVAULT-RESULT <json>` console line; this file
//! asserts on them:
//!
//! 1. systemd reaches multi-user.target and no unit has failed (else: which, with their
//!    journal);
//! 2. every project service is active and running, Type=notify ones having sent READY=1, the
//!    bus name's owner being the main process; the time from exec to active is printed;
//! 3. each service with a watchdog (`WatchdogSec=` shortened to 10 s and `RestartSec=` to 2 s
//!    by a drop-in, see [`TEST_WATCHDOG_S`]) is frozen with SIGSTOP: systemd must log the
//!    watchdog timeout, kill it with SIGABRT (result `watchdog`), restart it (`NRestarts` up, a
//!    new main PID) and it must be active again; the time from SIGSTOP to active is printed;
//! 4. `systemctl stop` ends each service `inactive` with result success and exit status 0,
//!    within its `TimeoutStopSec`, without SIGKILL; the stop times are printed.
//!
//! vault-poold is covered when the workspace has the package `tiervault-poold` (`cargo
//! metadata`), and then must also run in PID 1's mount namespace (its mounts are for
//! everyone).
//!
//! Skipped, with the reason, when qemu, debootstrap or root is missing. Time: the base tree
//! is built once and cached (1.5-3 min); an image ~5 s; the boot and checks ~1.5 min.
//! `TIERVAULT_VM_BIN_DIR` names prebuilt release binaries (else `cargo build --release`).

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::cli::bare_command;
use common::vm::{self, Built, Drive, Run};
use serde_json::Value;

const TEST: &str = "vm_systemd";
const GUEST_MEM_MIB: u64 = 1024;
/// Boot to power-off; the run takes about 1.5 minutes.
const GUEST_TIMEOUT_S: u64 = 420;
/// The watchdog interval the test image gives every service that has one, so that a hang is
/// noticed in seconds rather than minutes (the shipped 60 s and 10 min would make the test
/// wait that long); RestartSec= is shortened too (10 s and 30 s shipped). Nothing else of the
/// units is changed.
const TEST_WATCHDOG_S: u64 = 10;
const TEST_RESTART_S: u64 = 2;
/// How long the guest waits for a frozen service to be killed and back.
const WATCHDOG_WAIT_S: u64 = 120;
/// How long the guest waits for one `systemctl stop` (beyond any TimeoutStopSec).
const STOP_WAIT_S: u64 = 150;

struct Service {
    unit: &'static str,
    package: &'static str,
    bin: &'static str,
}

/// The appliance's services and the remote vault's, in the order they are stopped (health
/// depends on none; the replication service is ordered after ingest, vault-poold before both).
const SERVICES: [Service; 5] = [
    Service {
        unit: "vault-healthd.service",
        package: "tiervault-healthd",
        bin: "vault-healthd",
    },
    Service {
        unit: "vault-replicad.service",
        package: "tiervault-replicad",
        bin: "vault-replicad",
    },
    Service {
        unit: "vault-ingestd.service",
        package: "tiervault-ingestd",
        bin: "vault-ingestd",
    },
    Service {
        unit: "vault-poold.service",
        package: "tiervault-poold",
        bin: "vault-poold",
    },
    Service {
        unit: "vault-remoted.service",
        package: "tiervault-remoted",
        bin: "vault-remoted",
    },
];
const POOLD: &str = "vault-poold.service";

fn skip(reason: &str) {
    eprintln!("SKIP {TEST}: {reason}");
}

/// Whether `package` is a member of the workspace (`cargo metadata --no-deps`).
fn workspace_has(package: &str) -> bool {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(vm::workspace())
        .args([
            "metadata",
            "--no-deps",
            "--format-version=1",
            "--manifest-path",
        ])
        .arg(vm::workspace().join("Cargo.toml"))
        .output()
        .expect("running cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        vm::describe_output(&out)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).expect("cargo metadata JSON");
    meta["packages"]
        .as_array()
        .is_some_and(|ps| ps.iter().any(|p| p["name"] == package))
}

fn write(path: &Path, text: &str, mode: u32) {
    fs::create_dir_all(path.parent().expect("parent")).expect("creating a directory");
    fs::write(path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Runs a host command of the setup; panics with its output when it fails.
fn run(cmd: &mut Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}",
        vm::describe_output(&out)
    );
}

/// A unit file's `key=` value, if it has one.
fn unit_key(unit_text: &str, key: &str) -> Option<String> {
    unit_text
        .lines()
        .filter_map(|l| l.trim().strip_prefix(key)?.strip_prefix('='))
        .map(|v| v.trim().to_string())
        .next_back()
}

/// Everything the test adds to the image, under `overlay`: the services' configuration, a
/// vault, the remote vault's PKI, the drop-ins, the checking unit and its script. Returns the
/// units to enable.
fn make_overlay(
    overlay: &Path,
    scratch: &Path,
    bins: &BTreeMap<String, PathBuf>,
    services: &[&Service],
) -> Vec<String> {
    let bin = |name: &str| {
        bins.get(name)
            .unwrap_or_else(|| panic!("no {name} among the built binaries {bins:?}"))
    };
    let etc = overlay.join("etc/tiervault");
    let vault = overlay.join("srv/tiervault/vault");
    for d in [&etc, &vault] {
        fs::create_dir_all(d).unwrap_or_else(|e| panic!("creating {}: {e}", d.display()));
    }

    // The local vault, made as an operator would (embedded mode), owned by tiervault at boot.
    run(
        bare_command(bin("vaultctl"))
            .arg("init")
            .arg("--vault")
            .arg(&vault)
            .arg("--key-file")
            .arg(etc.join("vault.key"))
            .arg("--appliance-config")
            .arg(scratch.join("no-appliance.toml"))
            .arg("--quiet"),
        "vaultctl init",
    );
    write(
        &etc.join("ingestd.toml"),
        "# tests/tests/vm_systemd.rs\n\
         vault = \"/srv/tiervault/vault\"\n\
         key-file = \"/etc/tiervault/vault.key\"\n\
         state-dir = \"/var/lib/tiervault/ingestd\"\n\
         restore-roots = [\"/srv/tiervault/restore\"]\n",
        0o644,
    );

    // The remote vault on the same machine, and the appliance replicating to it over mutual
    // TLS on the loopback: the PKI as its operator makes it.
    let ca = scratch.join("ca");
    let remote = overlay.join("etc/tiervault-remote");
    fs::create_dir_all(&remote).expect("mkdir");
    run(
        Command::new(bin("vault-remoted"))
            .args(["ca", "init", "--dir"])
            .arg(&ca),
        "vault-remoted ca init",
    );
    run(
        Command::new(bin("vault-remoted"))
            .args(["ca", "issue-server", "--dir"])
            .arg(&ca)
            .args(["--name", "localhost", "--cert"])
            .arg(remote.join("server.pem"))
            .arg("--key")
            .arg(remote.join("server.key")),
        "vault-remoted ca issue-server",
    );
    run(
        Command::new(bin("vault-remoted"))
            .args(["ca", "issue-client", "--dir"])
            .arg(&ca)
            .args(["--tenant", "acme", "--cert"])
            .arg(etc.join("appliance.pem"))
            .arg("--key")
            .arg(etc.join("appliance.key")),
        "vault-remoted ca issue-client",
    );
    fs::copy(ca.join("ca.pem"), remote.join("ca.pem")).expect("copying ca.pem");
    fs::copy(ca.join("ca.pem"), etc.join("remote-ca.pem")).expect("copying ca.pem");
    write(
        &remote.join("remoted.toml"),
        "# tests/tests/vm_systemd.rs\n\
         version = 1\n\
         listen = \"127.0.0.1:7443\"\n\
         data-dir = \"/var/lib/tiervault-remote\"\n\
         index-bytes = 16777216\n\
         [tls]\n\
         ca = \"ca.pem\"\n\
         cert = \"server.pem\"\n\
         key = \"server.key\"\n\
         [tenants.acme]\n\
         quota-bytes = 0\n",
        0o644,
    );
    write(
        &etc.join("replicad.toml"),
        "# tests/tests/vm_systemd.rs\n\
         version = 1\n\
         vault = \"/srv/tiervault/vault\"\n\
         to = \"tiervault://localhost:7443\"\n\
         ca = \"/etc/tiervault/remote-ca.pem\"\n\
         cert = \"/etc/tiervault/appliance.pem\"\n\
         key = \"/etc/tiervault/appliance.key\"\n\
         poll-seconds = 5\n\
         retry-seconds = 2\n\
         cache-bytes = 16777216\n\
         index-bytes = 16777216\n",
        0o644,
    );

    if services.iter().any(|s| s.unit == POOLD) {
        // vault-poold needs a plan: tier-5's, recorded from its hardware fixture. None of its
        // disks are in the guest, so the service comes up with the arrays missing.
        let ws = vm::workspace();
        run(
            bare_command(bin("vaultctl"))
                .args(["provision", "--tier", "tier-5", "--quiet", "--hardware"])
                .arg(ws.join("services/libs/model/testdata/hardware/tier-5.toml"))
                .arg("--profiles")
                .arg(ws.join("hardware-profiles"))
                .arg("--config")
                .arg(etc.join("appliance.toml")),
            "vaultctl provision",
        );
        write(
            &etc.join("poold.toml"),
            "# tests/tests/vm_systemd.rs: every key at its default\n",
            0o644,
        );
    }

    // vault-healthd with every key at its default: no BMC in this guest, and its disks (virtio)
    // have no SMART, so it runs its rounds with nothing to report.
    write(
        &etc.join("healthd.toml"),
        "# tests/tests/vm_systemd.rs: every key at its default\n",
        0o644,
    );

    // Owners at boot, once systemd-sysusers has made the users: the vault is tiervault's; the
    // secrets are readable by the service's group only (the services run unprivileged).
    write(
        &overlay.join("etc/tmpfiles.d/tiervault-test.conf"),
        "# tests/tests/vm_systemd.rs\n\
         Z /srv/tiervault/vault - tiervault tiervault -\n\
         z /etc/tiervault/vault.key 0640 root tiervault -\n\
         z /etc/tiervault/appliance.key 0640 root tiervault -\n\
         z /etc/tiervault-remote/server.key 0640 root tiervault-remote -\n",
        0o644,
    );

    for s in services {
        let text = fs::read_to_string(vm::workspace().join("systemd").join(s.unit))
            .unwrap_or_else(|e| panic!("{}: {e}", s.unit));
        if unit_key(&text, "WatchdogSec").is_some() {
            write(
                &overlay.join(format!(
                    "etc/systemd/system/{}.d/tiervault-test.conf",
                    s.unit
                )),
                &format!(
                    "# tests/tests/vm_systemd.rs: a hang is noticed in seconds, not minutes\n\
                     [Service]\n\
                     WatchdogSec={TEST_WATCHDOG_S}s\n\
                     RestartSec={TEST_RESTART_S}s\n"
                ),
                0o644,
            );
        }
    }

    write(
        &overlay.join("etc/systemd/system/tiervault-scenario7.service"),
        "# tests/tests/vm_systemd.rs\n\
         [Unit]\n\
         Description=Tiervault scenario 7 (test): services under systemd, watchdog, stop\n\
         After=multi-user.target\n\
         \n\
         [Service]\n\
         Type=oneshot\n\
         ExecStart=/usr/local/bin/tiervault-scenario7\n\
         # Findings go to /dev/console themselves; the rest to the journal.\n\
         StandardOutput=journal\n\
         StandardError=journal\n\
         TimeoutStartSec=infinity\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n",
        0o644,
    );
    let units: Vec<&str> = services.iter().map(|s| s.unit).collect();
    let script = GUEST_SCRIPT
        .replace("@SERVICES@", &units.join(" "))
        .replace("@WATCHDOG_WAIT@", &WATCHDOG_WAIT_S.to_string())
        .replace("@STOP_WAIT@", &STOP_WAIT_S.to_string());
    write(
        &overlay.join("usr/local/bin/tiervault-scenario7"),
        &script,
        0o755,
    );

    let mut enable: Vec<String> = units.iter().map(|u| u.to_string()).collect();
    enable.push("tiervault-scenario7.service".into());
    enable
}

/// The guest's half: run by tiervault-scenario7.service. `@...@` are filled in above.
const GUEST_SCRIPT: &str = r#"#!/bin/bash
# Generated by tests/tests/vm_systemd.rs (scenario 7); run by tiervault-scenario7.service once
# multi-user.target is active. Each finding is one `TIERVAULT-RESULT <json>` line written to
# /dev/console (not through the journal, which would prefix it); the host asserts on them.
# Every fork costs milliseconds under emulation: strings are built with bash alone.
set -u
services=(@SERVICES@)
watchdog_wait=@WATCHDOG_WAIT@
stop_wait=@STOP_WAIT@

# NOW: the guest uptime in seconds (text), SECS: its whole seconds.
now() {
    read -r NOW _ </proc/uptime
    SECS=${NOW%.*}
}
# J: $1 as a JSON string (control characters other than tab and newline dropped).
js() {
    local s=$1
    s=${s//[$'\001'-$'\010'$'\013'$'\014'$'\016'-$'\037'$'\177']/}
    s=${s//\\/\\\\}
    s=${s//\"/\\\"}
    s=${s//$'\t'/\\t}
    s=${s//$'\n'/\\n}
    J="\"$s\""
}
# J: the arguments as a JSON array of strings.
js_list() {
    local out="" x
    for x in "$@"; do
        js "$x"
        out="$out${out:+,}$J"
    done
    J="[$out]"
}
# J: properties $2 (comma-separated) of unit $1 as a JSON object of strings.
js_props() {
    local out="" k v line
    while IFS= read -r line; do
        k=${line%%=*}
        v=${line#*=}
        [ -n "$k" ] || continue
        js "$v"
        out="$out${out:+,}\"$k\":$J"
    done < <(systemctl show -p "$2" "$1" 2>&1)
    J="{$out}"
}
# A result: `begin KIND`, then `str NAME TEXT`, `raw NAME JSON`, `props NAME UNIT LIST`, then
# `emit`.
begin() { R="{\"kind\":\"$1\""; }
str() {
    js "$2"
    R="$R,\"$1\":$J"
}
raw() { R="$R,\"$1\":$2"; }
props() {
    js_props "$2" "$3"
    R="$R,\"$1\":$J"
}
emit() { printf 'TIERVAULT-RESULT %s}\n' "$R" >/dev/console; }
prop() { systemctl show -p "$2" --value "$1"; }
# Properties $2 of unit $1 into the associative array P.
declare -A P
read_props() {
    local line
    P=()
    while IFS= read -r line; do
        [ -n "$line" ] && P[${line%%=*}]=${line#*=}
    done < <(systemctl show -p "$2" "$1" 2>/dev/null)
}
journal() { journalctl -b -u "$1" --no-pager -o short-monotonic 2>&1; }
failed_units() {
    systemctl list-units --failed --plain --no-legend --no-pager 2>/dev/null |
        awk '{for (i = 1; i <= NF; i++) if ($i ~ /\./) { print $i; break }}'
}

# --- 1. the boot ------------------------------------------------------------------------------
mapfile -t failed < <(failed_units)
now
begin boot
raw uptime "$NOW"
str multi_user "$(systemctl is-active multi-user.target)"
str multi_user_active_us "$(prop multi-user.target ActiveEnterTimestampMonotonic)"
str userspace_us "$(systemctl show -p UserspaceTimestampMonotonic --value)"
str system_state "$(systemctl is-system-running 2>&1)"
js_list "${failed[@]}"
raw failed "$J"
emit
for u in "${failed[@]}"; do
    begin failed
    str unit "$u"
    str status "$(systemctl status --no-pager -l -n 0 "$u" 2>&1)"
    str journal "$(journal "$u" | tail -n 30)"
    emit
done

# --- 2. every service active, READY, on the bus -----------------------------------------------
SP=Id,Type,ActiveState,SubState,Result,StatusText,NRestarts,MainPID,ExecMainStartTimestampMonotonic,ActiveEnterTimestampMonotonic,ExecMainCode,ExecMainStatus,WatchdogUSec,TimeoutStopUSec,RestartUSec,BusName,NotifyAccess,DropInPaths
init_ns=$(readlink /proc/1/ns/mnt)
wd=()
for u in "${services[@]}"; do
    read_props "$u" "$SP"
    begin service
    str unit "$u"
    props props "$u" "$SP"
    owner=""
    if [ -n "${P[BusName]:-}" ]; then
        owner=$(busctl call org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus \
            GetConnectionUnixProcessID s "${P[BusName]}" 2>&1)
    fi
    str bus_owner "$owner"
    str mnt_ns "$(readlink "/proc/${P[MainPID]:-0}/ns/mnt" 2>&1)"
    str init_mnt_ns "$init_ns"
    str journal "$(journal "$u" | tail -n 25)"
    emit
    if [ -n "${P[WatchdogUSec]:-}" ] && [ "${P[WatchdogUSec]}" != 0 ] &&
        [ "${P[ActiveState]:-}" = active ]; then
        wd+=("$u")
    fi
done

# --- 3. watchdog: freeze each service that has one, all at once ----------------------------------
declare -A old_pid old_nr stopped_at back_at seen_result seen_code seen_status seen_sub
for u in "${wd[@]}"; do
    read_props "$u" MainPID,NRestarts
    old_pid[$u]=${P[MainPID]}
    old_nr[$u]=${P[NRestarts]}
    now
    stopped_at[$u]=$NOW
    kill -STOP "${old_pid[$u]}"
done
now
end=$((SECS + watchdog_wait))
while :; do
    pending=0
    for u in "${wd[@]}"; do
        [ -z "${back_at[$u]:-}" ] || continue
        pending=1
        read_props "$u" ActiveState,SubState,Result,MainPID,NRestarts,ExecMainCode,ExecMainStatus
        # Result=watchdog from the timeout on (stop-watchdog) until the restart; the main
        # process's exit status is known once it has died (auto-restart): keep the last look.
        if [ "${P[Result]:-}" = watchdog ]; then
            seen_result[$u]=${P[Result]}
            seen_code[$u]=${P[ExecMainCode]:-}
            seen_status[$u]=${P[ExecMainStatus]:-}
            seen_sub[$u]=${P[SubState]:-}
        fi
        if [ "${P[NRestarts]:-0}" -gt "${old_nr[$u]}" ] && [ "${P[ActiveState]:-}" = active ] &&
            [ "${P[SubState]:-}" = running ] && [ "${P[MainPID]:-0}" != 0 ] &&
            [ "${P[MainPID]}" != "${old_pid[$u]}" ]; then
            now
            back_at[$u]=$NOW
        fi
    done
    now
    if [ "$pending" = 0 ] || [ "$SECS" -ge "$end" ]; then break; fi
    sleep 0.2
done
for u in "${wd[@]}"; do
    begin watchdog
    str unit "$u"
    str old_pid "${old_pid[$u]}"
    str nrestarts_before "${old_nr[$u]}"
    raw stopped_at "${stopped_at[$u]}"
    str back_at "${back_at[$u]:-}"
    str seen_result "${seen_result[$u]:-}"
    str seen_code "${seen_code[$u]:-}"
    str seen_status "${seen_status[$u]:-}"
    str seen_substate "${seen_sub[$u]:-}"
    props props "$u" "$SP"
    str journal "$(journal "$u" | grep -E 'Watchdog timeout|signal SIG|Main process exited|Failed with result|Scheduled restart job|Started |Starting ')"
    emit
done

# --- 4. systemctl stop, one at a time, in the order given -------------------------------------
for u in "${services[@]}"; do
    before=$(journal "$u" | wc -l)
    pid=$(prop "$u" MainPID)
    now
    a=$NOW
    timeout "$stop_wait" systemctl stop "$u"
    rc=$?
    now
    begin stop
    str unit "$u"
    raw rc "$rc"
    str pid "$pid"
    raw started_at "$a"
    raw ended_at "$NOW"
    props props "$u" ActiveState,SubState,Result,ExecMainCode,ExecMainStatus,TimeoutStopUSec,InactiveEnterTimestampMonotonic
    str journal "$(journal "$u" | tail -n +$((before + 1)))"
    emit
done

mapfile -t failed < <(failed_units)
now
begin "done"
raw uptime "$NOW"
js_list "${failed[@]}"
raw failed "$J"
emit
echo "TIERVAULT-GUEST-END rc=0" >/dev/console
systemctl poweroff --no-block
"#;

/// Seconds of a systemd time span as `systemctl show` prints it ("1min 30s", "10s", "500ms",
/// "infinity").
fn timespan_s(text: &str) -> Option<f64> {
    let text = text.trim();
    if text == "infinity" {
        return Some(f64::INFINITY);
    }
    let mut total = 0.0;
    for word in text.split_whitespace() {
        let split = word
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(word.len());
        let (n, unit) = word.split_at(split);
        let n: f64 = n.parse().ok()?;
        total += n * match unit {
            "" | "s" | "sec" => 1.0,
            "us" | "usec" => 1e-6,
            "ms" | "msec" => 1e-3,
            "min" | "m" => 60.0,
            "h" | "hr" => 3600.0,
            "d" => 86400.0,
            _ => return None,
        };
    }
    Some(total)
}

#[test]
fn services_reach_ready_are_restarted_by_their_watchdog_and_stop_cleanly_under_systemd() {
    let ws = vm::workspace();
    let rootfs_script = ws.join("tests/vm/build-rootfs.sh");
    let mut missing = Vec::new();
    let vm = match vm::available() {
        Ok(vm) => Some(vm),
        Err(why) => {
            missing.push(why);
            None
        }
    };
    match Command::new("bash")
        .arg(&rootfs_script)
        .arg("--check")
        .output()
    {
        Ok(o) if o.status.success() => {}
        Ok(o) => missing.push(format!(
            "{}: {}{}",
            rootfs_script.display(),
            String::from_utf8_lossy(&o.stdout).trim(),
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => missing.push(format!("cannot run bash: {e}")),
    }
    let Some(vm) = vm.filter(|_| missing.is_empty()) else {
        skip(&format!(
            "tier 3, systemd in a qemu guest: {}",
            missing.join("; ")
        ));
        return;
    };
    let started = Instant::now();

    let with_poold = workspace_has("tiervault-poold");
    let services: Vec<&Service> = SERVICES
        .iter()
        .filter(|s| with_poold || s.unit != POOLD)
        .collect();
    if !with_poold {
        eprintln!(
            "{TEST}: the workspace has no tiervault-poold yet: vault-poold.service is not covered"
        );
    }
    let t = Instant::now();
    let mut packages: Vec<&str> = services.iter().map(|s| s.package).collect();
    packages.push("vaultctl");
    let bins = vm::release_binaries(&packages);
    let bins_s = t.elapsed().as_secs_f64();

    let tmp = tempfile::Builder::new()
        .prefix("tiervault-vm-systemd-")
        .tempdir()
        .expect("temporary directory");
    let bindir = tmp.path().join("bin");
    fs::create_dir(&bindir).expect("mkdir");
    for name in services.iter().map(|s| s.bin).chain(["vaultctl"]) {
        let path = bins.get(name).unwrap_or_else(|| {
            panic!("no binary {name} among {bins:?} (TIERVAULT_VM_BIN_DIR lacks it?)")
        });
        std::os::unix::fs::symlink(path, bindir.join(name)).expect("symlink");
    }
    let overlay = tmp.path().join("overlay");
    let scratch = tmp.path().join("scratch");
    fs::create_dir_all(&scratch).expect("mkdir");
    let enable = make_overlay(&overlay, &scratch, &bins, &services);

    let t = Instant::now();
    let image = tmp.path().join("root.img");
    let mut cmd = Command::new("bash");
    cmd.current_dir(&ws)
        .arg(&rootfs_script)
        .arg("--out")
        .arg(&image)
        .arg("--project")
        .arg(&bindir)
        .arg("--overlay")
        .arg(&overlay);
    for u in &enable {
        cmd.args(["--enable", u]);
    }
    let out = cmd.output().expect("running build-rootfs.sh");
    let build = t.elapsed();
    assert!(
        out.status.success(),
        "build-rootfs.sh failed: {}",
        vm::describe_output(&out)
    );
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    let value = |key: &str| {
        printed
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .map(str::to_string)
            .unwrap_or_else(|| panic!("build-rootfs.sh printed no {key} line: {printed}"))
    };
    // The root image is the first disk (/dev/vda, which the initramfs mounts); no serial.
    let run = vm
        .guest(TEST, "")
        .drive(Drive::virtio(value("ROOTFS="), ""))
        .mem_mib(GUEST_MEM_MIB)
        .timeout(Duration::from_secs(GUEST_TIMEOUT_S))
        .append(&value("APPEND="))
        .boot(&Built {
            kernel: value("KERNEL=").into(),
            initrd: value("INITRD=").into(),
            elapsed: build,
        });
    drop(tmp);
    eprintln!(
        "{TEST}: binaries {bins_s:.1} s, build-rootfs.sh {:.1} s, guest run {:.1} s \
         (qemu start to power-off), test {:.1} s",
        build.as_secs_f64(),
        run.elapsed.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    check(&run, &services);
}

/// The assertions, on the guest's findings.
fn check(run: &Run, services: &[&Service]) {
    let of_kind =
        |kind: &str| -> Vec<&Value> { run.results.iter().filter(|r| r["kind"] == kind).collect() };
    let one = |kind: &str, unit: &str| -> &Value {
        run.results
            .iter()
            .find(|r| r["kind"] == kind && r["unit"] == unit)
            .unwrap_or_else(|| run.fail(format_args!("the guest reported no {kind} for {unit}")))
    };
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let prop = |r: &Value, k: &str| text(&r["props"][k]);
    let num = |r: &Value, k: &str| -> f64 {
        let v = &r["props"][k];
        v.as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| run.fail(format_args!("property {k} = {v} is not a number: {r}")))
    };
    if let Some(bad) = run.results.iter().find(|r| r.get("unparsed").is_some()) {
        run.fail(format_args!("a result line is not JSON: {bad}"));
    }
    run.expect_code(0);
    run.ensure(
        !of_kind("done").is_empty(),
        "the guest's checks did not run to the end",
    );

    // 1. The boot.
    let boot = &of_kind("boot")[0];
    let failed: Vec<String> = boot["failed"]
        .as_array()
        .map(|a| a.iter().map(text).collect())
        .unwrap_or_default();
    let failed_detail: Vec<String> = of_kind("failed")
        .iter()
        .map(|f| {
            format!(
                "{}:\n{}\n{}",
                text(&f["unit"]),
                text(&f["status"]),
                text(&f["journal"])
            )
        })
        .collect();
    let mu_s = text(&boot["multi_user_active_us"])
        .parse::<f64>()
        .unwrap_or(0.0)
        / 1e6;
    eprintln!(
        "{TEST}: multi-user.target {} at {mu_s:.1} s (guest uptime; userspace from {:.1} s), \
         checks start at {} s",
        text(&boot["multi_user"]),
        text(&boot["userspace_us"]).parse::<f64>().unwrap_or(0.0) / 1e6,
        boot["uptime"]
    );
    run.ensure(
        text(&boot["multi_user"]) == "active",
        format_args!("multi-user.target is {}", boot["multi_user"]),
    );
    run.ensure(
        failed.is_empty(),
        format_args!(
            "failed units after boot: {failed:?}\n{}",
            failed_detail.join("\n\n")
        ),
    );

    // 2. Every service active and READY.
    for s in services {
        let r = one("service", s.unit);
        let ready_s = (num(r, "ActiveEnterTimestampMonotonic")
            - num(r, "ExecMainStartTimestampMonotonic"))
            / 1e6;
        eprintln!(
            "{TEST}: {} {} {}/{} ({}), exec to active {ready_s:.2} s, status {:?}, main PID {}, \
             restarts {}",
            s.unit,
            prop(r, "Type"),
            prop(r, "ActiveState"),
            prop(r, "SubState"),
            prop(r, "Result"),
            prop(r, "StatusText"),
            prop(r, "MainPID"),
            prop(r, "NRestarts"),
        );
        let journal = text(&r["journal"]);
        run.ensure(
            prop(r, "ActiveState") == "active" && prop(r, "SubState") == "running",
            format_args!(
                "{} is not active/running: {}\n{journal}",
                s.unit, r["props"]
            ),
        );
        run.ensure(
            prop(r, "NRestarts") == "0",
            format_args!(
                "{} restarted before the test: {}\n{journal}",
                s.unit, r["props"]
            ),
        );
        if !prop(r, "BusName").is_empty() {
            // READY=1 is sent once the name is taken; the name's owner is the main process.
            let owner = text(&r["bus_owner"]);
            run.ensure(
                owner.trim() == format!("u {}", prop(r, "MainPID")),
                format_args!(
                    "{}: {} is owned by {owner:?}, not by the main PID {}",
                    s.unit,
                    prop(r, "BusName"),
                    prop(r, "MainPID")
                ),
            );
        }
        if s.unit == POOLD {
            run.ensure(
                r["mnt_ns"] == r["init_mnt_ns"],
                format_args!(
                    "vault-poold runs in a mount namespace of its own ({} vs PID 1's {}): \
                     what it mounts would be seen by nobody else",
                    r["mnt_ns"], r["init_mnt_ns"]
                ),
            );
        }
    }

    // 3. The watchdog.
    let watchdogs = of_kind("watchdog");
    for s in services {
        let r = one("service", s.unit);
        let has = timespan_s(&prop(r, "WatchdogUSec")).is_some_and(|w| w > 0.0);
        let w = watchdogs.iter().find(|w| w["unit"] == s.unit);
        run.ensure(
            has == w.is_some(),
            format_args!(
                "{}: WatchdogUSec={} but the watchdog check {}",
                s.unit,
                prop(r, "WatchdogUSec"),
                if w.is_some() { "ran" } else { "did not run" }
            ),
        );
        let Some(w) = w else { continue };
        let journal = text(&w["journal"]);
        let back = text(&w["back_at"]);
        let restart_s = back
            .parse::<f64>()
            .ok()
            .map(|b| b - w["stopped_at"].as_f64().unwrap_or(0.0));
        eprintln!(
            "{TEST}: {} watchdog {}: SIGSTOP to active again {}, result seen {:?} (exit code {} \
             status {}, state {}), restarts {} -> {}, main PID {} -> {}",
            s.unit,
            prop(w, "WatchdogUSec"),
            restart_s.map_or("never".to_string(), |t| format!("{t:.1} s")),
            text(&w["seen_result"]),
            text(&w["seen_code"]),
            text(&w["seen_status"]),
            text(&w["seen_substate"]),
            text(&w["nrestarts_before"]),
            prop(w, "NRestarts"),
            text(&w["old_pid"]),
            prop(w, "MainPID"),
        );
        run.ensure(
            journal.contains("Watchdog timeout"),
            format_args!(
                "{}: no \"Watchdog timeout\" in its journal:\n{journal}",
                s.unit
            ),
        );
        run.ensure(
            journal.contains("SIGABRT") && journal.contains("Failed with result 'watchdog'"),
            format_args!(
                "{}: not killed with SIGABRT for the watchdog:\n{journal}",
                s.unit
            ),
        );
        run.ensure(
            restart_s.is_some(),
            format_args!(
                "{}: not active again within {WATCHDOG_WAIT_S} s of SIGSTOP: {}\n{journal}",
                s.unit, w["props"]
            ),
        );
        let before: u64 = text(&w["nrestarts_before"]).parse().unwrap_or(u64::MAX);
        run.ensure(
            num(w, "NRestarts") as u64 > before
                && prop(w, "MainPID") != text(&w["old_pid"])
                && prop(w, "ActiveState") == "active",
            format_args!(
                "{}: not restarted (NRestarts {before} ->, old PID {}): {}",
                s.unit, w["old_pid"], w["props"]
            ),
        );
        run.ensure(
            journal.contains("status=6/ABRT"),
            format_args!(
                "{}: the main process did not end with SIGABRT:\n{journal}",
                s.unit
            ),
        );
    }

    // 4. systemctl stop.
    for s in services {
        let r = one("stop", s.unit);
        let took =
            r["ended_at"].as_f64().unwrap_or(f64::NAN) - r["started_at"].as_f64().unwrap_or(0.0);
        let limit = timespan_s(&prop(r, "TimeoutStopUSec")).unwrap_or(f64::NAN);
        let journal = text(&r["journal"]);
        eprintln!(
            "{TEST}: {} stop {took:.2} s (TimeoutStopSec {}): {}/{} result {}, exit code {} \
             status {}",
            s.unit,
            prop(r, "TimeoutStopUSec"),
            prop(r, "ActiveState"),
            prop(r, "SubState"),
            prop(r, "Result"),
            prop(r, "ExecMainCode"),
            prop(r, "ExecMainStatus"),
        );
        run.ensure(
            r["rc"] == 0,
            format_args!(
                "{}: systemctl stop exited with {}\n{journal}",
                s.unit, r["rc"]
            ),
        );
        run.ensure(
            prop(r, "ActiveState") == "inactive" && prop(r, "Result") == "success",
            format_args!("{}: after stop: {}\n{journal}", s.unit, r["props"]),
        );
        // CLD_EXITED (1) with status 0: it exited by itself, not killed by a signal.
        run.ensure(
            prop(r, "ExecMainCode") == "1" && prop(r, "ExecMainStatus") == "0",
            format_args!(
                "{}: the main process did not exit with 0 on SIGTERM: {}\n{journal}",
                s.unit, r["props"]
            ),
        );
        run.ensure(
            took < limit,
            format_args!(
                "{}: stop took {took:.1} s, TimeoutStopSec is {limit} s",
                s.unit
            ),
        );
        run.ensure(
            !journal.contains("SIGKILL") && !journal.contains("timed out"),
            format_args!(
                "{}: the stop needed SIGKILL or timed out:\n{journal}",
                s.unit
            ),
        );
    }

    let done = &of_kind("done")[0];
    run.ensure(
        done["failed"].as_array().is_some_and(|a| a.is_empty()),
        format_args!("failed units at the end: {}", done["failed"]),
    );
}
