#!/usr/bin/env bash
# Re-capture the real md RAID outputs under services/libs/pools/testdata/md/ (tier-3 guest).
#
#   services/libs/pools/testdata/capture.sh [--keep | --from WORKDIR]
#
# The host kernel has no md, so this boots the tier-3 guest (tests/vm/build-guest.sh and
# run-guest.sh: bookworm's 6.1 kernel under qemu TCG, mdadm copied in from the host) with
# 15 virtio disks and 5 NVMe disks (serials NV0..NV4), and in it:
#   md0  RAID5  3 + 1 spare  vda..vdd        (64 MiB, 1.2, internal bitmap, name vault-data0)
#   md1  RAID10 4 + 1 spare  nvme0n1..nvme4n1 (64 MiB, 1.2, internal bitmap, name vault-os0)
#   md2  RAID6  4 + 1 spare  vde..vdi        (64 MiB, 1.2, internal bitmap, name vault-data1)
#   md3  RAID1  0.90         vdj vdk         (8 MiB, internal bitmap)
#   md4  RAID0  1.1          vdl vdm         (8 MiB, name vault-r0)
#   md5  RAID1  1.0          vdn + write-mostly vdo (8 MiB, internal bitmap, name vault-wm),
#        ext4, mounted on "/mnt/vault data" (mountinfo's \040)
# and walks them through the states the pools service must recognise: resync/recovery in
# progress, clean, a failed member recovering onto the spare, rebuilt, degraded without a
# spare, RAID5 with two failed members, assembly of that failed array, a check in progress,
# incremental assembly (inactive, then active), read-only and auto-read-only, RAID10 with a
# member being replaced, a RAID6 reshape, everything stopped. In each state it prints, between
# `@@TV-BEGIN <file>@@` and `@@TV-END <file> rc=N@@` lines, /proc/mdstat, `mdadm --detail
# [--export]`, `mdadm --examine [--export]` and a listing of /sys/block/mdX/md/ (one
# `path=value` line per readable attribute, `path -> target` per symlink). Resync speed is
# held at 500 KiB/s while an in-progress state is captured, then released.
#
# This script cuts the console into md/<step>/<file> (carriage returns dropped, the previous
# md/ replaced), records each command's exit code in md/rc.txt, then on the host keeps the
# 4 KiB md superblock block of one member per metadata version (md/superblock-*.bin, plus
# the first 4 KiB of the 1.0 member, where the array's ext4 begins; offsets and image sizes
# in md/superblocks.txt) and what `blkid -p -o export`, `wipefs -n -J` and the host's
# `mdadm --examine` say about those members (md/blkid/). The guest takes about 4-5 minutes
# under TCG (the sysfs listings fork a lot).
#
# --keep leaves the work directory (console log, disk images) in /tmp and prints its path;
# --from WORKDIR redoes only the host part (cutting, excerpts) from such a kept directory.
# Needs: what `tests/vm/build-guest.sh --check` and `run-guest.sh --check` ask for, mdadm,
# blkid and wipefs (util-linux).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../../.." && pwd)
keep=0
from=""
case "${1:-}" in
    --keep) keep=1 ;;
    --from) from=$(cd "${2:?--from needs WORKDIR}" && pwd) ;;
    "") ;;
    *) echo "usage: $0 [--keep | --from WORKDIR]" >&2; exit 2 ;;
esac
for t in mdadm blkid wipefs qemu-img; do
    command -v "$t" >/dev/null || { echo "capture.sh: $t missing" >&2; exit 2; }
done
if [ -n "$from" ]; then
    work=$from
else
    work=$(mktemp -d /tmp/pools-capture.XXXXXX)
    [ "$keep" = 1 ] || trap 'rm -rf "$work"' EXIT
fi

cat >"$work/guest.sh" <<'GUEST'
# Runs in the guest as root (busybox sh). Everything between the markers is captured.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
dmesg -n 1                     # keep kernel messages off the console we cut
hostname tvguest               # mdadm names arrays <homehost>:<name>
mkdir -p /run/mdadm /dev/md /etc/mdadm
STEP=none
step() { STEP=$1; echo "## step $1 [$(cut -d' ' -f1 /proc/uptime)s]"; }
cap() {  # cap FILE CMD... : run CMD, print its output (stdout+stderr) between markers
    f=$1; shift
    out=$("$@" 2>&1); rc=$?
    echo "@@TV-BEGIN $STEP/$f@@"
    [ -z "$out" ] || printf '%s\n' "$out"
    echo "@@TV-END $STEP/$f rc=$rc@@"
}
oneline() { awk 'BEGIN { ORS = "" } NR > 1 { print "\\n" } { print }'; }
sysdump() {  # the attribute values of /sys/block/$1/md, one per line
    d=/sys/block/$1/md
    [ -d "$d" ] || { echo "no $d"; return 1; }
    cd "$d" || return 1
    for f in * bitmap/* dev-*/*; do
        if [ -L "$f" ]; then
            echo "$f -> $(readlink "$f")"
        elif [ -f "$f" ]; then
            v=$(cat "$f" 2>/dev/null) || continue
            printf '%s=%s\n' "$f" "$(printf '%s' "$v" | oneline)"
        fi
    done
    cd /
}
mdstat() { cat /proc/mdstat; }
slow() { echo 100 >/proc/sys/dev/raid/speed_limit_min; echo 500 >/proc/sys/dev/raid/speed_limit_max; }
fast() { echo 200000 >/proc/sys/dev/raid/speed_limit_max; echo 1000 >/proc/sys/dev/raid/speed_limit_min; }
waitmd() { for m in "$@"; do timeout 120 mdadm --wait "/dev/$m"; done; sleep 1; }
# In-progress states are caught with the speed held low, and the arrays are given 3 s to move.
settle() { sleep 3; }
state() {  # state FILE-SUFFIX MD... : mdstat + sysfs + detail (both) of each MD
    cap mdstat mdstat
    for m in "$@"; do
        cap "sysfs.$m" sysdump "$m"
        cap "detail-export.$m" mdadm --detail --export "/dev/$m"
        cap "detail.$m" mdadm --detail "/dev/$m"
    done
}

step 00-create
slow
mdadm --create /dev/md0 --run --level=5 --raid-devices=3 --spare-devices=1 --metadata=1.2 \
    --bitmap=internal --name=vault-data0 /dev/vda /dev/vdb /dev/vdc /dev/vdd
mdadm --create /dev/md1 --run --level=10 --raid-devices=4 --spare-devices=1 --metadata=1.2 \
    --bitmap=internal --name=vault-os0 /dev/nvme0n1 /dev/nvme1n1 /dev/nvme2n1 /dev/nvme3n1 /dev/nvme4n1
mdadm --create /dev/md2 --run --level=6 --raid-devices=4 --spare-devices=1 --metadata=1.2 \
    --bitmap=internal --name=vault-data1 /dev/vde /dev/vdf /dev/vdg /dev/vdh /dev/vdi
mdadm --create /dev/md3 --run --level=1 --raid-devices=2 --metadata=0.90 --bitmap=internal /dev/vdj /dev/vdk
mdadm --create /dev/md4 --run --level=0 --raid-devices=2 --metadata=1.1 --name=vault-r0 /dev/vdl /dev/vdm
mdadm --create /dev/md5 --run --level=1 --raid-devices=2 --metadata=1.0 --bitmap=internal \
    --name=vault-wm /dev/vdn --write-mostly /dev/vdo
settle
state md0 md1 md2

step 01-clean
fast
waitmd md0 md1 md2 md3 md5
state md0 md1 md2 md3 md4 md5
for d in vda vdd nvme0n1 vdj vdl vdn vdo; do
    cap "examine-export.$d" mdadm --examine --export "/dev/$d"
    cap "examine.$d" mdadm --examine "/dev/$d"
done
cap detail-scan mdadm --detail --scan
cap examine-scan mdadm --examine --scan
mkfs.ext4 -q /dev/md5 && mkdir -p "/mnt/vault data" && mount /dev/md5 "/mnt/vault data"
cap mountinfo cat /proc/self/mountinfo
cap partitions cat /proc/partitions
cap block-dev sh -c 'for d in /sys/block/*/dev /sys/block/*/*/dev; do echo "$d=$(cat $d)"; done'
cap holders sh -c 'for d in /sys/block/*/holders/*; do echo "$d -> $(readlink $d)"; done'
umount "/mnt/vault data"

step 02-r5-fail-recovering
slow
mdadm /dev/md0 --fail /dev/vdb
settle
state md0

step 03-r5-rebuilt
fast
waitmd md0
state md0

step 04-r5-degraded
mdadm /dev/md0 --remove /dev/vdb
mdadm /dev/md0 --fail /dev/vdc
sleep 1
state md0

step 05-r5-failed
cap fail-vda mdadm /dev/md0 --fail /dev/vda
sleep 1
state md0
cap examine-export.vda mdadm --examine --export /dev/vda
cap examine.vda mdadm --examine /dev/vda
cap examine-export.vdc mdadm --examine --export /dev/vdc

step 06-r5-assemble-failed
cap stop mdadm --stop /dev/md0
cap assemble mdadm --assemble /dev/md0 /dev/vda /dev/vdb /dev/vdc /dev/vdd
cap mdstat mdstat
if [ -d /sys/block/md0/md ]; then
    cap sysfs.md0 sysdump md0
    cap detail-export.md0 mdadm --detail --export /dev/md0
    cap detail.md0 mdadm --detail /dev/md0
fi
mdadm --stop /dev/md0

step 07-r6-check
slow
echo check >/sys/block/md2/md/sync_action
settle
state md2
fast
waitmd md2
cap sysfs-after.md2 sysdump md2

step 08-r6-incremental
mdadm --stop /dev/md2
cap incremental-vde mdadm --incremental /dev/vde
m=$(cd /sys/block && ls -d md* | while read -r x; do [ -e "$x/md/dev-vde" ] && echo "$x"; done)
echo "## incremental array: $m"
cap mdstat mdstat
cap "sysfs.$m" sysdump "$m"
cap "detail-export.$m" mdadm --detail --export "/dev/$m"
cap "detail.$m" mdadm --detail "/dev/$m"
for d in vdf vdg vdh vdi; do cap "incremental-$d" mdadm --incremental "/dev/$d"; done
cap mdstat-complete mdstat
cap "sysfs-complete.$m" sysdump "$m"
cap "detail-export-complete.$m" mdadm --detail --export "/dev/$m"
mdadm --stop "/dev/$m"

step 09-r6-readonly
mdadm --assemble /dev/md2 /dev/vde /dev/vdf /dev/vdg /dev/vdh /dev/vdi
mdadm --readonly /dev/md2
cap mdstat mdstat
cap sysfs.md2 sysdump md2
mdadm --stop /dev/md2
echo 1 >/sys/module/md_mod/parameters/start_ro
mdadm --assemble /dev/md2 /dev/vde /dev/vdf /dev/vdg /dev/vdh /dev/vdi
cap mdstat-auto mdstat
cap sysfs-auto.md2 sysdump md2
cap detail-auto.md2 mdadm --detail /dev/md2
echo 0 >/sys/module/md_mod/parameters/start_ro
mdadm --readwrite /dev/md2

step 10-r10-fail-recovering
slow
mdadm /dev/md1 --fail /dev/nvme2n1
settle
state md1

step 11-r10-replace
fast
waitmd md1
mdadm /dev/md1 --remove /dev/nvme2n1
mdadm --zero-superblock /dev/nvme2n1
mdadm /dev/md1 --add /dev/nvme2n1
sleep 1
slow
cap replace mdadm /dev/md1 --replace /dev/nvme0n1
settle
state md1
fast
waitmd md1
cap mdstat-after mdstat
cap sysfs-after.md1 sysdump md1

step 12-r6-reshape
slow
cap grow mdadm --grow /dev/md2 --raid-devices=5
settle
state md2
fast
waitmd md2
cap mdstat-after mdstat

step 13-stopped
mdadm --stop /dev/md1 /dev/md2 /dev/md3 /dev/md4 /dev/md5
cap mdstat mdstat
echo "## done"
GUEST

cd "$work"
if [ -z "$from" ]; then
eval "$("$repo/tests/vm/build-guest.sh" -b /usr/sbin/mdadm -m raid0 -m raid1 -m raid456 -m raid10 \
    -m nvme "$work/guest.sh")"
disks=()
for l in a b c d e f g h i; do qemu-img create -q -f raw "vd$l.img" 64M; disks+=(--disk "vd$l.img"); done
for l in j k l m n o; do qemu-img create -q -f raw "vd$l.img" 8M; disks+=(--disk "vd$l.img"); done
nvme=()
for i in 0 1 2 3 4; do
    qemu-img create -q -f raw "nv$i.img" 64M
    nvme+=(-drive "file=nv$i.img,format=raw,if=none,id=n$i" -device "nvme,drive=n$i,serial=NV$i")
done
rc=0
"$repo/tests/vm/run-guest.sh" --kernel "$KERNEL" --initrd "$INITRD" --mem 768 --timeout 900 \
    "${disks[@]}" -- "${nvme[@]}" >console.log 2>&1 || rc=$?
if [ "$rc" != 0 ]; then
    tail -40 console.log >&2
    echo "capture.sh: the guest failed (rc $rc); console: $work/console.log" >&2
    trap - EXIT
    exit 1
fi
fi

out="$here/md"
rm -rf "$out"
mkdir -p "$out"
tr -d '\r' <console.log | awk -v out="$out" '
    /^@@TV-BEGIN .*@@$/ { f = substr($0, 12, length($0) - 13); n = split(f, p, "/");
                          system("mkdir -p \"" out "/" p[1] "\""); path = out "/" f;
                          printf "" > path; on = 1; next }
    /^@@TV-END .* rc=[0-9]+@@$/ { on = 0; close(path); sub(/^@@TV-END /, ""); sub(/@@$/, "");
                                  print > (out "/rc.txt"); next }
    on { print > path }'

# Superblock excerpts and libblkid's view of the members, read from the images on the host.
# 1.2: 4 KiB at 4096 of a RAID10 member stopped cleanly; 1.1: at 0; 1.0: 8 KiB from the end,
# 4 KiB aligned; 0.90: the last 64 KiB-aligned 64 KiB block (4 KiB of it is the superblock).
excerpt() {  # excerpt IMG OFFSET NAME
    dd if="$1" of="$out/superblock-$3.bin" bs=4096 skip=$(($2 / 4096)) count=1 status=none
    echo "$3 $1 size=$(stat -c %s "$1") offset=$2" >>"$out/superblocks.txt"
}
: >"$out/superblocks.txt"
excerpt nv1.img 4096 1.2
excerpt vdl.img 0 1.1
s=$(stat -c %s vdn.img); excerpt vdn.img $(((s - 8192) / 4096 * 4096)) 1.0
excerpt vdn.img 0 1.0-head
s=$(stat -c %s vdj.img); excerpt vdj.img $((s / 65536 * 65536 - 65536)) 0.90
mkdir -p "$out/blkid"
for img in nv1 vdl vdn vdj vda; do
    blkid -p -o export "$img.img" | sed "s|^DEVNAME=.*|DEVNAME=$img.img|" >"$out/blkid/$img.blkid" || true
    wipefs -n -J "$img.img" >"$out/blkid/$img.wipefs.json" || true
    mdadm --examine "$img.img" >"$out/blkid/$img.examine" 2>&1 || true
done
echo "capture.sh: wrote $(find "$out" -type f | wc -l) files under $out"
[ "$keep" = 0 ] || echo "capture.sh: work directory kept: $work"
