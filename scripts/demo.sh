#!/usr/bin/env bash
# vmseal's main job on a built-in example: build the sample appliance, boot it in QEMU + OVMF
# + swtpm, and check what it measured against what was built.
# Usage: bash scripts/demo.sh [hello|linux]     (default: hello; outputs under out/demo-NAME/)
set -euo pipefail
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$top"
name=${1:-hello}
case "$name" in
    hello | linux) ;;
    *) echo "usage: bash scripts/demo.sh [hello|linux]" >&2; exit 2 ;;
esac
run() { echo "+ $*" >&2; "$@"; }
say() { printf '\n== %s\n' "$*" >&2; }

say "1. prerequisites"
run bash scripts/setup.sh

say "2. the guest payload (images/$name)"
run bash "images/$name/build.sh"

say "3. vmseal build"
run cargo build --release -p vmseal
vmseal=$top/target/release/vmseal
out=$top/out/demo-$name
rm -rf "$out"
run "$vmseal" build "images/$name/vmseal.toml" --out "$out"
ls -l "$out" >&2

say "4. boot in QEMU + OVMF (Secure Boot off) + swtpm"
booted=0
run "$vmseal" boot "$out/$name.img" --record "$out/run" && booted=1
python3 -c 'import json, sys; v = json.load(open(sys.argv[1])); print("verdict: %s (%s), %.1f s" % (v["verdict"], v["reason"], v["elapsed_secs"]))' \
    "$out/run/verdict.json" >&2 || true
grep -a -E 'hello from vmseal guest|vmseal-attest|attest: ready|vmseal-linux: booted|vmseal-secureboot' "$out/run/console.log" >&2 || true

say "5. what was measured vs. what was built"
# The prediction vmseal build wrote (from the image alone) against what the firmware, the stub
# and the TPM reported from inside the VM; exit 1 names every PCR and event that differs.
run "$vmseal" pcr diff "$out/$name.pcrs.json" "$out/run"
[ "$booted" = 1 ] || { echo "demo: the appliance did not boot (see $out/run/verdict.json)" >&2; exit 1; }
say "done: record in $out/run"
