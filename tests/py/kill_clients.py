#!/usr/bin/env python3
"""Starts a client N times and kills each with SIGKILL while it works.

    kill_clients.py PROGRAM DIR N

PROGRAM DIR must print one line when its files are open, then keep calling into the service;
it is killed 0 to 2 ms later, mid-request, and must have died by that SIGKILL. Prints
`killed N` at the end.
"""

import random
import signal
import subprocess
import sys
import time


def main():
    program, d, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    rng = random.Random(7)
    for i in range(n):
        p = subprocess.Popen([program, d], stdout=subprocess.PIPE)
        line = p.stdout.readline()
        if line != b"ready\n":
            p.kill()
            p.wait()
            sys.exit(f"client {i} failed to start: {line!r}")
        time.sleep(rng.random() * 0.002)
        p.kill()
        p.wait()
        p.stdout.close()
        # It was still working (calling into the service) when the signal came: a client that
        # had exited or failed on its own would not end by SIGKILL.
        if p.returncode != -signal.SIGKILL:
            sys.exit(f"client {i} did not die by the signal: {p.returncode}")
    print("killed", n, flush=True)


if __name__ == "__main__":
    main()
