#!/usr/bin/env python3
"""fsx-style integrity check: random writes, reads, truncates, allocations, punched holes,
fsyncs, reopenings and mmap reads of one file, each checked against an in-memory model of
what the file must hold.

    fsx.py FILE OPS SEED [ro]

With `ro`, each reopening first reads the file through a descriptor of its own opened
read-only while no other descriptor of the process writes it (eight random reads checked
against the model): on CephFS such a descriptor may be served from the pool's cache.

Exits 0 after OPS operations without a mismatch; on the first mismatch prints the operation,
the offsets and the last operations, and exits 1. Every call goes through libc (os.pwrite,
os.pread, os.ftruncate, os.fsync, mmap), so under the preload library it takes the
user-level path; an mmap hands its own descriptor over to the kernel (the FUSE path).
"""

import ctypes
import mmap
import os
import random
import sys

FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02
# libc's fallocate as the program's own symbol lookup finds it: under the preload library,
# the library's.
LIBC = ctypes.CDLL(None, use_errno=True)
LIBC.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]

MAX_SIZE = 256 * 1024
MAX_IO = 32 * 1024


def main():
    path, ops, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    ro_phases = sys.argv[4:5] == ["ro"]
    rng = random.Random(seed)
    model = bytearray()
    # Write data: slices of one random pool at random starts (cheap, and no two writes alike).
    pool = rng.randbytes(4 * MAX_IO)
    history = []
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)

    def fail(what):
        print(f"fsx: mismatch after {len(history)} operations: {what}", file=sys.stderr)
        for h in history[-12:]:
            print(f"  {h}", file=sys.stderr)
        sys.exit(1)

    def check(off, got):
        want = bytes(model[off:off + len(got)])
        if got != want:
            first = next(i for i in range(min(len(got), len(want))) if got[i] != want[i]) if got[:len(want)] != want[:len(got)] else min(len(got), len(want))
            # What the same range reads like again, through this descriptor and a new one:
            # tells a lasting wrong byte (stored) from a passing one (a cache, a race).
            def again(d):
                try:
                    return os.pread(d, len(got), off) == want
                except OSError as e:
                    return e.strerror
            reread = [again(fd), again(os.open(path, os.O_RDONLY))]
            fail(f"at offset {off + first}: read {got[first:first + 8].hex()} expected {want[first:first + 8].hex()} (read {len(got)} bytes, model {len(model)}; read again right: {reread[0]}, through a new descriptor: {reread[1]})")

    for n in range(ops):
        kind = rng.random()
        if kind < 0.35:
            off = rng.randrange(0, MAX_SIZE - 1)
            length = rng.randrange(1, min(MAX_IO, MAX_SIZE - off) + 1)
            start = rng.randrange(0, len(pool) - length)
            data = pool[start:start + length]
            history.append(f"{n}: write {off} {length}")
            if os.pwrite(fd, data, off) != length:
                fail("short write")
            if off > len(model):
                model.extend(b"\0" * (off - len(model)))
            model[off:off + length] = data
        elif kind < 0.70:
            off = rng.randrange(0, MAX_SIZE)
            length = rng.randrange(1, MAX_IO + 1)
            history.append(f"{n}: read {off} {length}")
            got = os.pread(fd, length, off)
            expected = max(0, min(length, len(model) - off))
            if len(got) != expected:
                fail(f"read {len(got)} bytes at {off}, expected {expected} (size {len(model)})")
            check(off, got)
        elif kind < 0.73:
            off = rng.randrange(0, MAX_SIZE - 1)
            length = rng.randrange(1, min(MAX_IO, MAX_SIZE - off) + 1)
            history.append(f"{n}: posix_fallocate {off} {length}")
            os.posix_fallocate(fd, off, length)
            if off + length > len(model):
                model.extend(b"\0" * (off + length - len(model)))
        elif kind < 0.75:
            off = rng.randrange(0, MAX_SIZE - 1)
            length = rng.randrange(1, min(MAX_IO, MAX_SIZE - off) + 1)
            history.append(f"{n}: punch hole {off} {length}")
            if LIBC.fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, length) != 0:
                fail(f"punch hole: {os.strerror(ctypes.get_errno())}")
            end = min(off + length, len(model))
            if off < end:
                model[off:end] = b"\0" * (end - off)
        elif kind < 0.86:
            size = rng.randrange(0, MAX_SIZE)
            history.append(f"{n}: truncate {size}")
            os.ftruncate(fd, size)
            if size < len(model):
                del model[size:]
            else:
                model.extend(b"\0" * (size - len(model)))
        elif kind < 0.87:
            history.append(f"{n}: fsync")
            os.fsync(fd)
        elif kind < 0.93:
            history.append(f"{n}: stat")
            if os.fstat(fd).st_size != len(model):
                fail(f"fstat size {os.fstat(fd).st_size}, expected {len(model)}")
            if os.stat(path).st_size != len(model):
                fail(f"stat size {os.stat(path).st_size}, expected {len(model)}")
        elif kind < 0.97:
            history.append(f"{n}: reopen")
            os.close(fd)
            if ro_phases:
                ro = os.open(path, os.O_RDONLY)
                for _ in range(8):
                    off = rng.randrange(0, MAX_SIZE)
                    length = rng.randrange(1, MAX_IO + 1)
                    check(off, os.pread(ro, length, off))
                os.close(ro)
            fd = os.open(path, os.O_RDWR)
        else:
            history.append(f"{n}: mmap read")
            if model:
                other = os.open(path, os.O_RDONLY)
                with mmap.mmap(other, len(model), prot=mmap.PROT_READ) as m:
                    check(0, m[:])
                os.close(other)
    os.close(fd)
    with open(path, "rb") as f:
        if f.read() != bytes(model):
            fail("the file read back whole differs from the model")
    print(f"fsx: {ops} operations, final size {len(model)}")


if __name__ == "__main__":
    main()
