//! Real programs on a FUSE mount of a union behave exactly as on a plain directory: tar, cp -a,
//! git, sqlite3, fio with verification, static and dynamic binaries executed from the mount,
//! and what a container root filesystem needs (owners, set-id bits, capabilities, device nodes,
//! fifos, permissions checked by the kernel, locks, O_DIRECT, inode numbers and link counts).

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use common::tree::{kernel_tree, Tree};
use common::{require_root, Scratch};
use polytropon::backend::local::{LocalFs, LocalOptions};
use polytropon::libservice::FileSystem;
use polytropon::service::fuse::{self, FuseConfig, Mounted};
use polytropon::spec::CacheMode;
use polytropon::union::UnionFs;

struct Fixture {
    mount: Option<Mounted>,
    /// A plain directory on the host, the reference.
    plain: PathBuf,
    lower: PathBuf,
    upper: PathBuf,
    scratch: Scratch,
}

impl Fixture {
    fn new(tag: &str, cfg: FuseConfig) -> Self {
        require_root();
        let scratch = Scratch::new(tag);
        let (lower, upper, plain) = (scratch.mkdir("lower"), scratch.mkdir("upper"), scratch.mkdir("plain"));
        let mnt = scratch.mkdir("mnt");
        std::fs::write(lower.join("from-image"), b"image data\n").expect("seed lower");
        let open = |p: &Path, ro| -> Arc<dyn FileSystem> {
            Arc::new(LocalFs::new(p, LocalOptions { read_only: ro, ..LocalOptions::default() }).expect("open branch"))
        };
        let union: Arc<dyn FileSystem> = Arc::new(UnionFs::new(Some(open(&upper, false)), vec![open(&lower, true)]).expect("union"));
        let mount = fuse::spawn(union, &mnt, &cfg).expect("FUSE mount");
        std::fs::write(plain.join("from-image"), b"image data\n").expect("seed plain");
        Fixture { mount: Some(mount), plain, lower, upper, scratch }
    }

    fn mnt(&self) -> &Path {
        self.mount.as_ref().map(|m| m.mountpoint()).expect("mounted")
    }

    fn mounted(&self) -> &Mounted {
        self.mount.as_ref().expect("mounted")
    }
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e} (is it installed? scripts/install-deps.sh installs it)"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn sh(dir: &Path, script: &str) -> Output {
    run(Command::new("sh").arg("-ec").arg(script).current_dir(dir))
}

/// A tree with everything a container image holds.
fn build_rich_tree(dir: &Path) {
    sh(
        dir,
        "mkdir -p etc usr/bin var/empty home/u1
         printf 'root:x:0:0::/root:/bin/sh\\n' > etc/passwd
         head -c 300000 /dev/urandom > usr/bin/blob
         printf 'x' > usr/bin/tool && chmod 4755 usr/bin/tool
         mkdir -p srv && chmod 2775 srv
         setcap cap_net_raw+ep usr/bin/blob
         ln -s ../etc/passwd usr/passwd-link
         ln -s /absolute/dangling usr/dangling
         ln etc/passwd etc/passwd.hard
         setfattr -n user.note -v hello etc/passwd
         echo mine > home/u1/file && chown -R 1000:1000 home/u1
         echo other > var/owned && chown 4242:777 var/owned
         mkfifo var/fifo
         mknod var/null c 1 3
         truncate -s 10M var/sparse && printf end >> var/sparse",
    );
}

/// A tree snapshot without the fields that legitimately differ between a plain directory and
/// a union mount (directory link counts of merged directories, inode numbers, dir sizes).
fn comparable(mut t: Tree) -> Tree {
    for n in t.values_mut() {
        if n.kind == "dir" {
            n.nlink = 0;
        }
    }
    t
}

#[test]
fn tar_roundtrip_with_links_xattrs_devices_and_owners() {
    let f = Fixture::new("fuse-tar", FuseConfig::default());
    let src = f.scratch.mkdir("src");
    build_rich_tree(&src);
    let archive = f.scratch.path().join("a.tar");
    let tar_c = |dir: &Path, out: &Path| {
        run(Command::new("tar").args(["--xattrs", "--xattrs-include=*", "--numeric-owner", "-cf"]).arg(out).arg("-C").arg(dir).arg("."));
    };
    tar_c(&src, &archive);
    for dest in [f.plain.as_path(), f.mnt()] {
        run(Command::new("tar")
            .args(["--xattrs", "--xattrs-include=*", "--numeric-owner", "-xpf"])
            .arg(&archive)
            .arg("-C")
            .arg(dest));
    }
    let plain = comparable(kernel_tree(&f.plain));
    let mounted = comparable(kernel_tree(f.mnt()));
    assert_eq!(plain, mounted, "tar x on the mount differs from tar x on a plain directory");
    let cap = run(Command::new("getcap").arg(f.mnt().join("usr/bin/blob")));
    assert!(String::from_utf8_lossy(&cap.stdout).contains("cap_net_raw"), "capability xattr lost");
    assert_eq!(std::fs::metadata(f.mnt().join("usr/bin/tool")).expect("stat").mode() & 0o7777, 0o4755);
    // Archiving from the mount gives an archive that extracts to the same tree.
    let (a1, a2) = (f.scratch.path().join("p.tar"), f.scratch.path().join("m.tar"));
    tar_c(&f.plain, &a1);
    tar_c(f.mnt(), &a2);
    let (x1, x2) = (f.scratch.mkdir("x1"), f.scratch.mkdir("x2"));
    for (a, x) in [(&a1, &x1), (&a2, &x2)] {
        run(Command::new("tar").args(["--xattrs", "--xattrs-include=*", "--numeric-owner", "-xpf"]).arg(a).arg("-C").arg(x));
    }
    assert_eq!(comparable(kernel_tree(&x1)), comparable(kernel_tree(&x2)));
}

#[test]
fn cp_archive_mode_matches_a_plain_directory() {
    let f = Fixture::new("fuse-cp", FuseConfig::default());
    let src = f.scratch.mkdir("src");
    build_rich_tree(&src);
    run(Command::new("cp").arg("-a").arg(src.join(".")).arg(&f.plain));
    run(Command::new("cp").arg("-a").arg(src.join(".")).arg(f.mnt()));
    assert_eq!(comparable(kernel_tree(&f.plain)), comparable(kernel_tree(f.mnt())));
    // And back out of the mount.
    let back = f.scratch.mkdir("back");
    run(Command::new("cp").arg("-a").arg(f.mnt().join(".")).arg(&back));
    assert_eq!(comparable(kernel_tree(&f.plain)), comparable(kernel_tree(&back)));
}

#[test]
fn git_init_add_commit_status() {
    let f = Fixture::new("fuse-git", FuseConfig::default());
    let script = "git init -q repo && cd repo
        git config user.name t && git config user.email t@example.com
        for i in $(seq 1 50); do echo line $i > f$i.txt; done
        mkdir -p sub/deeper && echo x > sub/deeper/y && ln -s f1.txt link
        git add -A && git commit -qm first
        echo changed >> f3.txt && git rm -q f4.txt && git mv f5.txt moved.txt
        git status --porcelain
        git commit -qam second
        git status --porcelain
        git fsck --strict 2>&1
        git rev-parse HEAD^{tree}";
    let plain = sh(&f.plain, script);
    let mounted = sh(f.mnt(), script);
    assert_eq!(String::from_utf8_lossy(&plain.stdout), String::from_utf8_lossy(&mounted.stdout));
    assert!(String::from_utf8_lossy(&mounted.stdout).contains(" M f3.txt"));
}

#[test]
fn sqlite_insert_query_and_integrity_check() {
    let f = Fixture::new("fuse-sqlite", FuseConfig::default());
    let sql = "PRAGMA journal_mode=WAL;
        CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, n INTEGER);
        WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 10000)
          INSERT INTO t(v, n) SELECT printf('row-%05d', x), x * 7 FROM c;
        CREATE INDEX tn ON t(n);
        SELECT count(*), sum(n), max(v) FROM t;
        SELECT v FROM t WHERE n = 7 * 4321;
        DELETE FROM t WHERE id % 3 = 0;
        VACUUM;
        SELECT count(*) FROM t;
        PRAGMA integrity_check;";
    let go = |dir: &Path| String::from_utf8_lossy(&run(Command::new("sqlite3").arg(dir.join("db.sqlite")).arg(sql)).stdout).into_owned();
    let plain = go(&f.plain);
    let mounted = go(f.mnt());
    assert_eq!(plain, mounted);
    assert!(mounted.contains("10000|350035000|row-10000"), "{mounted}");
    assert!(mounted.trim_end().ends_with("ok"), "{mounted}");
}

#[test]
fn fio_verified_writes_buffered_and_direct() {
    for cfg in [FuseConfig::default(), FuseConfig { cache: CacheMode::Direct, ..FuseConfig::default() }] {
        let f = Fixture::new("fuse-fio", cfg);
        for direct in ["0", "1"] {
            let out = run(Command::new("fio")
                .args(["--name=verify", "--rw=randwrite", "--bs=4k", "--size=8m", "--numjobs=2", "--ioengine=psync"])
                .arg(format!("--direct={direct}"))
                .args(["--verify=crc32c", "--do_verify=1", "--verify_fatal=1", "--group_reporting"])
                .arg(format!("--directory={}", f.mnt().display()))
                // fio writes its verify state files into its working directory.
                .current_dir(f.mnt()));
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(!text.contains("verify:") || text.contains("err= 0"), "{text}");
            assert!(text.contains("err= 0"), "{text}");
        }
    }
}

/// A write by a user without `CAP_FSETID` clears a file's set-user-id bit, and its
/// set-group-id bit (when group-executable, or the writer is not in the file's group), on both
/// FUSE cache modes as on a plain directory:
/// through the page cache the kernel clears them, on direct I/O (the `direct` mode, and every
/// handle a create returns) the service must (they were kept). Root's writes keep them.
#[test]
fn writes_clear_set_id_bits_as_on_a_plain_directory() {
    let script = "import os\n\
        for name, mode in (('u', 0o4777), ('g', 0o2777), ('k', 0o2767), ('r', 0o4777)):\n    with open(name, 'w') as f:\n        f.write('x')\n    os.chmod(name, mode)\n\
        pid = os.fork()\n\
        if pid == 0:\n    os.setgid(1000)\n    os.setuid(1000)\n    for name in ('u', 'g', 'k'):\n        fd = os.open(name, os.O_WRONLY | os.O_APPEND)\n        os.write(fd, b'y')\n        os.close(fd)\n    fd = os.open('n', os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o777)\n    os.fchmod(fd, 0o4777)\n    os.write(fd, b'z')\n    os.close(fd)\n    os._exit(0)\n\
        os.waitpid(pid, 0)\n\
        fd = os.open('r', os.O_WRONLY | os.O_APPEND)\nos.write(fd, b'y')\nos.close(fd)\n\
        print(' '.join(f'{n}={os.stat(n).st_mode & 0o7777:o}' for n in ('u', 'g', 'k', 'r', 'n')))\n";
    for cfg in [FuseConfig::default(), FuseConfig { cache: CacheMode::Direct, ..FuseConfig::default() }] {
        let cache = cfg.cache;
        let f = Fixture::new("fuse-setid", cfg);
        for dir in [f.mnt(), f.plain.as_path()] {
            std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o777)).expect("chmod");
        }
        let go = |dir: &Path| String::from_utf8_lossy(&run(Command::new("python3").arg("-c").arg(script).current_dir(dir)).stdout).into_owned();
        let plain = go(&f.plain);
        assert_eq!(plain, "u=777 g=777 k=767 r=4777 n=777\n", "the reference (Linux 6.x: set-group-id without group exec goes too, for a writer outside the group)");
        // Through the page cache the kernel's FUSE code clears a set-group-id bit only when
        // group-executable (its own rule, before Linux 6.x's for local filesystems).
        let want = if cache == CacheMode::Kernel { plain.replace("k=767", "k=2767") } else { plain.clone() };
        assert_eq!(go(f.mnt()), want, "{cache:?} mode");
    }
}

/// A create that finds the name made meanwhile by another client of the instance (here a
/// second FUSE mount of it; in a pool, the user-level path before its notice reaches the
/// kernel) opens that file only as the kernel would: the kernel asked to create, so it checked
/// nothing of an open. Another user's 0600 file is refused, and not truncated; its owner opens
/// it. (It was opened for anyone, `O_TRUNC` included.)
#[test]
fn a_create_that_finds_another_users_file_made_meanwhile_opens_it_only_as_the_kernel_would() {
    require_root();
    let scratch = Scratch::new("fuse-create-race");
    let (upper, a, b) = (scratch.mkdir("upper"), scratch.mkdir("a"), scratch.mkdir("b"));
    std::fs::set_permissions(&upper, std::os::unix::fs::PermissionsExt::from_mode(0o777)).expect("chmod");
    let union: Arc<dyn FileSystem> = Arc::new(UnionFs::new(Some(Arc::new(LocalFs::new(&upper, LocalOptions::default()).expect("upper"))), vec![]).expect("union"));
    let long = std::time::Duration::from_secs(60);
    let cfg = FuseConfig { entry_ttl: long, attr_ttl: long, ..FuseConfig::default() };
    let (ma, mb) = (fuse::spawn(union.clone(), &a, &cfg).expect("mount a"), fuse::spawn(union, &b, &cfg).expect("mount b"));
    let as_user = |uid: u32, script: &str| {
        let out = Command::new("setpriv").args([format!("--reuid={uid}"), format!("--regid={uid}"), "--clear-groups".into(), "/usr/bin/python3".into(), "-c".into(), script.into()]).output().expect("setpriv");
        String::from_utf8_lossy(&out.stdout).trim().to_string() + &String::from_utf8_lossy(&out.stderr)
    };
    let try_open = |path: &Path, flags: &str| format!("import os\ntry:\n    fd = os.open('{}', {flags} | os.O_CREAT, 0o666)\n    print('opened', os.read(fd, 100) if {flags} & 3 != 1 else b'')\nexcept OSError as e:\n    print('errno', e.errno)\n", path.display());
    for (name, flags) in [("x", "os.O_RDWR | os.O_TRUNC"), ("y", "os.O_RDONLY")] {
        // Mount a's kernel learns that the name is missing, for a minute.
        assert_eq!(as_user(1001, &format!("import os\nprint(os.path.exists('{}'))", a.join(name).display())), "False");
        // User 1000 makes it through mount b: a's kernel still thinks it missing.
        assert_eq!(as_user(1000, &format!("import os\nfd = os.open('{}', os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)\nos.write(fd, b'secret')\nprint('made')", b.join(name).display())), "made");
        assert_eq!(as_user(1001, &try_open(&a.join(name), flags)), format!("errno {}", libc::EACCES), "{name}: another user's 0600 file");
        assert_eq!(std::fs::read(upper.join(name)).expect("the file"), b"secret", "{name} was changed");
    }
    // Its owner, through a mount whose kernel thinks the name missing, gets it.
    assert_eq!(as_user(1001, &format!("import os\nprint(os.path.exists('{}'))", b.join("z").display())), "False");
    assert_eq!(as_user(1000, &format!("import os\nfd = os.open('{}', os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)\nos.write(fd, b'mine')\nprint('made')", a.join("z").display())), "made");
    assert_eq!(as_user(1000, &try_open(&b.join("z"), "os.O_RDWR")), "opened b'mine'");
    assert_eq!(as_user(1000, &try_open(&b.join("z"), "os.O_RDWR | os.O_TRUNC")), "opened b''", "an owner's truncating open, by the kernel's second look");
    drop((ma, mb));
}

/// Objects made in a set-group-id directory through FUSE take its group, and directories its
/// set-group-id bit, as on a plain directory (they took the maker's group).
#[test]
fn a_set_group_id_directory_passes_its_group_on_as_on_a_plain_directory() {
    let f = Fixture::new("fuse-setgid", FuseConfig::default());
    let script = "set -e; mkdir p; chown 0:4200 p; chmod 2777 p; setpriv --reuid=1000 --regid=1000 --groups=4200 sh -c 'cd p && echo x > f && mkdir d && mkfifo q && ln -s f l'; stat -c '%n %g %a' p/f p/d p/q; stat -c '%n %g' p/l";
    let plain = String::from_utf8_lossy(&sh(&f.plain, script).stdout).into_owned();
    assert_eq!(plain, "p/f 4200 644\np/d 4200 2755\np/q 4200 644\np/l 4200\n", "the reference");
    assert_eq!(String::from_utf8_lossy(&sh(f.mnt(), script).stdout), plain);
}

/// Names of the trusted namespace are listed through FUSE to callers with CAP_SYS_ADMIN only,
/// as on a plain directory (they were listed to anyone).
#[test]
fn trusted_attribute_names_are_listed_to_the_capable_only() {
    let f = Fixture::new("fuse-trusted", FuseConfig::default());
    let script = "echo x > f; chmod 644 f; setfattr -n trusted.t -v 1 f; setfattr -n user.u -v 1 f
        python3 -c 'import os; print(sorted(os.listxattr(\"f\")))'
        setpriv --reuid=1000 --regid=1000 --clear-groups /usr/bin/python3 -c 'import os; print(sorted(os.listxattr(\"f\")))'
        setpriv --bounding-set=-sys_admin --inh-caps=-sys_admin /usr/bin/python3 -c 'import os; print(sorted(os.listxattr(\"f\")))'";
    let plain = String::from_utf8_lossy(&sh(&f.plain, script).stdout).into_owned();
    assert_eq!(plain, "['trusted.t', 'user.u']\n['user.u']\n['user.u']\n", "the reference");
    assert_eq!(String::from_utf8_lossy(&sh(f.mnt(), script).stdout), plain);
}

#[test]
fn static_and_dynamic_binaries_run_from_the_mount() {
    let f = Fixture::new("fuse-exec", FuseConfig::default());
    common::copy_program(Path::new("/bin/busybox"), &f.lower.join("busybox"));
    common::copy_program(Path::new("/bin/ls"), &f.lower.join("ls"));
    let file = run(Command::new("file").arg("-L").arg(f.mnt().join("busybox")));
    assert!(String::from_utf8_lossy(&file.stdout).contains("static"), "busybox must be the static build");
    let out = run(Command::new(f.mnt().join("busybox")).args(["echo", "static ok"]));
    assert_eq!(out.stdout, b"static ok\n");
    let out = run(Command::new(f.mnt().join("ls")).arg(f.mnt()));
    assert!(String::from_utf8_lossy(&out.stdout).contains("from-image"));
    // A binary copied up (chmod) still runs, and so does one written into the upper branch.
    run(Command::new("chmod").arg("0755").arg(f.mnt().join("ls")));
    run(Command::new(f.mnt().join("ls")).arg("/"));
    std::fs::create_dir(f.mnt().join("bin2")).expect("mkdir through the mount");
    common::copy_program(Path::new("/bin/busybox"), &f.mnt().join("bin2/busybox"));
    let out = run(Command::new(f.mnt().join("bin2/busybox")).args(["echo", "written"]));
    assert_eq!(out.stdout, b"written\n");
    assert!(f.upper.join("bin2/busybox").exists());
}

#[test]
fn container_root_semantics() {
    let f = Fixture::new("fuse-root", FuseConfig::default());
    let m = f.mnt();
    sh(
        m,
        "echo secret > secret && chmod 600 secret
         echo shared > shared && chmod 644 shared
         mkdir tmp && chmod 1777 tmp
         mknod null c 1 3 && mkfifo fifo
         echo a > a && ln a b",
    );
    // Kernel permission checks for other users (allow_other + default_permissions).
    let as_nobody = |script: &str| {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "sh", "-c", script])
            .current_dir(m)
            .output()
            .expect("run setpriv")
    };
    assert!(!as_nobody("cat secret").status.success(), "nobody must not read a 0600 root file");
    assert!(as_nobody("cat shared").status.success(), "nobody may read a 0644 file");
    assert!(!as_nobody("echo x >> shared").status.success(), "nobody must not write a root 0644 file");
    assert!(as_nobody("echo mine > tmp/n && cat tmp/n").status.success(), "nobody may create in a 1777 dir");
    assert_eq!(std::fs::metadata(m.join("tmp/n")).expect("stat").uid(), 65534, "new files belong to their creator");
    assert!(!as_nobody("rm -f secret").status.success());
    // Device node and fifo work (dev mount option, kernel-side fifos).
    sh(m, "echo discard > null && test ! -s null");
    sh(m, "(echo through-fifo > fifo &) && read line < fifo && test \"$line\" = through-fifo");
    // Link counts, inode numbers, one device.
    let (a, b) = (std::fs::metadata(m.join("a")).expect("a"), std::fs::metadata(m.join("b")).expect("b"));
    assert_eq!((a.ino(), a.nlink()), (b.ino(), 2));
    assert_eq!(a.dev(), std::fs::metadata(m.join("from-image")).expect("stat").dev());
    let img = std::fs::metadata(m.join("from-image")).expect("stat").ino();
    sh(m, "echo more >> from-image");
    assert_eq!(std::fs::metadata(m.join("from-image")).expect("stat").ino(), img, "st_ino changed on copy-up");
    // Locks: flock and fcntl, seen by other processes.
    // The holder says when it holds the lock and keeps it until told to let go (no sleeps
    // standing in for either).
    sh(m, "rm -f locked release; flock a sh -c 'touch locked; while [ ! -e release ]; do sleep 0.01; done' & holder=$!; \
           while [ ! -e locked ]; do sleep 0.01; done; if flock -n a true; then r=1; else r=0; fi; touch release; wait $holder; rm -f locked release; exit $r");
    let py = "import fcntl,os,sys,time\nfd=os.open('a',os.O_RDWR)\nfcntl.lockf(fd,fcntl.LOCK_EX)\npid=os.fork()\nif pid==0:\n  fd2=os.open('a',os.O_RDWR)\n  try:\n    fcntl.lockf(fd2,fcntl.LOCK_EX|fcntl.LOCK_NB); os._exit(1)\n  except OSError: os._exit(0)\n_,st=os.waitpid(pid,0)\nsys.exit(os.waitstatus_to_exitcode(st))\n";
    run(Command::new("/usr/bin/python3").arg("-c").arg(py).current_dir(m));
    // O_DIRECT.
    sh(m, "dd if=/dev/zero of=direct bs=4096 count=16 oflag=direct status=none && dd if=direct of=/dev/null bs=4096 iflag=direct status=none");
    assert_eq!(std::fs::metadata(m.join("direct")).expect("stat").len(), 65536);
}

#[test]
fn passthrough_is_used_for_local_files() {
    let f = Fixture::new("fuse-pt", FuseConfig::default());
    let big = vec![7u8; 1 << 20];
    std::fs::write(f.lower.join("big"), &big).expect("seed a large file");
    std::fs::read(f.mnt().join("from-image")).expect("read a small file");
    assert_eq!(f.mounted().stats().passthrough_opens(), 0, "small files go through the page cache");
    assert_eq!(std::fs::read(f.mnt().join("big")).expect("read through the mount"), big);
    assert_eq!(f.mounted().stats().passthrough_opens(), 1, "a large file uses FUSE passthrough");
    // Written through passthrough after a copy-up, then read back through a new open.
    sh(f.mnt(), "dd if=/dev/zero of=big bs=4096 count=1 conv=notrunc status=none");
    assert_eq!(std::fs::read(f.mnt().join("big")).expect("read").len(), 1 << 20);
    assert!(f.mounted().stats().passthrough_opens() >= 2);
    assert_eq!(std::fs::read(f.lower.join("big")).expect("lower"), big, "the image branch is never written");
    let g = Fixture::new("fuse-nopt", FuseConfig { passthrough: false, ..FuseConfig::default() });
    std::fs::write(g.lower.join("big"), &big).expect("seed");
    std::fs::read(g.mnt().join("big")).expect("read through the mount");
    assert_eq!(g.mounted().stats().passthrough_opens(), 0);
}

#[test]
fn data_stays_coherent_across_cached_passthrough_and_direct_opens() {
    // Files cross the passthrough size threshold both ways; every read must see every write,
    // whichever way (page cache, passthrough, direct I/O from create) each open went.
    let f = Fixture::new("fuse-coherent", FuseConfig::default());
    let script = r#"
import os, random
random.seed(7)
model = {}
for step in range(3000):
    name = "f%d" % random.randrange(4)
    op = random.randrange(5)
    if op == 0:
        data = bytes([random.randrange(256)]) * random.choice([10, 5000, 70000, 200000])
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, data); os.close(fd); model[name] = bytearray(data)
    elif op == 1 and name in model:
        off = random.randrange(len(model[name]) + 1); data = os.urandom(random.choice([1, 4096, 100000]))
        fd = os.open(name, os.O_RDWR); os.pwrite(fd, data, off); os.close(fd)
        m = model[name]
        if off + len(data) > len(m): m.extend(b"\0" * (off + len(data) - len(m)))
        m[off:off + len(data)] = data
    elif op == 2 and name in model:
        size = random.choice([0, 100, 65536, 80000]); os.truncate(name, size)
        m = model[name]
        if size < len(m): del m[size:]
        else: m.extend(b"\0" * (size - len(m)))
    elif op == 3 and name in model:
        fd = os.open(name, os.O_RDONLY); keep = os.open(name, os.O_RDONLY)
        got = b"".join(iter(lambda: os.read(fd, 1 << 20), b"")); os.close(fd); os.close(keep)
        assert got == bytes(model[name]), (step, name, len(got), len(model[name]))
    elif op == 4 and name in model:
        with open(name, "rb") as fh:
            assert fh.read() == bytes(model[name]), (step, name)
print("ok")
"#;
    let out = run(Command::new("/usr/bin/python3").arg("-c").arg(script).current_dir(f.mnt()));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
}

#[test]
fn a_large_upper_file_opens_for_reading_and_writing_at_once() {
    // Linux 6.10+ refuses (EIO) any open of an inode open for passthrough that is not itself
    // passthrough on the same backing file: a read-only open must not take a writable file
    // into passthrough alone, or the writer opening next would fail.
    let f = Fixture::new("fuse-rw-mix", FuseConfig::default());
    let m = f.mnt();
    std::fs::write(m.join("big"), vec![1u8; 1 << 20]).expect("create a large upper file");
    let reader = std::fs::File::open(m.join("big")).expect("open for reading");
    let mut writer = std::fs::OpenOptions::new().write(true).open(m.join("big")).expect("open for writing while a reader is open");
    std::io::Write::write_all(&mut writer, b"abc").expect("write");
    drop(writer);
    let mut head = [0u8; 4];
    std::os::unix::fs::FileExt::read_exact_at(&reader, &mut head, 0).expect("read");
    assert_eq!(&head, b"abc\x01");
    // And a writer first, then a reader: both passthrough on one backing file.
    let writer = std::fs::OpenOptions::new().read(true).write(true).open(m.join("big")).expect("open for writing");
    let again = std::fs::read(m.join("big")).expect("read while a writer is open");
    assert_eq!(&again[..4], b"abc\x01");
    drop((writer, reader));
    // A lower file open for reading through passthrough: writing its copy-up meanwhile is
    // refused with EBUSY (not EIO), and works once the reader closed.
    std::fs::write(f.lower.join("image-big"), vec![2u8; 1 << 20]).expect("seed");
    let reader = std::fs::File::open(m.join("image-big")).expect("open a lower file");
    let busy = std::fs::OpenOptions::new().write(true).open(m.join("image-big")).expect_err("a writer beside a passthrough reader of the lower file");
    assert_eq!(busy.raw_os_error(), Some(libc::EBUSY), "{busy}");
    drop(reader);
    std::fs::OpenOptions::new().write(true).open(m.join("image-big")).expect("a writer once the reader closed");
}

/// Whether the host lets FUSE use io_uring (`scripts/test.sh` switches it on for the suite's
/// run and runs the FUSE suites again with it off).
fn host_allows_uring() -> bool {
    std::fs::read_to_string("/sys/module/fuse/parameters/enable_uring").is_ok_and(|v| v.trim() == "Y")
}

/// The transport `m` settles on (its ring threads register right after INIT; the ring is in use
/// once a request came through it).
fn settled_transport(m: &Mounted, want: fuse::uring::Active) -> fuse::uring::Active {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while m.transport() != want && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    m.transport()
}

#[test]
fn requests_take_io_uring_where_the_host_allows_it_and_classic_otherwise() {
    use fuse::uring::Active;
    use polytropon::spec::FuseTransport;
    let allowed = host_allows_uring();
    let classic = Fixture::new("fuse-classic", FuseConfig { transport: FuseTransport::Classic, ..FuseConfig::default() });
    std::fs::metadata(classic.mnt().join("from-image")).expect("stat through the classic transport");
    assert_eq!(classic.mounted().transport(), Active::Classic);

    let auto = Fixture::new("fuse-auto", FuseConfig::default());
    // The transport shows once requests flow.
    std::fs::metadata(auto.mnt().join("from-image")).expect("stat through the auto transport");
    let want = if allowed { Active::Uring } else { Active::Classic };
    assert_eq!(settled_transport(auto.mounted(), want), want, "auto transport with enable_uring {allowed}");
    // Every kind of request on that transport: names, data, attributes, listings, xattrs,
    // passthrough opens of large files, and what the kernel sends back to back.
    let m = auto.mnt();
    std::fs::create_dir(m.join("d")).expect("mkdir");
    std::fs::write(m.join("d/f"), b"0123456789").expect("create and write");
    std::fs::rename(m.join("d/f"), m.join("d/g")).expect("rename");
    std::fs::hard_link(m.join("d/g"), m.join("d/h")).expect("link");
    std::os::unix::fs::symlink("g", m.join("d/s")).expect("symlink");
    assert_eq!(std::fs::read_link(m.join("d/s")).expect("readlink"), Path::new("g"));
    assert_eq!(std::fs::read(m.join("d/s")).expect("read through the symlink"), b"0123456789");
    let mut names: Vec<String> = std::fs::read_dir(m.join("d")).expect("readdir").map(|e| e.expect("entry").file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names, ["g", "h", "s"]);
    xattr_roundtrip(&m.join("d/g"));
    let big = vec![7u8; 3 << 20];
    std::fs::write(m.join("big"), &big).expect("a 3 MiB file (writes as large as the kernel sends)");
    assert_eq!(std::fs::read(m.join("big")).expect("read it back"), big);
    assert_eq!(std::fs::read(auto.upper.join("big")).expect("upper branch"), big);
    // A time before 1970 (an old archive's files), set and read back.
    let old = std::time::UNIX_EPOCH - std::time::Duration::from_secs(86_400);
    std::fs::File::options().write(true).open(m.join("big")).expect("open").set_modified(old).expect("set an mtime before 1970");
    assert_eq!(std::fs::metadata(m.join("big")).expect("stat").mtime(), -86_400);
    std::fs::set_permissions(m.join("big"), std::os::unix::fs::PermissionsExt::from_mode(0o600)).expect("chmod");
    assert_eq!(std::fs::metadata(m.join("big")).expect("stat").mode() & 0o777, 0o600);
    let many = m.join("many");
    std::fs::create_dir(&many).expect("mkdir many");
    for i in 0..1000 {
        std::fs::write(many.join(format!("entry-with-a-longish-name-{i:04}")), b"").expect("create");
    }
    assert_eq!(std::fs::read_dir(&many).expect("list 1,000 entries").count(), 1000);
    for i in 0..1000 {
        std::fs::remove_file(many.join(format!("entry-with-a-longish-name-{i:04}"))).expect("unlink");
    }
    std::fs::remove_dir(&many).expect("rmdir");
    let st = nix::sys::statvfs::statvfs(m).expect("statfs");
    assert!(st.block_size() > 0);
    assert_eq!(std::fs::metadata(m.join("d/nothing")).expect_err("a missing name").raw_os_error(), Some(libc::ENOENT));
    let image = vec![3u8; 1 << 20];
    std::fs::write(auto.lower.join("image-big"), &image).expect("seed a large lower file");
    assert_eq!(std::fs::read(m.join("image-big")).expect("read it through passthrough"), image);
    assert!(auto.mounted().stats().passthrough_opens() > 0, "a large lower file opens for passthrough");
    assert_eq!(auto.mounted().transport(), want, "the transport stays");

    // Asked for by name where the host does not allow it: refused, naming the switch.
    if !allowed {
        let scratch = Scratch::new("fuse-uring-refused");
        let mnt = scratch.mkdir("mnt");
        let lower = scratch.mkdir("lower");
        let fs: Arc<dyn FileSystem> = Arc::new(LocalFs::new(&lower, LocalOptions::default()).expect("branch"));
        let err = fuse::spawn(fs, &mnt, &FuseConfig { transport: FuseTransport::Uring, ..FuseConfig::default() }).expect_err("io_uring where the host does not allow it");
        assert!(err.to_string().contains("enable_uring"), "{err}");
        assert!(!fuse::is_our_mount(&mnt), "nothing mounted");
    }
}

fn xattr_roundtrip(p: &Path) {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let path = CString::new(p.as_os_str().as_bytes()).expect("path");
    let (name, value) = (c"user.transport", b"ring");
    // SAFETY: valid NUL-terminated strings and a live buffer of the given length.
    let set = unsafe { libc::setxattr(path.as_ptr(), name.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    assert_eq!(set, 0, "setxattr: {}", std::io::Error::last_os_error());
    let mut buf = [0u8; 16];
    // SAFETY: as above.
    let n = unsafe { libc::getxattr(path.as_ptr(), name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    assert_eq!(n, value.len() as isize, "getxattr: {}", std::io::Error::last_os_error());
    assert_eq!(&buf[..4], value);
    // SAFETY: a size query (no buffer).
    let size = unsafe { libc::getxattr(path.as_ptr(), name.as_ptr(), std::ptr::null_mut(), 0) };
    assert_eq!(size, 4);
    // SAFETY: a buffer too small: ERANGE.
    let small = unsafe { libc::getxattr(path.as_ptr(), name.as_ptr(), buf.as_mut_ptr().cast(), 2) };
    assert_eq!((small, std::io::Error::last_os_error().raw_os_error()), (-1, Some(libc::ERANGE)));
    // SAFETY: valid strings.
    assert_eq!(unsafe { libc::removexattr(path.as_ptr(), name.as_ptr()) }, 0);
}
