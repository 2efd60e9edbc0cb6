//! Shared helpers for vmseal's end-to-end tests (QEMU + OVMF + swtpm).
