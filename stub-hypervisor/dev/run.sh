#!/usr/bin/env bash
# Throwaway dev harness (not the builder): put an EFI binary as \EFI\BOOT\BOOTX64.EFI into a
# FAT ESP inside a GPT disk, boot it once in QEMU + OVMF + swtpm, print COM1 and COM2.
# Usage: dev/run.sh APP.efi WORKDIR [TIMEOUT_SECONDS]
set -euo pipefail
efi=$(realpath "$1"); work=$2; timeout=${3:-150}
rm -rf "$work"; mkdir -p "$work/tpm"
cd "$work"
# ESP: 40 MiB FAT; disk: 1 MiB GPT head + ESP + GPT tail.
truncate -s 40M esp.img
mformat -i esp.img -F ::
mmd -i esp.img ::/EFI ::/EFI/BOOT
mcopy -i esp.img "$efi" ::/EFI/BOOT/BOOTX64.EFI
truncate -s 42M disk.img
sgdisk -o -n 1:2048:+40M -t 1:ef00 disk.img >/dev/null
sgdisk -p disk.img | grep -q EF00
dd if=esp.img of=disk.img bs=512 seek=2048 conv=notrunc status=none
cp /usr/share/OVMF/OVMF_VARS_4M.fd vars.fd
swtpm socket --tpm2 --tpmstate dir="$PWD/tpm" --ctrl type=unixio,path="$PWD/swtpm-sock" \
    --flags startup-clear --terminate &
swtpm_pid=$!
for _ in $(seq 50); do [ -S swtpm-sock ] && break; sleep 0.1; done
# NOTPM=1: boot without a TPM (negative test: the stub must fail closed).
tpm_args=(-chardev socket,id=chrtpm,path="$PWD/swtpm-sock" -tpmdev emulator,id=tpm0,chardev=chrtpm -device tpm-tis,tpmdev=tpm0)
[ "${NOTPM:-}" = 1 ] && tpm_args=()
qemu-system-x86_64 -machine q35,smm=on -accel tcg -nodefaults -m 512M -cpu EPYC \
    -global driver=cfi.pflash01,property=secure,value=on \
    -drive if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd \
    -drive if=pflash,format=raw,unit=1,file=vars.fd \
    ${tpm_args[@]+"${tpm_args[@]}"} \
    -drive if=none,id=disk,format=raw,file=disk.img -device virtio-blk-pci,drive=disk,bootindex=0 \
    -serial file:com1.log -serial file:com2.log -display none -no-reboot &
qemu_pid=$!
# Judge by what was printed: stop at the record's last line (or the timeout).
for _ in $(seq "$timeout"); do
    kill -0 "$qemu_pid" 2>/dev/null || break
    grep -aq -e 'VMSEAL1 end' -e 'VMSEAL1 error' com2.log 2>/dev/null && sleep 2 && break
    sleep 1
done
kill "$qemu_pid" 2>/dev/null || true
wait "$qemu_pid" 2>/dev/null || true
kill "$swtpm_pid" 2>/dev/null || true
wait "$swtpm_pid" 2>/dev/null || true
echo "== COM1"; tr -d '\r' < com1.log | grep -v $'\e' | tail -40 || true
echo "== COM2"; tr -d '\r' < com2.log || true
