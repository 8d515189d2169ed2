"""Runs past a storage quota on a mount and reports what each step got (tests/quota.rs).

usage: quota_client.py MOUNT TAG LEFT_BYTES

Works in MOUNT/TAG (made here). LEFT_BYTES is about what the quota still allows when it
starts. Prints one JSON object: the errno of each refused step (0: it was not refused) and
whether the data written below the limit reads back intact. Leaves MOUNT/TAG/keep (1 MiB,
fsync'd) and removes everything else it made when asked with --clean.
"""

import errno
import hashlib
import json
import os
import sys

mnt, tag, left = sys.argv[1], sys.argv[2], int(sys.argv[3])
d = os.path.join(mnt, tag)
os.mkdir(d)
out = {}


def code(f):
    try:
        f()
        return 0
    except OSError as e:
        return e.errno


# Data below the limit: written, fsync'd, checksummed.
keep = os.urandom(1 << 20)
with open(os.path.join(d, "keep"), "wb") as f:
    f.write(keep)
    f.flush()
    os.fsync(f.fileno())

# One write of more than is left: refused, or cut short; the file holds exactly what the
# call said it wrote.
big = os.urandom(left + (2 << 20))
fd = os.open(os.path.join(d, "big"), os.O_CREAT | os.O_WRONLY, 0o644)
try:
    n = os.write(fd, big)
    out["big_write"] = 0 if n == len(big) else -n
except OSError as e:
    n = 0
    out["big_write"] = e.errno
size = os.fstat(fd).st_size
out["big_write_exact"] = size == n
os.close(fd)
with open(os.path.join(d, "big"), "rb") as f:
    out["big_write_prefix_intact"] = f.read() == big[:n]
os.unlink(os.path.join(d, "big"))

# Appends in 256 KiB steps until refused: every acknowledged step is there.
chunk = os.urandom(256 << 10)
path = os.path.join(d, "log")
fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o644)
steps = 0
while True:
    try:
        n = os.write(fd, chunk)
    except OSError as e:
        out["append"] = e.errno
        break
    if n < len(chunk):
        # A short append: the next one is refused.
        steps += n / len(chunk)
        continue
    steps += 1
    if steps > 4 * (left >> 18) + 8:
        out["append"] = 0
        break
os.close(fd)
with open(path, "rb") as f:
    got = f.read()
whole = int(steps)
out["append_steps"] = steps
out["appends_intact"] = got[: whole * len(chunk)] == chunk * whole
os.unlink(path)

# Preallocation past what is left.
fd = os.open(os.path.join(d, "prealloc"), os.O_CREAT | os.O_WRONLY, 0o644)
out["fallocate"] = code(lambda: os.posix_fallocate(fd, 0, left + (4 << 20)))
out["fallocate_size"] = os.fstat(fd).st_size
os.close(fd)
os.unlink(os.path.join(d, "prealloc"))

# A copy-up of a lower file bigger than what is left: refused, the file unchanged.
lower = os.path.join(mnt, "lowerbig")
before = hashlib.sha256(open(lower, "rb").read()).hexdigest()
out["copy_up"] = code(lambda: os.close(os.open(lower, os.O_WRONLY | os.O_APPEND)))
out["copy_up_unchanged"] = hashlib.sha256(open(lower, "rb").read()).hexdigest() == before

# Files until the inode limit.
made = 0
while made < 100000:
    e = code(lambda: os.close(os.open(os.path.join(d, "f%d" % made), os.O_CREAT | os.O_WRONLY, 0o644)))
    if e:
        out["create"] = e
        break
    made += 1
out["created"] = made
out["mkdir"] = code(lambda: os.mkdir(os.path.join(d, "dir")))
out["symlink"] = code(lambda: os.symlink("target", os.path.join(d, "link")))
for i in range(made):
    os.unlink(os.path.join(d, "f%d" % i))
# Deleting frees: a file can be made again.
out["create_after_delete"] = code(lambda: os.close(os.open(os.path.join(d, "again"), os.O_CREAT | os.O_WRONLY, 0o644)))
os.unlink(os.path.join(d, "again"))

with open(os.path.join(d, "keep"), "rb") as f:
    out["keep_intact"] = f.read() == keep
out["keep_sha"] = hashlib.sha256(keep).hexdigest()
print(json.dumps(out))
