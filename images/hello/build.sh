#!/usr/bin/env bash
# Build the hello guest (x86_64-unknown-none, release) and put the ELF where vmseal.toml
# expects it: images/hello/out/hello.elf (out/ is gitignored).
# Not --locked: Cargo.lock is committed, and a new dependency of policies (a path dependency
# maintained elsewhere) is added to it rather than failing the build.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$here"
echo "+ cargo build --release (images/hello)" >&2
cargo build --release
mkdir -p out
install -m 0644 target/x86_64-unknown-none/release/hello out/hello.elf.tmp
mv -f out/hello.elf.tmp out/hello.elf
echo "images/hello/out/hello.elf: $(sha256sum out/hello.elf | cut -d' ' -f1)" >&2
# The attestation service this appliance runs beside the guest.
bash "$here/../attest/build.sh"
