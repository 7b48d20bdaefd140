#!/usr/bin/env bash
# Tier-3 VM harness, step 2: boot a guest built by tests/vm/build-guest.sh under qemu TCG
# (KVM does not work on the project's machines) and return the exit code of its test script.
#
#   tests/vm/run-guest.sh --kernel VMLINUZ --initrd INITRD [--mem MIB] [--timeout SECS]
#       [--scratch IMG] [--disk IMG]... [--log FILE] [--append "KERNEL ARGS"] [-- QEMU ARGS...]
#   tests/vm/run-guest.sh --check
#
#   --mem MIB        guest memory (default 512)
#   --timeout SECS   wall-clock limit for the whole run, boot to power-off (default 600)
#   --scratch IMG    raw image attached as the first virtio disk (/dev/vda) and mounted by the
#                    guest's init on /mnt/scratch (formatted ext4 when blank, e.g. a fresh
#                    sparse file from `truncate -s 1G IMG`); the guest script sees $TV_SCRATCH
#   --disk IMG       further raw virtio disks (/dev/vdb, ... after a scratch disk), left alone
#   --log FILE       also write the serial console to FILE
#   --append ARGS    extra kernel command line
#   -- QEMU ARGS     passed to qemu as they are (extra devices)
#   --check          print the host tools that are missing and exit 1 (0: none)
#
# The serial console (kernel errors, init's log lines, the script's output) goes to stdout.
# Exit code: the guest script's, read from the `TIERVAULT-GUEST-END rc=N` line the guest's
# init prints before powering off (110-115: the harness failed inside the guest, see
# build-guest.sh); 124 when the timeout expired first; 125 when qemu ended without the line
# (kernel panic, qemu error); 2 for a usage error or a missing tool.
#
# Host package (Debian 12): qemu-system-x86 (bookworm's 7.2; with qemu-utils 10 from
# bookworm-backports installed, take qemu-system-x86/bookworm qemu-system-common/bookworm
# qemu-system-data/bookworm qemu-utils/bookworm together).
set -euo pipefail

end_marker="TIERVAULT-GUEST-END"

die() {
    echo "run-guest.sh: $*" >&2
    exit 2
}

check_tools() {
    local missing=() pair
    for pair in qemu-system-x86_64:qemu-system-x86 timeout:coreutils tee:coreutils; do
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
disks=()
log=""
append=""
qemu_extra=()
while [ $# -gt 0 ]; do
    case "$1" in
    --check)
        check_tools || exit 1
        exit 0
        ;;
    --kernel | --initrd | --mem | --timeout | --scratch | --disk | --log | --append)
        [ $# -ge 2 ] || die "$1 needs a value"
        case "$1" in
        --kernel) kernel="$2" ;;
        --initrd) initrd="$2" ;;
        --mem) mem="$2" ;;
        --timeout) timeout_s="$2" ;;
        --scratch) scratch="$2" ;;
        --disk) disks+=("$2") ;;
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

cmdline="console=ttyS0 quiet panic=-1"
drives=()
if [ -n "$scratch" ]; then
    [ -f "$scratch" ] || die "--scratch: no image file '$scratch'"
    drives+=(-drive "file=$scratch,format=raw,if=virtio")
    cmdline="$cmdline tiervault.scratch=/dev/vda"
fi
for d in "${disks[@]}"; do
    [ -f "$d" ] || die "--disk: no image file '$d'"
    drives+=(-drive "file=$d,format=raw,if=virtio")
done
[ -z "$append" ] || cmdline="$cmdline $append"

console="$(mktemp)"
trap 'rm -f "$console"' EXIT
start=$(date +%s.%N)
set +e
# stdin from /dev/null: qemu must not put a terminal into raw mode or read from it.
timeout -k 10 "$timeout_s" qemu-system-x86_64 -accel tcg -m "$mem" -smp 2 -nographic -nodefaults \
    -no-reboot -serial stdio -device virtio-rng-pci -kernel "$kernel" -initrd "$initrd" \
    -append "$cmdline" "${drives[@]}" "${qemu_extra[@]}" </dev/null 2>&1 | tee "$console"
qemu_rc=${PIPESTATUS[0]}
set -e
elapsed=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN{printf "%.1f", e - s}')
[ -z "$log" ] || cp "$console" "$log"

rc="$(tr -d '\r' <"$console" | sed -n "s/^$end_marker rc=\([0-9]*\)\$/\1/p" | tail -n 1)"
if [ -n "$rc" ]; then
    echo "run-guest.sh: guest script exited with $rc; ${elapsed} s from qemu start to power-off" >&2
    exit "$rc"
fi
if [ "$qemu_rc" = 124 ] || [ "$qemu_rc" = 137 ]; then
    echo "run-guest.sh: timeout: no '$end_marker' line within ${timeout_s} s; qemu killed" >&2
    exit 124
fi
echo "run-guest.sh: qemu exited ($qemu_rc) after ${elapsed} s without a '$end_marker' line (kernel panic or qemu error; see the console above)" >&2
exit 125
