#!/usr/bin/env bash
# Benchmark `vmseal build` on the path its users take, against what they would do without it.
# The appliance: Debian's cloud kernel (images/linux) and an initrd of PAYLOAD MiB of
# incompressible bytes, with org keys (`vmseal keys new`). Four contenders, run alternately
# (paired: each round runs all four, in an order that alternates), medians over RUNS rounds:
#   (s) vmseal build, signed, with its prediction (NAME.pcrs.json: every PCR, four banks)
#   (c) the classic pipeline: objcopy on systemd-stub (linuxx64.efi.stub) + sbsign (osslsigncode
#       where sbsign fails: PEs of 2 GiB and more) +
#       truncate + sgdisk + mkfs.fat + mmd + mcopy + dd + systemd-measure calculate
#       (PCR 11, sha256: its default bank)
#   (u) vmseal build --unsigned --no-predict
#   (f) the floor: cp of the inputs + openssl dgst -sha256 of them
# Peak memory is the largest resident set of any process of a run (/usr/bin/time -f %M).
# CPU seconds (user + sys of every process and thread) are printed too, and from them the
# bound the machine's core count puts on each ratio: a vmseal run's CPU seconds spread
# perfectly over every core, against the other contender's wall-clock time.
# Targets (issue 17): c/s >= 4 and peak(s) <= 64 MiB for every payload; u/f <= 1.6.
# Prints PASS/FAIL per target and exits 1 when one fails (not run by scripts/test.sh: timing
# belongs here, never in the test suite).
# Usage: scripts/bench-build.sh [RUNS] [--2g | --2g-only]   (RUNS default 5; --2g adds a 2 GiB
# payload, --2g-only runs only that one; it needs ~10 GiB free under $TMPDIR, e.g. /dev/shm)
# A kernel: $VMSEAL_BENCH_KERNEL, else images/linux/out/vmlinuz (images/linux/build.sh makes it).
set -euo pipefail
runs=5
sizes=(256)
for a in "$@"; do
    case $a in
    --2g) sizes+=(2048) ;;
    --2g-only) sizes=(2048) ;;
    [0-9]*) runs=$a ;;
    *) echo "usage: scripts/bench-build.sh [RUNS] [--2g | --2g-only]" >&2; exit 2 ;;
    esac
done
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
run() { echo "+ $*" >&2; "$@"; }

need=()
for t in objcopy:binutils mkfs.fat:dosfstools mcopy:mtools sgdisk:gdisk openssl:openssl \
    sbsign:sbsigntool osslsigncode:osslsigncode /usr/bin/time:time /usr/lib/systemd/systemd-measure:systemd \
    /usr/lib/systemd/boot/efi/linuxx64.efi.stub:systemd-boot-efi; do
    command -v "${t%%:*}" >/dev/null 2>&1 || [ -e "${t%%:*}" ] || need+=("${t##*:}")
done
if [ ${#need[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    run apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null ||
        { run apt-get update -q >/dev/null && run apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null; }
fi
kernel=${VMSEAL_BENCH_KERNEL:-$root/images/linux/out/vmlinuz}
if [ ! -s "$kernel" ]; then
    run bash "$root/images/linux/build.sh" >&2
    kernel=$root/images/linux/out/vmlinuz
fi

run cargo build --release -q -p vmseal --manifest-path "$root/Cargo.toml"
vmseal="$root/target/release/vmseal"
systemd_stub=/usr/lib/systemd/boot/efi/linuxx64.efi.stub
measure=/usr/lib/systemd/systemd-measure

work=$(mktemp -d "${TMPDIR:-/tmp}/vmseal-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"
cp "$kernel" vmlinuz
"$vmseal" keys new --out keys --org "Bench" -q >/dev/null
printf 'console=ttyS0 quiet' >cmdline
cp "$root/images/linux/os-release" os-release
cat >vmseal.toml <<EOF
[image]
name = "bench"
version = "1"

[guest]
kernel = "vmlinuz"
initrd = "initrd.img"
os-release = "os-release"
cmdline = "console=ttyS0 quiet"
memory = "512MiB"
console = "on"

[signing]
keys = "keys"
EOF

# One timed run: "seconds peak-KiB" of the command, after writing back the previous run's
# dirty pages (every contender writes the payload several times: not charged to the next).
timed() {
    sync
    /usr/bin/time -o t.out -f '%e %M %U %S' "$@" >/dev/null 2>t.err || { cat t.err >&2; exit 1; }
}
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
maxof() { sort -g | tail -n 1; }

# The classic pipeline into classic.sh, signing with the command $1 ($img_size, $esp_sectors).
classic_sh() {
    cat >classic.sh <<EOF
set -euo pipefail
rm -rf classic && mkdir classic
objcopy \\
    --add-section .osrel=os-release --change-section-vma .osrel=0x20000 \\
    --add-section .cmdline=cmdline --change-section-vma .cmdline=0x30000 \\
    --add-section .linux=vmlinuz --change-section-vma .linux=0x2000000 \\
    --add-section .initrd=initrd.img --change-section-vma .initrd=0x3000000 \\
    $systemd_stub classic/unsigned.efi
$1 >/dev/null 2>&1
truncate -s $img_size classic/bench.img
sgdisk -q -n 1:2048:$((2048 + esp_sectors - 1)) -t 1:ef00 -c 1:"EFI System Partition" classic/bench.img >/dev/null
truncate -s $((esp_sectors * 512)) classic/esp.img
mkfs.fat -F 32 -i 5EA10001 -n VMSEAL classic/esp.img >/dev/null
mmd -i classic/esp.img ::/EFI ::/EFI/BOOT
mcopy -i classic/esp.img classic/bench.efi ::/EFI/BOOT/BOOTX64.EFI
dd if=classic/esp.img of=classic/bench.img bs=1M seek=1 conv=notrunc,sparse status=none
$measure calculate --linux=vmlinuz --osrel=os-release --cmdline=cmdline --initrd=initrd.img --bank=sha256 >classic/pcr11.txt
EOF
}

fail=0
verdict() { # name ok? detail
    if [ "$2" = 1 ]; then echo "PASS  $1  ($3)"; else echo "FAIL  $1  ($3)"; fail=1; fi
}

echo "vmseal bench-build: $(nproc) CPUs, $runs paired rounds; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for mib in "${sizes[@]}"; do
    rm -rf initrd.img out classic copy
    set +o pipefail # openssl ends on SIGPIPE when head has enough
    openssl enc -aes-128-ctr -nosalt -K 000102030405060708090a0b0c0d0e0f \
        -iv 00000000000000000000000000000000 </dev/zero 2>/dev/null | head -c $((mib << 20)) >initrd.img
    set -o pipefail
    [ "$(stat -c %s initrd.img)" -eq $((mib << 20)) ] || { echo "payload generation failed" >&2; exit 1; }
    # The classic pipeline's image has the size vmseal chose (the smallest that fits).
    "$vmseal" -q build vmseal.toml --out out --no-predict >/dev/null
    img_size=$(stat -c %s out/bench.img)
    rm -rf out
    esp_sectors=$(( img_size / 512 - 2048 - 2048 ))
    # sbsign (sbsigntools 0.9.4) crashes on PEs of 2 GiB and more: then osslsigncode signs.
    classic_sh "sbsign --key keys/db.key --cert keys/db.crt --output classic/bench.efi classic/unsigned.efi"
    if ! bash classic.sh >/dev/null 2>&1; then
        classic_sh "osslsigncode sign -certs keys/db.crt -key keys/db.key -h sha256 -in classic/unsigned.efi -out classic/bench.efi"
        echo "note: sbsign fails on the ${mib} MiB payload's PE; the classic pipeline signs with osslsigncode"
        bash classic.sh >/dev/null 2>&1
    fi
    rm -rf classic
    cat >floor.sh <<'EOF'
set -euo pipefail
rm -rf copy && mkdir copy
cp vmlinuz initrd.img copy/
openssl dgst -sha256 vmlinuz initrd.img >/dev/null
EOF
    cat initrd.img vmlinuz >/dev/null # the page cache holds the inputs for every contender
    s=(); c=(); u=(); f=(); sm=(); cm=(); um=(); fm=(); pairs=(); scpu=(); ccpu=(); ucpu=(); fcpu=()
    for i in $(seq "$runs"); do
        # Each run's outputs are removed after it (a 2 GiB payload's classic run writes 8 GiB).
        one_s() { timed "$vmseal" -q build vmseal.toml --out out; read -r t m us sy <t.out; s+=("$t"); sm+=("$m"); scpu+=("$(echo "$us + $sy" | bc)"); rm -rf out; }
        one_c() { timed bash classic.sh; read -r t m us sy <t.out; c+=("$t"); cm+=("$m"); ccpu+=("$(echo "$us + $sy" | bc)"); rm -rf classic; }
        one_u() { timed "$vmseal" -q build vmseal.toml --out out --unsigned --no-predict; read -r t m us sy <t.out; u+=("$t"); um+=("$m"); ucpu+=("$(echo "$us + $sy" | bc)"); rm -rf out; }
        one_f() { timed bash floor.sh; read -r t m us sy <t.out; f+=("$t"); fm+=("$m"); fcpu+=("$(echo "$us + $sy" | bc)"); rm -rf copy; }
        if [ $((i % 2)) = 1 ]; then one_c; one_s; one_f; one_u; else one_s; one_c; one_u; one_f; fi
        pairs+=("$(echo "${c[-1]} / ${s[-1]}" | bc -l)")
    done
    ms=$(printf '%s\n' "${s[@]}" | median); mc=$(printf '%s\n' "${c[@]}" | median)
    mu=$(printf '%s\n' "${u[@]}" | median); mf=$(printf '%s\n' "${f[@]}" | median)
    ps=$(printf '%s\n' "${sm[@]}" | maxof); pc=$(printf '%s\n' "${cm[@]}" | maxof)
    pu=$(printf '%s\n' "${um[@]}" | maxof); pf=$(printf '%s\n' "${fm[@]}" | maxof)
    rc=$(echo "$mc / $ms" | bc -l); rp=$(printf '%s\n' "${pairs[@]}" | median)
    ru=$(echo "$mu / $mf" | bc -l)
    echo
    printf 'payload: %d MiB initrd + %d KiB kernel, image %d MiB; medians of %d rounds; peak = largest RSS of any run\n' \
        "$mib" $(( $(stat -c %s vmlinuz) >> 10 )) $((img_size >> 20)) "$runs"
    printf '(s) vmseal build, signed, predicted        %7.3f s  peak %5d MiB  runs: %s\n' "$ms" $((ps >> 10)) "${s[*]}"
    printf '(c) objcopy+sbsign+sgdisk+mkfs.fat+mcopy+  %7.3f s  peak %5d MiB  runs: %s\n' "$mc" $((pc >> 10)) "${c[*]}"
    printf '    dd+systemd-measure\n'
    printf '(u) vmseal build --unsigned --no-predict   %7.3f s  peak %5d MiB  runs: %s\n' "$mu" $((pu >> 10)) "${u[*]}"
    printf '(f) cp + openssl dgst -sha256              %7.3f s  peak %5d MiB  runs: %s\n' "$mf" $((pf >> 10)) "${f[*]}"
    printf 'c/s = %.2f (median of the paired ratios: %.2f)   u/f = %.2f\n' "$rc" "$rp" "$ru"
    # CPU time (user + sys, every process and thread): what the wall-clock ratios come to on
    # a busy machine, where a second core is not free.
    cs=$(printf '%s\n' "${scpu[@]}" | median); cc=$(printf '%s\n' "${ccpu[@]}" | median)
    cu=$(printf '%s\n' "${ucpu[@]}" | median); cf=$(printf '%s\n' "${fcpu[@]}" | median)
    printf 'CPU seconds (medians): s %.2f  c %.2f  u %.2f  f %.2f   c/s = %.2f   u/f = %.2f\n' \
        "$cs" "$cc" "$cu" "$cf" "$(echo "$cc / $cs" | bc -l)" "$(echo "$cu / $cf" | bc -l)"
    # The bound a machine of this size puts on the wall-clock ratios: the work each vmseal
    # run did (its CPU seconds) spread perfectly over every core, against the contender's time.
    n=$(nproc)
    printf 'bounds on %d cores (CPU seconds / cores, perfectly split): c/s <= %.2f   u/f >= %.2f\n' \
        "$n" "$(echo "$mc / ($cs / $n)" | bc -l)" "$(echo "($cu / $n) / $mf" | bc -l)"
    verdict "$mib MiB: signed build with prediction >= 4x faster than the classic pipeline" \
        "$(echo "$rc >= 4" | bc -l)" "c/s = $(printf %.2f "$rc")"
    verdict "$mib MiB: signed build peak memory <= 64 MiB" \
        "$(( ps <= 64 << 10 ? 1 : 0 ))" "$((ps >> 10)) MiB"
    verdict "$mib MiB: unsigned build without prediction <= 1.6x cp + sha256" \
        "$(echo "$ru <= 1.6" | bc -l)" "u/f = $(printf %.2f "$ru")"
    rm -rf initrd.img
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
exit "$fail"
