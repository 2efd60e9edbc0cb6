#!/usr/bin/env bash
# Build the attestation service (images/attest/out/attest.elf).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bash "$here/../build-partition.sh" attest
