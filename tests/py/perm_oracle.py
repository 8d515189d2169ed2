"""Permission oracle worker and driver (issue 23).

Driver: python3 perm_oracle.py USER_ROOT KERNEL_ROOT SEED OPS
Runs OPS random operations, each by one of several identities, on USER_ROOT (a pool mount
served on the user-level path under the preload library) and on KERNEL_ROOT (a plain
directory, the kernel's answer), and prints one line per operation whose errno differs, then
a summary line "ops N mismatches M". Each identity is a worker process forked from the driver
(so it runs under the library too) that sets its credentials once: root; root without
capabilities; an owner (uid 1000, gid 1000); a member of group 1000 by a supplementary group
(uid 1001, gid 1001, groups 1000); another user (uid 1002, gid 1002); and one that starts as
root and drops to uid 1003 halfway.
"""
import ctypes
import errno
import json
import os
import random
import sys

NAMES = ["a", "b", "d", "e", "s"]
DIRS = ["", "d", "s", "d/e"]
UIDS = [-1, 0, 1000, 1001, 1002, 1003]
MODES = [0o644, 0o600, 0o666, 0o700, 0o755, 0o777, 0o640, 0o4755, 0o2755, 0o2775, 0o1777, 0o000, 0o070, 0o007]


def paths():
    out = []
    for d in DIRS:
        for n in NAMES:
            out.append((d + "/" + n) if d else n)
    return out


PATHS = paths()


def op_list(rng, n):
    ops = []
    for _ in range(n):
        who = rng.randrange(6)
        p = rng.choice(PATHS)
        q = rng.choice(PATHS)
        kind = rng.choice(["create", "open", "read", "write", "truncate", "chmod", "chown", "utime_now", "utime_set",
                           "link", "unlink", "rename", "mkdir", "rmdir", "symlink", "access", "setxattr", "getxattr",
                           "mkdir", "chmod", "create"])
        ops.append({"who": who, "kind": kind, "p": p, "q": q, "mode": rng.choice(MODES),
                    "flags": rng.choice(["r", "w", "rw", "rt", "wt", "wa"]), "uid": rng.choice(UIDS),
                    "gid": rng.choice(UIDS), "size": rng.choice([0, 1, 100]), "amode": rng.choice([os.R_OK, os.W_OK, os.X_OK, os.R_OK | os.W_OK])})
    return ops


FLAGS = {"r": os.O_RDONLY, "w": os.O_WRONLY, "rw": os.O_RDWR, "rt": os.O_RDONLY | os.O_TRUNC,
         "wt": os.O_WRONLY | os.O_TRUNC, "wa": os.O_WRONLY | os.O_APPEND}


def run(root, o):
    p = os.path.join(root, o["p"])
    q = os.path.join(root, o["q"])
    k = o["kind"]
    try:
        if k == "create":
            os.close(os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, o["mode"] & 0o777))
        elif k == "open":
            os.close(os.open(p, FLAGS[o["flags"]] | os.O_NOFOLLOW))
        elif k == "read":
            fd = os.open(p, os.O_RDONLY | os.O_NOFOLLOW)
            try:
                os.read(fd, 10)
            finally:
                os.close(fd)
        elif k == "write":
            fd = os.open(p, os.O_WRONLY | os.O_NOFOLLOW)
            try:
                os.write(fd, b"x")
            finally:
                os.close(fd)
        elif k == "truncate":
            os.truncate(p, o["size"])
        elif k == "chmod":
            os.chmod(p, o["mode"])
        elif k == "chown":
            os.lchown(p, o["uid"], o["gid"])
        elif k == "utime_now":
            os.utime(p, None, follow_symlinks=False)
        elif k == "utime_set":
            os.utime(p, (1, 1), follow_symlinks=False)
        elif k == "link":
            os.link(p, q)
        elif k == "unlink":
            os.unlink(p)
        elif k == "rename":
            os.rename(p, q)
        elif k == "mkdir":
            os.mkdir(p, o["mode"] & 0o7777)
        elif k == "rmdir":
            os.rmdir(p)
        elif k == "symlink":
            os.symlink("target", p)
        elif k == "access":
            if not os.access(p, o["amode"], follow_symlinks=False):
                return "denied"
        elif k == "setxattr":
            os.setxattr(p, "user.t", b"v", follow_symlinks=False)
        elif k == "getxattr":
            os.getxattr(p, "user.t", follow_symlinks=False)
        return 0
    except OSError as e:
        return e.errno


def become(who, uid):
    if who == 0 or who == 5 and uid is None:
        return
    if who == 1:
        # Root without capabilities: capset with empty sets (version 3, this thread).
        libc = ctypes.CDLL(None, use_errno=True)
        header = (ctypes.c_uint32 * 2)(0x20080522, 0)
        data = (ctypes.c_uint32 * 6)()
        if libc.capset(header, data) != 0:
            raise OSError(ctypes.get_errno(), "capset")
        return
    ids = {2: (1000, 1000, []), 3: (1001, 1001, [1000]), 4: (1002, 1002, []), 5: (1003, 1003, [])}[who]
    os.setgroups(ids[2])
    os.setgid(ids[1])
    os.setuid(ids[0])


def worker(who, rd, wr, user_root, kernel_root):
    become(who, None)
    inp = os.fdopen(rd, "r")
    out = os.fdopen(wr, "w")
    for line in inp:
        o = json.loads(line)
        if o.get("drop"):
            become(5, 1003)
            out.write("null\n")
            out.flush()
            continue
        out.write(json.dumps([run(user_root, o), run(kernel_root, o)]) + "\n")
        out.flush()


def tree(root):
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            full = os.path.join(dirpath, n)
            st = os.lstat(full)
            rel = os.path.relpath(full, root)
            out[rel] = (oct(st.st_mode), st.st_uid, st.st_gid, st.st_size if not os.path.isdir(full) or os.path.islink(full) else 0,
                        os.readlink(full) if os.path.islink(full) else None)
    return out


def main():
    user_root, kernel_root, seed, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    rng = random.Random(seed)
    for r in (user_root, kernel_root):
        os.chmod(r, 0o777)
    workers = []
    for who in range(6):
        a_r, a_w = os.pipe()
        b_r, b_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(a_w)
            os.close(b_r)
            # The other workers' pipe ends, or their readers never see the end.
            for _, w, r in workers:
                w.close()
                r.close()
            try:
                worker(who, a_r, b_w, user_root, kernel_root)
            finally:
                os._exit(0)
        os.close(a_r)
        os.close(b_w)
        workers.append((pid, os.fdopen(a_w, "w"), os.fdopen(b_r, "r")))
    ops = op_list(rng, n)
    mismatches = 0
    for i, o in enumerate(ops):
        if i == n // 2:
            _, w, r = workers[5]
            w.write(json.dumps({"drop": True}) + "\n")
            w.flush()
            r.readline()
        _, w, r = workers[o["who"]]
        w.write(json.dumps(o) + "\n")
        w.flush()
        eu, ek = json.loads(r.readline())
        if eu != ek:
            mismatches += 1
            if mismatches <= 30:
                print("op %d %s: user %s kernel %s" % (i, json.dumps(o), eu, ek))
    for pid, w, r in workers:
        w.close()
        os.waitpid(pid, 0)
    tu, tk = tree(user_root), tree(kernel_root)
    for k in sorted(set(tu) | set(tk)):
        if tu.get(k) != tk.get(k):
            mismatches += 1
            print("tree %s: user %s kernel %s" % (k, tu.get(k), tk.get(k)))
    print("ops %d mismatches %d" % (n, mismatches))


main()
