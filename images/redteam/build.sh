#!/usr/bin/env bash
# Build the redteam guest (x86_64-unknown-none, release) and put the ELF where vmseal.toml
# expects it: images/redteam/out/redteam.elf (out/ is gitignored).
# Not --locked: Cargo.lock is committed, and a new dependency of policies (a path dependency
# maintained elsewhere) is added to it rather than failing the build.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$here"
echo "+ cargo build --release (images/redteam)" >&2
cargo build --release
mkdir -p out
install -m 0644 target/x86_64-unknown-none/release/redteam out/redteam.elf.tmp
mv -f out/redteam.elf.tmp out/redteam.elf
echo "images/redteam/out/redteam.elf: $(sha256sum out/redteam.elf | cut -d' ' -f1)" >&2
# The attestation service this appliance runs beside the guest.
bash "$here/../attest/build.sh"
