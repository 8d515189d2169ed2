//! Real programs under the preload library on a pool mount behave exactly as on a plain
//! directory, and their I/O arrives on the user-level path (the pool service's counters say
//! so), not on FUSE.

mod common;

use std::path::Path;

use common::host::stderr;
use common::stage::{bash, count, user_data, Stage};
use common::tree::{diff, kernel_tree, Tree};

/// The same tree in both places, except what differs legitimately between two filesystems.
fn comparable(mut t: Tree) -> Tree {
    // git's index records inode numbers, devices and change times.
    t.remove("repo/.git/index");
    for n in t.values_mut() {
        if n.kind == "dir" {
            // Directory link counts follow each filesystem's own convention.
            n.nlink = 0;
        }
    }
    t
}

fn seed(dir: &Path) {
    std::fs::create_dir_all(dir.join("seed/sub/deeper")).expect("mkdir");
    std::fs::write(dir.join("seed/a.txt"), b"alpha\nbeta\ngamma\n").expect("seed");
    std::fs::write(dir.join("seed/sub/b.bin"), (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect::<Vec<u8>>()).expect("seed");
    std::fs::write(dir.join("seed/sub/deeper/c"), b"c\n").expect("seed");
    std::os::unix::fs::symlink("../a.txt", dir.join("seed/sub/to-a")).expect("symlink");
}

/// Coreutils, tar, bash redirections, pipes and here-documents, sqlite3, python3 and git,
/// printing only what does not depend on inode numbers or times.
const PROGRAMS: &str = r#"
set -euo pipefail
export GIT_AUTHOR_DATE="1700000000 +0000" GIT_COMMITTER_DATE="1700000000 +0000" GIT_AUTHOR_NAME=t GIT_AUTHOR_EMAIL=t@t GIT_COMMITTER_NAME=t GIT_COMMITTER_EMAIL=t@t
cat seed/a.txt
cp -a seed copy && diff -r seed copy && echo cp ok
mv copy moved && ls moved
mkdir -p deep/er/est && touch deep/er/est/t && chmod 640 deep/er/est/t
ln -s ../seed/a.txt deep/link && ln seed/a.txt deep/hard
stat -c '%n %s %a %h %F' seed/a.txt deep/link deep/hard deep/er/est/t
stat -L -c '%n %s %F' deep/link
ls -R seed deep
find . -path ./repo -prune -o -print | sort
find seed -type f -exec du -b {} + | sort -k2
wc -c seed/sub/b.bin; md5sum seed/sub/b.bin
head -c 1000 seed/sub/b.bin | od -An -tx1 | tail -2
# Redirections, appends, pipes, here-documents, descriptors kept open across commands.
echo first > out.txt; echo second >> out.txt
printf '%s\n' one two three | tee piped.txt | sort -r > sorted.txt
cat <<EOF > here.txt
a here-document with $(echo substitution)
EOF
exec 3> fd3.txt; echo via-fd3 >&3; sh -c 'echo from-a-child >&3'; echo again >&3; exec 3>&-
while read -r l; do echo "line: $l"; done < piped.txt
cat out.txt sorted.txt here.txt fd3.txt
(cd seed/sub && cat deeper/c ../a.txt | wc -l)
truncate -s 5 out.txt && cat out.txt && echo
dd if=seed/sub/b.bin of=dd.bin bs=4096 skip=3 count=5 status=none && cmp dd.bin <(tail -c +12289 seed/sub/b.bin | head -c 20480) && echo dd ok
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf t.tar seed deep
mkdir x && tar -xf t.tar -C x && diff -r seed x/seed && tar -tvf t.tar | awk '{print $1, $3, $6}'
sqlite3 db.sqlite "create table t(k integer primary key, v text); insert into t(v) values ('x'),('y'),('z');"
sqlite3 db.sqlite "update t set v = v || v; select k, v from t order by k; pragma integrity_check;"
python3 - <<'PY'
import os, shutil
shutil.copytree("seed", "pycopy", symlinks=True)
for root, dirs, files in sorted(os.walk("pycopy")):
    print(root, sorted(dirs), sorted(files))
with open("py.txt", "w") as f:
    f.write("0123456789")
    f.seek(3)
    f.write("abc")
with open("py.txt", "r+b") as f:
    f.seek(-2, os.SEEK_END)
    print(f.read(), f.tell(), os.fstat(f.fileno()).st_size)
print(open("py.txt").read(), os.path.getsize("py.txt"), os.path.exists("nope"), os.path.isdir("seed"))
PY
git init -q repo && cd repo && cp ../seed/a.txt . && git add a.txt && git commit -qm first
echo delta >> a.txt && git status --short && git commit -qam second && git log --format=%s && git status --short
cd ..
cp seed/a.txt edited.txt && sed -i 's/beta/BETA/' edited.txt && cat edited.txt
sort -o sorted2.txt piped.txt && awk '{ print NR ": " $0 > "awk.txt" }' piped.txt && cat sorted2.txt awk.txt
"$STDIO_PROGRAM" && wc -l stdio.txt
rm -r moved x pycopy && ls
"#;

#[test]
fn real_programs_behave_as_on_a_plain_directory() {
    real_programs_on("1");
}

/// The same on a two-cpu pool: two queues and workers, client and service on either cpu.
#[test]
fn real_programs_behave_as_on_a_plain_directory_on_two_cpus() {
    real_programs_on("0-1");
}

fn real_programs_on(cpus: &str) {
    let st = Stage::on_cpus("preload-progs", "p", cpus, seed);
    st.compile("stdio");
    let (expected, got) = st.both(PROGRAMS);
    let (want, have) = (String::from_utf8_lossy(&expected.stdout), String::from_utf8_lossy(&got.stdout));
    assert_eq!(have, want, "output differs under the library; its stderr:\n{}\nthe service's log:\n{}", stderr(&got), st.service_log());
    assert_eq!(got.status.code(), expected.status.code(), "{}", stderr(&got));
    assert_eq!(stderr(&got), stderr(&expected));
    let (ours, reference) = (comparable(kernel_tree(&st.mnt)), comparable(kernel_tree(&st.plain)));
    assert!(ours == reference, "trees differ after the programs ran:\n{}", diff(&reference, &ours));

    // The service's counters show the programs' I/O on the user-level path.
    let mount = st.counters();
    let count = |path: &str, op: &str| count(&mount, path, op);
    let namespace = ["mkdir", "rmdir", "rename", "link", "symlink", "readlink", "access", "setattr_path"];
    // (Writes, reads and ftruncate of the programs' own files are the kernel's, on the
    // backing file's descriptor the service passed.)
    for op in ["open_path", "stat_path", "getattr", "release", "unlink_path", "setattr"].into_iter().chain(namespace) {
        assert!(count("user_ops", op) > 0, "no {op} on the user-level path: {}", mount["user_ops"]);
    }
    assert!(user_data(&mount, "read") > count("fuse_ops", "read"), "reads mostly on FUSE: {mount}");
    assert!(user_data(&mount, "write") > count("fuse_ops", "write"), "writes mostly on FUSE: {mount}");
    assert!(count("user_ops", "open_path") > count("fuse_ops", "open"), "opens mostly on FUSE: {mount}");
    // Namespace calls on mount paths take the user-level path; the kernel sees only those it
    // must resolve itself (`..`, symbolic links on the way, the mount root).
    for op in namespace.into_iter().filter(|op| !["access", "setattr_path"].contains(op)).chain(["readdir"]) {
        assert!(count("user_ops", op) > count("fuse_ops", op), "{op} mostly on FUSE: {mount}");
    }
    eprintln!("user-level: {}\nFUSE: {}", mount["user_ops"], mount["fuse_ops"]);
    st.destroy();
}

/// `seed`, all of it owned by `user`.
fn seed_owned_by(dir: &Path, user: u32) {
    seed(dir);
    chown_tree(dir, user);
}

/// Every file under `dir` (and `dir`) owned by `id`:`id`.
fn chown_tree(dir: &Path, id: u32) {
    for e in walkdir(dir) {
        std::os::unix::fs::lchown(&e, Some(id), Some(id)).expect("chown");
    }
}

fn walkdir(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    if std::fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir()) {
        for e in std::fs::read_dir(dir).expect("read_dir").flatten() {
            out.extend(walkdir(&e.path()));
        }
    }
    out
}

/// The same programs as a non-root user (uid 1000, through `setpriv` under the library):
/// the same results as on a plain directory that user owns, and their I/O still on the
/// user-level path, served with that user's credentials.
#[test]
fn real_programs_behave_as_on_a_plain_directory_as_a_non_root_user() {
    const USER: u32 = 1000;
    let st = Stage::on_cpus("preload-progs-user", "u", "1", |d| seed_owned_by(d, USER));
    let scratch = st.h.scratch.path().to_path_buf();
    std::os::unix::fs::chown(scratch.join("upper"), Some(USER), Some(USER)).expect("chown upper");
    for d in [scratch.as_path(), st.h.state.as_path(), &st.h.state.join("pools")] {
        if d.exists() {
            std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
        }
    }
    st.compile("stdio");
    let script = scratch.join("programs.sh");
    std::fs::write(&script, PROGRAMS).expect("write the script");
    let wrapper = format!("export HOME=/tmp PATH=/usr/local/bin:/usr/bin:/bin; exec setpriv --reuid={USER} --regid={USER} --clear-groups bash {}", script.display());
    let (expected, got) = st.both(&wrapper);
    let (want, have) = (String::from_utf8_lossy(&expected.stdout), String::from_utf8_lossy(&got.stdout));
    assert_eq!(have, want, "output differs under the library; its stderr:\n{}", stderr(&got));
    assert_eq!(got.status.code(), expected.status.code(), "{}", stderr(&got));
    let (ours, reference) = (comparable(kernel_tree(&st.mnt)), comparable(kernel_tree(&st.plain)));
    assert!(ours == reference, "trees differ after the programs ran:\n{}", diff(&reference, &ours));
    let mount = st.counters();
    let count = |path: &str, op: &str| count(&mount, path, op);
    for op in ["open_path", "stat_path", "unlink_path", "mkdir", "rename"] {
        assert!(count("user_ops", op) > 0, "no {op} on the user-level path: {}", mount["user_ops"]);
    }
    for op in ["read", "write"] {
        assert!(user_data(&mount, op) > 0, "no {op} on the user-level path: {mount}");
    }
    assert!(user_data(&mount, "read") > count("fuse_ops", "read"), "reads mostly on FUSE: {mount}");
    assert!(count("user_ops", "open_path") > count("fuse_ops", "open"), "opens mostly on FUSE: {mount}");
    // What the user made belongs to the user.
    let made = std::fs::metadata(scratch.join("upper/out.txt")).expect("out.txt in the upper branch");
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&made), USER);
    eprintln!("user-level: {}\nFUSE: {}", mount["user_ops"], mount["fuse_ops"]);
    st.destroy();
}

/// A forked child that exits without calling the library (a shell's `$(...)`) drops its copy
/// of its parent's client: that must not give back the parent's client area. Otherwise the
/// next process to attach (here a background subshell; in `PROGRAMS`, the detached
/// `git maintenance` that `git commit` leaves behind) claims the area the shell still uses,
/// each takes the other's completions for late answers and drops them, and a call of either
/// fails with `EIO` after 5 s (issue 21).
const SHARED_AREA: &str = r#"
test -e f
x=$(:)
( while :; do test -e f; done ) &
bg=$!
end=$(( ${EPOCHREALTIME/./} + 2000000 ))
while [ ${EPOCHREALTIME/./} -lt $end ]; do test -e f || { echo "stat failed"; break; }; done
kill $bg
"#;

/// The scenario of the unexplained EIO (issue 21, item 9) looped 200 times on a one-cpu pool:
/// appends by a shell whose command substitutions and subshells fork and exit around them.
const APPEND_LOOP: &str = r#"
printf 'alpha\n' > a.txt
for i in $(seq 1 200); do
  x=$(cat a.txt)
  echo "delta $i" >> a.txt || { echo "append $i failed"; exit 1; }
  ( test -e a.txt ) || { echo "subshell $i failed"; exit 1; }
  [ "$(tail -n 1 a.txt)" = "delta $i" ] || { echo "line $i missing"; exit 1; }
done
wc -l < a.txt
"#;

#[test]
fn appends_around_forking_shell_commands_never_fail_in_200_rounds() {
    let st = Stage::new("preload-eio", "a", |_| {});
    let out = bash(&st.h, Some(&st.name), &st.mnt, APPEND_LOOP);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.trim() == "201", "{stdout}{}", stderr(&out));
    // The reads around the appends were served at user level (the appends themselves go
    // through the kernel: a redirection makes the file the shell's stdout, which is handed over).
    assert!(count(&st.counters(), "user_ops", "open_path") >= 400, "the reads were not served at user level: {}", st.counters());
    st.destroy();
}

#[test]
fn a_subshell_that_exits_leaves_its_shell_the_client_area() {
    let st = Stage::new("preload-share", "s", |d| std::fs::write(d.join("f"), b"x").expect("seed"));
    // The call that lost its answer fails with EIO after the client's timeout: `test -e`
    // then says the file is missing.
    let out = bash(&st.h, Some(&st.name), &st.mnt, SHARED_AREA);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.is_empty(), "{stdout}{}", stderr(&out));
    st.destroy();
}

/// Threads, fork with a shared offset, exec with inherited descriptors, mmap, and locks: what
/// a process does with files beyond plain reads and writes.
const PROCESSES: &str = r#"
import fcntl, mmap, os, subprocess, sys, threading

def worker(i):
    with open(f"t{i}.txt", "w") as f:
        for j in range(200):
            f.write(f"{i}:{j}\n")
threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
for t in threads: t.start()
for t in threads: t.join()
print(all(open(f"t{i}.txt").read() == "".join(f"{i}:{j}\n" for j in range(200)) for i in range(8)))

fd = os.open("forked.txt", os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
os.write(fd, b"parent-before\n")
pid = os.fork()
if pid == 0:
    os.write(fd, b"child\n")
    os._exit(0)
os.waitpid(pid, 0)
os.write(fd, b"parent-after\n")
os.close(fd)
print(open("forked.txt").read().split())

fd = os.open("inherited.txt", os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
os.write(fd, b"before-exec\n")
subprocess.run(["sh", "-c", f"echo from-exec >&{fd}"], pass_fds=[fd], check=True)
os.write(fd, b"after-exec\n")
os.close(fd)
print(open("inherited.txt").read().split())

with open("mapped.bin", "wb") as f:
    f.write(b"x" * 8192)
with open("mapped.bin", "r+b") as f:
    m = mmap.mmap(f.fileno(), 0)
    m[100:105] = b"HELLO"
    m.flush()
    m.close()
data = open("mapped.bin", "rb").read()
print(len(data), data[98:107])

with open("locked", "w") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    fcntl.lockf(f, fcntl.LOCK_UN)
    f.write("locked\n")
print(open("locked").read().strip())

fd = os.open("dup.txt", os.O_CREAT | os.O_RDWR | os.O_TRUNC, 0o600)
fd2 = os.dup(fd)
os.write(fd, b"abc")
os.write(fd2, b"def")
print(os.lseek(fd, 0, os.SEEK_CUR), os.lseek(fd2, 0, os.SEEK_CUR))
os.close(fd)
os.lseek(fd2, 0, os.SEEK_SET)
print(os.read(fd2, 100))
os.dup2(fd2, 50)
os.close(fd2)
os.lseek(50, 1, os.SEEK_SET)
print(os.read(50, 2), os.fstat(50).st_size)
os.close(50)
try:
    os.read(50, 1)
except OSError as e:
    print("closed:", e.errno)
try:
    os.open("missing/file", os.O_RDONLY)
except OSError as e:
    print("missing:", e.errno)
try:
    os.open("dup.txt", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
except OSError as e:
    print("exists:", e.errno)
try:
    os.open("dup.txt/x", os.O_RDONLY)
except OSError as e:
    print("notdir:", e.errno)
fd = os.open("ro.txt", os.O_CREAT | os.O_RDONLY, 0o644)
try:
    os.write(fd, b"x")
except OSError as e:
    print("readonly:", e.errno)
os.close(fd)
fd = os.open("attrs.txt", os.O_CREAT | os.O_RDWR, 0o644)
os.setxattr(fd, "user.k", b"v1")
os.setxattr(fd, "user.k2", b"v2")
print(sorted(os.listxattr(fd)), os.getxattr(fd, "user.k"))
os.removexattr(fd, "user.k")
for attempt in (lambda: os.getxattr(fd, "user.k"), lambda: os.setxattr(fd, "user.k2", b"x", os.XATTR_CREATE)):
    try:
        attempt()
    except OSError as e:
        print("xattr error:", e.errno)
os.fchmod(fd, 0o600)
os.utime(fd, (1, 2))
st = os.fstat(fd)
print(oct(st.st_mode), st.st_atime, st.st_mtime)
os.close(fd)

# Namespace calls and their errors, as the kernel gives them.
os.makedirs("ns/a/b")
open("ns/a/f", "w").write("f")
os.symlink("f", "ns/a/l")
os.symlink("../nowhere", "ns/dangling")
calls = [
    ("mkdir exists", lambda: os.mkdir("ns/a")),
    ("mkdir no parent", lambda: os.mkdir("ns/x/y")),
    ("mkdir under file", lambda: os.mkdir("ns/a/f/y")),
    ("rmdir not empty", lambda: os.rmdir("ns/a")),
    ("rmdir file", lambda: os.rmdir("ns/a/f")),
    ("rmdir missing", lambda: os.rmdir("ns/zz")),
    ("unlink dir", lambda: os.unlink("ns/a/b")),
    ("rename into itself", lambda: os.rename("ns/a", "ns/a/b/c")),
    ("rename dir over file", lambda: os.rename("ns/a/b", "ns/a/f")),
    ("rename file over dir", lambda: os.rename("ns/a/f", "ns/a/b")),
    ("rename missing", lambda: os.rename("ns/zz", "ns/yy")),
    ("link dir", lambda: os.link("ns/a/b", "ns/b2")),
    ("link exists", lambda: os.link("ns/a/f", "ns/a/l")),
    ("link missing", lambda: os.link("ns/zz", "ns/z2")),
    ("symlink exists", lambda: os.symlink("x", "ns/a/f")),
    ("readlink file", lambda: os.readlink("ns/a/f")),
    ("readlink missing", lambda: os.readlink("ns/zz")),
    ("access missing", lambda: os.access("ns/zz", os.F_OK) or os.stat("ns/zz")),
    ("chmod missing", lambda: os.chmod("ns/zz", 0o600)),
    ("truncate dir", lambda: os.truncate("ns/a", 0)),
    ("truncate missing", lambda: os.truncate("ns/zz", 0)),
    ("utime dangling", lambda: os.utime("ns/dangling", (1, 1))),
    ("chown missing", lambda: os.chown("ns/zz", 1, 1)),
]
for what, call in calls:
    try:
        call()
        print(what, "ok")
    except OSError as e:
        print(what, e.errno)
os.rename("ns/a/f", "ns/g")
os.link("ns/g", "ns/a/h")
os.chmod("ns/g", 0o640)
os.chown("ns/a/h", 7, 8)
os.utime("ns/a/l", (5, 6), follow_symlinks=False)
os.lchown("ns/a/l", 9, 10)
os.truncate("ns/g", 1)
os.rename("ns/a/b", "ns/c")
print(os.readlink("ns/a/l"), os.access("ns/g", os.R_OK | os.W_OK), os.access("ns/g", os.X_OK), os.access("ns/a", os.X_OK))
for p in ["ns/g", "ns/a/h", "ns/c", "ns/a/l"]:
    st = os.lstat(p)
    print(p, oct(st.st_mode), st.st_nlink, st.st_uid, st.st_gid, st.st_size, st.st_mtime if p.endswith("/l") else "")
os.rmdir("ns/c")
os.unlink("ns/a/h")
print(sorted(os.listdir("ns")), sorted(os.listdir("ns/a")))

# Extended attributes by path, following symbolic links or not.
open("px.txt", "w").write("x")
os.symlink("px.txt", "px-link")
os.setxattr("px.txt", "user.p", b"1")
os.setxattr("px-link", "user.q", b"22")
print(os.getxattr("px-link", "user.q"), sorted(os.listxattr("px.txt")), os.listxattr("px-link", follow_symlinks=False))
os.removexattr("px.txt", "user.p")
for what, call in [
    ("getxattr removed", lambda: os.getxattr("px.txt", "user.p")),
    ("getxattr missing file", lambda: os.getxattr("nope", "user.p")),
    ("setxattr on a symlink itself", lambda: os.setxattr("px-link", "user.r", b"1", follow_symlinks=False)),
    ("removexattr missing", lambda: os.removexattr("px.txt", "user.none")),
    ("getxattr small buffer", lambda: os.getxattr("px.txt", "user.q", follow_symlinks=False) and None),
]:
    try:
        print(what, call())
    except OSError as e:
        print(what, e.errno)
sys.stdout.flush()
"#;

#[test]
fn threads_fork_exec_mmap_and_locks() {
    let st = Stage::new("preload-procs", "q", |_| {});
    let (expected, got) = st.both(&format!("python3 - <<'PY'\n{PROCESSES}\nPY\n"));
    assert_eq!(String::from_utf8_lossy(&got.stdout), String::from_utf8_lossy(&expected.stdout), "{}", stderr(&got));
    assert!(got.status.success(), "{}", stderr(&got));
    let (ours, reference) = (comparable(kernel_tree(&st.mnt)), comparable(kernel_tree(&st.plain)));
    assert!(ours == reference, "trees differ:\n{}", diff(&reference, &ours));
    st.destroy();
}

/// Descriptors of ours inherited across `execl`, `execlp` and `execle` (variadic: glibc builds
/// the array and calls its internal execve, past the `execv*` hooks) keep writing to their
/// file, with argument lists long enough to be passed partly on the stack.
#[test]
fn variadic_execs_keep_inherited_descriptors() {
    let st = Stage::new("preload-execl", "e", |_| {});
    let prog = st.compile("exec");
    let (expected, got) = st.both(&format!("{} && cat exec.txt", prog.display()));
    assert!(got.status.success(), "{}", stderr(&got));
    let out = String::from_utf8_lossy(&got.stdout);
    assert_eq!(out, String::from_utf8_lossy(&expected.stdout), "{}", stderr(&got));
    assert_eq!(out, "opened\nexecl: argc 9, last a6\nexeclp\nexecle: argc 10, last b7, MARK=from-execle, PATH unset\nfrom-sh\n");
    // The first open and its writes were the library's, so the hand-over really happened.
    let mount = st.counters();
    assert!(count(&mount, "user_ops", "open_path") >= 1, "{mount}");
    st.destroy();
}

/// Directory streams (`opendir`, `readdir`, `readdir_r`, `telldir`/`seekdir`, `rewinddir`,
/// `fdopendir`, `dirfd`, `scandir`, `scandirat`), raw `getdents64` with `lseek`,
/// `statfs`/`statvfs` in all forms, and `realpath`, with their errors: the same output as on a plain
/// directory, statistics equal to the kernel's for the same mount, and every listing and
/// statistics call on the user-level path.
#[test]
fn directory_listings_and_statfs_match_a_plain_directory() {
    let st = Stage::new("preload-dirs", "d", |_| {});
    let prog = st.compile("dirs");
    let (expected, got) = st.both(&prog.display().to_string());
    assert_eq!(String::from_utf8_lossy(&got.stdout), String::from_utf8_lossy(&expected.stdout), "{}", stderr(&got));
    assert!(got.status.success(), "{}", stderr(&got));

    let mount = st.counters();
    let count = |path: &str, op: &str| count(&mount, path, op);
    // Twelve full listings of 3,004 entries in 1 KiB and 32 KiB batches.
    assert!(count("user_ops", "readdir") > 100, "listings not on the user-level path: {mount}");
    assert_eq!(count("fuse_ops", "readdir"), 0, "a listing went through FUSE: {mount}");
    // Seven statistics calls through the library; FUSE sees the program's three raw system
    // calls and the library's one-time question per form (statfs, statvfs) at most.
    assert!(count("user_ops", "statfs") >= 6, "statfs not on the user-level path: {mount}");
    assert!(count("fuse_ops", "statfs") <= 5, "statfs mostly on FUSE: {mount}");
    // realpath resolved its symbolic links (41 of them for the loop) on the user-level path.
    assert!(count("user_ops", "readlink") > 40, "realpath not on the user-level path: {mount}");
    assert_eq!(count("fuse_ops", "readlink"), 0, "realpath read links through FUSE: {mount}");
    st.destroy();
}

/// Times and extended attributes changed on the user-level path by callers the kernel treats
/// specially, as on a plain directory: another user with write permission may touch a file's
/// times (both to now) but not set one alone, even to now (`EPERM`); root without
/// `CAP_SYS_ADMIN` may not set a `security.` or `trusted.` attribute, and without
/// `CAP_SETFCAP` not a file capability. (The service let the first through, and checked only
/// the trusted namespace for root.)
#[test]
fn times_and_privileged_attributes_need_what_the_kernel_asks() {
    let st = Stage::new("preload-privs", "v", |_| {});
    let times = r#"
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
class TS(ctypes.Structure):
    _fields_ = [('s', ctypes.c_long), ('ns', ctypes.c_long)]
NOW, OMIT = (1 << 30) - 1, (1 << 30) - 2
def ut(a, m):
    t = (TS * 2)(TS(0, a), TS(0, m))
    return 0 if libc.utimensat(-100, sys.argv[1].encode(), t, 0) == 0 else ctypes.get_errno()
print('omit,now', ut(OMIT, NOW), 'now,omit', ut(NOW, OMIT), 'now,now', ut(NOW, NOW), 'null', 0 if libc.utimensat(-100, sys.argv[1].encode(), None, 0) == 0 else ctypes.get_errno())
"#;
    let xattrs = r#"
import os, struct, sys
caps = struct.pack('<IIIII', 0x02000001, 1 << 13, 0, 0, 0)
out = []
for name in ('security.ima', 'security.capability', 'trusted.x', 'user.x'):
    try:
        os.setxattr(sys.argv[1], name, caps if name == 'security.capability' else b'v')
        out.append(name + '=ok')
    except OSError as e:
        out.append(f'{name}={e.errno}')
print(' '.join(out))
"#;
    let (t, x) = (st.h.scratch.path().join("times.py"), st.h.scratch.path().join("xattrs.py"));
    std::fs::write(&t, times).expect("times.py");
    std::fs::write(&x, xattrs).expect("xattrs.py");
    let (t, x) = (t.display(), x.display());
    let script = format!(
        "set -e; echo x > f; chown 1000:1000 f; chmod 666 f
         setpriv --reuid=1001 --regid=1001 --clear-groups /usr/bin/python3 -c \"$(cat {t})\" f
         for drop in none sys_admin setfcap; do echo y > g-$drop; done
         /usr/bin/python3 -c \"$(cat {x})\" g-none
         setpriv --bounding-set=-sys_admin --inh-caps=-sys_admin /usr/bin/python3 -c \"$(cat {x})\" g-sys_admin
         setpriv --bounding-set=-setfcap --inh-caps=-setfcap /usr/bin/python3 -c \"$(cat {x})\" g-setfcap"
    );
    let (expected, got) = st.both(&script);
    let want = String::from_utf8_lossy(&expected.stdout);
    assert_eq!(want, "omit,now 1 now,omit 1 now,now 0 null 0\nsecurity.ima=ok security.capability=ok trusted.x=ok user.x=ok\nsecurity.ima=1 security.capability=ok trusted.x=1 user.x=ok\nsecurity.ima=ok security.capability=1 trusted.x=ok user.x=ok\n", "the reference");
    assert_eq!(String::from_utf8_lossy(&got.stdout), want, "{}", stderr(&got));
    let mount = st.counters();
    assert!(count(&mount, "user_ops", "setattr") + count(&mount, "user_ops", "setattr_path") > 0 && count(&mount, "user_ops", "setxattr") > 0, "not on the user-level path: {mount}");
    st.destroy();
}

/// `renameat2` with `RENAME_NOREPLACE` and `RENAME_EXCHANGE` by a non-root user on the
/// user-level path, as on a plain directory: `EEXIST` and `ENOENT` before any permission, a
/// file and a directory exchanged, and an exchange that moves another user's directory to
/// another parent refused (it needs write permission on that directory for its `..`).
#[test]
fn renames_with_flags_check_what_the_kernel_checks() {
    let st = Stage::new("preload-rename2", "r", |_| {});
    let program = r#"
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
def r2(a, b, flags):
    return 0 if libc.renameat2(-100, a.encode(), -100, b.encode(), flags) == 0 else ctypes.get_errno()
NOREPLACE, EXCHANGE = 1, 2
print('noreplace-over-theirs', r2('a/f', 'b/theirs', NOREPLACE), 'exchange-missing', r2('a/f', 'b/none', EXCHANGE),
      'exchange-file-dir', r2('a/f', 'a/d', EXCHANGE), 'exchange-their-dir', r2('a/d', 'b/bd', EXCHANGE),
      'noreplace-new', r2('a/d', 'b/new', NOREPLACE), sorted(os.listdir('a')), sorted(os.listdir('b')))
"#;
    let p = st.h.scratch.path().join("rename2.py");
    std::fs::write(&p, program).expect("rename2.py");
    let script = format!(
        "set -e; mkdir -m 777 a b; echo f > a/f; mkdir a/d; chown -R 1000:1000 a/f a/d; mkdir -m 755 b/bd; chown 1001:1001 b/bd; echo t > b/theirs; chown 1001 b/theirs
         setpriv --reuid=1000 --regid=1000 --clear-groups /usr/bin/python3 -c \"$(cat {})\"",
        p.display()
    );
    let (expected, got) = st.both(&script);
    let want = String::from_utf8_lossy(&expected.stdout);
    assert_eq!(want, "noreplace-over-theirs 17 exchange-missing 2 exchange-file-dir 0 exchange-their-dir 13 noreplace-new 0 ['f'] ['bd', 'new', 'theirs']\n", "the reference");
    assert_eq!(String::from_utf8_lossy(&got.stdout), want, "{}", stderr(&got));
    assert!(count(&st.counters(), "user_ops", "rename") > 0, "not on the user-level path: {}", st.counters());
    st.destroy();
}

/// The end of a listing leaves errno as the program set it (`tests/c/errno_kept.c`): ls,
/// find, tar, diff, rm and Python tell the end of a directory from an error by errno alone.
/// The service is stopped while the last `readdir` of each round waits for its answer, so
/// the wait sleeps past a futex timeout (ETIMEDOUT; a sleep that begins as the answer
/// lands ends with EAGAIN, which is how loaded hosts saw `ls: reading directory:
/// Resource temporarily unavailable`): neither may show through.
#[test]
fn the_end_of_a_listing_leaves_errno_as_it_was() {
    let st = Stage::new("preload-errno", "e", |_| {});
    let prog = st.compile_with("errno_kept", "errno_kept", &["-pthread"]);
    let plain = st.command(false, &prog).current_dir(&st.plain).output().expect("run errno_kept");
    assert_eq!(String::from_utf8_lossy(&plain.stdout), "rounds 3\n", "{}", stderr(&plain));
    let pid = st.h.inspect(&st.name)["service"]["pid"].as_i64().expect("service pid");
    let got = st.command(true, &prog).arg(pid.to_string()).current_dir(&st.mnt).output();
    // Whatever became of the program, the service runs on (a program killed while it held
    // the service stopped would leave it so).
    let _ = rustix::process::kill_process(rustix::process::Pid::from_raw(pid as i32).expect("service pid"), rustix::process::Signal::CONT);
    let got = got.expect("run errno_kept");
    assert_eq!(String::from_utf8_lossy(&got.stdout), "rounds 3\n", "{}", stderr(&got));
    assert!(count(&st.counters(), "user_ops", "readdir") >= 6, "the listings were not on the user-level path: {}", st.counters());
    st.destroy();
}

/// Directory descriptors (`open`/`openat` of a directory, `tests/c/dir_handles.c`): first
/// listings with `lseek`, `fsync`, the `*at` calls relative to them, `fchdir`, `fdopendir`,
/// dups, `O_NOFOLLOW`, read permission as another user, for which the kernel never opens a
/// directory (no FUSE `opendir`); then the calls only the kernel serves on an open directory,
/// the program's own `O_PATH` descriptors, a readable but not searchable directory as
/// another user, exec and spawn inheritance: the same output as on a plain directory.
#[test]
fn directory_descriptors_need_no_kernel_open_until_a_call_needs_one() {
    let st = Stage::new("preload-dir-handles", "h", |_| {});
    let prog = st.compile("dir_handles");
    let run = |preloaded: bool, part: &str| {
        let mut c = st.command(preloaded, &prog);
        c.arg(part).current_dir(if preloaded { &st.mnt } else { &st.plain }).env("LC_ALL", "C");
        let out = c.output().expect("run dir_handles");
        assert!(out.status.success(), "{part} (preloaded: {preloaded}): {}", stderr(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let expected = run(false, "first");
    let before = st.counters();
    let got = run(true, "first");
    let after = st.counters();
    assert_eq!(got, expected);
    let opens: u64 = got.lines().find_map(|l| l.strip_prefix("-- ")?.strip_suffix(" directory opens")?.parse().ok()).expect("the program's count of directory opens");
    assert!(opens > 200, "{got}");
    let grew = |a: &serde_json::Value, b: &serde_json::Value, path: &str, op: &str| count(b, path, op).saturating_sub(count(a, path, op));
    assert_eq!(grew(&before, &after, "fuse_ops", "opendir"), 0, "the kernel opened directories: FUSE {}", after["fuse_ops"]);
    assert!(grew(&before, &after, "user_ops", "readdir") >= opens, "listings not on the user-level path: {}", after["user_ops"]);
    assert!(grew(&before, &after, "user_ops", "fsyncdir") >= 2, "{}", after["user_ops"]);
    assert_eq!(run(true, "second"), run(false, "second"));
    st.destroy();
}

/// The file ioctls programs make (`tests/c/file_ioctls.c`: attribute flags, project ids,
/// extent maps, block size, close-on-exec and non-blocking flags, clones, window size): the
/// same answers under the library as on the mount's FUSE path, and none hands the file to the
/// kernel.
#[test]
fn file_ioctls_answer_as_the_fuse_path_without_a_hand_over() {
    let st = Stage::new("preload-ioctls", "i", |_| {});
    let prog = st.compile("file_ioctls");
    let (fuse_dir, user_dir) = (st.mnt.join("on-fuse"), st.mnt.join("at-user-level"));
    std::fs::create_dir(&fuse_dir).expect("mkdir");
    std::fs::create_dir(&user_dir).expect("mkdir");
    let run = |preloaded: bool, dir: &Path| {
        let out = st.command(preloaded, &prog).current_dir(dir).output().expect("run file_ioctls");
        assert!(out.status.success(), "{}", stderr(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let on_fuse = run(false, &fuse_dir);
    let before = st.counters();
    assert_eq!(run(true, &user_dir), on_fuse);
    let after = st.counters();
    assert_eq!(after["user_handovers"]["ioctl"], before["user_handovers"]["ioctl"], "an ioctl handed the file over: {}", after["user_handovers"]);
    assert!(count(&after, "user_ops", "write") > count(&before, "user_ops", "write"), "the file was not ours: {}", after["user_ops"]);
    st.destroy();
}

/// The same programs as a non-root user inside a container (`exec --user 1000`): its root a
/// pool mount whose lower branch holds the host's /usr and /etc (read-only bind mounts, so
/// that sqlite3, python3 and git are there) and the seeded working directory. Same output
/// and tree as a plain directory that user owns; its I/O on the user-level path.
#[test]
fn real_programs_behave_as_on_a_plain_directory_as_a_non_root_user_inside_a_container() {
    const USER: u32 = 1000;
    let st = Stage::on_cpus("preload-progs-ct", "c", "0-1", |d| seed_owned_by(d, USER));
    st.compile("stdio");
    let scratch = st.h.scratch.path().to_path_buf();
    // The container's lower branch: the host's programs and libraries, the seeded /work.
    let hostfs = host_lower(&st);
    let work = hostfs.join("work");
    seed_owned_by(&work, USER);
    std::fs::create_dir(hostfs.join("opt")).expect("opt");
    common::copy_program(&scratch.join("stdio"), &hostfs.join("opt/stdio"));
    let (upper, mnt) = (st.h.scratch.mkdir("ct-upper"), st.h.scratch.mkdir("ct-root"));
    let (l, u, m) = (hostfs.display().to_string(), upper.display().to_string(), mnt.display().to_string());
    st.h.ok(&["mount", "--pool", &st.name, &m, "--lower", &l, "--upper", &u]);

    let script = format!("export HOME=/tmp PATH=/usr/local/bin:/usr/bin:/bin; {PROGRAMS}");
    let expected = {
        let wrapper = format!("exec setpriv --reuid={USER} --regid={USER} --clear-groups bash -c {}", shell_quote(&script));
        bash(&st.h, None, &st.plain, &wrapper)
    };
    assert!(expected.status.success(), "the programs fail on a plain directory: {}", stderr(&expected));
    let got = st.h.run(&[
        "exec", "--pool", &st.name, "--root", &m, "--user", &format!("{USER}:{USER}"), "--workdir", "/work",
        "--env", "LC_ALL=C", "--env", "STDIO_PROGRAM=/opt/stdio", "--", "bash", "-c", &script,
    ]);
    let (want, have) = (String::from_utf8_lossy(&expected.stdout), String::from_utf8_lossy(&got.stdout));
    assert_eq!(have, want, "output differs in the container; its stderr:\n{}", stderr(&got));
    assert_eq!(got.status.code(), expected.status.code(), "{}", stderr(&got));
    let (ours, reference) = (comparable(kernel_tree(&mnt.join("work"))), comparable(kernel_tree(&st.plain)));
    assert!(ours == reference, "trees differ after the programs ran:\n{}", diff(&reference, &ours));
    let made = std::fs::metadata(upper.join("work/out.txt")).expect("out.txt in the upper branch");
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&made), USER, "the user's file is the user's");
    let json: serde_json::Value = serde_json::from_str(&st.h.ok(&["inspect", "--pool", &st.name, "--format", "json"])).expect("json");
    let mount = json[0]["service"]["mounts"].as_array().expect("mounts").iter().find(|x| x["mountpoint"] == m.as_str()).cloned().expect("the container's mount");
    let count = |path: &str, op: &str| count(&mount, path, op);
    for op in ["open_path", "stat_path", "unlink_path", "mkdir", "rename"] {
        assert!(count("user_ops", op) > 0, "no {op} on the user-level path: {}", mount["user_ops"]);
    }
    for op in ["read", "write"] {
        assert!(user_data(&mount, op) > 0, "no {op} on the user-level path: {mount}");
    }
    // The programs' own files: their writes and opens at user level. (Their reads are not
    // compared: here the programs and libraries themselves load through FUSE, exec and mmap.)
    assert!(user_data(&mount, "write") > count("fuse_ops", "write"), "writes mostly on FUSE: {mount}");
    eprintln!("user-level: {}\nFUSE: {}", mount["user_ops"], mount["fuse_ops"]);
    st.destroy();
}

/// A container root's lower branch of the host's programs: read-only bind mounts of /usr and
/// /etc (unmounted with the scratch directory), the usual links, a sticky /tmp and an empty
/// /work.
fn host_lower(st: &Stage) -> std::path::PathBuf {
    let hostfs = st.h.scratch.mkdir("hostfs");
    for dir in ["usr", "etc"] {
        let at = hostfs.join(dir);
        std::fs::create_dir(&at).expect("mountpoint");
        let out = std::process::Command::new("mount").args(["--bind", "-o", "ro"]).arg(format!("/{dir}")).arg(&at).output().expect("mount");
        assert!(out.status.success(), "bind mount of /{dir}: {}", stderr(&out));
    }
    for (link, target) in [("bin", "usr/bin"), ("sbin", "usr/sbin"), ("lib", "usr/lib"), ("lib64", "usr/lib64")] {
        std::os::unix::fs::symlink(target, hostfs.join(link)).expect("symlink");
    }
    let tmp = hostfs.join("tmp");
    std::fs::create_dir(&tmp).expect("tmp");
    std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o1777)).expect("chmod tmp");
    std::fs::create_dir(hostfs.join("work")).expect("work");
    hostfs
}

/// Issue 31's mix, from what a Debian host has: 12 packages built with `dpkg-deb` and
/// installed with `dpkg` (its locks, fsyncs of files and directories, renames, maintainer
/// scripts), three removed; a Python `sqlite3` job in rollback and WAL modes; `git`
/// init/add/commit/fsck of 300 files. Prints what each step left.
const MIX: &str = r#"
set -euo pipefail
export HOME=/tmp PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin LC_ALL=C
export GIT_AUTHOR_DATE="1700000000 +0000" GIT_COMMITTER_DATE="1700000000 +0000" GIT_AUTHOR_NAME=t GIT_AUTHOR_EMAIL=t@t GIT_COMMITTER_NAME=t GIT_COMMITTER_EMAIL=t@t
cd /work
mkdir -p /var/lib/dpkg/info /var/lib/dpkg/updates /var/lib/dpkg/triggers /var/log
touch /var/lib/dpkg/status /var/lib/dpkg/available
for p in $(seq 1 12); do
  d=pkgs/mix$p; mkdir -p $d/DEBIAN $d/opt/mix$p
  for f in $(seq 1 20); do head -c $((p * 300 + f * 50)) /usr/bin/env > $d/opt/mix$p/file$f; done
  printf 'Package: mix%s
Version: 1.0
Architecture: all
Maintainer: t <t@t>
Description: mix %s
' $p $p > $d/DEBIAN/control
  printf '#!/bin/sh
set -e
echo installed > /opt/mix%s/postinst.txt
' $p > $d/DEBIAN/postinst
  chmod 755 $d/DEBIAN/postinst
  dpkg-deb --build --root-owner-group -Zgzip $d pkgs/mix$p.deb > /dev/null
done
dpkg -i pkgs/*.deb > /dev/null
echo "installed $(dpkg -l 'mix*' | grep -c '^ii') $(cat /opt/mix*/postinst.txt | wc -l)"
dpkg --purge mix1 mix2 mix3 > /dev/null 2>&1
echo "after purge $(dpkg -l 'mix*' | grep -c '^ii') $(ls /opt/mix12 | wc -l)"
python3 - <<'PY'
import sqlite3
for mode in ("delete", "wal"):
    db = sqlite3.connect(f"job-{mode}.db")
    db.execute(f"pragma journal_mode={mode}")
    db.execute("create table t(a integer, b text)")
    for tx in range(20):
        with db:
            db.executemany("insert into t values(?,?)", ((i, "x" * 20) for i in range(1000)))
    db.execute("create index ti on t(a)")
    for i in range(200):
        db.execute("insert into t values(?,?)", (i, "y"))
        db.commit()
    print(mode, db.execute("select count(*) from t").fetchone()[0], db.execute("pragma integrity_check").fetchone()[0])
    db.close()
PY
mkdir repo && cd repo && git init -q . && for i in $(seq 1 300); do echo "file $i" > f$i.txt; done
git add . && git commit -qm first && echo "fsck $(git fsck --no-progress 2>&1 | wc -l) commits $(git rev-list --count HEAD) files $(git ls-files | wc -l)"
"#;

/// Issue 31's scenario: [`MIX`] as root in a container whose root is a pool mount over the
/// host's programs. Every step must leave what it should; the mount's share of operations
/// served at user level is printed, and must stay above 60 %. (The issue asks for 85 %: not
/// met. Most of what FUSE serves here is the ~1,200 programs the mix starts: exec, the
/// dynamic loader's opens and maps, and redirections handed to exec'd programs.)
#[test]
fn a_package_sqlite_and_git_mix_in_a_container_stays_mostly_at_user_level() {
    let st = Stage::on_cpus("preload-mix-ct", "m", "0-1", |_| {});
    let hostfs = host_lower(&st);
    let (upper, mnt) = (st.h.scratch.mkdir("mix-upper"), st.h.scratch.mkdir("mix-root"));
    let (l, u, m) = (hostfs.display().to_string(), upper.display().to_string(), mnt.display().to_string());
    // Every data call counted where it is served: without `--no-busy-passthrough`, a file
    // written on and on is passed to the library and the kernel serves its data calls, which
    // the service counts only when the file is closed (`passed_data`; processes that exit
    // with files open never tell).
    st.h.ok(&["mount", "--pool", &st.name, &m, "--lower", &l, "--upper", &u, "--no-busy-passthrough"]);
    let got = st.h.run(&["exec", "--pool", &st.name, "--root", &m, "--workdir", "/work", "--", "bash", "-c", MIX]);
    assert!(got.status.success(), "the mix failed: {}", stderr(&got));
    assert_eq!(String::from_utf8_lossy(&got.stdout), "installed 12 12\nafter purge 9 21\ndelete 20200 ok\nwal 20200 ok\nfsck 0 commits 1 files 300\n", "{}", stderr(&got));
    let json: serde_json::Value = serde_json::from_str(&st.h.ok(&["inspect", "--pool", &st.name, "--format", "json"])).expect("json");
    let mount = json[0]["service"]["mounts"].as_array().expect("mounts").iter().find(|x| x["mountpoint"] == m.as_str()).cloned().expect("the container's mount");
    let total = |path: &str| mount[path].as_object().map_or(0, |ops| ops.values().filter_map(|o| o["count"].as_u64()).sum::<u64>());
    let (user, fuse) = (total("user_ops"), total("fuse_ops"));
    let share = 100.0 * user as f64 / (user + fuse).max(1) as f64;
    eprintln!("user-level share {share:.1} % ({user} user-level, {fuse} FUSE); handed over: {}\nFUSE: {}", mount["user_handovers"], mount["fuse_ops"]);
    assert!(share > 60.0, "user-level share {share:.1} %: {mount}");
    // The packages' files, the databases and the repository are the library's to write.
    assert!(user_data(&mount, "write") > 4 * count(&mount, "fuse_ops", "write"), "writes mostly on FUSE: {mount}");
    assert!(count(&mount, "user_ops", "fsyncdir") > 0 && count(&mount, "fuse_ops", "opendir") < count(&mount, "user_ops", "opendir"), "{mount}");
    st.destroy();
}

/// `s` as one single-quoted shell word.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A program that takes the number of the library's connection for itself (`exec N>file`,
/// `dup2`), closes it or closes everything from 3 up keeps being served right: the
/// connection moves out of the way, `close` of its number fails as for any number the
/// program never opened, and after `closefrom` the library connects again.
#[test]
fn taking_the_connections_number_leaves_the_library_working() {
    let st = Stage::new("preload-sock", "s", seed);
    let script = r#"
set -u
echo one > a.txt
s=$(ls -l /proc/$$/fd | awk '/socket:/ {print $9}' | head -1)
s=${s:-600}
eval "exec $s>taken.txt"
echo two >> a.txt; cat a.txt
echo on-the-number >&$s
eval "exec $s>&-"
cat taken.txt
python3 -c 'import os; os.closerange(3, 4096); open("b.txt", "w").write("after closerange\n"); print(open("b.txt").read(), end="")'
echo three >> a.txt; cat a.txt
"#;
    let (expected, got) = st.both(script);
    assert_eq!(String::from_utf8_lossy(&got.stdout), String::from_utf8_lossy(&expected.stdout), "{}", stderr(&got));
    assert_eq!(stderr(&got), stderr(&expected));
    let mount = st.counters();
    // Every open of the script (a.txt four times, taken.txt twice, b.txt twice) on the
    // user-level path: none fell back to the kernel after the number was taken.
    assert!(count(&mount, "user_ops", "open_path") >= 8, "opens left the user-level path: {}", mount["user_ops"]);
    st.destroy();
}

/// A process that names a mount in its arguments (or runs in one) connects to the service as
/// it starts, before its first call; one that names none connects on its first call on a
/// mount, if any; and a forked child never takes its parent's early connection.
#[test]
fn a_process_that_names_a_mount_connects_as_it_starts() {
    let st = Stage::new("preload-early", "e", |d| std::fs::write(d.join("f"), b"early\n").expect("seed"));
    let clients = || -> u64 {
        let json: serde_json::Value = serde_json::from_str(&st.h.ok(&["inspect", "--pool", &st.name, "--format", "json"])).expect("json");
        json[0]["service"]["user_path"]["clients"].as_u64().expect("clients")
    };
    let file = st.mnt.join("f");
    // `sh -c "sleep 1; true" FILE`: the file is the script's $0, which nothing opens.
    let sleeping = |named: &Path, dir: &Path| {
        st.command(true, Path::new("sh")).args(["-c", "sleep 1; true"]).arg(named).current_dir(dir).spawn().expect("sleeping shell")
    };
    let settle = || std::thread::sleep(std::time::Duration::from_millis(400));
    assert_eq!(clients(), 0, "no client before");
    let mut named = sleeping(&file, Path::new("/"));
    settle();
    assert_eq!(clients(), 1, "a process naming a file of the mount did not connect as it started");
    let _ = named.wait();
    let mut unnamed = sleeping(Path::new("/etc/hostname"), Path::new("/"));
    settle();
    assert_eq!(clients(), 0, "a process naming no mount connected before needing to");
    let _ = unnamed.wait();
    let mut inside = sleeping(Path::new("/etc/hostname"), &st.mnt);
    settle();
    // The shell and its `sleep` (which works in the mount too).
    assert_eq!(clients(), 2, "processes working in the mount did not connect as they started");
    let _ = inside.wait();
    // The early connection serves the first call; a forked child (the subshell) connects on
    // its own and reads right; nothing falls back to FUSE.
    let before = count(&st.counters(), "user_ops", "open_path");
    let out = st.command(true, Path::new("sh")).args(["-c", "cat \"$0\"; (cat \"$0\"); cat \"$0\" | cat"]).arg(&file).current_dir("/").output().expect("sh");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "early\n".repeat(3));
    let mount = st.counters();
    assert!(count(&mount, "user_ops", "open_path") >= before + 3, "the reads left the user-level path: {}", mount["user_ops"]);
    assert_eq!(count(&mount, "fuse_ops", "open"), 0, "a read went through FUSE: {}", mount["fuse_ops"]);
    st.destroy();
}

/// Sets, reads and lists a POSIX ACL on a file of the mount (argv[1]); prints the outcomes.
const ACL: &str = r#"
import errno, os, struct, sys
f = sys.argv[1]
# user::rw-, user:65534:---, group::r--, mask::r--, other::r--
acl = struct.pack("<I", 2) + b"".join(struct.pack("<HHI", t, p, i) for t, p, i in [(1, 6, 0xffffffff), (2, 0, 65534), (4, 4, 0xffffffff), (0x10, 4, 0xffffffff), (0x20, 4, 0xffffffff)])
for what, call in [("set", lambda: os.setxattr(f, "system.posix_acl_access", acl)), ("get", lambda: os.getxattr(f, "system.posix_acl_access")), ("remove", lambda: os.removexattr(f, "system.posix_acl_access"))]:
    try:
        call()
        print(what, "ok")
    except OSError as e:
        print(what, errno.errorcode[e.errno])  # EOPNOTSUPP, which Python names ENOTSUP
print("listed", [n for n in os.listxattr(f) if n.startswith("system.posix_acl")])
"#;

/// A POSIX ACL is refused on both paths (`EOPNOTSUPP`, as a filesystem mounted `noacl`), never
/// accepted and then ignored: no permission check of the service or of the FUSE mount reads
/// one (a red-team reading found `user:nobody:---` taken and nobody still reading the file).
#[test]
fn posix_acls_are_refused_on_both_paths_rather_than_ignored() {
    let st = Stage::new("acl", "acl", |lower| std::fs::write(lower.join("f"), b"secret\n").expect("seed"));
    for preloaded in [true, false] {
        let out = st.command(preloaded, Path::new("/usr/bin/python3")).args(["-c", ACL]).arg(st.mnt.join("f")).output().expect("python3");
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "set ENOTSUP\nget ENOTSUP\nremove ENOTSUP\nlisted []\n", "preloaded: {preloaded}");
    }
    st.destroy();
}
