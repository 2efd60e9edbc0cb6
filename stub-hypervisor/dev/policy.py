#!/usr/bin/env python3
"""Throwaway: encode a version-1 `.vmseal` launch policy (layout: policies/src/launch.rs tests).
Usage: dev/policy.py OUT KIND(elf|linux) GUEST_MEMORY_BYTES [N_SERVICES]"""
import struct, sys

def s(x):
    b = x.encode()
    return struct.pack('<I', len(b)) + b

def part(name, kind, section, memory, devices=0):
    return s(name) + struct.pack('<I', kind) + s(section) + struct.pack('<QI', memory, devices)

out, kind, mem = sys.argv[1], sys.argv[2], int(sys.argv[3], 0)
nsvc = int(sys.argv[4]) if len(sys.argv) > 4 else 0
k, sec = (1, '.guest') if kind == 'elf' else (2, '.linux')
b = b'VMSEALPL' + struct.pack('<I', 1) + s('devtest') + s('0.0.0') + part('devtest', k, sec, mem)
b += struct.pack('<I', nsvc) + b''.join(part(f'svc{i}', 1, f'.svc{i}', 8 << 20) for i in range(nsvc))
b += struct.pack('<I', 1)
open(out, 'wb').write(b)
