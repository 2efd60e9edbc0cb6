#!/usr/bin/env bash
# Build the redteam guest (images/redteam/out/redteam.elf) and the attestation service it runs beside
# (images/attest/out/attest.elf).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bash "$here/../build-partition.sh" redteam
bash "$here/../build-partition.sh" attest
