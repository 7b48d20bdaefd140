#!/usr/bin/env bash
# Fuzzes the wire decoders for FUZZ_SECONDS (default 60). Installs cargo-fuzz when missing.
set -euo pipefail
cd "$(dirname "$0")"

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install --locked cargo-fuzz
fi

# -s none: sanitizers need a nightly compiler; safe Rust needs no ASan, and the target's own
# assertions plus the overflow checks that -a (debug assertions) turns on do the checking.
exec cargo fuzz run wire_decode -s none -a -- -max_total_time="${FUZZ_SECONDS:-60}"
