//! Tier 3: the disk pool on real md RAID in a qemu guest (Debian kernel, udev, mdadm,
//! mkfs.xfs), with the project's release binaries: `vaultctl provision` plans the tier-test
//! appliance (tests/vm/profiles/tier-test.toml: an NVMe RAID10 OS/dedup-DB array with a spare
//! and two RAID5 data arrays sharing one) on 12 serial-numbered 384 MiB disks,
//! `vaultctl pool provision` builds it, `vault-poold` watches it, and the vault spans the
//! arrays. The guest scripts report with `tv-result`; every assertion is made here on what
//! they report, with the console tail in the message.
//!
//! The issue's scenarios, grouped to keep the boots few (emulation is slow):
//! - `pool_lifecycle` (one boot): 3 (a disk with a file system is refused without
//!   `--wipe SERIAL` and keeps its data), 1 (provision, dry run, second run changes nothing),
//!   2 (back up, fail a data disk, degraded reported, spare rebuilds, healthy, verify clean,
//!   restore bit-identical), 4 (stop every array, restart the service: assembled, every
//!   snapshot), a scrub, 5 (two members of a RAID5 fail: failed with severity 10, verify
//!   names the lost packs and snapshots, the other arrays keep serving);
//! - `pool_power_cut` (two boots on the same disks): 6 (qemu killed in the middle of a
//!   backup; the next boot assembles, verifies clean and has every snapshot committed before).
//!
//! - `pool_replacement` (one boot): the ways a disk is replaced: a spare lent between data
//!   arrays of one spare group, `vaultctl pool replace` of a member in sync (hot
//!   `mdadm --replace`: never degraded) and of a failed one (a disk with an old md superblock,
//!   refused without `--wipe`), and a blank disk inserted while the appliance runs (PCI
//!   hot-plug) becoming a hot spare that a failure then uses.
//!
//! Scenario 7 (systemd as PID 1) is `vm_systemd.rs`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::vm::{self, Drive, Need, Run};
use serde_json::Value;

const DISK_MIB: u64 = 384;

/// Shell functions every pool script starts with.
const PRELUDE: &str = r#"
set -u
export PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin
export POOLD_LOG=info
KEY=/etc/tiervault/vault.key
STATUS=/var/lib/tiervault/poold/status.json
export VAULT_DIR=/srv/tiervault/vault
ms() { awk '{ printf "%d", $1 * 1000 }' /proc/uptime; }
dump() {
    echo "--- mdstat"; cat /proc/mdstat
    echo "--- poold log"; tail -n 60 /tmp/poold.log 2>/dev/null
    echo "--- status.json"; cat "$STATUS" 2>/dev/null; echo
}
# wait_for SECONDS WHAT COMMAND...: every wait has a limit; a timeout ends the script.
wait_for() {
    limit=$1; what=$2; shift 2; w0=$(ms)
    while ! "$@" >/dev/null 2>&1; do
        if [ $(( $(ms) - w0 )) -gt $(( limit * 1000 )) ]; then
            echo "TIMEOUT after ${limit}s waiting for: $what"; dump
            tv-result timeout="$what"
            exit 90
        fi
        sleep 0.2
    done
    WAITED=$(( $(ms) - w0 ))
    echo "waited ${WAITED} ms for: $what"
}
# The kernel name of the disk with this serial.
dev_of() {
    for b in /sys/block/*; do
        s=$(cat "$b/serial" 2>/dev/null || cat "$b/device/serial" 2>/dev/null)
        s=$(echo $s)
        if [ "$s" = "$1" ]; then basename "$b"; return 0; fi
    done
    return 1
}
# status.json is compact JSON with sorted keys (serde_json maps).
array_is() { grep -q "\"name\":\"$1\",\"raid_disks\":[0-9]*,\"size_bytes\":[0-9]*,\"state\":\"$2\"" "$STATUS"; }
alert_on() { grep -q "\"class\":\"$1\",\"key\":\"$2\"" "$STATUS"; }
# disk_is SERIAL ARRAY STATE (ARRAY and STATE are grep patterns).
disk_is() { grep -q "\"array\":\"$2\",\"device\":\"[^\"]*\",\"serial\":\"$1\",\"size_bytes\":[0-9]*,\"slot\":[0-9a-z]*,\"state\":\"$3\"" "$STATUS"; }
all_healthy() { array_is vault-ddb healthy && array_is vault-data0 healthy && array_is vault-data1 healthy; }
all_mounted() { for m in vault data0 data1; do grep -q " /srv/tiervault/$m xfs " /proc/mounts || return 1; done; }
start_poold() {
    vault-poold --config /etc/tiervault/poold.toml --bus none >>/tmp/poold.log 2>&1 &
    POOLD=$!
    wait_for 120 "vault-poold's first status" test -s "$STATUS"
}
stop_poold() { kill "$POOLD"; wait "$POOLD"; echo "vault-poold exited with $?"; rm -f "$STATUS"; }
# json NAME TEXT: TEXT is JSON (vaultctl pretty-prints it: raw newlines go, escaped ones stay).
json() { tv-result "$1:=$(printf '%s' "$2" | tr -d '\n')"; }
# run_json NAME COMMAND...: the command's JSON output as NAME and its exit code as NAME_rc.
run_json() {
    name=$1; shift
    out=$("$@" 2>/tmp/$name.err); rc=$?
    [ -n "$out" ] || out=null
    json "$name" "$out"
    tv-result "${name}_rc:=$rc" "${name}_err=$(head -c 2000 /tmp/$name.err)"
    return $rc
}
mkdir -p /etc/tiervault /var/lib/tiervault/poold /src /mnt/old
cat > /etc/tiervault/poold.toml <<'EOF'
pool-root = "/srv/tiervault"
units-dir = ""
bus = "none"
rescan-seconds = 30
sync-poll-seconds = 2
scrub-every-days = 0
EOF
mount -o ro "/dev/$(dev_of SRC)" /src || { echo "cannot mount the source disk"; exit 91; }
vaultctl provision --profiles /profiles --tier tier-test || exit 92
"#;

/// Scenarios 3, 1, 2, 4, a scrub and 5, in one boot.
const LIFECYCLE: &str = r#"
# --- 3: the disk planned as the data spare (VD6) carries an ext4 file system.
OLD=$(dev_of VD6)
out=$(vaultctl pool provision 2>&1); rc=$?
echo "$out"
tv-result refuse_rc:=$rc refuse_msg="$out" arrays_after_refusal:=$(grep -c '^md' /proc/mdstat)
mount -o ro "/dev/$OLD" /mnt/old && tv-result old_sum="$(sha256sum /mnt/old/precious.txt | cut -d' ' -f1)"
umount /mnt/old

# --- 1: dry run, build, build again.
run_json dry vaultctl pool provision --dry-run --wipe VD6 --json || exit 93
tv-result arrays_after_dry_run:=$(grep -c '^md' /proc/mdstat)
t0=$(ms)
run_json built vaultctl pool provision --wipe VD6 --json || exit 93
tv-result build_ms:=$(( $(ms) - t0 ))
run_json again vaultctl pool provision --json
tv-result mounts="$(grep /srv/tiervault /proc/mounts)" mdadm_conf="$(cat /etc/mdadm/mdadm.conf)"
cat /proc/mdstat

start_poold
wait_for 600 "the initial resync of every array" all_healthy
tv-result resync_ms:=$WAITED

# --- the vault on the arrays: root on vault-ddb, data directories on the data arrays.
vaultctl --key-file $KEY init --data-dir /srv/tiervault/data0 --data-dir /srv/tiervault/data1 --kdf-time-ms 50 || exit 94
t0=$(ms)
run_json backup1 vaultctl --key-file $KEY backup /src --json || exit 95
tv-result backup1_ms:=$(( $(ms) - t0 ))
tv-result packs_data0:=$(find /srv/tiervault/data0 -path '*/tmp' -prune -o -type f -name '????????????????????????????????' -print | wc -l) \
          packs_data1:=$(find /srv/tiervault/data1 -path '*/tmp' -prune -o -type f -name '????????????????????????????????' -print | wc -l)

# --- 2: fail a data disk; the spare rebuilds.
F=$(dev_of VD0)
t0=$(ms)
mdadm /dev/md/vault-data0 --fail "/dev/$F"
wait_for 120 "vault-poold reporting vault-data0 degraded" alert_on pool.degraded vault-data0
tv-result degraded_report_ms:=$(( $(ms) - t0 ))
json status_degraded "$(cat $STATUS)"
wait_for 600 "the rebuild of vault-data0" array_is vault-data0 healthy
wait_for 60 "the rebuild-finished alert" alert_on pool.rebuild-finished vault-data0
tv-result rebuild_ms:=$(( $(ms) - t0 ))
json status_rebuilt "$(cat $STATUS)"
run_json verify1 vaultctl --key-file $KEY verify --json
mkdir -p /tmp/r1
vaultctl --key-file $KEY --quiet restore latest --target /tmp/r1; tv-result restore1_rc:=$?
diff -r /src /tmp/r1/src >/tmp/diff1 2>&1; tv-result diff1_rc:=$? diff1="$(head -c 2000 /tmp/diff1)"
rm -rf /tmp/r1

# --- 4: stop every array, restart the service.
stop_poold
for m in data1 data0 vault; do umount /srv/tiervault/$m || exit 96; done
mdadm --stop --scan
tv-result arrays_after_stop:=$(grep -c '^md' /proc/mdstat)
t0=$(ms)
start_poold
wait_for 120 "the pool assembled and mounted again" all_mounted
tv-result reassemble_ms:=$(( $(ms) - t0 ))
wait_for 600 "every array healthy after assembly" all_healthy
run_json snapshots_after_restart vaultctl --key-file $KEY snapshots --json
run_json verify2 vaultctl --key-file $KEY verify --json

# --- a scrub: md reads the whole array and counts mismatches.
vaultctl pool scrub vault-data1 || exit 97
wait_for 60 "the scrub running" array_is vault-data1 checking
wait_for 600 "the scrub finished" array_is vault-data1 healthy
json status_scrubbed "$(cat $STATUS)"

# --- 5: two members of the RAID5 vault-data1 fail (it has no spare left: the shared spare
# rebuilt vault-data0).
mkdir -p /tmp/extra && dd if=/dev/urandom of=/tmp/extra/new.bin bs=1M count=12 2>/dev/null
run_json backup2 vaultctl --key-file $KEY backup /src /tmp/extra --json || exit 98
A=$(dev_of VD3); B=$(dev_of VD4)
t0=$(ms)
mdadm /dev/md/vault-data1 --fail "/dev/$A"
mdadm /dev/md/vault-data1 --fail "/dev/$B"
wait_for 120 "vault-poold reporting vault-data1 failed" alert_on pool.failed vault-data1
tv-result failed_report_ms:=$(( $(ms) - t0 ))
json status_failed "$(cat $STATUS)"
# What was written lately is still in the page cache; the vault must read the disks.
timeout 30 sync; echo 3 > /proc/sys/vm/drop_caches
# The other arrays keep serving: their file systems take writes, the vault lists snapshots.
echo probe > /srv/tiervault/data0/probe && sync && tv-result data0_write="$(cat /srv/tiervault/data0/probe)"
rm -f /srv/tiervault/data0/probe
run_json snapshots_after_failure vaultctl --key-file $KEY snapshots --json
# The damage list names every lost blob: report its size and the snapshots it names.
vaultctl --key-file $KEY verify --json >/tmp/verify3.json 2>/tmp/verify3.err; rc=$?
tr -d '\n ' </tmp/verify3.json >/tmp/verify3.flat
tv-result verify3_rc:=$rc verify3_err="$(head -c 2000 /tmp/verify3.err)" \
    verify3_damage:=$(grep -o '"error":' /tmp/verify3.flat | wc -l) \
    verify3_snapshots="$(grep -o '"snapshots":\[[^]]*\]' /tmp/verify3.flat | sort -u | tr '\n' ' ')" \
    verify3_affected="$(grep -o '"affected_snapshots":\[[^]]*\]' /tmp/verify3.flat)" \
    verify3_unavailable="$(grep -o '"unavailable_dirs":\[[^]]*\]' /tmp/verify3.flat)" \
    verify3_head="$(head -c 1500 /tmp/verify3.json)"
stop_poold
exit 0
"#;

/// Scenario 6, first boot: a committed snapshot, then qemu is killed during a backup.
const BEFORE_CUT: &str = r#"
vaultctl pool provision --json >/tmp/built.json || { cat /tmp/built.json; exit 93; }
start_poold
wait_for 600 "the initial resync of every array" all_healthy
vaultctl --key-file $KEY init --data-dir /srv/tiervault/data0 --data-dir /srv/tiervault/data1 --kdf-time-ms 50 || exit 94
run_json committed vaultctl --key-file $KEY backup /src --json || exit 95
sync
mkdir -p /tmp/more && dd if=/dev/urandom of=/tmp/more/big.bin bs=1M count=48 2>/dev/null
vaultctl --key-file $KEY backup /tmp/more >/tmp/backup2.log 2>&1 &
# Cut the power once the second backup is writing packs.
wait_for 120 "the second backup writing a pack" sh -c 'ls /srv/tiervault/data*/tmp/* >/dev/null 2>&1'
sleep 1
echo "POWER-CUT-NOW"
sleep 600
"#;

/// Scenario 6, second boot on the same disks.
const AFTER_CUT: &str = r#"
tv-result arrays_at_boot:=$(grep -c '^md' /proc/mdstat)
t0=$(ms)
start_poold
wait_for 180 "the pool assembled and mounted after the power cut" all_mounted
tv-result assemble_ms:=$(( $(ms) - t0 ))
cat /proc/mdstat
json status_after_cut "$(cat $STATUS)"
run_json snapshots vaultctl --key-file $KEY snapshots --json
run_json verify vaultctl --key-file $KEY verify --json
mkdir -p /tmp/r
first=$(vaultctl --key-file $KEY snapshots --json | grep -o '"id": *"[0-9a-f]*"' | head -n 1 | cut -d'"' -f4)
vaultctl --key-file $KEY --quiet restore "$first" --target /tmp/r; tv-result restore_rc:=$? restored="$first"
diff -r /src /tmp/r/src >/tmp/diff 2>&1; tv-result diff_rc:=$? diff="$(head -c 2000 /tmp/diff)"
wait_for 600 "every array healthy (resync after the cut)" all_healthy
tv-result healthy_ms:=$(( $(ms) - t0 ))
stop_poold
exit 0
"#;

/// Replacements, in one boot (see the module's header).
const REPLACEMENT: &str = r#"
vaultctl pool provision --json >/tmp/built.json || { cat /tmp/built.json; exit 93; }
start_poold
wait_for 600 "the initial resync of every array" all_healthy
vaultctl --key-file $KEY init --data-dir /srv/tiervault/data0 --data-dir /srv/tiervault/data1 --kdf-time-ms 50 || exit 94
run_json backup1 vaultctl --key-file $KEY backup /src --json || exit 95
md_of() { basename "$(readlink -f /dev/md/$1)"; }

# --- a spare lent: vault-data1 has none of its own; the shared spare VD6 sits in vault-data0.
json status_start "$(cat $STATUS)"
t0=$(ms)
mdadm /dev/md/vault-data1 --fail "/dev/$(dev_of VD3)"
wait_for 120 "VD6 lent to vault-data1" disk_is VD6 vault-data1 '[a-z]*'
tv-result lend_ms:=$(( $(ms) - t0 ))
wait_for 600 "vault-data1 rebuilt onto the lent spare" array_is vault-data1 healthy
tv-result lend_rebuilt_ms:=$(( $(ms) - t0 ))
json status_lent "$(cat $STATUS)"

# --- hot replacement of a member in sync, by a disk that carries a file system.
run_json replace_refused vaultctl pool replace VD1 RPL1 --json
MD0=$(md_of vault-data0)
rm -f /tmp/stop-sampling
( m=0; while [ ! -e /tmp/stop-sampling ]; do
    d=$(cat /sys/block/$MD0/md/degraded); [ "$d" -gt "$m" ] && m=$d; echo $m >/tmp/max-degraded
    sleep 0.1; done ) &
SAMPLER=$!
t0=$(ms)
run_json replaced vaultctl pool replace VD1 RPL1 --wipe --json || { dump; exit 96; }
wait_for 600 "RPL1 in sync in vault-data0" disk_is RPL1 vault-data0 active
wait_for 120 "vault-data0 healthy after the hot replacement" array_is vault-data0 healthy
wait_for 60 "VD1 taken out after the replacement" disk_is VD1 vault-data0 removed
tv-result hot_replace_ms:=$(( $(ms) - t0 ))
touch /tmp/stop-sampling; wait $SAMPLER
tv-result max_degraded_during_replace:=$(cat /tmp/max-degraded)
json status_replaced "$(cat $STATUS)"

# --- a failed member replaced by command with the disk replaced before (an old md superblock).
mdadm /dev/md/vault-data0 --fail "/dev/$(dev_of VD2)"
wait_for 120 "vault-poold taking the failed VD2 out" disk_is VD2 vault-data0 removed
wait_for 60 "vault-data0 reported degraded" alert_on pool.degraded vault-data0
run_json reuse_refused vaultctl pool replace VD2 VD1 --json
t0=$(ms)
run_json reused vaultctl pool replace VD2 VD1 --wipe --json || { dump; exit 97; }
wait_for 600 "vault-data0 rebuilt onto VD1" array_is vault-data0 healthy
tv-result failed_replace_ms:=$(( $(ms) - t0 ))
wait_for 60 "the degraded alert cleared" sh -c "! grep -q '\"class\":\"pool.degraded\",\"key\":\"vault-data0\"' $STATUS"
json status_reused "$(cat $STATUS)"

# --- a blank disk inserted while everything is healthy becomes a hot spare.
t0=$(ms)
echo "TIERVAULT-HOTPLUG HOT1"
wait_for 60 "the inserted disk HOT1 to appear" dev_of HOT1
tv-result hot_seen_ms:=$(( $(ms) - t0 ))
wait_for 120 "HOT1 made a hot spare" disk_is HOT1 'vault-[a-z0-9]*' spare
tv-result hot_spare_ms:=$(( $(ms) - t0 ))
json status_inserted "$(cat $STATUS)"
# ... and takes the place of the next failed member of a data array.
t0=$(ms)
mdadm /dev/md/vault-data1 --fail "/dev/$(dev_of VD4)"
# (status.json still shows the moment before until vault-poold has seen the failure.)
wait_for 120 "vault-poold taking the failed VD4 out" disk_is VD4 vault-data1 removed
wait_for 120 "HOT1 rebuilding or active in vault-data1" disk_is HOT1 vault-data1 '[ar][ce][a-z]*'
wait_for 600 "vault-data1 rebuilt onto HOT1" array_is vault-data1 healthy
tv-result hot_rebuilt_ms:=$(( $(ms) - t0 ))
json status_final "$(cat $STATUS)"

# After all that: provisioning again changes nothing; the vault is intact.
run_json again vaultctl pool provision --json
run_json verify vaultctl --key-file $KEY verify --json
mkdir -p /tmp/r
vaultctl --key-file $KEY --quiet restore latest --target /tmp/r; tv-result restore_rc:=$?
diff -r /src /tmp/r/src >/tmp/diff 2>&1; tv-result diff_rc:=$? diff="$(head -c 2000 /tmp/diff)"
tv-result degraded_raised="$(grep -o '"class":"pool.degraded","key":"[^"]*"' /var/lib/tiervault/poold/alerts.json | sort | uniq -c | tr '\n' ';')"
cat /proc/mdstat
stop_poold
exit 0
"#;

fn sh(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        vm::describe_output(&out)
    );
}

/// An ext4 image of `mib` MiB holding the files of `dir` (`mkfs.ext4 -d`).
fn ext4_image(path: &Path, mib: u64, dir: &Path, label: &str) {
    vm::sparse_image(path.parent().expect("image dir"), &file_name(path), mib);
    sh(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", label, "-d"])
        .arg(dir)
        .arg(path));
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The source tree the guests back up: random files, a duplicate, small files.
fn source_tree(dir: &Path) {
    let mut rng = tiervault_e2e::rng::Rng::new(0x9001);
    let tree = dir.join("src");
    std::fs::create_dir_all(tree.join("docs")).expect("mkdir");
    let mut big = vec![0u8; 8 << 20];
    for i in 0..3 {
        rng.fill(&mut big);
        std::fs::write(tree.join(format!("blob{i}.bin")), &big).expect("write");
    }
    std::fs::write(tree.join("blob2-copy.bin"), &big).expect("write");
    for i in 0..40 {
        let mut small = vec![0u8; 1000 + rng.below(20_000) as usize];
        rng.fill(&mut small);
        std::fs::write(tree.join(format!("docs/f{i:02}.dat")), &small).expect("write");
    }
}

struct Disks {
    dir: tempfile::TempDir,
    drives: Vec<Drive>,
    key: PathBuf,
}

/// Five NVMe and seven virtio disks for the pool (VD6 optionally with an ext4 file system),
/// the source disk, and a raw vault key made by the host's vaultctl.
fn disks(vaultctl: &Path, old_fs_on_vd6: bool) -> Disks {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let mut drives = Vec::new();
    for i in 0..5 {
        let img = vm::sparse_image(d, &format!("nv{i}.img"), DISK_MIB);
        drives.push(Drive::nvme(img, &format!("NV{i}")));
    }
    for i in 0..7 {
        let path = d.join(format!("vd{i}.img"));
        if i == 6 && old_fs_on_vd6 {
            let content = d.join("old");
            std::fs::create_dir_all(&content).expect("mkdir");
            std::fs::write(
                content.join("precious.txt"),
                b"an MSP's data that must survive\n",
            )
            .expect("write");
            ext4_image(&path, DISK_MIB, &content, "olddata");
        } else {
            vm::sparse_image(d, &file_name(&path), DISK_MIB);
        }
        drives.push(Drive::virtio(path, &format!("VD{i}")));
    }
    let src = d.join("srcdata");
    source_tree(&src);
    let src_img = d.join("src.img");
    ext4_image(&src_img, 96, &src, "source");
    drives.push(Drive::virtio(src_img, "SRC"));
    let key = d.join("vault.key");
    sh(Command::new(vaultctl)
        .arg("--vault")
        .arg(d.join("keymaker"))
        .arg("--key-file")
        .arg(&key)
        .args(["init", "--kdf-time-ms", "10", "--quiet"]));
    Disks { dir, drives, key }
}

/// The state of `serial` in a status.json, as (array, state).
fn disk_state(run: &Run, status: &Value, serial: &str) -> (String, String) {
    let d = disk(run, status, serial);
    (
        d["array"].as_str().unwrap_or_default().to_owned(),
        d["state"].as_str().unwrap_or_default().to_owned(),
    )
}

fn guest<'a>(
    vm: &'a vm::Vm,
    name: &str,
    script: &str,
    bins: &std::collections::BTreeMap<String, PathBuf>,
    disks: &Disks,
) -> vm::Guest<'a> {
    let bin = |n: &str| {
        bins.get(n)
            .unwrap_or_else(|| panic!("release binary {n} not built"))
            .clone()
    };
    let mut g = vm
        .guest(name, &format!("{PRELUDE}\n{script}"))
        .udev()
        .md()
        .mem_mib(1024)
        .timeout(Duration::from_secs(1500))
        .binary(bin("vaultctl"), "/usr/local/bin/vaultctl")
        .binary(bin("vault-poold"), "/usr/local/bin/vault-poold")
        .file(
            vm::workspace().join("tests/vm/profiles/tier-test.toml"),
            "/profiles/tier-test.toml",
        )
        .file(&disks.key, "/etc/tiervault/vault.key");
    for d in &disks.drives {
        g = g.drive(d.clone());
    }
    g
}

fn setup(test: &str) -> Option<(vm::Vm, std::collections::BTreeMap<String, PathBuf>)> {
    let vm = match vm::available_with(&[Need::Udev, Need::Md]) {
        Ok(vm) => vm,
        Err(reason) => {
            common::skip(&format!(
                "{test} (tier 3, qemu guest with md RAID): {reason}"
            ));
            return None;
        }
    };
    for tool in ["mkfs.ext4"] {
        if Command::new(tool).arg("-V").output().is_err() {
            common::skip(&format!("{test}: {tool} missing on the host (e2fsprogs)"));
            return None;
        }
    }
    let bins = vm::release_binaries(&["vaultctl", "tiervault-poold"]);
    Some((vm, bins))
}

fn ops(run: &Run, key: &str) -> Vec<String> {
    run.result(key)["ops"]
        .as_array()
        .unwrap_or_else(|| run.fail(format_args!("{key}: no ops")))
        .iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect()
}

fn array<'a>(run: &Run, status: &'a Value, name: &str) -> &'a Value {
    status["arrays"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["name"] == name))
        .unwrap_or_else(|| run.fail(format_args!("no array {name} in {status}")))
}

fn disk<'a>(run: &Run, status: &'a Value, serial: &str) -> &'a Value {
    status["disks"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["serial"] == serial))
        .unwrap_or_else(|| run.fail(format_args!("no disk {serial} in {status}")))
}

fn active_alert<'a>(status: &'a Value, class: &str, key: &str) -> Option<&'a Value> {
    status["alerts"]
        .as_array()?
        .iter()
        .find(|a| a["class"] == class && a["key"] == key)
}

#[test]
fn pool_lifecycle() {
    let Some((vm, bins)) = setup("pool_lifecycle") else {
        return;
    };
    let disks = disks(&bins["vaultctl"], true);
    let run = guest(&vm, "pool_lifecycle", LIFECYCLE, &bins, &disks).run();
    run.expect_code(0);

    // 3: refused, naming the disk and the flag; nothing built; its data intact.
    run.ensure(
        run.result_i64("refuse_rc") == 1,
        "provisioning over a disk with data must fail",
    );
    let msg = run.result_str("refuse_msg");
    run.ensure(
        msg.contains("VD6") && msg.contains("--wipe VD6") && msg.contains("ext4"),
        format_args!("the refusal must name the disk, what it carries and --wipe: {msg}"),
    );
    run.ensure(
        run.result_i64("arrays_after_refusal") == 0,
        "an array was created",
    );
    let expected_sum = {
        use std::io::Write;
        let mut child = Command::new("sha256sum")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("sha256sum");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(b"an MSP's data that must survive\n")
            .expect("write");
        let out = child.wait_with_output().expect("sha256sum");
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned()
    };
    run.ensure(
        run.result_str("old_sum") == expected_sum,
        "the refused disk's file changed",
    );

    // 1: the dry run lists the exact commands and changes nothing; the build; no-op again.
    let dry = ops(&run, "dry");
    let has = |list: &[String], prefix: &str| list.iter().filter(|o| o.starts_with(prefix)).count();
    run.ensure(
        run.result_i64("arrays_after_dry_run") == 0,
        "the dry run created arrays",
    );
    run.ensure(
        has(&dry, "wipefs --all --force /dev/") == 1,
        format_args!("{dry:#?}"),
    );
    run.ensure(
        has(&dry, "mdadm --create /dev/md/vault-") == 3,
        format_args!("{dry:#?}"),
    );
    for create in dry.iter().filter(|o| o.starts_with("mdadm --create")) {
        run.ensure(
            create.contains("--metadata=1.2") && create.contains("--bitmap=internal"),
            format_args!("{create}"),
        );
    }
    run.ensure(
        dry.iter()
            .any(|o| o.contains("--level=raid10 --raid-devices=4 --spare-devices=1")),
        format_args!("{dry:#?}"),
    );
    run.ensure(
        dry.iter()
            .any(|o| o == "mkfs.xfs -q -f -L vault-data0 -d su=512k,sw=2 /dev/md/vault-data0"),
        format_args!("{dry:#?}"),
    );
    run.ensure(has(&dry, "mount -t xfs") == 3, format_args!("{dry:#?}"));
    run.ensure(
        has(&dry, "write /etc/mdadm/mdadm.conf") == 1,
        format_args!("{dry:#?}"),
    );
    let built = ops(&run, "built");
    run.ensure(
        built == dry,
        format_args!("the build ran other commands than the dry run listed: {built:#?}"),
    );
    let again = run.result("again");
    run.ensure(
        again["changed"] == false && ops(&run, "again").is_empty(),
        format_args!("the second provision changed something: {again}"),
    );
    let mounts = run.result_str("mounts");
    for m in ["vault", "data0", "data1"] {
        run.ensure(
            mounts.contains(&format!(" /srv/tiervault/{m} xfs ")),
            format_args!("{m} not mounted as xfs: {mounts}"),
        );
    }
    // XFS reports its stripe in 512-byte units: su=512k → sunit=1024; 2 data members.
    run.ensure(
        mounts.contains("sunit=1024,swidth=2048"),
        format_args!("stripe geometry: {mounts}"),
    );
    let conf = run.result_str("mdadm_conf");
    for name in ["vault-ddb", "vault-data0", "vault-data1"] {
        run.ensure(
            conf.lines()
                .any(|l| l.starts_with(&format!("ARRAY /dev/md/{name} metadata=1.2 UUID="))),
            format_args!("mdadm.conf lacks {name}: {conf}"),
        );
    }

    // 2: degraded reported, rebuilt onto the spare, vault intact.
    let degraded = run.result("status_degraded");
    let d0 = array(&run, degraded, "vault-data0");
    run.ensure(
        d0["state"] == "rebuilding" || d0["state"] == "degraded",
        format_args!("vault-data0 after the failure: {d0}"),
    );
    let alert = active_alert(degraded, "pool.degraded", "vault-data0")
        .unwrap_or_else(|| run.fail("no pool.degraded alert"));
    run.ensure(alert["severity"] == 8, format_args!("{alert}"));
    let rebuilt = run.result("status_rebuilt");
    run.ensure(
        array(&run, rebuilt, "vault-data0")["state"] == "healthy",
        "vault-data0 not healthy after the rebuild",
    );
    run.ensure(
        disk(&run, rebuilt, "VD6")["state"] == "active"
            && disk(&run, rebuilt, "VD6")["array"] == "vault-data0",
        format_args!("the spare VD6 did not take the place: {rebuilt}"),
    );
    run.ensure(
        disk(&run, rebuilt, "VD0")["state"] == "removed",
        format_args!("the failed VD0 was not taken out: {rebuilt}"),
    );
    let done = active_alert(rebuilt, "pool.rebuild-finished", "vault-data0")
        .unwrap_or_else(|| run.fail("no rebuild-finished alert"));
    run.ensure(done["severity"] == 3, format_args!("{done}"));
    run.ensure(
        active_alert(rebuilt, "pool.degraded", "vault-data0").is_none(),
        "the degraded alert was not cleared",
    );
    run.ensure(
        run.result_i64("verify1_rc") == 0,
        format_args!("verify: {}", run.result("verify1")),
    );
    run.ensure(
        run.result_i64("restore1_rc") == 0,
        "restore after the rebuild failed",
    );
    run.ensure(
        run.result_i64("diff1_rc") == 0,
        format_args!("restore differs: {}", run.result_str("diff1")),
    );

    // 4: stopped arrays come back with the service.
    run.ensure(
        run.result_i64("arrays_after_stop") == 0,
        "arrays still running after --stop",
    );
    let snaps = run.result("snapshots_after_restart");
    run.ensure(
        snaps.as_array().map(Vec::len) == Some(1),
        format_args!("{snaps}"),
    );
    run.ensure(
        run.result_i64("verify2_rc") == 0,
        format_args!("{}", run.result("verify2")),
    );

    // The scrub counted mismatches.
    let scrubbed = run.result("status_scrubbed");
    run.ensure(
        array(&run, scrubbed, "vault-data1")["mismatch_cnt"] == 0,
        format_args!("{scrubbed}"),
    );

    // 5: the failed array, what is lost, the rest serving.
    let failed = run.result("status_failed");
    run.ensure(
        array(&run, failed, "vault-data1")["state"] == "failed",
        format_args!("vault-data1: {failed}"),
    );
    let alert = active_alert(failed, "pool.failed", "vault-data1")
        .unwrap_or_else(|| run.fail("no pool.failed alert"));
    run.ensure(alert["severity"] == 10, format_args!("{alert}"));
    for other in ["vault-ddb", "vault-data0"] {
        run.ensure(
            array(&run, failed, other)["state"] == "healthy",
            format_args!("{other} is not healthy after vault-data1 failed: {failed}"),
        );
    }
    run.ensure(
        run.result_str("data0_write") == "probe",
        "vault-data0 does not take writes",
    );
    let snaps = run.result("snapshots_after_failure");
    run.ensure(
        snaps.as_array().map(Vec::len) == Some(2),
        format_args!("{snaps}"),
    );
    run.ensure(
        run.result_i64("verify3_rc") == 4,
        format_args!(
            "verify with a lost array must report damage (exit 4): {} {}",
            run.result_str("verify3_head"),
            run.result_str("verify3_err")
        ),
    );
    run.ensure(
        run.result_i64("verify3_damage") > 0,
        format_args!(
            "verify named nothing lost: {}",
            run.result_str("verify3_head")
        ),
    );
    let affected = run.result_str("verify3_affected");
    run.ensure(
        affected.contains("[\""),
        format_args!(
            "verify named no affected snapshot: {affected}; per damage: {}; unavailable: {}",
            run.result_str("verify3_snapshots"),
            run.result_str("verify3_unavailable")
        ),
    );

    eprintln!(
        "pool_lifecycle: guest {:.0} s; build {} ms; initial resync {} ms; backup {} ms \
         (packs data0 {} / data1 {}); degraded reported after {} ms; rebuilt after {} ms; \
         reassembled after {} ms; failed reported after {} ms",
        run.elapsed.as_secs_f64(),
        run.result_i64("build_ms"),
        run.result_i64("resync_ms"),
        run.result_i64("backup1_ms"),
        run.result_i64("packs_data0"),
        run.result_i64("packs_data1"),
        run.result_i64("degraded_report_ms"),
        run.result_i64("rebuild_ms"),
        run.result_i64("reassemble_ms"),
        run.result_i64("failed_report_ms"),
    );
}

#[test]
fn pool_power_cut() {
    let Some((vm, bins)) = setup("pool_power_cut") else {
        return;
    };
    let disks = disks(&bins["vaultctl"], false);
    let before = guest(&vm, "pool_power_cut_before", BEFORE_CUT, &bins, &disks)
        .kill_on("POWER-CUT-NOW")
        .run();
    before.expect_code(vm::KILLED);
    let committed = before.result("committed")["id"]
        .as_str()
        .unwrap_or_else(|| before.fail("no committed snapshot id"))
        .to_owned();

    let after = guest(&vm, "pool_power_cut_after", AFTER_CUT, &bins, &disks).run();
    after.expect_code(0);
    after.ensure(
        after.result_i64("arrays_at_boot") == 0,
        "arrays were assembled before the service ran (the test expects the service to do it)",
    );
    let snaps = after.result("snapshots");
    let ids: Vec<&str> = snaps
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["id"].as_str())
        .collect();
    after.ensure(
        ids.contains(&committed.as_str()),
        format_args!("snapshot {committed} committed before the cut is missing: {snaps}"),
    );
    after.ensure(
        after.result_i64("verify_rc") == 0,
        format_args!("verify after the cut: {}", after.result("verify")),
    );
    after.ensure(
        after.result_i64("restore_rc") == 0,
        "restore after the cut failed",
    );
    after.ensure(
        after.result_i64("diff_rc") == 0,
        format_args!("restore differs: {}", after.result_str("diff")),
    );
    eprintln!(
        "pool_power_cut: first boot {:.0} s (killed), second {:.0} s; assembled and mounted \
         {} ms after the service started; healthy after {} ms; {} snapshots after the cut",
        before.elapsed.as_secs_f64(),
        after.elapsed.as_secs_f64(),
        after.result_i64("assemble_ms"),
        after.result_i64("healthy_ms"),
        ids.len()
    );
}

#[test]
fn pool_replacement() {
    let Some((vm, bins)) = setup("pool_replacement") else {
        return;
    };
    let disks = disks(&bins["vaultctl"], false);
    let d = disks.dir.path();
    // RPL1: a new disk that arrives with a file system on it; HOT1: a blank disk inserted later.
    let content = d.join("rpl-content");
    std::fs::create_dir_all(&content).expect("mkdir");
    std::fs::write(content.join("label.txt"), b"from the reseller\n").expect("write");
    let rpl = d.join("rpl1.img");
    ext4_image(&rpl, DISK_MIB, &content, "reseller");
    let hot = vm::sparse_image(d, "hot1.img", DISK_MIB);
    let run = guest(&vm, "pool_replacement", REPLACEMENT, &bins, &disks)
        .drive(Drive::virtio(rpl, "RPL1"))
        .hotplug(Drive::virtio(hot, "HOT1"))
        .run();
    run.expect_code(0);
    let state = |key: &str, serial: &str| disk_state(&run, run.result(key), serial);
    let pair = |a: &str, s: &str| (a.to_owned(), s.to_owned());

    // The shared spare starts in the first data array and is lent to the other.
    run.ensure(
        state("status_start", "VD6") == pair("vault-data0", "spare"),
        format_args!("VD6 at the start: {:?}", state("status_start", "VD6")),
    );
    let lent = run.result("status_lent");
    run.ensure(
        state("status_lent", "VD6") == pair("vault-data1", "active")
            && state("status_lent", "VD3") == pair("vault-data1", "removed"),
        format_args!("after the lending: {lent}"),
    );
    run.ensure(
        array(&run, lent, "vault-data0")["state"] == "healthy",
        format_args!("vault-data0 lost redundancy by lending its spare: {lent}"),
    );

    // The hot replacement: refused over a file system, then done without losing redundancy.
    run.ensure(
        run.result_i64("replace_refused_rc") != 0
            && run.result_str("replace_refused_err").contains("RPL1")
            && run
                .result_str("replace_refused_err")
                .contains("--wipe RPL1")
            && run.result_str("replace_refused_err").contains("ext4"),
        format_args!(
            "replace onto a disk with a file system must be refused naming it and --wipe: {}",
            run.result_str("replace_refused_err")
        ),
    );
    let ran: Vec<String> = run.result("replaced")["ran"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    run.ensure(
        ran.len() == 3
            && ran[0].starts_with("wipefs --all --force /dev/")
            && ran[1].contains("--add")
            && ran[2].contains("--replace")
            && ran[2].contains("--with"),
        format_args!("the hot replacement's commands: {ran:#?}"),
    );
    run.ensure(
        run.result_i64("max_degraded_during_replace") == 0,
        "vault-data0 was degraded during a hot replacement",
    );
    run.ensure(
        state("status_replaced", "RPL1") == pair("vault-data0", "active")
            && state("status_replaced", "VD1") == pair("vault-data0", "removed"),
        format_args!(
            "after the hot replacement: {}",
            run.result("status_replaced")
        ),
    );

    // A failed member replaced by a disk with an old md superblock: refused, then --wipe.
    let err = run.result_str("reuse_refused_err");
    run.ensure(
        run.result_i64("reuse_refused_rc") != 0
            && err.contains("VD1")
            && err.contains("md superblock")
            && err.contains("--wipe VD1"),
        format_args!("reusing a former member must be refused without --wipe: {err}"),
    );
    run.ensure(
        state("status_reused", "VD1") == pair("vault-data0", "active")
            && state("status_reused", "VD2") == pair("vault-data0", "removed"),
        format_args!("after the replacement: {}", run.result("status_reused")),
    );

    // The inserted blank disk: a hot spare of a data array, then the place of a failed member.
    let (hot_array, hot_state) = state("status_inserted", "HOT1");
    run.ensure(
        hot_state == "spare" && hot_array.starts_with("vault-data"),
        format_args!(
            "HOT1 after insertion: {hot_array} {hot_state}: {}",
            run.result("status_inserted")
        ),
    );
    let last = run.result("status_final");
    run.ensure(
        state("status_final", "HOT1") == pair("vault-data1", "active")
            && state("status_final", "VD4") == pair("vault-data1", "removed"),
        format_args!("after the failure that used HOT1: {last}"),
    );
    for a in ["vault-ddb", "vault-data0", "vault-data1"] {
        run.ensure(
            array(&run, last, a)["state"] == "healthy",
            format_args!("{a} at the end: {last}"),
        );
    }

    // Nothing else changed, nothing lost.
    let again = run.result("again");
    run.ensure(
        again["changed"] == false,
        format_args!("provisioning after the replacements changed something: {again}"),
    );
    run.ensure(
        run.result_i64("verify_rc") == 0,
        format_args!("verify: {}", run.result("verify")),
    );
    run.ensure(run.result_i64("restore_rc") == 0, "restore failed");
    run.ensure(
        run.result_i64("diff_rc") == 0,
        format_args!("restore differs: {}", run.result_str("diff")),
    );
    let raised = run.result_str("degraded_raised");
    run.ensure(
        raised.contains("vault-data1") && raised.contains("vault-data0"),
        format_args!("degraded alerts recorded: {raised}"),
    );
    eprintln!(
        "pool_replacement: guest {:.0} s; spare lent {} ms after the failure, rebuilt after \
         {} ms; hot replacement {} ms (max degraded 0); failed member replaced and rebuilt in \
         {} ms; inserted disk seen after {} ms, a hot spare after {} ms; rebuilt onto it {} ms \
         after the next failure; degraded alerts: {raised}",
        run.elapsed.as_secs_f64(),
        run.result_i64("lend_ms"),
        run.result_i64("lend_rebuilt_ms"),
        run.result_i64("hot_replace_ms"),
        run.result_i64("failed_replace_ms"),
        run.result_i64("hot_seen_ms"),
        run.result_i64("hot_spare_ms"),
        run.result_i64("hot_rebuilt_ms"),
    );
}
