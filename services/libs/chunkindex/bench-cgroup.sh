#!/usr/bin/env bash
# Run the chunk index benchmark inside a memory cgroup limited to the index's budget plus a
# small allowance for the binary itself, so the kernel page cache cannot hold the index and
# hide its real footprint. Needs root.
#
#   services/libs/chunkindex/bench-cgroup.sh --entries 100000000 --budget-mib 380 --dir /tmp/idxbench [--json]
#
# Environment: ALLOWANCE_MIB (default 64): memory beyond the budget for the binary, its
# stacks and a little page cache. BENCH_BIN: a prebuilt benchmark binary (skips cargo).
# cgroup v2 (memory.max) is used when its memory controller is available, else cgroup v1
# (memory.limit_in_bytes); the one used is printed. Caches are dropped before lookups.
# glibc keeps freed multi-MiB buffers of merged runs in its heap (dynamic mmap threshold);
# MALLOC_MMAP_THRESHOLD_=131072 in the environment keeps peak RSS close to memory_used().
set -euo pipefail

budget_mib=64
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    if [ "${args[$i]}" = "--budget-mib" ]; then budget_mib="${args[$((i + 1))]}"; fi
done
allowance_mib="${ALLOWANCE_MIB:-64}"
limit=$(((budget_mib + allowance_mib) * 1024 * 1024))

if [ "$(id -u)" != 0 ]; then
    echo "bench-cgroup.sh: needs root (cgroup files, drop_caches)" >&2
    exit 1
fi

bin="${BENCH_BIN:-}"
if [ -z "$bin" ]; then
    cd "$(dirname "$0")/../../.."
    bin=$(cargo bench -p tiervault-chunkindex --bench index --no-run --message-format=json 2>/dev/null |
        sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1)
    [ -x "$bin" ] || { echo "bench-cgroup.sh: could not build the benchmark" >&2; exit 1; }
fi

name="tiervault-idxbench-$$"
cg=""
kind=""
v2_root=""
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
    v2_root=/sys/fs/cgroup
elif [ -f /sys/fs/cgroup/unified/cgroup.controllers ]; then
    v2_root=/sys/fs/cgroup/unified
fi
if [ -n "$v2_root" ] && grep -qw memory "$v2_root/cgroup.controllers"; then
    echo "+memory" >"$v2_root/cgroup.subtree_control" 2>/dev/null || true
    cg="$v2_root/$name"
    mkdir "$cg"
    echo "$limit" >"$cg/memory.max"
    echo 0 >"$cg/memory.swap.max" 2>/dev/null || true
    kind="cgroup v2 memory.max=$limit"
    peak_file="$cg/memory.peak"
elif [ -d /sys/fs/cgroup/memory ]; then
    cg="/sys/fs/cgroup/memory/$name"
    mkdir "$cg"
    echo "$limit" >"$cg/memory.limit_in_bytes"
    kind="cgroup v1 memory.limit_in_bytes=$limit"
    peak_file="$cg/memory.max_usage_in_bytes"
else
    echo "bench-cgroup.sh: no memory cgroup found; running unconfined" >&2
    kind="none (unconfined)"
    peak_file=""
fi

cleanup() {
    if [ -n "$cg" ]; then
        # Move this shell out again, then remove the group.
        if [ -f "$cg/memory.max" ]; then
            echo $$ >"$v2_root/cgroup.procs" 2>/dev/null || true
        else
            echo $$ >/sys/fs/cgroup/memory/cgroup.procs 2>/dev/null || true
        fi
        rmdir "$cg" 2>/dev/null || true
    fi
}
trap cleanup EXIT

echo "memory limit: $kind (budget ${budget_mib} MiB + allowance ${allowance_mib} MiB)" >&2
sync
echo 3 >/proc/sys/vm/drop_caches
status=0
(
    [ -n "$cg" ] && echo "$BASHPID" >"$cg/cgroup.procs"
    exec "$bin" "$@" --drop-caches
) || status=$?
if [ -n "$peak_file" ] && [ -f "$peak_file" ]; then
    echo "cgroup peak usage (RSS + page cache): $(cat "$peak_file") bytes" >&2
fi
if [ -f "$cg/memory.failcnt" ]; then
    echo "cgroup limit hits (failcnt): $(cat "$cg/memory.failcnt")" >&2
fi
exit $status
