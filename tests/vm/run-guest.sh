#!/usr/bin/env bash
# Tier-3 VM harness, step 2: boot a guest built by tests/vm/build-guest.sh under qemu TCG
# (KVM does not work on the project's machines) and return the exit code of its test script.
#
#   tests/vm/run-guest.sh --kernel VMLINUZ --initrd INITRD [--mem MIB] [--timeout SECS]
#       [--scratch IMG] [--disk IMG]... [--drive IMG[,serial=SERIAL][,if=virtio|nvme]]...
#       [--hotplug IMG,serial=SERIAL[,if=virtio|nvme]]... [--cache MODE] [--kill-on TEXT]
#       [--ipmi-bmc PORT] [--log FILE] [--append "KERNEL ARGS"] [-- QEMU ARGS...]
#   tests/vm/run-guest.sh --check
#
#   --mem MIB        guest memory (default 512)
#   --timeout SECS   wall-clock limit for the whole run, boot to power-off (default 600)
#   --scratch IMG    raw image attached as the first virtio disk (/dev/vda) and mounted by the
#                    guest's init on /mnt/scratch (formatted ext4 when blank, e.g. a fresh
#                    sparse file from `truncate -s 1G IMG`); the guest script sees $TV_SCRATCH
#   --disk IMG       a further raw virtio disk without a serial, left alone (= --drive IMG)
#   --drive IMG[,serial=SERIAL][,if=virtio|nvme]
#                    a raw disk image as a virtio-blk (default) or an NVMe disk, with a serial
#                    number (1-20 of A-Z a-z 0-9 . _ -; NVMe disks always have one, default
#                    TVNVME<n>). The guest sees it in /sys/block/vdX/serial or
#                    /sys/block/nvmeXnY/device/serial and, with udev, as
#                    /dev/disk/by-id/virtio-SERIAL or /dev/disk/by-id/nvme-QEMU_NVMe_Ctrl_SERIAL.
#                    IMG must not contain a comma. Repeatable; --disk and --drive disks are
#                    attached in the order given, after the scratch disk: virtio disks become
#                    /dev/vda, vdb, ... in that order (vda is the scratch disk when there is
#                    one). NVMe controllers are numbered nvme0, nvme1, ... in that order, but the
#                    disk names nvmeXn1 are not guaranteed to follow it (the kernel's NVMe
#                    multipath numbers them as the controllers finish probing): find NVMe disks
#                    by serial, never by name.
#   --hotplug IMG,serial=SERIAL[,if=virtio|nvme]
#                    a disk that is not there at boot and is inserted while the guest runs
#                    (PCI hot-plug through qemu's monitor: drive_add + device_add), the moment a
#                    console line reads `TIERVAULT-HOTPLUG SERIAL` (the guest script prints it;
#                    the disk appears a moment later, as a real one would). Repeatable; each
#                    disk is inserted once. What was inserted is reported on stderr at the end.
#   --cache MODE     qemu's cache mode for every disk image (default writeback; also none,
#                    writethrough, directsync, unsafe). With writeback the guest sees disks
#                    with a volatile write cache (it sends flushes as it does to real disks);
#                    qemu writes through the host's page cache, which outlives a SIGKILL of qemu
#                    (--kill-on): everything qemu had written survives, what the guest still
#                    held in its own page cache is lost, requests in flight may be torn. What no
#                    mode can model is a disk that loses acknowledged but unflushed writes.
#   --kill-on TEXT   SIGKILL qemu the moment a console line contains TEXT (a power cut: no
#                    flush, no unmount, no power-off in the guest); exit code 120 whenever
#                    TEXT appeared, so let the script sleep after printing it (the kill lands
#                    within milliseconds). The images keep what qemu had written: boot them
#                    again with the same --drive options.
#   --ipmi-bmc PORT  a BMC on the guest's KCS system interface (I/O port 0xca2, described by
#                    ACPI and SMBIOS: `modprobe ipmi_si ipmi_devintf` gives /dev/ipmi0) whose
#                    other end is an external BMC simulator listening on 127.0.0.1:PORT with
#                    qemu's VM protocol (OpenIPMI's ipmi_sim with `serial 15 127.0.0.1 PORT
#                    codec VM` in its configuration): qemu's ipmi-bmc-extern + isa-ipmi-kcs,
#                    connecting as a client and retrying every 10 s while it cannot reach it
#   --log FILE       also write the serial console to FILE, as it arrives (kept on timeout)
#   --append ARGS    extra kernel command line
#   -- QEMU ARGS     passed to qemu as they are (extra devices)
#   --check          print the host tools that are missing and exit 1 (0: none)
#
# The serial console (kernel errors, init's log lines, the script's output) goes to stdout.
# Exit code: the guest script's, read from the `TIERVAULT-GUEST-END rc=N` line the guest's
# init prints before powering off (110-117: the harness failed inside the guest, see
# build-guest.sh); 120 qemu was killed on the --kill-on text; 124 the timeout expired first
# (qemu was sent SIGTERM, SIGKILL 10 s later); 125 qemu ended without the line (kernel panic,
# qemu error); 2 a usage error or a missing tool.
#
# Host package (Debian 12): qemu-system-x86 (bookworm's 7.2; with qemu-utils 10 from
# bookworm-backports installed, take qemu-system-x86/bookworm qemu-system-common/bookworm
# qemu-system-data/bookworm qemu-utils/bookworm together).
set -euo pipefail

end_marker="TIERVAULT-GUEST-END"
killed_code=120

die() {
    echo "run-guest.sh: $*" >&2
    exit 2
}

check_tools() {
    local missing=() pair
    for pair in qemu-system-x86_64:qemu-system-x86 mkfifo:coreutils tee:coreutils tail:coreutils; do
        command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair%%:*} (Debian package ${pair#*:})")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    local out="missing host tools:" item
    for item in "${missing[@]}"; do out="$out $item;"; done
    echo "${out%;}"
    return 1
}

kernel=""
initrd=""
mem=512
timeout_s=600
scratch=""
drive_specs=() # IMG[,serial=S][,if=virtio|nvme], in the order given
hotplug_specs=() # the same, inserted on request
cache=writeback
kill_on=""
ipmi_bmc=""
log=""
append=""
qemu_extra=()
while [ $# -gt 0 ]; do
    case "$1" in
    --check)
        check_tools || exit 1
        exit 0
        ;;
    --kernel | --initrd | --mem | --timeout | --scratch | --disk | --drive | --hotplug | --cache | --kill-on | --ipmi-bmc | --log | --append)
        [ $# -ge 2 ] || die "$1 needs a value"
        case "$1" in
        --kernel) kernel="$2" ;;
        --initrd) initrd="$2" ;;
        --mem) mem="$2" ;;
        --timeout) timeout_s="$2" ;;
        --scratch) scratch="$2" ;;
        --disk)
            case "$2" in *,*) die "--disk: image path '$2' contains a comma" ;; esac
            drive_specs+=("$2")
            ;;
        --drive) drive_specs+=("$2") ;;
        --hotplug) hotplug_specs+=("$2") ;;
        --cache) cache="$2" ;;
        --kill-on) kill_on="$2" ;;
        --ipmi-bmc) ipmi_bmc="$2" ;;
        --log) log="$2" ;;
        --append) append="$2" ;;
        esac
        shift 2
        ;;
    --)
        shift
        qemu_extra=("$@")
        break
        ;;
    -h | --help)
        sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
        exit 2
        ;;
    *) die "unknown argument $1 (see --help)" ;;
    esac
done
if ! missing_tools="$(check_tools)"; then
    die "$missing_tools"
fi
[ -n "$kernel" ] || die "--kernel is required (build-guest.sh prints it)"
[ -n "$initrd" ] || die "--initrd is required (build-guest.sh prints it)"
[ -f "$kernel" ] || die "--kernel: no kernel image '$kernel' (build it with build-guest.sh)"
[ -f "$initrd" ] || die "--initrd: no initramfs '$initrd' (build it with build-guest.sh)"
[[ "$mem" =~ ^[0-9]+$ ]] || die "--mem takes MiB, got '$mem'"
[[ "$timeout_s" =~ ^[0-9]+$ ]] || die "--timeout takes seconds, got '$timeout_s'"
case "$cache" in
writeback | none | writethrough | directsync | unsafe) ;;
*) die "--cache: unknown mode '$cache' (writeback, none, writethrough, directsync, unsafe)" ;;
esac
ipmi=()
if [ -n "$ipmi_bmc" ]; then
    [[ "$ipmi_bmc" =~ ^[0-9]+$ ]] && [ "$ipmi_bmc" -ge 1 ] && [ "$ipmi_bmc" -le 65535 ] ||
        die "--ipmi-bmc takes a TCP port (1-65535), got '$ipmi_bmc'"
    ipmi=(-chardev "socket,id=ipmi0,host=127.0.0.1,port=$ipmi_bmc,reconnect=10"
        -device ipmi-bmc-extern,id=bmc0,chardev=ipmi0 -device isa-ipmi-kcs,bmc=bmc0)
fi

cmdline="console=ttyS0 quiet panic=-1"
drives=()
n=0
# One disk: qemu's -drive (no device of its own) and the device that shows it to the guest.
add_disk() { # IMG BUS SERIAL
    [ -f "$1" ] || die "no image file '$1'"
    local id="disk$n"
    drives+=(-drive "file=${1//,/,,},format=raw,if=none,id=$id,cache=$cache")
    case "$2" in
    virtio) drives+=(-device "virtio-blk-pci,drive=$id${3:+,serial=$3}") ;;
    nvme) drives+=(-device "nvme,drive=$id,serial=$3") ;;
    esac
    n=$((n + 1))
}
if [ -n "$scratch" ]; then
    add_disk "$scratch" virtio ""
    cmdline="$cmdline tiervault.scratch=/dev/vda"
fi
# parse_drive SPEC: sets img, serial, bus.
parse_drive() {
    local kv parts
    IFS=, read -ra parts <<<"$1"
    img="${parts[0]}"
    serial=""
    bus=virtio
    for kv in "${parts[@]:1}"; do
        case "$kv" in
        serial=*) serial="${kv#serial=}" ;;
        if=virtio | if=nvme) bus="${kv#if=}" ;;
        *) die "--drive $1: unknown '$kv' (serial=SERIAL, if=virtio or if=nvme)" ;;
        esac
    done
    if [ -n "$serial" ] && ! [[ "$serial" =~ ^[A-Za-z0-9._-]{1,20}$ ]]; then
        die "--drive $1: a serial is 1-20 of A-Z a-z 0-9 . _ - (virtio-blk and NVMe keep 20 bytes)"
    fi
}
nvme_count=0
for spec in "${drive_specs[@]}"; do
    parse_drive "$spec"
    if [ "$bus" = nvme ]; then
        [ -n "$serial" ] || serial="TVNVME$nvme_count"
        nvme_count=$((nvme_count + 1))
    fi
    add_disk "$img" "$bus" "$serial"
done
# Hot-plugged disks: checked now, attached later by the monitor commands written here.
hotplug_cmds=() # "SERIAL<TAB>monitor commands", one per disk
for spec in "${hotplug_specs[@]}"; do
    parse_drive "$spec"
    [ -n "$serial" ] || die "--hotplug $spec: needs serial=SERIAL (the guest asks for the disk by it)"
    [ -f "$img" ] || die "no image file '$img'"
    case "$bus" in
    virtio) dev="virtio-blk-pci,drive=hp-$serial,serial=$serial,id=hpdev-$serial" ;;
    nvme) dev="nvme,drive=hp-$serial,serial=$serial,id=hpdev-$serial" ;;
    esac
    hotplug_cmds+=("$serial"$'\t'"drive_add 0 file=${img//,/,,},format=raw,if=none,id=hp-$serial,cache=$cache"$'\n'"device_add $dev")
done
[ -z "$append" ] || cmdline="$cmdline $append"

tmp="$(mktemp -d)"
watchdog=""
trap '[ -z "$watchdog" ] || kill "$watchdog" 2>/dev/null; rm -rf "$tmp"' EXIT
console="${log:-$tmp/console}"
: >"$console" || die "--log: cannot write '$console'"
mkfifo "$tmp/console.fifo"
monitor=()
if [ "${#hotplug_cmds[@]}" -gt 0 ]; then
    # qemu's human monitor on a pair of FIFOs (qemu opens both read-write, so nothing blocks).
    mkfifo "$tmp/monitor.in" "$tmp/monitor.out"
    monitor=(-chardev "pipe,id=mon0,path=$tmp/monitor" -mon "chardev=mon0,mode=readline")
fi
start=$(date +%s.%N)
# stdin from /dev/null: qemu must not put a terminal into raw mode or read from it.
qemu-system-x86_64 -accel tcg -m "$mem" -smp 2 -nographic -nodefaults -no-reboot -serial stdio \
    -device virtio-rng-pci -kernel "$kernel" -initrd "$initrd" -append "$cmdline" \
    "${drives[@]}" "${monitor[@]}" "${ipmi[@]}" "${qemu_extra[@]}" </dev/null >"$tmp/console.fifo" 2>&1 &
qemu_pid=$!
# The wall-clock limit: SIGTERM at the deadline, SIGKILL 10 s later. Its own output goes
# nowhere, so that nothing holds our stdout open after we exit.
(
    printf -v now '%(%s)T' -1
    deadline=$((now + timeout_s))
    while kill -0 "$qemu_pid" 2>/dev/null; do
        printf -v now '%(%s)T' -1
        if [ "$now" -ge "$deadline" ]; then
            : >"$tmp/timed-out"
            kill -TERM "$qemu_pid" 2>/dev/null
            sleep 10
            kill -KILL "$qemu_pid" 2>/dev/null
            exit 0
        fi
        sleep 1
    done
) </dev/null >/dev/null 2>&1 &
watchdog=$!

# The power cut: a watcher follows the console file (GNU tail with inotify, until qemu is
# gone) and SIGKILLs qemu at the first line containing the --kill-on text. It notes the kill
# first, so that once it has ended the outcome is known.
cutter=""
if [ -n "$kill_on" ]; then
    # The kill must not wait for tail, which only ends once qemu is gone.
    (
        tail -s 0.2 --pid="$qemu_pid" -c +1 -f "$console" | {
            if grep -q -F -- "$kill_on"; then
                : >"$tmp/killed"
                kill -KILL "$qemu_pid"
            fi
        }
    ) </dev/null >/dev/null 2>&1 &
    cutter=$!
fi
# Disk insertion: a watcher like the cutter sends a disk's monitor commands when the guest
# asks for it by serial; the monitor's replies are kept for the report.
plugger=""
if [ "${#hotplug_cmds[@]}" -gt 0 ]; then
    cat "$tmp/monitor.out" >"$tmp/monitor.log" 2>/dev/null &
    (
        tail -s 0.2 --pid="$qemu_pid" -c +1 -f "$console" | while IFS= read -r line; do
            line="${line%$'\r'}"
            case "$line" in *"TIERVAULT-HOTPLUG "*) ;; *) continue ;; esac
            want="${line##*TIERVAULT-HOTPLUG }"
            for entry in "${hotplug_cmds[@]}"; do
                [ "${entry%%$'\t'*}" = "$want" ] || continue
                [ ! -e "$tmp/plugged-$want" ] || continue
                : >"$tmp/plugged-$want"
                printf '%s\n' "${entry#*$'\t'}" >"$tmp/monitor.in"
                echo "run-guest.sh: inserted disk $want at $(date +%T.%N | cut -c1-12)" >>"$tmp/hotplug.log"
            done
        done
    ) </dev/null >/dev/null 2>&1 &
    plugger=$!
fi
# The console: to stdout and to the log as it arrives.
# (stderr: the shell's "Killed" report of a qemu killed by the cutter or the watchdog.)
{ tee -a "$console" <"$tmp/console.fifo"; } 2>/dev/null
set +e
wait "$qemu_pid" 2>/dev/null # no "Killed" job report
qemu_rc=$?
[ -z "$cutter" ] || wait "$cutter"
[ -z "$plugger" ] || wait "$plugger"
if [ -s "$tmp/hotplug.log" ]; then
    cat "$tmp/hotplug.log" >&2
    tr -d '\r' <"$tmp/monitor.log" 2>/dev/null | grep -iE 'error|fail|not|could' | sed 's/^/run-guest.sh: qemu monitor: /' >&2 || true
fi
set -e
kill "$watchdog" 2>/dev/null || true
wait "$watchdog" 2>/dev/null || true
watchdog=""
elapsed=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN{printf "%.1f", e - s}')

if [ -e "$tmp/killed" ]; then
    echo "run-guest.sh: power cut: qemu killed (SIGKILL) on a console line containing '$kill_on', ${elapsed} s after its start" >&2
    exit "$killed_code"
fi
rc="$(tr -d '\r' <"$console" | sed -n "s/^$end_marker rc=\([0-9]*\)\$/\1/p" | tail -n 1)"
if [ -n "$rc" ]; then
    echo "run-guest.sh: guest script exited with $rc; ${elapsed} s from qemu start to power-off" >&2
    exit "$rc"
fi
if [ -e "$tmp/timed-out" ]; then
    echo "run-guest.sh: timeout: no '$end_marker' line within ${timeout_s} s; qemu killed${log:+ (console in $log)}" >&2
    exit 124
fi
echo "run-guest.sh: qemu exited ($qemu_rc) after ${elapsed} s without a '$end_marker' line (kernel panic or qemu error; see the console above)" >&2
exit 125
