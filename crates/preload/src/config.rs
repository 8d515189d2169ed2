//! What the library knows about its process: the pool's channel socket and mounts (from the
//! environment `polytropon exec` sets, resolved; no file is parsed), the umask, the working
//! directory, and the re-entrancy guard.

use std::cell::Cell;
use std::ffi::c_int;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::OnceLock;

use crate::real;

/// A pool mount this process reaches on the user-level path.
pub struct Mount {
    /// Absolute, without a trailing '/' (empty for a mount at `/`: a container's root).
    pub path: Vec<u8>,
    /// Index of its instance in the service's filesystem table.
    pub instance: u32,
    /// `st_dev` of the FUSE mount, so both paths report the same device: asked of the kernel
    /// on first use (see [`Mount::dev`]), not as the library loads (a process that never
    /// touches the mount need not stat it); [`DEV_UNKNOWN`] until then. An atomic, not a
    /// `OnceLock`: a child forked while another thread was asking must not wait for it.
    pub dev: AtomicU64,
    /// The kernel's statistics of the mount, asked once: the type, id and flags only the
    /// kernel knows (the counts come from the service on every call).
    pub kernel_statfs: OnceLock<Option<libc::statfs64>>,
    pub kernel_statvfs: OnceLock<Option<libc::statvfs64>>,
}

impl Mount {
    /// Whether this process may reach the mount point: the kernel lets it search every
    /// directory above it (the service checks those below the instance's root, with the
    /// caller's ids; the ones above are the host's, which only the kernel knows). Asked of
    /// the kernel (a `stat` of the mount point, whose walk checks them) at the first use,
    /// after every change of the process's credentials, and again once [`REACH_TTL_MS`]
    /// passed (another user's `chmod` of a directory above takes effect within that).
    ///
    /// The answer is kept per thread (threads may hold other filesystem ids: `setfsuid`, or
    /// raw `setresuid` as Samba makes it), and so is a refusal (asked again on the same terms).
    /// This is the library's own check, for honest programs: the service does not make it, so
    /// a program that skips the library (or forges its memory) is not held by it.
    pub fn reachable(&self) -> bool {
        let generation = GENERATION.load(Ordering::Acquire);
        let now = coarse_ms();
        let key = self as *const Mount as usize;
        let known = REACHED.try_with(|r| r.borrow().iter().find(|e| e.0 == key).copied()).ok().flatten();
        if let Some((_, g, at, ok)) = known {
            if g == generation && now.saturating_sub(at) < REACH_TTL_MS {
                return ok;
            }
        }
        // A failed stat leaves errno as the program had it (the call may then succeed in the
        // kernel, and programs read errno after calls that succeed).
        let saved = errno();
        let dev = device_of(self.dir());
        let refused = dev == 0 && matches!(errno(), libc::EACCES | libc::EPERM);
        set_errno(saved);
        // Only a refusal counts: a mount point the kernel does not show this process (the
        // direct C API names an instance's paths with no mount of it at all; the service
        // checks which instances a process sees) is served as before.
        let ok = !refused;
        if dev != 0 {
            self.dev.store(dev, Ordering::Relaxed);
        }
        let _ = REACHED.try_with(|r| {
            let mut r = r.borrow_mut();
            match r.iter_mut().find(|e| e.0 == key) {
                Some(e) => *e = (key, generation, now, ok),
                None => r.push((key, generation, now, ok)),
            }
        });
        ok
    }

    /// `st_dev` of the FUSE mount (0 while it cannot be stat'ed: asked again next time).
    pub fn dev(&self) -> u64 {
        let known = self.dev.load(Ordering::Relaxed);
        if known != DEV_UNKNOWN {
            return known;
        }
        let dev = device_of(self.dir());
        if dev != 0 {
            // Threads asking at once store the same answer.
            self.dev.store(dev, Ordering::Relaxed);
        }
        dev
    }

    /// The kernel's statistics of the mount (`None` when it would not say).
    pub fn kernel_statfs(&self) -> Option<&libc::statfs64> {
        self.kernel_statfs.get_or_init(|| ask_kernel(self.dir(), real::statfs64)).as_ref()
    }

    /// As [`Mount::kernel_statfs`], in the `statvfs` form.
    pub fn kernel_statvfs(&self) -> Option<&libc::statvfs64> {
        self.kernel_statvfs.get_or_init(|| ask_kernel(self.dir(), real::statvfs64)).as_ref()
    }

    /// `pathconf` of the mount point (the kernel's answer, through the FUSE mount).
    pub fn pathconf(&self, name: c_int) -> std::ffi::c_long {
        let Ok(path) = std::ffi::CString::new(self.dir()) else {
            set_errno(libc::EINVAL);
            return -1;
        };
        // SAFETY: a NUL-terminated path; `pathconf` is not one of the calls this library
        // replaces, so this is libc's own.
        unsafe { libc::pathconf(path.as_ptr(), name) }
    }

    /// The mount point as a path the kernel takes (`/` for the root).
    fn dir(&self) -> &[u8] {
        if self.path.is_empty() {
            b"/"
        } else {
            &self.path
        }
    }
}

/// What `call` (`statfs64`, `statvfs64`: a path and a structure it fills whole on success)
/// says of `path`.
fn ask_kernel<T>(path: &[u8], call: unsafe fn(*const std::ffi::c_char, *mut T) -> c_int) -> Option<T> {
    let path = std::ffi::CString::new(path).ok()?;
    let mut out = std::mem::MaybeUninit::<T>::uninit();
    // SAFETY: a NUL-terminated path and room for one `T`, as the call requires.
    if unsafe { call(path.as_ptr(), out.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: the call succeeded, so it filled the whole structure.
    Some(unsafe { out.assume_init() })
}

/// [`Mount::dev`] not asked yet.
pub const DEV_UNKNOWN: u64 = u64::MAX;

/// How long a mount point found reachable stays so without asking the kernel again.
pub const REACH_TTL_MS: u64 = 1000;

/// Milliseconds of the coarse monotonic clock (a few ms of resolution, a fraction of the
/// precise clock's cost: it is read on every path call).
fn coarse_ms() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid out-parameter; CLOCK_MONOTONIC_COARSE exists on Linux 2.6.32+.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

/// The mount whose FUSE device is `dev`.
pub fn mount_of_dev(dev: u64) -> Option<&'static Mount> {
    get()?.mounts.iter().find(|m| m.dev() == dev)
}

pub struct Config {
    /// The pool service's channel socket (`POLYTROPON_CHANNEL`).
    pub channel: std::ffi::CString,
    /// Longest path first, so nested mounts match the innermost.
    pub mounts: Vec<Mount>,
    /// Absolute paths (without a trailing '/') whose trees are other filesystems mounted
    /// over a pool mount — a container's /proc, /dev, /sys — and stay the kernel's.
    pub kernel: Vec<Vec<u8>>,
}

impl Config {
    /// Whether a process started in `cwd` with arguments `args` will likely call on one of
    /// the mounts soon: a mount at `/` (a container's root, where every file is), a working
    /// directory under a mount, or an argument that is a path under one (`cat /mnt/a/f`).
    pub fn likely_used<'a>(&self, cwd: &[u8], mut args: impl Iterator<Item = &'a [u8]>) -> bool {
        let under = |p: &[u8]| p.first() == Some(&b'/') && self.mounts.iter().any(|m| p.starts_with(&m.path) && matches!(p.get(m.path.len()), None | Some(b'/')));
        self.mounts.iter().any(|m| m.path.is_empty()) || under(cwd) || args.any(under)
    }

    /// The mount the tidy absolute path `abs` lies strictly under (or is the root of, with
    /// `root_too`); the deepest one. None for every path once they moved ([`paths_moved`]).
    pub fn mount_of(&self, abs: &[u8], root_too: bool) -> Option<&Mount> {
        if paths_have_moved() {
            return None;
        }
        let under = |m: &&Mount| abs.len() > m.path.len() + 1 && abs.starts_with(&m.path) && abs[m.path.len()] == b'/';
        self.mounts.iter().find(|m| under(m) || (root_too && abs == m.path.as_slice()))
    }

    /// Whether the tidy absolute path `abs` lies in one of the kernel's trees.
    pub fn kernel_owned(&self, abs: &[u8]) -> bool {
        self.kernel.iter().any(|k| abs.starts_with(k) && matches!(abs.get(k.len()), None | Some(b'/')))
    }
}

static CONFIG: OnceLock<Option<Config>> = OnceLock::new();
static UMASK: AtomicU32 = AtomicU32::new(UMASK_UNKNOWN);
/// `UMASK` before anything needed it: read from the kernel on first use (most processes
/// create nothing, and `/proc/self/status` costs tens of microseconds).
const UMASK_UNKNOWN: u32 = u32::MAX;
/// The working directory, under a sequence lock: writers (chdir, rare) make `CWD_SEQ` odd
/// while they change the bytes; readers copy and retry if the sequence moved. No allocation,
/// nothing leaked, no lock for readers.
static CWD_SEQ: AtomicU64 = AtomicU64::new(0);
static CWD_LEN: AtomicUsize = AtomicUsize::new(0);
static CWD_BYTES: [AtomicU8; CWD_MAX] = [const { AtomicU8::new(0) }; CWD_MAX];
pub const CWD_MAX: usize = libc::PATH_MAX as usize;
/// Bumped in the child after fork, and whenever the process's credentials change: the
/// per-thread clients made before must not be reused (a parent's are not ours; the service
/// took the credentials of ours when they connected).
pub static GENERATION: AtomicU32 = AtomicU32::new(0);

/// Set once the process changed where its paths lead (see [`paths_moved`]).
static PATHS_MOVED: AtomicBool = AtomicBool::new(false);

/// The process changed where its paths lead: a `chroot`, a mount namespace of its own or
/// another's, a mount or unmount. The mount table it got at `exec` no longer says which
/// paths are the pool's (a path under a mount point may now be a file system mounted over
/// it, or the same text may name a file under the new root), so from now on every path goes
/// to the kernel, which resolves it. Files and directories already open stay at user level:
/// they name objects, not paths.
pub fn paths_moved() {
    PATHS_MOVED.store(true, Ordering::Release);
}

/// Whether [`paths_moved`] was called.
pub fn paths_have_moved() -> bool {
    PATHS_MOVED.load(Ordering::Acquire)
}

thread_local! {
    static BUSY: Cell<bool> = const { Cell::new(false) };
    /// This thread's answers of [`Mount::reachable`]: (the mount's address, the credential
    /// generation, ms of the coarse clock, reachable).
    static REACHED: std::cell::RefCell<Vec<(usize, u32, u64, bool)>> = const { std::cell::RefCell::new(Vec::new()) };
}

#[cfg(test)]
/// Marks `m` reachable for this thread until the clock passes `u64::MAX` ms (tests of paths
/// under made-up mount points).
pub fn reached_for_tests(m: &Mount) {
    let key = m as *const Mount as usize;
    let _ = REACHED.try_with(|r| r.borrow_mut().push((key, GENERATION.load(Ordering::Acquire), u64::MAX, true)));
}

/// Held while this library runs its own code on a thread: libc calls made meanwhile (by the
/// standard library, say) go straight to libc.
pub struct Busy(());

impl Busy {
    /// `None` when the thread is already inside the library (or its thread-locals are gone).
    pub fn enter() -> Option<Busy> {
        BUSY.try_with(|b| (!b.replace(true)).then_some(Busy(()))).ok().flatten()
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let _ = BUSY.try_with(|b| b.set(false));
    }
}

/// The configuration, read once. `None` when the process was not started for a pool (the
/// library then passes everything through).
pub fn get() -> Option<&'static Config> {
    CONFIG.get_or_init(load).as_ref()
}

fn load() -> Option<Config> {
    let channel = std::ffi::CString::new(std::env::var("POLYTROPON_CHANNEL").ok()?).ok()?;
    let table = std::os::unix::ffi::OsStringExt::into_vec(std::env::var_os("POLYTROPON_MOUNTS")?);
    let mut mounts: Vec<Mount> = mount_table(&table)
        .into_iter()
        .map(|(path, instance)| Mount { dev: AtomicU64::new(DEV_UNKNOWN), path, instance, kernel_statfs: OnceLock::new(), kernel_statvfs: OnceLock::new() })
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.path.len()));
    let kernel = std::env::var("POLYTROPON_KERNEL_PATHS")
        .unwrap_or_default()
        .split(':')
        .filter(|p| p.starts_with('/'))
        .map(|p| p.trim_end_matches('/').as_bytes().to_vec())
        .filter(|p| !p.is_empty())
        .collect();
    refresh_cwd();
    Some(Config { channel, mounts, kernel })
}

/// The mount points (without a trailing `/`: the root is the empty path) and instances of a `POLYTROPON_MOUNTS` table
/// (`polytropon_ipc::mount_table`); entries that are not absolute paths are left out.
fn mount_table(table: &[u8]) -> Vec<(Vec<u8>, u32)> {
    use polytropon_ipc::mount_table::{entry, unescape, ENTRIES};
    table
        .split(|&b| b == ENTRIES)
        .filter_map(|m| {
            let (escaped, instance) = entry(m)?;
            let mut path = Vec::with_capacity(escaped.len());
            if !unescape(escaped, |b| path.push(b)) || !path.starts_with(b"/") {
                return None;
            }
            while path.ends_with(b"/") {
                path.pop();
            }
            Some((path, instance))
        })
        .collect()
}

fn device_of(path: &[u8]) -> u64 {
    let Ok(c) = std::ffi::CString::new(path) else { return 0 };
    // SAFETY: zeroed `stat` is a valid out-parameter; `c` is NUL-terminated.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path we own and `st` a valid out-parameter.
    if unsafe { real::stat(c.as_ptr(), &mut st) } == 0 {
        st.st_dev
    } else {
        0
    }
}

/// The process's umask as the kernel has it: read, not set-and-restore (another thread may be
/// creating files meanwhile); 022 if it cannot be read.
fn kernel_umask() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix("Umask:")).and_then(|v| u32::from_str_radix(v.trim(), 8).ok()).unwrap_or(0o022)
}

pub fn umask() -> u32 {
    let m = UMASK.load(Ordering::Relaxed);
    if m != UMASK_UNKNOWN {
        return m;
    }
    let read = kernel_umask() & 0o777;
    // A `umask` call that raced us wins.
    match UMASK.compare_exchange(UMASK_UNKNOWN, read, Ordering::Relaxed, Ordering::Relaxed) {
        Ok(_) => read,
        Err(now) => now,
    }
}

pub fn set_umask(m: u32) {
    UMASK.store(m & 0o777, Ordering::Relaxed);
}

/// Re-reads the working directory from the kernel (after chdir/fchdir).
pub fn refresh_cwd() {
    let mut buf = [0u8; CWD_MAX];
    // SAFETY: `buf` is writable for its length.
    let p = unsafe { real::getcwd(buf.as_mut_ptr() as *mut libc::c_char, buf.len()) };
    let len = if p.is_null() { 0 } else { buf.iter().position(|b| *b == 0).unwrap_or(0) };
    // Take the write side: even -> odd (another writer holds it while it is odd).
    let mut seq = CWD_SEQ.load(Ordering::Relaxed);
    loop {
        if seq.is_multiple_of(2) {
            match CWD_SEQ.compare_exchange_weak(seq, seq + 1, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => break,
                Err(now) => seq = now,
            }
        } else {
            std::hint::spin_loop();
            seq = CWD_SEQ.load(Ordering::Relaxed);
        }
    }
    // Readers that see the new bytes also see the odd sequence.
    std::sync::atomic::fence(Ordering::Release);
    for (slot, b) in CWD_BYTES.iter().zip(&buf[..len]) {
        slot.store(*b, Ordering::Relaxed);
    }
    CWD_LEN.store(len, Ordering::Relaxed);
    CWD_SEQ.store(seq + 2, Ordering::Release);
}

/// The change table's slot of each instance's names, as the service tells it with what a
/// client learns: `(instance + 1) << 32 | slot`, at `instance % NAMES_SLOTS` (0: none known).
static NAMES_SLOT: [AtomicU64; NAMES_SLOTS] = [const { AtomicU64::new(0) }; NAMES_SLOTS];
/// The change table each `NAMES_SLOT` entry was learned under (a successor service, or a
/// remount, may key the instance differently).
static NAMES_TABLE: [AtomicU64; NAMES_SLOTS] = [const { AtomicU64::new(0) }; NAMES_SLOTS];
const NAMES_SLOTS: usize = 64;

/// How a slot's word of the change table is read now (the table's identity and the word),
/// set by the client module (which this one must not call: it is below it).
static CHANGE_WORD: OnceLock<ChangeWord> = OnceLock::new();

/// Reads a slot's word of the change table now: the table's identity and the word.
pub type ChangeWord = fn(u64) -> Option<(u64, u64)>;

/// Notes the slot of `instance`'s names in change table `table` (from an answer of the
/// service), and how the client reads a slot's word.
pub fn learn_names_slot(instance: u32, table: u64, slot: u64, change_word: ChangeWord) {
    let _ = CHANGE_WORD.set(change_word);
    if let Ok(s) = u32::try_from(slot) {
        let i = instance as usize % NAMES_SLOTS;
        NAMES_SLOT[i].store(0, Ordering::Release);
        NAMES_TABLE[i].store(table, Ordering::Release);
        NAMES_SLOT[i].store((u64::from(instance) + 1) << 32 | u64::from(s), Ordering::Release);
    }
}

/// The slot of `instance`'s names and the table it is one of.
fn names_slot(instance: u32) -> Option<(u64, u64)> {
    let i = instance as usize % NAMES_SLOTS;
    let v = NAMES_SLOT[i].load(Ordering::Acquire);
    let table = NAMES_TABLE[i].load(Ordering::Acquire);
    (v >> 32 == u64::from(instance) + 1 && NAMES_SLOT[i].load(Ordering::Acquire) == v).then_some((v & 0xffff_ffff, table))
}

/// What tells that the working directory's path still leads to it: the instance's names word
/// (change table identity, slot, word) read before the path was, valid while `CWD_SEQ` is
/// `CWD_CHECK_SEQ` (0: not armed). A directory renamed or removed on the way moves the word.
static CWD_CHECK_SEQ: AtomicU64 = AtomicU64::new(0);
static CWD_CHECK: [AtomicU64; 3] = [const { AtomicU64::new(0) }; 3];
/// Held by the thread arming the check.
static CWD_ARMING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
/// A names word first seen (and when, in ms of [`clock_ms`]): the check is armed with it only
/// once it has held for `SETTLE_MS`. The service moves the word as it changes a name, a
/// moment before the kernel's name cache follows (its invalidation on the user-level path,
/// the reply on the FUSE path): a path read in that moment is the old one.
static CWD_SEEN: [AtomicU64; 2] = [const { AtomicU64::new(0) }; 2];
const SETTLE_MS: u64 = 2;

fn clock_ms() -> u64 {
    static START: OnceLock<std::time::Instant> = OnceLock::new();
    START.get_or_init(std::time::Instant::now).elapsed().as_millis() as u64 + 1
}

/// In a child after fork: another thread of the parent may have held the working directory's
/// write side or the check's arming at the fork; the child's own copy starts over.
pub fn cwd_after_fork() {
    CWD_ARMING.store(false, Ordering::Release);
    CWD_CHECK_SEQ.store(0, Ordering::Release);
    let seq = CWD_SEQ.load(Ordering::Relaxed);
    if !seq.is_multiple_of(2) {
        CWD_LEN.store(0, Ordering::Relaxed);
        CWD_SEQ.store(seq + 1, Ordering::Release);
    }
}

/// The working directory for a relative path, as [`cwd`], re-read from the kernel first
/// unless the instance's names have not changed since it was last read. The kernel resolves
/// a relative path from the directory itself: once a directory on the way was renamed (or
/// removed, and another made in its place), the path last read leads elsewhere, and `getcwd`
/// says where the directory is now (or fails, when the kernel has lost its name: relative
/// paths then go to the kernel). A working directory under no mount is kept as it is: no
/// rename moves a directory between filesystems, and `..` is always the kernel's.
pub fn cwd_current(out: &mut [u8; CWD_MAX]) -> usize {
    let Some(cfg) = get() else { return cwd(out) };
    let (n, seq) = cwd_seq(out);
    if n == 0 {
        // Unknown (the kernel had lost the directory's name): it may have one again.
        refresh_cwd();
        return cwd(out);
    }
    let Some(instance) = cfg.mount_of(&out[..n], true).map(|m| m.instance) else {
        return n;
    };
    let (Some((slot, table)), Some(current)) = (names_slot(instance), CHANGE_WORD.get()) else {
        // No way to tell (no change table, or nothing learned of the instance yet): ask.
        refresh_cwd();
        return cwd(out);
    };
    let armed = CWD_CHECK_SEQ.load(Ordering::Acquire);
    let check = [0, 1, 2].map(|i| CWD_CHECK[i].load(Ordering::Acquire));
    if armed == seq && CWD_CHECK_SEQ.load(Ordering::Acquire) == armed && check[0] == table && check[1] == slot && current(slot) == Some((check[0], check[2])) {
        return n;
    }
    // The word first, then the path: a change after the word was read is seen next time.
    let before = current(slot).filter(|(t, _)| *t == table);
    refresh_cwd();
    let (n, seq) = cwd_seq(out);
    let Some((table, word)) = before else { return n };
    let now = clock_ms();
    if CWD_SEEN[0].load(Ordering::Acquire) != word {
        CWD_SEEN[1].store(now, Ordering::Release);
        CWD_SEEN[0].store(word, Ordering::Release);
        return n;
    }
    if now < CWD_SEEN[1].load(Ordering::Acquire) + SETTLE_MS {
        return n;
    }
    if CWD_ARMING.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).is_ok() {
        CWD_CHECK_SEQ.store(0, Ordering::Release);
        for (i, v) in [table, slot, word].into_iter().enumerate() {
            CWD_CHECK[i].store(v, Ordering::Release);
        }
        CWD_CHECK_SEQ.store(seq, Ordering::Release);
        CWD_ARMING.store(false, Ordering::Release);
    }
    n
}

/// Copies the working directory (as last seen; empty when unknown) into `out`; its length.
pub fn cwd(out: &mut [u8; CWD_MAX]) -> usize {
    cwd_seq(out).0
}

/// [`cwd`], and the sequence number of the copy.
fn cwd_seq(out: &mut [u8; CWD_MAX]) -> (usize, u64) {
    loop {
        let before = CWD_SEQ.load(Ordering::Acquire);
        if !before.is_multiple_of(2) {
            std::hint::spin_loop();
            continue;
        }
        let len = CWD_LEN.load(Ordering::Relaxed).min(CWD_MAX);
        for (o, slot) in out.iter_mut().zip(&CWD_BYTES[..len]) {
            *o = slot.load(Ordering::Relaxed);
        }
        std::sync::atomic::fence(Ordering::Acquire);
        if CWD_SEQ.load(Ordering::Relaxed) == before {
            return (len, before);
        }
    }
}

pub fn set_errno(e: c_int) {
    // SAFETY: writing the calling thread's errno.
    unsafe { *libc::__errno_location() = e };
}

pub fn errno() -> c_int {
    // SAFETY: reading the calling thread's errno.
    unsafe { *libc::__errno_location() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(path: &str) -> Mount {
        Mount { path: path.as_bytes().to_vec(), instance: 0, dev: AtomicU64::new(0), kernel_statfs: OnceLock::new(), kernel_statvfs: OnceLock::new() }
    }

    #[test]
    fn the_mount_table_holds_any_mount_point() {
        let table = b"/srv/debian%3A12=3:/mnt/a/=0:/=7:relative=1:/bad%zz=2:/x=notanumber:/a%3Db%25c=4";
        let got = mount_table(table);
        let want: Vec<(Vec<u8>, u32)> = vec![(b"/srv/debian:12".to_vec(), 3), (b"/mnt/a".to_vec(), 0), (Vec::new(), 7), (b"/a=b%c".to_vec(), 4)];
        assert_eq!(got, want);
    }

    #[test]
    fn a_process_is_likely_to_use_a_mount_it_names_or_works_in() {
        let host = Config { channel: c"".into(), mounts: vec![mount("/mnt/a")], kernel: Vec::new() };
        let args = |a: &'static [&'static str]| a.iter().map(|s| s.as_bytes());
        assert!(host.likely_used(b"/", args(&["/mnt/a/f"])));
        assert!(host.likely_used(b"/mnt/a/src", args(&["-c", "make"])));
        assert!(host.likely_used(b"/", args(&["/mnt/a"])));
        assert!(!host.likely_used(b"/", args(&["/mnt/ab/f", "mnt/a/f", "/etc/hostname"])));
        assert!(!host.likely_used(b"/mnt", args(&[])));
        let container = Config { channel: c"".into(), mounts: vec![mount("")], kernel: Vec::new() };
        assert!(container.likely_used(b"/", args(&[])));
    }

    #[test]
    fn kernel_trees_cover_their_paths_and_nothing_else() {
        let cfg = Config { channel: c"".into(), mounts: Vec::new(), kernel: vec![b"/proc".to_vec(), b"/dev".to_vec()] };
        for p in ["/proc", "/proc/self/maps", "/dev", "/dev/shm/x"] {
            assert!(cfg.kernel_owned(p.as_bytes()), "{p}");
        }
        for p in ["/procfs", "/devices/x", "/", "/etc/dev", ""] {
            assert!(!cfg.kernel_owned(p.as_bytes()), "{p}");
        }
    }
}
