#!/usr/bin/env bash
# Benchmark `vmseal pcr predict` (all four banks) on an image with a 512 MiB payload against
#   (a) `openssl dgst` for sha1, sha256, sha384 and sha512 run one after another over the
#       payload's bytes.
# Prints the best of $RUNS runs of each and the ratio b/a from the same run; the requirement
# is b/a <= 1. Usage: scripts/bench-predict.sh [RUNS]   (default 3)
set -euo pipefail
runs=${1:-3}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
run() { echo "+ $*" >&2; "$@"; }

command -v openssl >/dev/null 2>&1 || {
    export DEBIAN_FRONTEND=noninteractive
    run apt-get install -y -q --no-install-recommends openssl >/dev/null
}
run cargo build --release -q -p vmseal --manifest-path "$root/Cargo.toml"
vmseal="$root/target/release/vmseal"

work=$(mktemp -d "${TMPDIR:-/tmp}/vmseal-bench-predict.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"

# The payload: a tiny valid ELF64 executable followed by 512 MiB of deterministic,
# incompressible bytes (AES-CTR of zeros with a fixed key).
"$vmseal" init starter >/dev/null 2>&1
size=$((512 << 20))
set +o pipefail # openssl ends on SIGPIPE when head has enough
{
    cat starter/guest.elf
    openssl enc -aes-128-ctr -nosalt -K 000102030405060708090a0b0c0d0e0f \
        -iv 00000000000000000000000000000000 </dev/zero 2>/dev/null | head -c "$size"
} >payload.elf
set -o pipefail
cat >vmseal.toml <<TOML
[image]
name = "bench"
version = "1"
size = "576MiB"

[guest]
elf = "payload.elf"
memory = "1GiB"
console = "on"
TOML
"$vmseal" build vmseal.toml --out out --quiet --no-predict >/dev/null
cat payload.elf out/bench.img >/dev/null # warm the page cache for both contenders

now() { date +%s.%N; }
best() { sort -g | head -1; }

four_dgst() {
    local t0; t0=$(now)
    for alg in sha1 sha256 sha384 sha512; do
        openssl dgst "-$alg" payload.elf >/dev/null
    done
    echo "$(now) - $t0" | bc
}

predict() {
    local t0; t0=$(now)
    "$vmseal" pcr predict out/bench.img --json >pcrs.json
    echo "$(now) - $t0" | bc
}

a=(); b=()
for _ in $(seq "$runs"); do
    a+=("$(four_dgst)")
    b+=("$(predict)")
done
ta=$(printf '%s\n' "${a[@]}" | best)
tb=$(printf '%s\n' "${b[@]}" | best)
printf 'payload: %d MiB, image 576 MiB, best of %d runs, %s CPUs\n' $((size >> 20)) "$runs" "$(nproc)"
printf '(a) openssl dgst sha1+sha256+sha384+sha512   %6.3f s   runs: %s\n' "$ta" "${a[*]}"
printf '(b) vmseal pcr predict (4 banks)             %6.3f s   runs: %s\n' "$tb" "${b[*]}"
printf 'b/a = %.2f   (required <= 1)\n' "$(echo "$tb / $ta" | bc -l)"
