#!/usr/bin/env bash
# Tier-3 VM harness: a Debian root file system that boots with systemd as PID 1.
#
#   tests/vm/build-rootfs.sh --out IMG [--project BINDIR] [--enable UNIT]... [--overlay DIR]...
#       [--size MIB]
#   tests/vm/build-rootfs.sh --prepare
#   tests/vm/build-rootfs.sh --check
#
# Prints on stdout (everything else goes to stderr):
#   KERNEL=<path of vmlinuz>
#   INITRD=<path of the switch-root initramfs>
#   ROOTFS=<IMG>
#   APPEND=<kernel command line arguments the boot needs>
# which tests/vm/run-guest.sh takes: --kernel, --initrd, --disk IMG (the first disk, so
# /dev/vda; give it before any other --disk and use no --scratch) and --append.
#
#   --out IMG        the ext4 root image to write (replaced; a sparse file). The guest writes
#                    to it: make a fresh one for every boot.
#   --project BINDIR install the project as a package would: the executables vault-ingestd,
#                    vault-replicad, vault-remoted, vault-poold, vault-healthd and vaultctl in BINDIR
#                    (debug info stripped when `strip` exists) in /usr/bin; systemd/*.service
#                    in /usr/lib/systemd/system; systemd/sysusers.d and systemd/tmpfiles.d in
#                    /usr/lib/{sysusers,tmpfiles}.d; systemd/dbus/system.d and
#                    systemd/dbus/system-services in /usr/share/dbus-1/; hardware-profiles/ in
#                    /usr/share/tiervault/hardware-profiles. Then `systemd-sysusers --root`
#                    creates the users and groups (as the packages' postinst would). Units are
#                    installed, not enabled: see --enable.
#   --overlay DIR    copied over the tree after the project (owners and modes kept; replaces
#                    files of the same name). Repeatable, applied in order. For configuration,
#                    test units, drop-ins (/etc/systemd/system/UNIT.d/*.conf), tmpfiles.d
#                    lines that give files their owners at boot, etc.
#   --enable UNIT    `systemctl --root=... enable UNIT` after the overlays (WantedBy=, Alias=).
#                    Repeatable.
#   --size MIB       image size (default: the tree plus 768 MiB, rounded up to 256 MiB)
#   --prepare        only fetch and build the cached parts (base tree, modules, initramfs)
#   --check          print what is missing (host tools, root) and exit 1 (0: nothing)
#
# The guest: bookworm `debootstrap --variant=minbase` with $TIERVAULT_ROOTFS_PACKAGES (default
# below: systemd-sysv udev dbus mdadm xfsprogs kmod procps iproute2 ...), the kernel modules of
# the Debian kernel build-guest.sh downloads (sound, GPU, media, wireless, USB, ... left out;
# depmod'ed), and per image: /etc/fstab (LABEL=tvroot on /), host name tiervault-guest,
# /etc/hosts, a fresh machine id, a volatile journal, and the gettys, systemd-firstboot and the
# daily timers (apt, dpkg, e2scrub, fstrim, mdcheck) masked so that nothing writes to or waits
# on the console. No network devices (run-guest.sh has none); the loopback is up.
#
# The initramfs (busybox, virtio_pci, virtio_blk, crc32c_generic, ext4) mounts the root disk
# read-write (`tiervault.root=DEV` on the kernel command line, default /dev/vda) and
# `switch_root`s to /sbin/init. Should that fail it prints `TIERVAULT-GUEST-END rc=118`
# (no root disk) or `rc=119` (cannot mount it, or no /sbin/init) and powers off, so
# run-guest.sh ends at once. After that, the guest's own units must print the
# `TIERVAULT-GUEST-END rc=N` line run-guest.sh waits for (e.g. with
# StandardOutput=journal+console, or by writing to /dev/console) and power off.
# APPEND adds `systemd.show_status=error` (systemd's progress lines would interleave with that
# output; failures are still shown).
#
# Cache: $TIERVAULT_VM_WORK (default <repo>/target/vm), under rootfs/:
#   base-<digest>/tree      the debootstrap tree (as root; ~300 MB), keyed by the suite, the
#                           package list and $base_version below; the 2 used last are kept
#   debs/                   the downloaded .debs (debootstrap --cache-dir)
#   modules-<version>/      the pruned module tree of kernel <version>, depmod'ed
#   initrd-<digest>.cpio.gz the switch-root initramfs
# An image is assembled from hard links to the cached trees (`cp -al`; every later step
# replaces files rather than writing into them, so the cache is never modified) and written
# with `mkfs.ext4 -d`.
# The kernel comes from build-guest.sh (its cache, kernel/<version>/). The mirror is the first
# URIs: of /etc/apt/sources.list.d/debian.sources (else /etc/apt/sources.list, else
# deb.debian.org); $TIERVAULT_VM_MIRROR overrides it.
#
# Needs root (debootstrap; the tree's owners), and the host packages debootstrap, e2fsprogs,
# kmod, busybox-static, cpio, systemd (systemctl, systemd-sysusers) and what build-guest.sh
# needs.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
work="${TIERVAULT_VM_WORK:-$repo/target/vm}"
suite=bookworm
# Bump when the way the base tree is made changes (not for the per-image steps).
base_version=1
default_packages="systemd-sysv udev dbus mdadm xfsprogs kmod procps iproute2 util-linux e2fsprogs"
packages="${TIERVAULT_ROOTFS_PACKAGES:-$default_packages}"
# Left out of the guest's module tree: hardware a qemu guest does not have.
module_prune=(sound drivers/gpu drivers/media drivers/net/wireless drivers/net/ethernet
    drivers/infiniband drivers/staging drivers/iio drivers/comedi drivers/bluetooth drivers/isdn
    drivers/mtd drivers/usb drivers/hid drivers/input drivers/video drivers/mmc drivers/net/can
    drivers/net/usb drivers/thunderbolt net/wireless net/mac80211 net/bluetooth)
initrd_modules=(crc32c_generic virtio_pci virtio_blk ext4)
project_bins=(vault-ingestd vault-replicad vault-remoted vault-poold vault-healthd vaultctl)
# Units masked in every image: nothing may prompt on or reset the console, and no daily job
# may start in the middle of a test.
masked_units=(serial-getty@ttyS0.service getty@tty1.service console-getty.service
    systemd-firstboot.service apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer
    e2scrub_all.timer e2scrub_reap.service fstrim.timer mdcheck_start.timer
    mdcheck_continue.timer mdmonitor-oneshot.timer)
end_marker="TIERVAULT-GUEST-END"

die() {
    echo "build-rootfs.sh: $*" >&2
    exit 1
}
say() {
    echo "build-rootfs.sh: $*" >&2
}
# Unmounts everything mounted below directory $1 (deepest first).
unmount_below() {
    awk -v p="$1/" 'index($2, p) == 1 {print $2}' /proc/mounts | sort -r |
        while read -r m; do umount -l "$m" 2>/dev/null || true; done
}

check_tools() {
    local missing=() pair tool
    for pair in debootstrap:debootstrap mkfs.ext4:e2fsprogs depmod:kmod modprobe:kmod \
        busybox:busybox-static cpio:cpio gzip:gzip sha256sum:coreutils flock:util-linux \
        systemctl:systemd systemd-sysusers:systemd; do
        tool="${pair%%:*}"
        if ! PATH="$PATH:/usr/sbin:/sbin" command -v "$tool" >/dev/null 2>&1; then
            missing+=("$tool (Debian package ${pair#*:})")
        fi
    done
    local bb
    if bb="$(command -v busybox 2>/dev/null)" && ldd "$bb" >/dev/null 2>&1; then
        missing+=("a static busybox ($bb is dynamically linked; Debian package busybox-static)")
    fi
    [ "$(id -u)" = 0 ] || missing+=("root (debootstrap, and the tree's owners)")
    local guest
    if ! guest="$(bash "$here/build-guest.sh" --check 2>&1)"; then
        missing+=("build-guest.sh: $guest")
    fi
    [ "${#missing[@]}" -eq 0 ] && return 0
    local out="missing:" item
    for item in "${missing[@]}"; do out="$out $item;"; done
    echo "${out%;}"
    return 1
}

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
    exit 2
}

out=""
project=""
overlays=()
enable=()
size_mib=""
prepare=0
while [ $# -gt 0 ]; do
    case "$1" in
    --check)
        check_tools || exit 1
        exit 0
        ;;
    --prepare)
        prepare=1
        shift
        ;;
    --out | --project | --overlay | --enable | --size)
        [ $# -ge 2 ] || die "$1 needs a value (see --help)"
        case "$1" in
        --out) out="$2" ;;
        --project) project="$2" ;;
        --overlay) overlays+=("$2") ;;
        --enable) enable+=("$2") ;;
        --size) size_mib="$2" ;;
        esac
        shift 2
        ;;
    -h | --help) usage ;;
    *) die "unknown argument $1 (see --help)" ;;
    esac
done
[ "$prepare" = 1 ] || [ -n "$out" ] || die "--out IMG is required (see --help)"
[ -z "$project" ] || [ -d "$project" ] || die "--project: $project is not a directory"
for o in "${overlays[@]}"; do
    [ -d "$o" ] || die "--overlay: $o is not a directory"
done
[ -z "$size_mib" ] || [[ "$size_mib" =~ ^[0-9]+$ ]] || die "--size takes MiB, got '$size_mib'"
export PATH="$PATH:/usr/sbin:/sbin"
if ! missing_tools="$(check_tools)"; then
    die "$missing_tools"
fi

mkdir -p "$work/rootfs"
work="$(cd "$work" && pwd)"
cache="$work/rootfs"

# --- kernel: build-guest.sh downloads and unpacks it (with a do-nothing script, whose
# initramfs it caches like any other) -------------------------------------------------------
noop="$cache/noop-guest.sh"
[ -f "$noop" ] || echo 'exit 0 # build-rootfs.sh asks build-guest.sh only for the kernel' >"$noop"
kernel="$(bash "$here/build-guest.sh" "$noop" | sed -n 's/^KERNEL=//p')"
[ -f "$kernel" ] || die "build-guest.sh named no kernel"
kroot="$(dirname "$(dirname "$kernel")")"
kver="$(basename "$kernel")"
kver="${kver#vmlinuz-}"
[ -d "$kroot/lib/modules/$kver" ] || die "no modules for $kver under $kroot"

# One builder at a time per cache (build-guest.sh has its own lock, taken above and released).
exec 9>"$cache/.lock"
flock 9

# --- base tree: debootstrap, once per package list --------------------------------------------
mirror="${TIERVAULT_VM_MIRROR:-}"
if [ -z "$mirror" ] && [ -f /etc/apt/sources.list.d/debian.sources ]; then
    mirror="$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources)"
fi
if [ -z "$mirror" ] && [ -f /etc/apt/sources.list ]; then
    mirror="$(awk '$1 == "deb" && $2 !~ /^\[/ {print $2; exit}' /etc/apt/sources.list)"
fi
mirror="${mirror:-http://deb.debian.org/debian}"
pkg_list="$(echo "$packages" | tr ', ' '\n' | sed '/^$/d' | LC_ALL=C sort -u | paste -sd, -)"
base_digest="$(printf 'suite %s\nversion %s\npackages %s\n' "$suite" "$base_version" "$pkg_list" |
    sha256sum | cut -c1-16)"
base="$cache/base-$base_digest"
if [ ! -f "$base/.done" ]; then
    say "debootstrap --variant=minbase $suite from $mirror with $pkg_list (1-2 minutes)"
    # What an interrupted run left: its mounts first (debootstrap mounts proc and sys in the
    # tree, and may bind-mount /dev), so that rm never reaches into them.
    unmount_below "$base"
    rm -rf --one-file-system "$base"
    mkdir -p "$base" "$cache/debs"
    trap 'unmount_below "$base"' EXIT
    t0=$(date +%s)
    log="$base/debootstrap.log"
    # Two stages, so that dpkg in the second runs without fsync: --force-unsafe-io, and
    # libeatmydata when the host has it (package libeatmydata1) for everything else. The tree
    # is a cache, rebuilt from scratch when in doubt; syncing it file by file tripled the time.
    if ! debootstrap --foreign --variant=minbase --include="$pkg_list" \
        --cache-dir="$cache/debs" "$suite" "$base/tree" "$mirror" >"$log" 2>&1; then
        tail -n 30 "$log" >&2
        die "debootstrap (first stage) failed (log: $log)"
    fi
    mkdir -p "$base/tree/etc/dpkg/dpkg.cfg.d"
    echo force-unsafe-io >"$base/tree/etc/dpkg/dpkg.cfg.d/tiervault-build"
    preload=""
    for lib in /usr/lib/x86_64-linux-gnu/libeatmydata.so.1 /usr/lib/libeatmydata.so.1; do
        if [ -f "$lib" ]; then
            # The same path inside the tree: the preload is resolved again after chroot().
            mkdir -p "$base/tree$(dirname "$lib")"
            cp "$lib" "$base/tree$lib"
            preload="$lib"
            break
        fi
    done
    if ! LD_PRELOAD="$preload" chroot "$base/tree" /debootstrap/debootstrap --second-stage \
        >>"$log" 2>&1; then
        tail -n 30 "$log" >&2
        unmount_below "$base"
        die "debootstrap (second stage) failed (log: $log)"
    fi
    unmount_below "$base"
    trap - EXIT
    rm -f "$base/tree/etc/dpkg/dpkg.cfg.d/tiervault-build"
    [ -z "$preload" ] || rm -f "$base/tree$preload"
    # The package lists and downloaded .debs are not needed in the guest.
    rm -rf "$base/tree/var/lib/apt/lists/"* "$base/tree/var/cache/apt/"*.bin \
        "$base/tree/var/cache/apt/archives/"*.deb
    sync -f "$base/tree"
    touch "$base/.done"
    say "base tree ready in $(($(date +%s) - t0)) s: $(du -sh "$base/tree" | cut -f1)"
fi
touch "$base/.done"
# Keep the 2 base trees used last.
find "$cache" -maxdepth 2 -path "$cache/base-*/.done" -printf '%T@ %h\n' | sort -rn |
    tail -n +3 | cut -d' ' -f2- | xargs -r rm -rf --one-file-system

# --- modules of the kernel, pruned, depmod'ed ---------------------------------------------------
mods="$cache/modules-$kver"
if [ ! -f "$mods/.done" ]; then
    say "module tree of $kver"
    rm -rf "$mods"
    mkdir -p "$mods/lib/modules"
    cp -a "$kroot/lib/modules/$kver" "$mods/lib/modules/"
    for p in "${module_prune[@]}"; do
        rm -rf "${mods:?}/lib/modules/$kver/kernel/$p"
    done
    depmod -b "$mods" "$kver"
    touch "$mods/.done"
fi

# --- the switch-root initramfs ----------------------------------------------------------------
init_script="$(
    cat <<EOF
#!/bin/busybox sh
# Generated by tests/vm/build-rootfs.sh: mount the root disk and switch to its /sbin/init.
/bin/busybox --install -s /bin
export PATH=/bin:/sbin
log() { echo "tiervault-initramfs [\$(cut -d' ' -f1 /proc/uptime)s]: \$*"; }
fail() { log "\$2"; echo "$end_marker rc=\$1"; poweroff -f; sleep 5; exit 1; }
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in ${initrd_modules[*]}; do
    modprobe "\$m" || [ -d "/sys/module/\$m" ] || log "modprobe \$m failed"
done
root=\$(sed -n 's/.*tiervault\.root=\([^ ]*\).*/\1/p' /proc/cmdline)
root=\${root:-/dev/vda}
i=0
while [ ! -b "\$root" ] && [ \$i -lt 100 ]; do sleep 0.1; i=\$((i + 1)); done
[ -b "\$root" ] || fail 118 "root disk \$root did not appear"
mkdir -p /newroot
mount -t ext4 -o rw "\$root" /newroot || fail 119 "cannot mount \$root"
[ -x /newroot/sbin/init ] || [ -L /newroot/sbin/init ] || fail 119 "no /sbin/init on \$root"
log "switch_root to /sbin/init on \$root"
umount /proc /sys
mount --move /dev /newroot/dev || umount /dev
exec switch_root /newroot /sbin/init
EOF
)"
bb="$(command -v busybox)"
initrd_digest="$(
    {
        echo "kernel $kver"
        printf '%s\n' "$init_script" "${initrd_modules[@]}"
        sha256sum <"$bb"
    } | sha256sum | cut -c1-16
)"
initrd="$cache/initrd-$initrd_digest.cpio.gz"
if [ ! -f "$initrd" ]; then
    say "switch-root initramfs $initrd"
    stage="$(mktemp -d "$cache/initrd-stage.XXXXXX")"
    trap 'rm -rf "$stage"' EXIT
    mkdir -p "$stage"/{bin,sbin,proc,sys,dev,newroot,lib/modules/"$kver"}
    cp "$bb" "$stage/bin/busybox"
    for m in "${initrd_modules[@]}"; do
        modprobe -d "$kroot" -S "$kver" --show-depends "$m" || die "kernel $kver has no module $m"
    done | awk '/^insmod/{print $2}' | sort -u | while read -r ko; do
        rel="${ko#"$kroot"}"
        mkdir -p "$stage$(dirname "$rel")"
        cp "$ko" "$stage$rel"
    done
    cp "$kroot/lib/modules/$kver"/modules.{order,builtin,builtin.modinfo} "$stage/lib/modules/$kver/" 2>/dev/null || true
    depmod -b "$stage" "$kver"
    printf '%s\n' "$init_script" >"$stage/init"
    chmod 755 "$stage/init"
    (cd "$stage" && find . | LC_ALL=C sort | cpio -o -H newc --quiet | gzip -1) >"$initrd.tmp"
    mv "$initrd.tmp" "$initrd"
    rm -rf "$stage"
    trap - EXIT
    find "$cache" -maxdepth 1 -name 'initrd-*.cpio.gz' ! -name "$(basename "$initrd")" -mmin +60 -delete
fi
touch "$initrd"

append="tiervault.root=/dev/vda systemd.show_status=error"
if [ "$prepare" = 1 ]; then
    echo "KERNEL=$kernel"
    echo "INITRD=$initrd"
    echo "APPEND=$append"
    exit 0
fi

# --- the image: hard links to the cached trees, the per-image files, the project, overlays ----
t0=$(date +%s.%N)
stage="$(mktemp -d "$cache/stage.XXXXXX")"
trap 'rm -rf "$stage"' EXIT
chmod 755 "$stage"
cp -al "$base/tree/." "$stage/"
mkdir -p "$stage/usr/lib/modules"
cp -al "$mods/lib/modules/$kver" "$stage/usr/lib/modules/"
flock -u 9

# Writes stdin to a file of the tree, replacing (never writing into) what is there: files of
# the tree are hard links into the cache.
put() {
    local f="$stage$1"
    mkdir -p "$(dirname "$f")"
    rm -f "$f"
    cat >"$f"
    chmod "${2:-644}" "$f"
}
# Replaces a file of the tree by a copy of itself, so that a tool may rewrite it in place.
unshare_file() {
    local f="$stage$1"
    [ -f "$f" ] || return 0
    cp -p "$f" "$f.unshare"
    mv -f "$f.unshare" "$f"
}

echo "LABEL=tvroot / ext4 rw,errors=remount-ro 0 0" | put /etc/fstab
echo tiervault-guest | put /etc/hostname
printf '127.0.0.1\tlocalhost\n127.0.1.1\ttiervault-guest\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' |
    put /etc/hosts
# A machine id of its own: an empty one would make the boot a "first boot" (firstboot prompts).
tr -d '-' </proc/sys/kernel/random/uuid | put /etc/machine-id 444
printf '[Journal]\nStorage=volatile\n' | put /etc/systemd/journald.conf.d/tiervault-guest.conf
for u in "${masked_units[@]}"; do
    mkdir -p "$stage/etc/systemd/system"
    ln -sfn /dev/null "$stage/etc/systemd/system/$u"
done

if [ -n "$project" ]; then
    for b in "${project_bins[@]}"; do
        [ -f "$project/$b" ] || continue
        rm -f "$stage/usr/bin/$b"
        if command -v strip >/dev/null 2>&1; then
            strip --strip-debug -o "$stage/usr/bin/$b" "$project/$b"
        else
            cp "$project/$b" "$stage/usr/bin/$b"
        fi
        chmod 755 "$stage/usr/bin/$b"
    done
    sd="$repo/systemd"
    install -d "$stage/usr/lib/systemd/system" "$stage/usr/lib/sysusers.d" \
        "$stage/usr/lib/tmpfiles.d" "$stage/usr/share/dbus-1/system.d" \
        "$stage/usr/share/dbus-1/system-services" "$stage/usr/share/tiervault" \
        "$stage/usr/share/doc/tiervault"
    install -m 644 "$sd"/*.service "$stage/usr/lib/systemd/system/"
    install -m 644 "$sd"/sysusers.d/*.conf "$stage/usr/lib/sysusers.d/"
    install -m 644 "$sd"/tmpfiles.d/*.conf "$stage/usr/lib/tmpfiles.d/"
    install -m 644 "$sd"/dbus/system.d/*.conf "$stage/usr/share/dbus-1/system.d/"
    install -m 644 "$sd"/dbus/system-services/*.service "$stage/usr/share/dbus-1/system-services/"
    if [ -d "$repo/hardware-profiles" ]; then
        rm -rf "$stage/usr/share/tiervault/hardware-profiles"
        cp -r "$repo/hardware-profiles" "$stage/usr/share/tiervault/"
    fi
    cp "$repo"/docs/*.md "$stage/usr/share/doc/tiervault/" 2>/dev/null || true
    # As the packages' postinst would: users and groups now (they also are at boot, by
    # systemd-sysusers.service, but only on a first boot: ConditionNeedsUpdate=/etc).
    for f in passwd group shadow gshadow; do unshare_file "/etc/$f"; done
    systemd-sysusers --root="$stage" >&2
fi

for o in "${overlays[@]}"; do
    # --remove-destination: a file of the same name is replaced, not written into.
    cp -a --remove-destination "$o/." "$stage/"
done

if [ "${#enable[@]}" -gt 0 ]; then
    systemctl --root="$stage" enable "${enable[@]}" >&2
fi

used_mib=$(($(du -sm "$stage" | cut -f1)))
if [ -z "$size_mib" ]; then
    size_mib=$(((used_mib + 768 + 255) / 256 * 256))
fi
mkdir -p "$(dirname "$out")"
rm -f "$out"
truncate -s "${size_mib}M" "$out"
mkfs.ext4 -q -F -L tvroot -d "$stage" "$out" >&2 ||
    die "mkfs.ext4 -d failed (tree $used_mib MiB, image $size_mib MiB; --size?)"
rm -rf "$stage"
trap - EXIT
say "root image $out: $used_mib MiB in $size_mib MiB, $(awk -v s="$t0" -v e="$(date +%s.%N)" 'BEGIN{printf "%.1f", e - s}') s"

echo "KERNEL=$kernel"
echo "INITRD=$initrd"
echo "ROOTFS=$(cd "$(dirname "$out")" && pwd)/$(basename "$out")"
echo "APPEND=$append"
