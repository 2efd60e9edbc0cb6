#!/usr/bin/env bash
# Build the attest guest (x86_64-unknown-none, release) and put the ELF where vmseal.toml
# expects it: images/attest/out/attest.elf (out/ is gitignored).
# Not --locked: Cargo.lock is committed, and a new dependency of policies (a path dependency
# maintained elsewhere) is added to it rather than failing the build.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$here"
echo "+ cargo build --release (images/attest)" >&2
cargo build --release
mkdir -p out
install -m 0644 target/x86_64-unknown-none/release/attest out/attest.elf.tmp
mv -f out/attest.elf.tmp out/attest.elf
echo "images/attest/out/attest.elf: $(sha256sum out/attest.elf | cut -d' ' -f1)" >&2
