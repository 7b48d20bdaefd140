#!/bin/bash
# A/B of two vaultctl builds on one tree, alternating so machine noise hits both alike:
# a first backup into a fresh vault, then a `--force-reread` backup of the same tree (every
# chunk re-read, hashed and looked up in the index, none stored). Prints seconds per step;
# quote medians.
#
#   tests/benches/ab-backup.sh OLD_VAULTCTL NEW_VAULTCTL SOURCE_TREE [WORK_DIR] [ROUNDS]
#
# e.g. build the old commit in a worktree with CARGO_TARGET_DIR=/tmp/target-old, the current
# one with CARGO_TARGET_DIR=/tmp/target-bench, and use `vaultctl bench`'s standard tree
# (bench-data/data/standard/tree).
set -euo pipefail
OLD=${1:?old vaultctl binary}
NEW=${2:?new vaultctl binary}
SRC=${3:?source tree}
W=${4:-/tmp/ab-backup}
ROUNDS=${5:-5}
for b in "$OLD" "$NEW"; do [ -x "$b" ] || { echo "not an executable: $b" >&2; exit 1; }; done
[ -d "$SRC" ] || { echo "not a directory: $SRC" >&2; exit 1; }
rm -rf "$W"; mkdir -p "$W"
for round in $(seq "$ROUNDS"); do
  for which in old new; do
    BIN=$OLD; [ $which = new ] && BIN=$NEW
    rm -rf "$W/vault" "$W/key"
    "$BIN" --vault "$W/vault" --key-file "$W/key" --quiet init >/dev/null
    s=$(date +%s.%N)
    "$BIN" --vault "$W/vault" --key-file "$W/key" --quiet backup "$SRC" >/dev/null
    m=$(date +%s.%N)
    "$BIN" --vault "$W/vault" --key-file "$W/key" --quiet backup --force-reread "$SRC" >/dev/null
    e=$(date +%s.%N)
    echo "round $round $which first $(echo "$m - $s" | bc) reread $(echo "$e - $m" | bc)"
  done
done
