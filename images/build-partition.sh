#!/usr/bin/env bash
# Build the partition image images/NAME (a no_std ELF for x86_64-unknown-none, release, its
# own cargo workspace) and put the ELF where its vmseal.toml expects it: images/NAME/out/NAME.elf
# (out/ is gitignored). Usage: images/build-partition.sh NAME
# Not --locked: each Cargo.lock is committed, and a new dependency of policies (a path
# dependency maintained elsewhere) is added to it rather than failing the build.
set -euo pipefail
name=${1:?usage: build-partition.sh NAME}
dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/$name" && pwd)
cd "$dir"
echo "+ cargo build --release (images/$name)" >&2
cargo build --release
mkdir -p out
# Tests build concurrently: a temporary name of our own, then an atomic rename.
tmp=$(mktemp "out/$name.elf.XXXXXX")
install -m 0644 "target/x86_64-unknown-none/release/$name" "$tmp"
mv -f "$tmp" "out/$name.elf"
echo "images/$name/out/$name.elf: $(sha256sum "out/$name.elf" | cut -d' ' -f1)" >&2
