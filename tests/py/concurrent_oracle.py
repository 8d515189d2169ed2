"""Concurrent oracle (issue 25): several processes, each with several threads, on one
directory at once. Run in the directory given, plainly on a kernel directory and under the
preload library on a pool mount; prints one JSON summary whose every field must be equal in
both runs.

- Each worker (process p, thread t) runs a seeded random sequence of operations in a
  directory of its own: the outcome of every operation (a value or an errno name) is
  deterministic, whatever the interleaving, and is recorded; so is its final tree.
- Shared races, whose outcome is an invariant rather than a sequence:
  * every worker appends fixed-size records to one O_APPEND file: each record arrives once,
    whole;
  * every worker races O_CREAT|O_EXCL on one name per round: exactly one wins each round;
  * every worker writes a file of its own and renames it over one shared name: the name ends
    holding one worker's contents, whole;
  * one file written at disjoint offsets by every worker with pwrite: every block is its
    writer's.
"""

import errno
import hashlib
import json
import multiprocessing
import os
import random
import sys
import threading

PROCS, THREADS, OPS, ROUNDS, RECORD = 3, 4, 1000, 20, 64


def outcome(f):
    try:
        r = f()
        return "ok" if r is None else r
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))


def tree(d):
    out = {}
    for root, dirs, files in os.walk(d):
        dirs.sort()
        for n in sorted(dirs + files):
            p = os.path.join(root, n)
            st = os.lstat(p)
            rel = os.path.relpath(p, d)
            if os.path.isdir(p) and not os.path.islink(p):
                out[rel] = ["dir", oct(st.st_mode & 0o7777)]
            else:
                with open(p, "rb") as f:
                    out[rel] = ["file", oct(st.st_mode & 0o7777), st.st_size, hashlib.sha256(f.read()).hexdigest()[:16]]
    return out


def own_sequence(base, me, seed):
    rng = random.Random(seed)
    d = os.path.join(base, "own", me)
    os.makedirs(d)
    log = []
    names = [f"n{i}" for i in range(8)]
    for i in range(OPS):
        a, b = rng.choice(names), rng.choice(names)
        pa, pb = os.path.join(d, a), os.path.join(d, b)
        op = rng.choice(["create", "write", "append", "read", "truncate", "rename", "unlink", "mkdir", "rmdir", "stat", "chmod", "link"])
        data = bytes([rng.randrange(256)]) * rng.randrange(1, 9000)
        if op == "create":
            r = outcome(lambda: os.close(os.open(pa, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o640)))
        elif op == "write":
            def w():
                fd = os.open(pa, os.O_WRONLY | os.O_CREAT, 0o644)
                try:
                    return os.pwrite(fd, data, rng.randrange(0, 20000))
                finally:
                    os.close(fd)
            r = outcome(w)
        elif op == "append":
            def ap():
                fd = os.open(pa, os.O_WRONLY | os.O_APPEND)
                try:
                    return os.write(fd, data)
                finally:
                    os.close(fd)
            r = outcome(ap)
        elif op == "read":
            def rd():
                with open(pa, "rb") as f:
                    return hashlib.sha256(f.read()).hexdigest()[:16]
            r = outcome(rd)
        elif op == "truncate":
            r = outcome(lambda: os.truncate(pa, rng.randrange(0, 10000)))
        elif op == "rename":
            r = outcome(lambda: os.rename(pa, pb))
        elif op == "unlink":
            r = outcome(lambda: os.unlink(pa))
        elif op == "mkdir":
            r = outcome(lambda: os.mkdir(pa, 0o750))
        elif op == "rmdir":
            r = outcome(lambda: os.rmdir(pa))
        elif op == "stat":
            r = outcome(lambda: [oct(os.stat(pa).st_mode), os.stat(pa).st_size if not os.path.isdir(pa) else 0])
        elif op == "chmod":
            r = outcome(lambda: os.chmod(pa, rng.choice([0o600, 0o644, 0o755, 0o400])))
        else:
            r = outcome(lambda: os.link(pa, pb))
        log.append([i, op, a, b, r])
    return log


def races(base, p, t, widx, barrier, results):
    me = f"p{p}t{t}"
    shared = os.path.join(base, "shared")
    # Appends of whole records.
    fd = os.open(os.path.join(shared, "log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    for i in range(ROUNDS * 2):
        rec = f"{me}:{i:04d}:".encode().ljust(RECORD - 1, b"x") + b"\n"
        assert os.write(fd, rec) == RECORD
    os.close(fd)
    # Exclusive creates, one name per round.
    wins = 0
    for r in range(ROUNDS):
        barrier.wait()
        try:
            os.close(os.open(os.path.join(shared, f"once-{r}"), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
            wins += 1
        except FileExistsError:
            pass
    # Renames over one name.
    tmp = os.path.join(shared, f"tmp-{me}")
    with open(tmp, "wb") as f:
        f.write(me.encode() * 500)
    barrier.wait()
    os.rename(tmp, os.path.join(shared, "target"))
    # Disjoint pwrites into one file.
    fd = os.open(os.path.join(shared, "blocks"), os.O_WRONLY | os.O_CREAT, 0o644)
    for r in range(4):
        os.pwrite(fd, me.encode().ljust(4096, b"."), (widx * 4 + r) * 4096)
    os.close(fd)
    results[me] = wins


def process(base, p, seed, barrier, q):
    logs, results = {}, {}

    def thread(t):
        me = f"p{p}t{t}"
        logs[me] = own_sequence(base, me, seed * 1000 + p * 10 + t)
        races(base, p, t, p * THREADS + t, barrier, results)

    ts = [threading.Thread(target=thread, args=(t,)) for t in range(THREADS)]
    for x in ts:
        x.start()
    for x in ts:
        x.join()
    q.put((logs, results))


def main():
    base, seed = sys.argv[1], int(sys.argv[2])
    os.makedirs(os.path.join(base, "shared"))
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(PROCS * THREADS)
    q = ctx.Queue()
    procs = [ctx.Process(target=process, args=(base, p, seed, barrier, q)) for p in range(PROCS)]
    for x in procs:
        x.start()
    logs, wins = {}, {}
    for _ in procs:
        l, w = q.get(timeout=600)
        logs.update(l)
        wins.update(w)
    for x in procs:
        x.join()
        assert x.exitcode == 0, f"a worker process failed ({x.exitcode})"
    shared = os.path.join(base, "shared")
    workers = sorted(logs)
    with open(os.path.join(shared, "log"), "rb") as f:
        data = f.read()
    recs = [data[i:i + RECORD] for i in range(0, len(data), RECORD)]
    whole = all(len(r) == RECORD and r.endswith(b"\n") for r in recs)
    seen = sorted(r.split(b":")[0].decode() + ":" + r.split(b":")[1].decode() for r in recs if whole)
    want = sorted(f"{w}:{i:04d}" for w in workers for i in range(ROUNDS * 2))
    with open(os.path.join(shared, "target"), "rb") as f:
        target = f.read()
    target_whole = any(target == w.encode() * 500 for w in workers)
    with open(os.path.join(shared, "blocks"), "rb") as f:
        blocks = f.read()
    blocks_right = len(blocks) == PROCS * THREADS * 4 * 4096 and all(
        blocks[(i * 4 + r) * 4096:(i * 4 + r + 1) * 4096] == w.encode().ljust(4096, b".")
        for i, w in enumerate(f"p{p}t{t}" for p in range(PROCS) for t in range(THREADS)) for r in range(4))
    summary = {
        "logs": logs,
        "own_trees": {w: tree(os.path.join(base, "own", w)) for w in workers},
        "appends_whole_and_once": whole and seen == want,
        "exclusive_winners_per_round": sum(wins.values()) == ROUNDS,
        "rename_target_whole": target_whole,
        "leftover_tmp": sorted(n for n in os.listdir(shared) if n.startswith("tmp-")),
        "pwrite_blocks_right": blocks_right,
        "once_files": len([n for n in os.listdir(shared) if n.startswith("once-")]),
    }
    print(json.dumps(summary, sort_keys=True))


if __name__ == "__main__":
    main()
