#!/usr/bin/env bash
# Tier-3 VM harness, step 1: build a bootable guest (Debian kernel + busybox initramfs).
#
#   tests/vm/build-guest.sh [-b HOST_BINARY[:GUEST_PATH]]... [-f HOST_PATH[:GUEST_PATH]]...
#       [-m MODULE]... [--udev] [--udev-rules NAME|PATH]... [--md] SCRIPT
#   tests/vm/build-guest.sh --check [--udev] [--md]
#
# Prints two lines on stdout (everything else goes to stderr):
#   KERNEL=<path of vmlinuz>
#   INITRD=<path of the initramfs>
# which tests/vm/run-guest.sh takes as --kernel and --initrd.
#
#   -b HOST_BINARY[:GUEST_PATH]  copy a host executable into the guest (at GUEST_PATH, default
#                                its host path), with the shared libraries `ldd` lists. Repeatable.
#                                Copied binaries win over busybox applets of the same name
#                                (PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin).
#   -f HOST_PATH[:GUEST_PATH]    copy a file or a directory (recursively, symlinks followed)
#                                into the guest as it is: configuration, test data. Repeatable.
#   -m MODULE                    include a kernel module and its dependencies
#                                (`modprobe --show-depends`); the guest loads it at boot, in the
#                                order given (busybox modprobe ignores softdeps: name them first).
#                                Repeatable. virtio_pci, virtio_rng, virtio_blk, crc32c_generic,
#                                ext4 and nvme are always included and loaded (virtio_rng: without
#                                an entropy source the guest's CRNG is not ready for seconds and
#                                tools that ask for random bytes, mkfs.ext4 included, stall).
#   --udev                       systemd-udevd and udevadm (host package udev) and the rules
#                                50-udev-default, 60-block, 60-persistent-storage and mdadm's
#                                01-md-raid-creating and 63-md-raid-arrays (when installed; not
#                                64-md-raid-assembly: nothing assembles arrays behind the test's
#                                back). /init starts `systemd-udevd --daemon`, runs
#                                `udevadm trigger --action=add` and `udevadm settle --timeout=30`
#                                before SCRIPT: /dev/disk/by-id/* exist, block devices are
#                                watched (close after write gives a "change" event), and
#                                processes can listen on the "udev" netlink group (libudev).
#   --udev-rules NAME|PATH       a further rules file: a name from /lib/udev/rules.d (e.g.
#                                64-md-raid-assembly.rules) or a host path. Implies --udev.
#   --md                         Linux md RAID and its file systems: mdadm (/sbin/mdadm, with a
#                                writable /etc/mdadm and /run/mdadm), mkfs.xfs, xfs_repair,
#                                blkid, wipefs (/sbin), lsblk (/bin), and the modules md_mod
#                                raid0 raid1 raid10 raid456 xfs (crc32c_generic is loaded first).
#                                mkfs.xfs refuses file systems under 300 MB: make the disks big
#                                enough (sparse images cost nothing until written).
#   SCRIPT                       the test script; the guest runs it as `sh /test.sh` after boot.
#   --check                      print the host tools that are missing (for --udev and --md too
#                                when given) and exit 1 (0: none).
#
# What the guest's /init does: mounts /proc, /sys, /dev, cgroup v2 at /sys/fs/cgroup, /tmp and
# /run; sets the host name `tiervault-guest`; loads the modules; with --udev starts udevd and
# waits for it to settle; if the kernel command line has `tiervault.scratch=/dev/vdX`
# (run-guest.sh --scratch), mounts that disk at /mnt/scratch (ext4; a blank disk is formatted
# first, anything else that is not ext4 is refused) and exports TV_SCRATCH=/mnt/scratch; runs
# SCRIPT; prints `TIERVAULT-GUEST-END rc=<exit code of SCRIPT>`; syncs, unmounts the file
# systems on block devices (best effort) and powers off. When the harness itself fails in the
# guest the code is 110-117 and the reason is logged: 110 cgroup2, 111 a module, 112-115 the
# scratch disk, 116 udevd did not start, 117 `udevadm settle` timed out. The guest has
# busybox's applets (sh, timeout, dd, ...), mkfs.ext4, `tv-result` and whatever the options
# added; no network.
#
# `tv-result NAME=TEXT... NAME:=JSON...` (in the guest's PATH) prints one line
# `TIERVAULT-RESULT {"NAME":"TEXT",...,"NAME":JSON}` on the console: TEXT is escaped (quotes,
# backslashes, tabs and newlines; other control characters dropped), JSON is taken as it is
# (numbers, true/false, arrays; empty = null). The Rust helper (tests/tests/common/vm.rs)
# collects these lines in order.
#
# Cache: $TIERVAULT_VM_WORK (default <repo>/target/vm). The kernel package is downloaded and
# unpacked once per kernel version (kernel/<version>/); an initramfs is kept under
# initrd/<digest>.cpio.gz, the digest covering the kernel version, this script, SCRIPT, the
# binaries and files (content), the modules and the options, so an unchanged second run only
# prints the paths; the 10 used last, and all used within the last hour, are kept.
# The kernel is the one bookworm's linux-image-amd64 depends on (`apt-get download`; needs
# the apt lists, i.e. a prior `apt-get update`); TIERVAULT_VM_KERNEL_PKG=linux-image-<version>
# picks another.
#
# Host packages (Debian 12): busybox-static cpio kmod e2fsprogs (+ dpkg, apt, libc-bin, gzip,
# coreutils, util-linux, which a Debian system has); --udev: udev; --md: mdadm xfsprogs.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
work="${TIERVAULT_VM_WORK:-$repo/target/vm}"
base_modules=(virtio_pci virtio_rng virtio_blk crc32c_generic ext4 nvme)
md_modules=(md_mod raid0 raid1 raid10 raid456 xfs)
# HOST_TOOL:GUEST_PATH
md_binaries=(mdadm:/sbin/mdadm mkfs.xfs:/sbin/mkfs.xfs xfs_repair:/sbin/xfs_repair
    blkid:/sbin/blkid wipefs:/sbin/wipefs lsblk:/bin/lsblk)
udev_rules_default=(50-udev-default.rules 60-block.rules 60-persistent-storage.rules)
# mdadm's: included with --udev when installed, required with --udev --md.
udev_rules_md=(01-md-raid-creating.rules 63-md-raid-arrays.rules)
rules_dirs=(/lib/udev/rules.d /usr/lib/udev/rules.d)
end_marker="TIERVAULT-GUEST-END"

die() {
    echo "build-guest.sh: $*" >&2
    exit 1
}

# The packaged rules file NAME, or nothing.
find_rule() {
    local d
    for d in "${rules_dirs[@]}"; do
        if [ -f "$d/$1" ]; then
            echo "$d/$1"
            return 0
        fi
    done
    return 1
}

# Host tools this script needs (for the features asked for), with the Debian package that
# provides each.
check_tools() {
    local missing=() pair tool pkg pairs
    pairs=(busybox:busybox-static cpio:cpio gzip:gzip depmod:kmod modprobe:kmod
        mkfs.ext4:e2fsprogs dpkg-deb:dpkg apt-get:apt apt-cache:apt ldd:libc-bin
        sha256sum:coreutils flock:util-linux)
    [ "$udev" = 0 ] || pairs+=(udevadm:udev)
    [ "$md" = 0 ] || pairs+=(mdadm:mdadm mkfs.xfs:xfsprogs xfs_repair:xfsprogs blkid:util-linux
        wipefs:util-linux lsblk:util-linux)
    for pair in "${pairs[@]}"; do
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
    if [ "$udev" = 1 ]; then
        local rule
        for rule in "${udev_rules_default[@]}"; do
            find_rule "$rule" >/dev/null || missing+=("udev rules $rule (Debian package udev)")
        done
        if [ "$md" = 1 ]; then
            for rule in "${udev_rules_md[@]}"; do
                find_rule "$rule" >/dev/null || missing+=("udev rules $rule (Debian package mdadm)")
            done
        fi
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
files=()
extra_modules=()
extra_rules=()
udev=0
md=0
check=0
script=""
while [ $# -gt 0 ]; do
    case "$1" in
    --check)
        check=1
        shift
        ;;
    -b | -f | -m | --udev-rules)
        [ $# -ge 2 ] || die "$1 needs a value (see --help)"
        case "$1" in
        -b) binaries+=("$2") ;;
        -f) files+=("$2") ;;
        -m) extra_modules+=("$2") ;;
        --udev-rules)
            extra_rules+=("$2")
            udev=1
            ;;
        esac
        shift 2
        ;;
    --udev)
        udev=1
        shift
        ;;
    --md)
        md=1
        shift
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
if [ "$check" = 1 ]; then
    check_tools || exit 1
    exit 0
fi
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
modules=("${base_modules[@]}")
[ "$md" = 0 ] || modules+=("${md_modules[@]}")
modules+=("${extra_modules[@]}")
[ "$md" = 0 ] || binaries+=("${md_binaries[@]}")
[ "$udev" = 0 ] || binaries+=(udevadm:/bin/udevadm)
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

file_specs=() # "host_path guest_path"
for spec in "${files[@]}"; do
    host="${spec%%:*}"
    guest="${spec#*:}"
    [ "$spec" != "$host" ] || guest=""
    [ -e "$host" ] || die "-f: $host does not exist"
    host="$(readlink -f "$host")"
    [ -n "$guest" ] || guest="$host"
    case "$guest" in /*) ;; *) die "-f: guest path $guest of $host must be absolute" ;; esac
    file_specs+=("$host $guest")
done

rule_files=()
if [ "$udev" = 1 ]; then
    for rule in "${udev_rules_default[@]}"; do
        rule_files+=("$(find_rule "$rule")")
    done
    for rule in "${udev_rules_md[@]}"; do
        if path="$(find_rule "$rule")"; then rule_files+=("$path"); fi
    done
    for rule in "${extra_rules[@]}"; do
        case "$rule" in
        */*) [ -f "$rule" ] || die "--udev-rules: no file $rule" ;;
        *) rule="$(find_rule "$rule")" || die "--udev-rules: no $rule in ${rules_dirs[*]}" ;;
        esac
        rule_files+=("$(readlink -f "$rule")")
    done
fi

# Content digests of a file or of everything under a directory (names relative to it).
content_digest() {
    if [ -d "$1" ]; then
        (cd "$1" && find -L . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum)
    else
        sha256sum <"$1"
    fi
}

digest="$(
    {
        echo "kernel $kver udev $udev md $md"
        sha256sum "$0" "$script" | cut -d' ' -f1
        printf 'module %s\n' "${modules[@]}"
        for b in "${bin_specs[@]}"; do
            echo "binary ${b#* } $(sha256sum "${b%% *}" | cut -d' ' -f1)"
            ldd "${b%% *}" 2>/dev/null | grep -oE '/[^ ]+' || true
        done
        for f in "${file_specs[@]}"; do
            echo "file ${f#* }"
            content_digest "${f%% *}"
        done
        for r in "${rule_files[@]}"; do
            echo "rules $(basename "$r") $(sha256sum <"$r")"
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
    mkdir -p "$stage"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,run,etc,root,mnt/scratch}
    mkdir -p "$stage/lib/modules/$kver"
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
    for f in "${file_specs[@]}"; do
        host="${f%% *}"
        guest="${f#* }"
        mkdir -p "$stage$(dirname "$guest")"
        rm -rf "${stage:?}$guest"
        cp -rL "$host" "$stage$guest"
    done
    [ ! -f /etc/mke2fs.conf ] || cp /etc/mke2fs.conf "$stage/etc/"
    if [ "$md" = 1 ]; then
        mkdir -p "$stage/etc/mdadm"
    fi
    # Users and groups the rules name (OWNER=, GROUP=), with the host's ids where it has them.
    {
        echo "root:x:0:"
        if [ "${#rule_files[@]}" -gt 0 ]; then
            grep -ohE 'GROUP[:+]?="[^"]+"' "${rule_files[@]}" | sed 's/.*="\(.*\)"/\1/' |
                LC_ALL=C sort -u | awk -v base=900 '$1 != "root" {
                    cmd = "getent group " $1; id = ""
                    if ((cmd | getline line) > 0) { split(line, f, ":"); id = f[3] }
                    close(cmd)
                    if (id == "") id = base++
                    print $1 ":x:" id ":"
                }'
        fi
    } >"$stage/etc/group"
    echo "root:x:0:0:root:/root:/bin/sh" >"$stage/etc/passwd"
    if [ "$udev" = 1 ]; then
        mkdir -p "$stage/lib/systemd" "$stage/lib/udev/rules.d" "$stage/etc/udev/rules.d"
        ln -s /bin/udevadm "$stage/lib/systemd/systemd-udevd"
        for r in "${rule_files[@]}"; do
            cp "$r" "$stage/lib/udev/rules.d/"
        done
    fi
    cp "$script" "$stage/test.sh"

    cat >"$stage/usr/bin/tv-result" <<'EOF'
#!/bin/sh
# tv-result NAME=TEXT... NAME:=JSON...: one `TIERVAULT-RESULT {...}` line on stdout
# (see tests/vm/build-guest.sh).
exec awk '
function esc(s) {
    gsub(/\\/, "\\\\", s)
    gsub(/"/, "\\\"", s)
    gsub(/\t/, "\\t", s)
    gsub(/\r/, "", s)
    gsub(/\n/, "\\n", s)
    gsub(/[\001-\037]/, "", s)
    return s
}
BEGIN {
    out = ""
    for (i = 1; i < ARGC; i++) {
        a = ARGV[i]
        p = index(a, "=")
        if (p < 2) { print "tv-result: " a " is neither NAME=TEXT nor NAME:=JSON" > "/dev/stderr"; exit 2 }
        name = substr(a, 1, p - 1); val = substr(a, p + 1); raw = 0
        if (substr(name, length(name)) == ":") { raw = 1; name = substr(name, 1, length(name) - 1) }
        if (raw && val == "") val = "null"
        out = out (out == "" ? "" : ",") "\"" esc(name) "\":" (raw ? val : "\"" esc(val) "\"")
    }
    print "TIERVAULT-RESULT {" out "}"
}' "$@"
EOF
    chmod 755 "$stage/usr/bin/tv-result"

    cat >"$stage/init" <<EOF
#!/bin/busybox sh
# Generated by tests/vm/build-guest.sh: boot, run /test.sh, report its exit code, power off.
/bin/busybox --install -s /bin
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
log() { echo "tiervault-guest [\$(cut -d' ' -f1 /proc/uptime)s]: \$*"; }
finish() {
    echo "$end_marker rc=\$1"
    sync
    # File systems on block devices, the last mounted first (best effort).
    awk '\$1 ~ /^\/dev\// {print \$2}' /proc/mounts | sed '1!G;h;\$!d' | while read -r m; do
        umount "\$m" 2>/dev/null
    done
    poweroff -f
    sleep 5 # poweroff -f does not return; should it, the kernel panics and qemu exits
    exit 1
}
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
mount -t tmpfs -o mode=755 run /run
mount -t cgroup2 none /sys/fs/cgroup || { log "cannot mount cgroup2"; finish 110; }
hostname tiervault-guest
log "init start"
while read -r m; do
    modprobe "\$m" || [ -d "/sys/module/\$m" ] || { log "modprobe \$m failed"; finish 111; }
done </etc/tiervault-modules
[ ! -x /sbin/mdadm ] || mkdir -p /run/mdadm
if [ -x /lib/systemd/systemd-udevd ]; then
    /lib/systemd/systemd-udevd --daemon --resolve-names=never || { log "systemd-udevd did not start"; finish 116; }
    log "udevd started"
    udevadm trigger --type=subsystems --action=add
    udevadm trigger --type=devices --action=add
    udevadm settle --timeout=30 || { log "udevadm settle timed out after 30 s"; finish 117; }
    log "udev settled"
fi
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
# Keep the 10 initramfs files used last (each new script or binary makes another), and every
# one used within the last hour (another test may be about to boot it).
touch "$initrd"
find "$work/initrd" -maxdepth 1 -name '*.cpio.gz' -printf '%T@ %p\n' | sort -rn | tail -n +11 |
    awk -v old="$(($(date +%s) - 3600))" '$1 < old { print substr($0, index($0, " ") + 1) }' |
    xargs -r -d '\n' rm -f

echo "KERNEL=$kernel"
echo "INITRD=$initrd"
