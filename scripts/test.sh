#!/usr/bin/env bash
# Run every test of vmseal: format, lints (host, UEFI stub, guest), docs, unit, integration
# and end-to-end boot tests (QEMU + OVMF + swtpm). Installs prerequisites first.
# Usage: bash scripts/test.sh
set -euo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$top"
started=$(date +%s)
results=$(mktemp)
trap 'rm -f "$results"' EXIT
step() { printf '\n== %s (%ss)\n' "$*" "$(( $(date +%s) - started ))" >&2; }
run() { echo "+ $*" >&2; "$@"; }

step "setup"
run bash scripts/setup.sh

step "format"
run cargo fmt --all --check
# The stub, every no_std partition image, the Linux appliance's agent and the fuzz targets
# (built by cargo-fuzz on nightly, not here) are cargo workspaces of their own.
guests=$(for d in images/*/; do [ -f "$d/Cargo.toml" ] && echo "${d%/}"; done)
for dir in stub-hypervisor $guests fuzz; do
    (cd "$dir" && run cargo fmt --check)
done

step "clippy: host workspace"
run cargo clippy --workspace --all-targets -- -D warnings
if [ -f stub-hypervisor/Cargo.toml ]; then
    step "clippy: UEFI stub (x86_64-unknown-uefi)"
    (cd stub-hypervisor && run cargo clippy --release -- -D warnings)
fi
for dir in $guests; do
    step "clippy: $dir (the target of its .cargo/config.toml)"
    (cd "$dir" && run cargo clippy --release -- -D warnings)
done

step "docs"
RUSTDOCFLAGS="-D warnings" run cargo doc --workspace --no-deps

if [ -f stub-hypervisor/Cargo.toml ] && grep -q '^\[lib\]' stub-hypervisor/Cargo.toml; then
    step "stub: host unit tests"
    (cd stub-hypervisor && run cargo test --target x86_64-unknown-linux-gnu --lib) 2>&1 | tee -a "$results"
fi

step "tests: unit, integration, end-to-end boots"
run cargo test --workspace 2>&1 | tee -a "$results"

step "all passed"
# One closing line over every cargo test run above (the last runner's own line is a doc-test
# run that may well have 0 tests).
awk '/^test result: / { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' "$results"
