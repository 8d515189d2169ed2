//! Helpers shared by the integration tests: root checks, scratch directories, a kernel
//! overlayfs mount that always unmounts, a path walker over any libservice, pools driven
//! through the binary (`host`) and a pool mount beside a plain directory (`stage`).

#![allow(dead_code)]

pub mod ceph;
pub mod host;
pub mod stage;
pub mod tree;

use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use polytropon::libservice::{Context, FileKind, FileSystem, Inode, ROOT_INODE};

/// A union of a writable `upper` over a read-only `lower` directory (local backend).
pub fn union(lower: &Path, upper: &Path) -> Arc<dyn FileSystem> {
    use polytropon::backend::local::{LocalFs, LocalOptions};
    let l: Arc<dyn FileSystem> = Arc::new(LocalFs::new(lower, LocalOptions { read_only: true, ..LocalOptions::default() }).expect("lower"));
    let u: Arc<dyn FileSystem> = Arc::new(LocalFs::new(upper, LocalOptions::default()).expect("upper"));
    Arc::new(polytropon::union::UnionFs::new(Some(u), vec![l]).expect("union"))
}

/// The test image (`scripts/build-image.sh`: an OCI layout, an OCI archive and a docker-save
/// archive), built once per test run (the script is idempotent and locked).
pub fn image_dir() -> &'static Path {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let out = root.join("target/test-image");
        let st = Command::new("bash").arg(root.join("scripts/build-image.sh")).arg(&out).status().expect("run build-image.sh");
        assert!(st.success(), "scripts/build-image.sh failed");
        out
    })
}

/// Fails loudly (never skips) when the test cannot run for real.
pub fn require_root() {
    assert!(
        rustix::process::geteuid().is_root(),
        "this test needs root (real overlayfs mounts, whiteout device nodes, trusted xattrs); \
         run the suite as root, as .ci/run does"
    );
}

/// Copies a program that a test will then execute, with `cp` rather than from this process:
/// the test harness forks from many threads, and a child forked while this process held the
/// copy open for writing keeps it open until its exec, so running the copy would fail with
/// "Text file busy" (ETXTBSY) now and then.
pub fn copy_program(from: &Path, to: &Path) {
    let out = Command::new("cp").arg(from).arg(to).output().expect("run cp");
    assert!(out.status.success(), "cp {} {}: {}", from.display(), to.display(), String::from_utf8_lossy(&out.stderr));
}

/// A scratch directory removed (after unmounting anything below it) when dropped.
pub struct Scratch(pub tempfile::TempDir);

impl Scratch {
    pub fn new(tag: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix(&format!("polytropon-{tag}-"))
            .tempdir()
            .expect("cannot create a scratch directory under the temp dir");
        Scratch(dir)
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }

    pub fn mkdir(&self, rel: &str) -> PathBuf {
        let p = self.path().join(rel);
        std::fs::create_dir_all(&p).expect("mkdir in scratch");
        p
    }
}

/// Whatever is still mounted under `dir` (a test that failed half-way), deepest first,
/// detached lazily so that a dead FUSE mount or a busy one cannot stop the clean-up.
pub fn unmount_under(dir: &Path) {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else { return };
    let mut points: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(p.replace("\\040", " ")))
        .filter(|p| p.starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for p in points {
        let _ = Command::new("umount").arg("-l").arg(&p).status();
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // Before the directory goes: never remove files through a mount left behind.
        unmount_under(self.path());
    }
}

/// A kernel overlayfs mount, unmounted when dropped (also when the test panics).
pub struct Overlay {
    pub mountpoint: PathBuf,
}

impl Overlay {
    /// Mounts `lowers` (topmost first) under `upper` at `mountpoint`, with the features the
    /// union mirrors: redirect_dir, no index, metacopy or xino.
    pub fn mount(lowers: &[PathBuf], upper: &Path, work: &Path, mountpoint: &Path) -> Self {
        let lowerdir = lowers.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(":");
        let opts = format!(
            "lowerdir={lowerdir},upperdir={},workdir={},redirect_dir=on,index=off,metacopy=off,xino=off",
            upper.display(),
            work.display()
        );
        let out = Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o", &opts])
            .arg(mountpoint)
            .output()
            .expect("cannot run mount(8)");
        assert!(
            out.status.success(),
            "kernel overlayfs mount failed (is the overlay module available?): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Overlay { mountpoint: mountpoint.to_owned() }
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mountpoint).status();
    }
}

pub fn root_ctx() -> Context {
    Context::current()
}

/// Walks `path` (components separated by `/`) from the root of `fs` the way the kernel's
/// path walk would for a final component that is not followed. Returns the inode reached; the
/// caller forgets it with `forget_walk`.
pub struct Walker<'a> {
    pub fs: &'a Arc<dyn FileSystem>,
    pub ctx: Context,
    held: Vec<Inode>,
}

impl<'a> Walker<'a> {
    pub fn new(fs: &'a Arc<dyn FileSystem>) -> Self {
        Walker { fs, ctx: root_ctx(), held: Vec::new() }
    }

    /// Lookup of one component, remembered for `release`.
    pub fn lookup(&mut self, dir: Inode, name: &str) -> io::Result<polytropon::libservice::Entry> {
        let e = self.fs.lookup(&self.ctx, dir, OsStr::new(name))?;
        self.held.push(e.inode);
        Ok(e)
    }

    /// The directory holding the last component of `path` (intermediate symlinks in these
    /// tests always dangle, so they give ENOENT as the kernel's walk would).
    pub fn parent(&mut self, path: &str) -> io::Result<(Inode, String)> {
        let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
        let (last, dirs) = comps.split_last().expect("non-empty path");
        let mut cur = ROOT_INODE;
        for c in dirs {
            let e = self.lookup(cur, c)?;
            match e.attr.kind() {
                FileKind::Directory => cur = e.inode,
                FileKind::Symlink => return Err(io::Error::from_raw_os_error(libc::ENOENT)),
                _ => return Err(io::Error::from_raw_os_error(libc::ENOTDIR)),
            }
        }
        Ok((cur, last.to_string()))
    }

    /// The inode of `path` itself (final symlink not followed).
    pub fn node(&mut self, path: &str) -> io::Result<polytropon::libservice::Entry> {
        let (dir, last) = self.parent(path)?;
        self.lookup(dir, &last)
    }

    pub fn release(&mut self) {
        for ino in self.held.drain(..) {
            self.fs.forget(ino, 1);
        }
    }
}

impl Drop for Walker<'_> {
    fn drop(&mut self) {
        self.release();
    }
}

/// errno of a result (0 for success).
pub fn errno_of<T>(r: &io::Result<T>) -> i32 {
    match r {
        Ok(_) => 0,
        Err(e) => e.raw_os_error().unwrap_or(-1),
    }
}

/// A fresh path for a back driver's channel socket (under the system's temporary directory;
/// the driver removes it when dropped).
#[allow(dead_code)]
pub fn channel_path() -> std::path::PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    std::env::temp_dir().join(format!("ptn-chan-{}-{n}.sock", std::process::id()))
}

/// The channel socket of `driver`, as clients connect to it.
#[allow(dead_code)]
pub fn channel(driver: &polytropon::service::shm::BackDriver) -> std::ffi::CString {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(driver.channel().as_os_str().as_bytes()).expect("a socket path has no NUL")
}

/// The whole disk (`MAJ:MIN`) holding `path`, if it is on a block device.
pub fn disk_of(path: &Path) -> Option<String> {
    let dev = std::os::unix::fs::MetadataExt::dev(&std::fs::metadata(path).ok()?);
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    let sys = PathBuf::from(format!("/sys/dev/block/{major}:{minor}"));
    // A partition's directory is inside its disk's.
    let disk = if sys.join("partition").exists() { sys.canonicalize().ok()?.parent()?.to_path_buf() } else { sys };
    std::fs::read_to_string(disk.join("dev")).ok().map(|d| d.trim().to_string())
}
