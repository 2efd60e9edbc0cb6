#!/usr/bin/env bash
# Install what vmseal's build, tests and demo need on a fresh Debian 12 machine (as root).
# Idempotent: installs only what is missing; `apt-get update` runs at most once per machine
# (marker in /var/lib/vmseal) unless a package is missing from the lists.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
toolchain=1.95.0
run() { echo "+ $*" >&2; "$@"; }

packages=(
    qemu-system-x86 ovmf swtpm swtpm-tools tpm2-tools sbsigntool osslsigncode
    dosfstools mtools gdisk binutils cpio kmod xz-utils python3-pip ca-certificates
    systemd systemd-boot-efi efitools qemu-utils softhsm2 opensc man-db groff-base curl
)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
marker=/var/lib/vmseal/apt-updated
if [ ! -e "$marker" ]; then
    run apt-get update -q >/dev/null
    mkdir -p "$(dirname "$marker")" && touch "$marker"
fi
if [ ${#missing[@]} -gt 0 ]; then
    if ! run apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null; then
        run apt-get update -q >/dev/null
        run apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
    fi
fi

if command -v rustup >/dev/null 2>&1; then
    rustup toolchain list | grep -q "^$toolchain" ||
        run rustup toolchain install "$toolchain" --profile minimal
    installed=$(rustup target list --installed --toolchain "$toolchain" 2>/dev/null || true)
    for t in x86_64-unknown-uefi x86_64-unknown-none x86_64-unknown-linux-musl; do
        grep -qx "$t" <<<"$installed" || run rustup target add --toolchain "$toolchain" "$t"
    done
    components=$(rustup component list --installed --toolchain "$toolchain" 2>/dev/null || true)
    for c in rustfmt clippy; do
        grep -q "^$c" <<<"$components" || run rustup component add --toolchain "$toolchain" "$c"
    done
else
    echo "setup: rustup not found; install Rust $toolchain with rustup first" >&2
    exit 2
fi

# virt-firmware (virt-fw-vars): an independent reader of OVMF variable stores.
if ! command -v virt-fw-vars >/dev/null 2>&1; then
    run pip install -q --break-system-packages --root-user-action=ignore virt-firmware >/dev/null \
        || run pip install -q virt-firmware >/dev/null
fi
command -v virt-fw-vars >/dev/null 2>&1 || { echo "setup: virt-fw-vars missing after pip install virt-firmware" >&2; exit 1; }
# pefile: an independent PE parser (the tests compare the PE checksum with its own).
if ! python3 -c 'import pefile' >/dev/null 2>&1; then
    run python3 -m pip install -q --break-system-packages --root-user-action=ignore pefile >/dev/null \
        || run python3 -m pip install -q pefile >/dev/null
fi
python3 -c 'import pefile' >/dev/null 2>&1 || { echo "setup: python3 cannot import pefile after pip install pefile" >&2; exit 1; }
# uefivars (python-uefivars, AWS's own tool): decodes the AWS --uefi-data blob `vmseal export` writes.
if ! command -v uefivars >/dev/null 2>&1; then
    run python3 -m pip install -q --break-system-packages --root-user-action=ignore uefivars >/dev/null \
        || run python3 -m pip install -q uefivars >/dev/null
fi
command -v uefivars >/dev/null 2>&1 || { echo "setup: uefivars missing after pip install uefivars" >&2; exit 1; }
# sev-snp-measure: the reference SEV-SNP launch-digest calculator (the tests compare vmseal's
# `snp` launch digest with it).
if ! python3 -c 'import sevsnpmeasure' >/dev/null 2>&1; then
    run python3 -m pip install -q --break-system-packages --root-user-action=ignore sev-snp-measure >/dev/null \
        || run python3 -m pip install -q sev-snp-measure >/dev/null
fi
python3 -c 'import sevsnpmeasure' >/dev/null 2>&1 || { echo "setup: python3 cannot import sevsnpmeasure after pip install sev-snp-measure" >&2; exit 1; }
echo "setup: ok" >&2
