#!/usr/bin/env bash
# Build the hello guest (images/hello/out/hello.elf) and the attestation service it runs beside
# (images/attest/out/attest.elf).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bash "$here/../build-partition.sh" hello
bash "$here/../build-partition.sh" attest
