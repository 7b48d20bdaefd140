#!/usr/bin/env bash
# Tier-3 VM harness, step 1: build a bootable guest (Debian kernel + busybox initramfs).
#
#   tests/vm/build-guest.sh [-b HOST_BINARY[:GUEST_PATH]]... [-m MODULE]... SCRIPT
#   tests/vm/build-guest.sh --check
#
# Prints two lines on stdout (everything else goes to stderr):
#   KERNEL=<path of vmlinuz>
#   INITRD=<path of the initramfs>
# which tests/vm/run-guest.sh takes as --kernel and --initrd.
#
#   -b HOST_BINARY[:GUEST_PATH]  copy a host executable into the guest (at GUEST_PATH, default
#                                its host path), with the shared libraries `ldd` lists. Repeatable.
#   -m MODULE                    include a kernel module and its dependencies
#                                (`modprobe --show-depends`); the guest loads it at boot, in the
#                                order given (busybox modprobe ignores softdeps: name them first).
#                                Repeatable. virtio_pci, virtio_rng, virtio_blk, crc32c_generic
#                                and ext4 are always included and loaded (virtio_rng: without
#                                an entropy source the guest's CRNG is not ready for seconds and
#                                tools that ask for random bytes, mkfs.ext4 included, stall).
#   SCRIPT                       the test script; the guest runs it as `sh /test.sh` after boot.
#   --check                      print the host tools that are missing and exit 1 (0: none).
#
# What the guest's /init does: mounts /proc, /sys, /dev, cgroup v2 at /sys/fs/cgroup, /tmp;
# loads the modules; if the kernel command line has `tiervault.scratch=/dev/vdX`
# (run-guest.sh --scratch), mounts that disk at /mnt/scratch (ext4; a blank disk is formatted
# first, anything else that is not ext4 is refused) and exports TV_SCRATCH=/mnt/scratch; runs
# SCRIPT; prints `TIERVAULT-GUEST-END rc=<exit code of SCRIPT>`; syncs, unmounts and
# powers off. When the harness itself fails in the guest (cgroup2, a module, the scratch
# disk) the code is 110-115 and the reason is logged. The guest has busybox's applets (sh,
# timeout, dd, ...), mkfs.ext4 and whatever -b added; no network.
#
# Cache: $TIERVAULT_VM_WORK (default <repo>/target/vm). The kernel package is downloaded and
# unpacked once per kernel version (kernel/<version>/); an initramfs is kept under
# initrd/<digest>.cpio.gz, the digest covering the kernel version, this script, SCRIPT, the
# binaries (content) and the modules, so an unchanged second run only prints the paths; the
# 10 used last are kept.
# The kernel is the one bookworm's linux-image-amd64 depends on (`apt-get download`; needs
# the apt lists, i.e. a prior `apt-get update`); TIERVAULT_VM_KERNEL_PKG=linux-image-<version>
# picks another.
#
# Host packages (Debian 12): busybox-static cpio kmod e2fsprogs (+ dpkg, apt, libc-bin, gzip,
# coreutils, util-linux, which a Debian system has).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
work="${TIERVAULT_VM_WORK:-$repo/target/vm}"
base_modules=(virtio_pci virtio_rng virtio_blk crc32c_generic ext4)
end_marker="TIERVAULT-GUEST-END"

die() {
    echo "build-guest.sh: $*" >&2
    exit 1
}

# Host tools this script needs, with the Debian package that provides each.
check_tools() {
    local missing=() pair tool pkg
    for pair in busybox:busybox-static cpio:cpio gzip:gzip depmod:kmod modprobe:kmod \
        mkfs.ext4:e2fsprogs dpkg-deb:dpkg apt-get:apt apt-cache:apt ldd:libc-bin \
        sha256sum:coreutils flock:util-linux; do
        tool="${pair%%:*}"
        pkg="${pair#*:}"
        if ! PATH="$PATH:/usr/sbin:/sbin" command -v "$tool" >/dev/null 2>&1; then
            missing+=("$tool (Debian package $pkg)")
        fi
    done
    # The guest has no libc of its own: busybox must be the static build.
    local bb
    if bb="$(command -v busybox 2>/dev/null)" && ldd "$bb" >/dev/null 2>&1; then
        missing+=("a static busybox ($bb is dynamically linked; Debian package busybox-static)")
    fi
    [ "${#missing[@]}" -eq 0 ] && return 0
    local out="missing host tools:" item
    for item in "${missing[@]}"; do out="$out $item;"; done
    echo "${out%;}"
    return 1
}

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
    exit 2
}

binaries=()
extra_modules=()
script=""
while [ $# -gt 0 ]; do
    case "$1" in
    --check)
        check_tools || exit 1
        exit 0
        ;;
    -b)
        [ $# -ge 2 ] || die "-b needs HOST_BINARY[:GUEST_PATH]"
        binaries+=("$2")
        shift 2
        ;;
    -m)
        [ $# -ge 2 ] || die "-m needs a module name"
        extra_modules+=("$2")
        shift 2
        ;;
    -h | --help) usage ;;
    -*) die "unknown option $1 (see --help)" ;;
    *)
        [ -z "$script" ] || die "one SCRIPT only (got $script and $1)"
        script="$1"
        shift
        ;;
    esac
done
[ -n "$script" ] || die "no SCRIPT given (see --help)"
[ -f "$script" ] || die "script $script does not exist"
export PATH="$PATH:/usr/sbin:/sbin"
if ! missing_tools="$(check_tools)"; then
    die "$missing_tools"
fi

mkdir -p "$work"
work="$(cd "$work" && pwd)"
# One builder at a time per cache directory.
exec 9>"$work/.lock"
flock 9

# --- kernel: download and unpack once per version -------------------------------------------
pkg="${TIERVAULT_VM_KERNEL_PKG:-}"
# Which linux-image-<version> linux-image-amd64 stands for: asked of apt-cache (about 1 s)
# only when the apt lists changed since the last answer.
resolved_file="$work/kernel/linux-image-amd64.resolved"
if [ -z "$pkg" ] && [ -s "$resolved_file" ] &&
    [ -z "$(find /var/lib/apt/lists -maxdepth 1 -newer "$resolved_file" -print -quit 2>/dev/null)" ]; then
    pkg="$(cat "$resolved_file")"
fi
if [ -z "$pkg" ]; then
    pkg="$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-/{print $2; exit}')" || true
    [ -n "$pkg" ] || die "apt-cache knows no linux-image-amd64 (run apt-get update, or set TIERVAULT_VM_KERNEL_PKG)"
    mkdir -p "$work/kernel"
    echo "$pkg" >"$resolved_file"
fi
kver="${pkg#linux-image-}"
kdir="$work/kernel/$kver"
kroot="$kdir/root"
kernel="$kroot/boot/vmlinuz-$kver"
if [ ! -f "$kdir/.done" ]; then
    echo "build-guest.sh: fetching $pkg into $kdir" >&2
    rm -rf "$kdir"
    mkdir -p "$kdir/deb"
    apt_opts=()
    # As root apt drops to the _apt user, which cannot write to a private directory.
    [ "$(id -u)" != 0 ] || apt_opts=(-o APT::Sandbox::User=root)
    (cd "$kdir/deb" && apt-get download "${apt_opts[@]}" "$pkg" >&2) ||
        die "apt-get download $pkg failed"
    deb=("$kdir"/deb/*.deb)
    [ -f "${deb[0]}" ] || die "apt-get download $pkg left no .deb in $kdir/deb"
    dpkg-deb -x "${deb[0]}" "$kroot"
    rm -rf "$kdir/deb"
    [ -f "$kernel" ] || die "$pkg has no /boot/vmlinuz-$kver"
    depmod -b "$kroot" "$kver"
    touch "$kdir/.done"
fi

# --- initramfs: keyed by a digest of everything that goes into it ---------------------------
modules=("${base_modules[@]}" "${extra_modules[@]}")
bin_specs=() # "host_path guest_path"
for spec in "${binaries[@]}"; do
    host="${spec%%:*}"
    guest="${spec#*:}"
    [ "$spec" != "$host" ] || guest=""
    found="$(command -v "$host" 2>/dev/null)" || die "binary $host not found"
    case "$found" in /*) ;; *) found="$(cd "$(dirname "$found")" && pwd)/$(basename "$found")" ;; esac
    resolved="$(readlink -f "$found")"
    if [ ! -f "$resolved" ] || [ ! -x "$resolved" ]; then
        die "binary $host ($resolved) is not an executable file"
    fi
    [ -n "$guest" ] || guest="$found"
    case "$guest" in /*) ;; *) die "guest path $guest of $host must be absolute" ;; esac
    bin_specs+=("$resolved $guest")
done
# mkfs.ext4 is always there for the scratch disk.
mkfs="$(readlink -f "$(command -v mkfs.ext4)")"
bin_specs+=("$mkfs /sbin/mkfs.ext4")

digest="$(
    {
        echo "kernel $kver"
        sha256sum "$0" "$script" | cut -d' ' -f1
        printf 'module %s\n' "${modules[@]}"
        for b in "${bin_specs[@]}"; do
            echo "binary ${b#* } $(sha256sum "${b%% *}" | cut -d' ' -f1)"
            ldd "${b%% *}" 2>/dev/null | grep -oE '/[^ ]+' || true
        done
        sha256sum "$(command -v busybox)" | cut -d' ' -f1
    } | sha256sum | cut -c1-16
)"
initrd="$work/initrd/$digest.cpio.gz"
if [ ! -f "$initrd" ]; then
    echo "build-guest.sh: building $initrd" >&2
    mkdir -p "$work/initrd"
    stage="$(mktemp -d "$work/initrd/stage.XXXXXX")"
    trap 'rm -rf "$stage"' EXIT
    mkdir -p "$stage"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,run,etc,mnt/scratch,lib/modules/"$kver"}
    cp "$(command -v busybox)" "$stage/bin/busybox"

    # Modules with their dependency closures, then a modules.dep for busybox modprobe.
    for m in "${modules[@]}"; do
        modprobe -d "$kroot" -S "$kver" --show-depends "$m" ||
            die "kernel $kver has no module $m"
    done | awk '/^insmod/{print $2}' | sort -u | while read -r ko; do
        rel="${ko#"$kroot"}"
        mkdir -p "$stage$(dirname "$rel")"
        cp "$ko" "$stage$rel"
    done
    cp "$kroot/lib/modules/$kver"/modules.{order,builtin,builtin.modinfo} "$stage/lib/modules/$kver/" 2>/dev/null || true
    depmod -b "$stage" "$kver"
    printf '%s\n' "${modules[@]}" >"$stage/etc/tiervault-modules"

    # Binaries and the libraries they link (the dynamic loader included).
    for b in "${bin_specs[@]}"; do
        host="${b%% *}"
        guest="${b#* }"
        mkdir -p "$stage$(dirname "$guest")"
        cp -L "$host" "$stage$guest"
        ldd "$host" 2>/dev/null | grep -oE '/[^ ]+' | while read -r lib; do
            [ -e "$lib" ] || continue
            mkdir -p "$stage$(dirname "$lib")"
            cp -Ln "$lib" "$stage$lib"
        done
    done
    [ ! -f /etc/mke2fs.conf ] || cp /etc/mke2fs.conf "$stage/etc/"
    cp "$script" "$stage/test.sh"

    cat >"$stage/init" <<EOF
#!/bin/busybox sh
# Generated by tests/vm/build-guest.sh: boot, run /test.sh, report its exit code, power off.
/bin/busybox --install -s /bin
export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root
log() { echo "tiervault-guest [\$(cut -d' ' -f1 /proc/uptime)s]: \$*"; }
finish() {
    echo "$end_marker rc=\$1"
    sync
    umount /mnt/scratch 2>/dev/null
    poweroff -f
    sleep 5 # poweroff -f does not return; should it, the kernel panics and qemu exits
    exit 1
}
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
mount -t cgroup2 none /sys/fs/cgroup || { log "cannot mount cgroup2"; finish 110; }
log "init start"
while read -r m; do
    modprobe "\$m" || [ -d "/sys/module/\$m" ] || { log "modprobe \$m failed"; finish 111; }
done </etc/tiervault-modules
scratch=\$(sed -n 's/.*tiervault\.scratch=\([^ ]*\).*/\1/p' /proc/cmdline)
if [ -n "\$scratch" ]; then
    i=0
    while [ ! -b "\$scratch" ] && [ \$i -lt 50 ]; do sleep 0.1; i=\$((i + 1)); done
    [ -b "\$scratch" ] || { log "scratch disk \$scratch did not appear"; finish 112; }
    magic=\$(dd if="\$scratch" bs=1 skip=1080 count=2 2>/dev/null | od -An -tx1 | tr -d ' \n')
    if [ "\$magic" != "53ef" ]; then
        if [ "\$(head -c 1048576 "\$scratch" | tr -d '\000' | wc -c)" != 0 ]; then
            log "scratch disk \$scratch is neither ext4 nor blank: refusing to format it"
            finish 113
        fi
        log "formatting \$scratch (ext4)"
        mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "\$scratch" || finish 114
    fi
    mount -t ext4 "\$scratch" /mnt/scratch || { log "cannot mount \$scratch"; finish 115; }
    export TV_SCRATCH=/mnt/scratch
    log "scratch disk \$scratch mounted on /mnt/scratch"
fi
log "running /test.sh"
cd /
sh /test.sh
rc=\$?
log "/test.sh exited with \$rc"
finish \$rc
EOF
    chmod 755 "$stage/init"
    (cd "$stage" && find . | LC_ALL=C sort | cpio -o -H newc --quiet | gzip -1) >"$initrd.tmp"
    mv "$initrd.tmp" "$initrd"
    rm -rf "$stage"
    trap - EXIT
    echo "build-guest.sh: $(du -h "$initrd" | cut -f1) initramfs" >&2
fi
# Keep the 10 initramfs files used last (each new benchmark binary makes another).
touch "$initrd"
find "$work/initrd" -maxdepth 1 -name '*.cpio.gz' -printf '%T@ %p\n' | sort -rn | tail -n +11 |
    cut -d' ' -f2- | xargs -r rm -f

echo "KERNEL=$kernel"
echo "INITRD=$initrd"
