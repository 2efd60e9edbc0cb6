#!/usr/bin/env bash
# Build the inputs of vmseal's example Linux appliance (images/linux/vmseal.toml):
#   out/vmlinuz     Debian's linux-image-cloud-amd64 kernel (EFI stub), as shipped
#   out/initrd.img  busybox (Debian busybox-static) + ./init + the kernel modules it needs +
#                   the attestation agent (images/agent, built here with cargo for
#                   x86_64-unknown-linux-musl), a deterministic gzip'ed cpio newc archive
# Downloads go to cache/ (gitignored) with `apt-get download`; nothing downloaded is committed.
# Same cache, same bytes: file order sorted, mtimes 0, owners root, gzip -n.
# Needs root for apt-get install of missing tools (scripts/setup.sh has run `apt-get update`).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$here"
run() { echo "+ $*" >&2; "$@"; }

need=()
for tool in cpio:cpio depmod:kmod dpkg-deb:dpkg gzip:gzip xz:xz-utils; do
    command -v "${tool%%:*}" >/dev/null 2>&1 || need+=("${tool##*:}")
done
if [ ${#need[@]} -gt 0 ]; then
    run env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}"
fi

mkdir -p cache out
# The metapackage names the current ABI's image package; download that one.
kernel_package() {
    apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ { print $2; exit }'
}
kpkg=$(kernel_package)
if [ -z "$kpkg" ]; then # package lists missing or stale
    run apt-get update -q >/dev/null
    kpkg=$(kernel_package)
fi
[ -n "$kpkg" ] || { echo "images/linux: apt-cache knows no linux-image-cloud-amd64 (is a Debian 12 mirror configured?)" >&2; exit 2; }
fetch() { # package -> path of its .deb in cache/
    local deb
    deb=$(ls cache/"$1"_*.deb 2>/dev/null | sort | tail -n 1 || true)
    if [ -z "$deb" ]; then
        (cd cache && run apt-get download -q "$1" >&2)
        deb=$(ls cache/"$1"_*.deb | sort | tail -n 1)
    fi
    echo "$deb"
}
kdeb=$(fetch "$kpkg")
bdeb=$(fetch busybox-static)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
run dpkg-deb -x "$kdeb" "$work/k"
run dpkg-deb -x "$bdeb" "$work/b"
vmlinuz=$(ls "$work"/k/boot/vmlinuz-* | head -n 1)
kver=${vmlinuz##*/vmlinuz-}
config="$work/k/boot/config-$kver"
moddir="$work/k/lib/modules/$kver"
[ -d "$moddir" ] || moddir="$work/k/usr/lib/modules/$kver"

# Root of the initrd.
root="$work/root"
mkdir -p "$root"/{bin,dev,etc,proc,sys,run,tmp,lib/modules}
install -m 0755 "$work/b/bin/busybox" "$root/bin/busybox"
install -m 0755 init "$root/init"
mknod -m 0600 "$root/dev/console" c 5 1 2>/dev/null || true

# Drivers: the TPM (TIS) stack and efivarfs (Secure Boot state), loaded at every boot
# (etc/vmseal-modules); virtio-net for the attestation agent, loaded only when the command
# line asks for it (etc/vmseal-net-modules). Built-in (=y) needs nothing; as modules (=m), copy
# each with its dependencies, listed dependencies-first for insmod.
echo "images/linux: kernel $kver: $(grep -E '^CONFIG_(TCG_TPM|TCG_TIS_CORE|TCG_TIS|EFIVAR_FS|VIRTIO_PCI|VIRTIO_NET)=' "$config" | tr '\n' ' ')" >&2
: > "$root/etc/vmseal-modules"
: > "$root/etc/vmseal-net-modules"
if grep -qE '^CONFIG_(TCG_TPM|TCG_TIS_CORE|TCG_TIS|EFIVAR_FS|VIRTIO_PCI|VIRTIO_NET)=m' "$config"; then
    run depmod -b "$work/k" "$kver" 2>/dev/null || run depmod -b "$work/k/usr" "$kver"
    declare -A seen=()
    add() { # list file, relative module path from modules.dep -> append deps first, then itself
        local list=$1 rel=$2 dep
        [ -n "${seen[$rel]:-}" ] && return 0
        seen[$rel]=1
        for dep in $(awk -F': ' -v m="$rel" '$1 == m { print $2 }' "$moddir/modules.dep" | tr ' ' '\n' | tac); do
            add "$list" "$dep"
        done
        local out=${rel%.xz}
        mkdir -p "$root/lib/modules/$(dirname "$out")"
        case "$rel" in
            *.ko.xz) xz -dc "$moddir/$rel" > "$root/lib/modules/$out" ;;
            *) cp "$moddir/$rel" "$root/lib/modules/$out" ;;
        esac
        echo "$out" >> "$root/etc/$list"
    }
    module() { # name -> its modules.dep path
        awk -F: -v m="$1" '{ n = $1; sub(/.*\//, "", n); sub(/\.ko(\.xz)?$/, "", n); gsub(/-/, "_", n) } n == m { print $1; exit }' "$moddir/modules.dep"
    }
    for m in tpm tpm_tis_core tpm_tis efivarfs; do
        rel=$(module "$m")
        if [ -n "$rel" ]; then add vmseal-modules "$rel"; fi
    done
    for m in virtio_pci virtio_net; do
        rel=$(module "$m")
        if [ -n "$rel" ]; then add vmseal-net-modules "$rel"; fi
    done
fi
echo "images/linux: network modules in initrd: $(tr '\n' ' ' < "$root/etc/vmseal-net-modules")" >&2

# The attestation agent (images/agent): a static musl binary, built with paths remapped so
# that the bytes do not depend on where the checkout or the cargo home is.
repo=$(cd "$here/../.." && pwd)
cargo_home=${CARGO_HOME:-$HOME/.cargo}
(cd "$here/../agent" && RUSTFLAGS="-C target-feature=+crt-static --remap-path-prefix=$repo=/vmseal --remap-path-prefix=$cargo_home=/cargo" \
    run cargo build --release --locked -q)
install -m 0755 "$here/../agent/target/x86_64-unknown-linux-musl/release/vmseal-agent" "$root/bin/vmseal-agent"
echo "images/linux: modules in initrd: $(tr '\n' ' ' < "$root/etc/vmseal-modules")" >&2

# Deterministic archive: sorted names, mtime 0, root-owned, newc, gzip without name/time.
find "$root" -exec touch -h -d @0 {} +
(cd "$root" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet --reproducible -o -H newc -R 0:0) | gzip -9 -n > out/initrd.img.tmp
mv -f out/initrd.img.tmp out/initrd.img
install -m 0644 "$vmlinuz" out/vmlinuz.tmp
mv -f out/vmlinuz.tmp out/vmlinuz
echo "images/linux: out/vmlinuz ($kver) $(sha256sum out/vmlinuz | cut -d' ' -f1)" >&2
echo "images/linux: out/initrd.img $(stat -c %s out/initrd.img) bytes $(sha256sum out/initrd.img | cut -d' ' -f1)" >&2
