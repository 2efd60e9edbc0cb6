#!/usr/bin/env bash
# Throwaway dev helper (the real composer is `vmseal build`): add payload sections to the stub.
# Usage: dev/mkapp.sh STUB.efi OUT.efi .name=FILE [.name=FILE ...]
# Each section goes after the last one, at the next 4 KiB VMA, flagged data,readonly.
set -euo pipefail
stub=$1; out=$2; shift 2
base=$(objdump -p "$stub" | awk '/^ImageBase/ {print "0x"$2}')
size=$(objdump -p "$stub" | awk '/^SizeOfImage/ {print "0x"$2}')
vma=$(( base + ((size + 0xfff) & ~0xfff) ))
args=()
for spec in "$@"; do
    name=${spec%%=*}; file=${spec#*=}
    args+=(--add-section "$name=$file" --set-section-flags "$name=data,readonly"
           --change-section-vma "$name=$(printf '0x%x' "$vma")")
    len=$(stat -c %s "$file")
    vma=$(( vma + ((len + 0xfff) & ~0xfff) ))
done
objcopy "${args[@]}" "$stub" "$out"
objdump -h "$out" | sed -n '/^Idx/,$p'
