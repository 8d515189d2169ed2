#!/usr/bin/env python3
"""A client that outlives its pool's service, for the service-crash test.

    crash_client.py DIR writer   # writes and fsyncs DIR/acked, then writes until an error
    crash_client.py DIR steady SECONDS   # counts 64 KiB writes per 100 ms, must see no error

`writer` prints `acked` once DIR/acked (1 MiB of a known pattern) is fsync'd, then rewrites
DIR/scratch, printing `writing` after 100 writes, until a call fails, prints `error ERRNO
TIME` (CLOCK_MONOTONIC seconds), then opens DIR/after every 50 ms (up to 30 s) until it works,
writes and reads it back, prints `reopened TIME`, then writes through the descriptor of
DIR/scratch opened before the kill and prints `old ERRNO` (0: it worked). `steady` prints `counts START LONGEST N N N ...`, its start (CLOCK_MONOTONIC seconds), the
longest time one write took (seconds) and the writes done in each 100 ms (after printing
`running` once it has written for a second), and exits 1
on any error. Every call goes through libc, so under the preload library it takes the
user-level path.
"""

import os
import sys
import time

PATTERN = bytes(range(256)) * 4096  # 1 MiB


def writer(d):
    fd = os.open(os.path.join(d, "acked"), os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    os.pwrite(fd, PATTERN, 0)
    os.fsync(fd)
    os.close(fd)
    print("acked", flush=True)
    fd = os.open(os.path.join(d, "scratch"), os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    block = PATTERN[: 64 * 1024]
    i = 0
    while True:
        try:
            os.pwrite(fd, block, (i % 64) * len(block))
            i += 1
            if i == 100:
                print("writing", flush=True)
        except OSError as e:
            print("error", e.errno, time.monotonic(), flush=True)
            break
    old = fd
    deadline = time.monotonic() + 30
    last = None
    while time.monotonic() < deadline:
        try:
            fd = os.open(os.path.join(d, "after"), os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        except OSError as e:
            last = e
            time.sleep(0.05)
            continue
        os.pwrite(fd, b"served again", 0)
        back = os.pread(fd, 100, 0)
        os.close(fd)
        if back != b"served again":
            print("mismatch", back, flush=True)
            sys.exit(1)
        print("reopened", time.monotonic(), flush=True)
        # The descriptor opened through the dead service stays dead: never a new file's.
        try:
            os.pwrite(old, b"stale", 0)
            print("old 0", flush=True)
        except OSError as e:
            print("old", e.errno, flush=True)
        return
    print("never reopened:", last, flush=True)
    sys.exit(1)


def steady(d, seconds):
    fd = os.open(os.path.join(d, "steady"), os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    block = PATTERN[: 64 * 1024]
    counts = []
    start = time.monotonic()
    end = start + seconds
    i = 0
    longest, last = 0.0, start
    while time.monotonic() < end:
        window = time.monotonic() + 0.1
        n = 0
        while time.monotonic() < window:
            os.pwrite(fd, block, (i % 64) * len(block))
            now = time.monotonic()
            longest, last = max(longest, now - last), now
            i += 1
            n += 1
        counts.append(n)
        if len(counts) == 10:
            print("running", flush=True)
    os.close(fd)
    print("counts", start, longest, " ".join(map(str, counts)), flush=True)


def main():
    d, mode = sys.argv[1], sys.argv[2]
    if mode == "writer":
        writer(d)
    elif mode == "steady":
        steady(d, float(sys.argv[3]))
    else:
        sys.exit("unknown mode " + mode)


if __name__ == "__main__":
    main()
