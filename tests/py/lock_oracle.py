#!/usr/bin/env python3
"""Lock oracle (issue 31): random sequences of POSIX record locks, open-file-description
locks, flock and lockf (take, upgrade, downgrade, split, unlock, test), blocking waits,
opens, closes, dups and forks by several worker processes on three files, recorded op by op.

    lock_oracle.py run DIR SEED OPS OUT.json [--prefix I JSON-ARGV]...

runs the workers on files in DIR (worker I started under the argv prefix given for it, e.g.
`polytropon exec --pool P --preload-only --`; the others plainly) and writes what every op
returned, in order. Two runs with the same seed, one on a plain kernel directory and one on a
pool mount with some workers under the library and some on the FUSE path, must record the
same: the test compares them.

    lock_oracle.py worker DIR    (internal: one worker, commands on stdin, answers on stdout)
"""
import ctypes
import errno
import fcntl
import json
import os
import random
import signal
import struct
import subprocess
import sys
import threading

FILES = 3
SLOTS = 4
WORKERS = 4
FLOCK = "hhqqi"  # struct flock on x86_64 / aarch64 Linux: type, whence, start, len, pid
TYPES = {"r": fcntl.F_RDLCK, "w": fcntl.F_WRLCK, "u": fcntl.F_UNLCK}
NAMES = {fcntl.F_RDLCK: "r", fcntl.F_WRLCK: "w", fcntl.F_UNLCK: "u"}
F_OFD_GETLK, F_OFD_SETLK, F_OFD_SETLKW = 36, 37, 38
# How long a poll waits for a pending wait to end (it ends at once when it can).
GRACE = 0.1
# Ops after which a wait still pending is interrupted by a signal (EINTR): a wait may be on
# the waiter's own locks of another open of the file, which only it could release.
PATIENCE = 12
LIBC = ctypes.CDLL(None, use_errno=True)


def err(e):
    return errno.errorcode.get(e.errno, str(e.errno))


# ---------------------------------------------------------------- worker

class Worker:
    def __init__(self, d):
        self.d = d
        self.slots = {}
        self.pending = None  # (thread, result box)

    def fd(self, c):
        return self.slots.get(c["slot"], 10_000)  # a number no worker has: EBADF

    def flock_struct(self, c):
        return struct.pack(FLOCK, TYPES[c["type"]], os.SEEK_SET, c["start"], c["len"], 0)

    def setlk(self, c, wait):
        cmd = (F_OFD_SETLKW if wait else F_OFD_SETLK) if c["ofd"] else (fcntl.F_SETLKW if wait else fcntl.F_SETLK)
        fcntl.fcntl(self.fd(c), cmd, self.flock_struct(c))
        return "ok"

    def do(self, c):
        op = c["op"]
        try:
            if op == "hello":
                return os.getpid()
            if op == "open":
                old = self.slots.pop(c["slot"], None)
                if old is not None:
                    os.close(old)
                self.slots[c["slot"]] = os.open(os.path.join(self.d, "f%d" % c["file"]), os.O_RDWR)
                return "ok"
            if op == "close":
                os.close(self.slots.pop(c["slot"], 10_000))
                return "ok"
            if op == "dup":
                new = os.dup(self.fd(c))
                old = self.slots.pop(c["to"], None)
                if old is not None:
                    os.close(old)
                self.slots[c["to"]] = new
                return "ok"
            if op == "setlk":
                return self.setlk(c, False)
            if op == "setlkw":
                box = []
                cmd = F_OFD_SETLKW if c["ofd"] else fcntl.F_SETLKW
                buf = ctypes.create_string_buffer(self.flock_struct(c))
                fd = self.fd(c)

                def wait():
                    # Through libc's fcntl (the library's, when preloaded), which gives EINTR
                    # to a signal rather than retrying as Python's fcntl module does.
                    r = LIBC.fcntl(fd, cmd, buf)
                    box.append("ok" if r == 0 else errno.errorcode.get(ctypes.get_errno(), "?"))
                t = threading.Thread(target=wait, daemon=True)
                t.start()
                t.join(GRACE)
                if t.is_alive():
                    self.pending = (t, box)
                    return "pending"
                return box[0]
            if op == "cancel":
                if self.pending is None:
                    return "none"
                t, box = self.pending
                signal.pthread_kill(t.ident, signal.SIGUSR1)
                t.join(5.0)
                if t.is_alive():
                    return "still waiting after a signal"
                self.pending = None
                return box[0]
            if op == "poll":
                if self.pending is None:
                    return "none"
                t, box = self.pending
                t.join(GRACE if c.get("grace", True) else 0.0)
                if t.is_alive():
                    return "pending"
                self.pending = None
                return box[0]
            if op == "getlk":
                cmd = F_OFD_GETLK if c["ofd"] else fcntl.F_GETLK
                t, _, start, ln, pid = struct.unpack(FLOCK, fcntl.fcntl(self.fd(c), cmd, self.flock_struct(c)))
                return [NAMES.get(t, t), start if t != fcntl.F_UNLCK else 0, ln if t != fcntl.F_UNLCK else 0, pid]
            if op == "flock":
                how = {"sh": fcntl.LOCK_SH, "ex": fcntl.LOCK_EX, "un": fcntl.LOCK_UN}[c["how"]]
                fcntl.flock(self.fd(c), how | fcntl.LOCK_NB)
                return "ok"
            if op == "lockf":
                os.lseek(self.fd(c), c["pos"], os.SEEK_SET)
                cmd = {"tlock": os.F_TLOCK, "ulock": os.F_ULOCK, "test": os.F_TEST}[c["cmd"]]
                os.lockf(self.fd(c), cmd, c["len"])
                return "ok"
            if op == "fork":
                # The child tries a POSIX lock and an exclusive flock on the inherited slot
                # (the flock is the parent's too: same open file description), then exits.
                r, w = os.pipe()
                pid = os.fork()
                if pid == 0:
                    os.close(r)
                    out = []
                    for f in (lambda: fcntl.fcntl(self.fd(c), fcntl.F_SETLK, struct.pack(FLOCK, fcntl.F_WRLCK, 0, c["start"], c["len"], 0)),
                              lambda: fcntl.flock(self.fd(c), fcntl.LOCK_EX | fcntl.LOCK_NB)):
                        try:
                            f()
                            out.append("ok")
                        except OSError as e:
                            out.append(err(e))
                    os.write(w, json.dumps(out).encode())
                    os._exit(0)
                os.close(w)
                data = b""
                while True:
                    b = os.read(r, 4096)
                    if not b:
                        break
                    data += b
                os.close(r)
                os.waitpid(pid, 0)
                return json.loads(data or b'"child died"')
        except OSError as e:
            return err(e)
        return "unknown op"


def worker(d):
    signal.signal(signal.SIGUSR1, lambda *_: None)
    w = Worker(d)
    for line in sys.stdin:
        c = json.loads(line)
        if c["op"] == "exit":
            break
        sys.stdout.write(json.dumps(w.do(c)) + "\n")
        sys.stdout.flush()


# ---------------------------------------------------------------- driver

def run(d, seed, ops, out, prefixes):
    for i in range(FILES):
        with open(os.path.join(d, "f%d" % i), "wb") as f:
            f.write(b"x" * 1000)
    me = os.path.abspath(__file__)
    procs = []
    for i in range(WORKERS):
        argv = prefixes.get(i, []) + [sys.executable if not prefixes.get(i) else "python3", me, "worker", d]
        procs.append(subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1))

    def ask(i, c):
        procs[i].stdin.write(json.dumps(c) + "\n")
        procs[i].stdin.flush()
        line = procs[i].stdout.readline()
        if not line:
            raise SystemExit("worker %d died (op %s)" % (i, c))
        return json.loads(line)

    pids = {ask(i, {"op": "hello"}): i for i in range(WORKERS)}
    rng = random.Random(seed)
    opened = [set() for _ in range(WORKERS)]
    # slot -> (file, open file description number) per worker, to keep an OFD wait from
    # waiting on its own process's other open of the file (which only it could release).
    descs = [dict() for _ in range(WORKERS)]
    serial = [0]
    pending = {}  # worker -> "posix" | "ofd"
    log = []

    def rng_range():
        start = rng.choice([0, 0, 10, 20, 50, 100, 200, 500])
        ln = rng.choice([0, 1, 10, 30, 100, 1000])
        return start, ln

    def settle():
        # A release may have let a pending wait through: ask (each waits for its own, at
        # most GRACE), and log what ended.
        for i in sorted(pending):
            r = ask(i, {"op": "poll"})
            if r != "pending":
                log.append([i, "granted", r])
                del pending[i]

    since = {}
    for n in range(ops):
        for i in sorted(pending):
            if n - since[i] > PATIENCE:
                log.append([i, "interrupted", ask(i, {"op": "cancel"})])
                del pending[i]
        free = [i for i in range(WORKERS) if i not in pending]
        i = rng.choice(free)
        slot = rng.randrange(SLOTS)
        if rng.random() < 0.9 and opened[i]:
            slot = rng.choice(sorted(opened[i]))
        k = rng.random()
        if pending and rng.random() < 0.5:
            # While someone waits, releases come more often (waits end sooner).
            k = rng.choice([0.12, 0.3, 0.8, 0.9])
        c = {"slot": slot}
        if not opened[i] or k < 0.10:
            c.update(op="open", file=rng.randrange(FILES))
        elif k < 0.15:
            c.update(op="close")
        elif k < 0.20:
            c.update(op="dup", to=rng.randrange(SLOTS))
        elif k < 0.55:
            start, ln = rng_range()
            kind = "u" if pending and rng.random() < 0.5 else rng.choice("rwwu")
            c.update(op="setlk", ofd=rng.random() < 0.3, type=kind, start=start, len=ln)
        elif k < 0.565:
            start, ln = rng_range()
            ofd = rng.random() < 0.3
            mine = descs[i].get(slot)
            if ofd and any(f == mine[0] and d != mine[1] for f, d in descs[i].values()) if mine else False:
                ofd = False
            # One wait at a time, or two POSIX ones (which may find each other: EDEADLK);
            # open-file-description waits have no deadlock detection, so they wait alone.
            if (not pending) or (not ofd and list(pending.values()) == ["posix"]):
                c.update(op="setlkw", ofd=ofd, type=rng.choice("rw"), start=start, len=ln)
            else:
                c.update(op="getlk", ofd=ofd, type="w", start=start, len=ln)
        elif k < 0.70:
            start, ln = rng_range()
            c.update(op="getlk", ofd=rng.random() < 0.3, type=rng.choice("rw"), start=start, len=ln)
        elif k < 0.82:
            c.update(op="flock", how="un" if pending and rng.random() < 0.5 else rng.choice(["sh", "ex", "un"]))
        elif k < 0.97:
            start, ln = rng_range()
            c.update(op="lockf", cmd="ulock" if pending and rng.random() < 0.5 else rng.choice(["tlock", "tlock", "ulock", "test"]), pos=start, len=ln)
        elif not pending:
            start, ln = rng_range()
            c.update(op="fork", start=start, len=ln)
        else:
            c.update(op="close")
        r = ask(i, c)
        if c["op"] == "getlk" and isinstance(r, list):
            # Holders by worker, not pid (POSIX: the holder's pid; OFD: -1).
            r[3] = "w%d" % pids[r[3]] if r[3] in pids else r[3]
        if c["op"] == "open" and r == "ok":
            opened[i].add(slot)
            serial[0] += 1
            descs[i][slot] = (c["file"], serial[0])
        elif c["op"] == "close" and r == "ok":
            opened[i].discard(slot)
            descs[i].pop(slot, None)
        elif c["op"] == "dup" and r == "ok":
            opened[i].add(c["to"])
            descs[i][c["to"]] = descs[i][slot]
        elif c["op"] == "setlkw" and r == "pending":
            pending[i] = "ofd" if c["ofd"] else "posix"
            since[i] = n
        log.append([i, c, r])
        releases = c["op"] in ("close", "open", "dup") or c.get("type") == "u" or c.get("how") == "un" or c.get("cmd") == "ulock"
        if pending and (releases or c["op"] in ("setlk", "flock", "lockf")):
            settle()
    # The end: everyone closes everything; every wait then ends.
    for i in range(WORKERS):
        if i not in pending:
            for s in sorted(opened[i]):
                ask(i, {"op": "close", "slot": s})
        opened[i].clear()
        settle()
    for i in sorted(pending):
        log.append([i, "interrupted", ask(i, {"op": "cancel"})])
    for i in range(WORKERS):
        procs[i].stdin.write(json.dumps({"op": "exit"}) + "\n")
        procs[i].stdin.flush()
        procs[i].wait()
    with open(out, "w") as f:
        json.dump(log, f)
    counts = {}
    for e in log:
        if isinstance(e[1], dict):
            counts[e[1]["op"]] = counts.get(e[1]["op"], 0) + 1
    print("ops %d %s" % (ops, json.dumps(counts, sort_keys=True)))


if __name__ == "__main__":
    if sys.argv[1] == "worker":
        worker(sys.argv[2])
    else:
        args = sys.argv[2:]
        prefixes = {}
        while "--prefix" in args:
            k = args.index("--prefix")
            prefixes[int(args[k + 1])] = json.loads(args[k + 2])
            del args[k:k + 3]
        run(args[0], int(args[1]), int(args[2]), args[3], prefixes)
