//! Open files of the user-level path and the descriptors that name them, in fixed static
//! tables: no allocation and no blocking lock on the hot path (what is known of a file's
//! contents, a small file's bytes kept from its open, sits behind a lock only ever tried).
//!
//! Each of our descriptors is a real kernel descriptor (a duplicate of one `/dev/null`
//! descriptor), so its number is never handed out twice, `FD_CLOEXEC` lives in the kernel,
//! and exec closes it as it should. Several descriptors (dup) share one [`File`] and its
//! offset, as they would share an open file description.
//!
//! When a call needs what only the kernel can do with a descriptor (mmap, locks, fork, exec,
//! a libc routine that uses the descriptor internally), the file is *materialized*: reopened
//! through the FUSE mount of the same instance at the same offset and moved onto the same
//! descriptor numbers; from then on the kernel serves it.

use std::cell::UnsafeCell;
use std::ffi::c_int;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use polytropon_ipc::{WireAttr, PASS_AFTER};

use crate::config::errno;
use crate::real;

pub const MAX_FILES: usize = 1024;
pub const MAX_FDS: usize = 65536;
/// Longest absolute path kept for reopening through the kernel.
pub const PATH_KEEP: usize = 1024;

pub struct File {
    /// Descriptors naming this file (0: the slot is free).
    refs: AtomicU32,
    pub instance: AtomicU32,
    /// `st_dev` of the mount it was opened on.
    pub dev: AtomicU64,
    /// Open status flags: access mode, `O_APPEND`, `O_NONBLOCK`, ...
    pub flags: AtomicU32,
    pub inode: AtomicU64,
    pub handle: AtomicU64,
    pub offset: AtomicU64,
    /// Its descriptors are the backing file's, sent by the service (`OPEN_PASSED`): the kernel
    /// keeps its offset and status flags and serves its data calls.
    passthrough: AtomicBool,
    /// A lower file passed read-only (`OPEN_WATCHED`): its change-table slot plus one (0:
    /// not watched), the word it held and the table's identity. Once the word moves, the file's
    /// data calls go to the service (`leave_passthrough`).
    watch_slot: AtomicU64,
    watch_word: AtomicU64,
    watch_table: AtomicU64,
    /// A thread is taking the file off its backing descriptor.
    leaving: AtomicBool,
    /// The service may pass the file's backing file once it proves busy (`OPEN_PASSABLE`);
    /// cleared by the one thread that asks.
    passable: AtomicBool,
    /// Once busy, its descriptor becomes a kernel open of it through the mount rather than
    /// its backing file (`OPEN_KERNEL_CACHED`).
    to_kernel: AtomicBool,
    /// Data calls made on it at user level while `passable` (see [`File::busy`]).
    calls: AtomicU32,
    /// Data calls the kernel served on its backing descriptor (see `LastRef::passed_calls`).
    passed_calls: AtomicU64,
    /// Held while a call moves the shared offset (`read`, `write`) or the file takes its
    /// backing descriptor, as the kernel's per-file position lock (see [`File::lock_offset`]).
    offset_lock: AtomicBool,
    path_len: AtomicUsize,
    path: UnsafeCell<[u8; PATH_KEEP]>,
    /// This open's number (from `SERIALS`): what is known of the file is trusted only under
    /// the same number, so a slot used again never answers from an earlier file's bytes.
    serial: AtomicU64,
    /// What the service told of the file's contents (taken with `try_lock` only: a thread that
    /// held it at a `fork` leaves it locked in the child, which then just asks the service).
    /// (Boxed: `None` is then all zeros, so the file table lives in `.bss`, not in the
    /// library file; an inline `Known` puts a nonzero niche there.)
    known: Mutex<Option<Box<Known>>>,
    /// Its service handle is shared with the library's memory of opens (`opens`): `held` is
    /// this file's share, and whoever lets go of the last share releases the handle.
    shared: AtomicBool,
    held: Mutex<Option<Arc<LastRef>>>,
    /// Whether its descriptors are the file itself, opened through the kernel (its FUSE
    /// mount) for its locks, rather than `/dev/null` (`ANCHOR`; `OPENING` while a thread
    /// makes them so; 0: not): see the `locks` module. Its data stays at user level.
    anchor: AtomicI32,
    /// For a directory record: whether its descriptors are `O_PATH` descriptors of the
    /// directory (`PATH_ONLY`; `OPENING` while a thread opens them in the kernel; `OPENED`
    /// once it has; 0: opened by the kernel from the start, or not a directory). See
    /// [`open_dir_in_kernel`].
    path_only: AtomicI32,
}

/// `File::anchor` and `File::path_only` values.
const OPENING: i32 = -1;
const ANCHOR: i32 = 1;
const PATH_ONLY: i32 = 1;
const OPENED: i32 = 2;

/// What is known of an open file's contents, valid while its change-table slot holds `word`
/// (see `polytropon_ipc::changes`).
#[derive(Clone)]
pub struct Known {
    serial: u64,
    pub table: u64,
    pub slot: u64,
    pub word: u64,
    /// Where the file ended (`u64::MAX`: unknown).
    pub end: u64,
    /// Its bytes from offset 0 (shared with the library's memory of the opens: see `opens`).
    pub head: Arc<[u8]>,
    /// Its attributes, valid while the instance's names also hold (slot, word): a link
    /// count and a change time move with names.
    pub attr: Option<(WireAttr, u64, u64)>,
    /// When the file's descriptor learned it: trusted for `KNOWN_TTL` at most, so a change
    /// made in a branch behind the service's back is seen within it.
    when: std::time::Instant,
}

/// Puts the received descriptor `backing` in place of descriptor `fd` (`dup3`, which replaces
/// it atomically, keeping `fd`'s close-on-exec flag) if `wanted`, and closes `backing`
/// either way; whether it is in place.
fn put_in_place(backing: c_int, fd: c_int, wanted: bool) -> bool {
    // SAFETY: F_GETFD on a descriptor number of this file; integer arguments only.
    let cloexec = wanted && unsafe { real::fcntl(fd, libc::F_GETFD, 0) } & libc::FD_CLOEXEC != 0;
    // SAFETY: dup3 of the received descriptor, ours alone, onto the file's number, which it
    // replaces atomically (the number stays the program's).
    let moved = wanted && unsafe { real::dup3(backing, fd, if cloexec { libc::O_CLOEXEC } else { 0 }) } == fd;
    // SAFETY: closing the received descriptor, ours alone (its copy at `fd`, if any, stays).
    unsafe { real::close(backing) };
    moved
}

/// Longest wait for a file's position lock (see [`File::lock_offset`]).
const OFFSET_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// A held position lock (`None`: waited out, not held); let go when dropped.
pub struct OffsetGuard<'a>(Option<&'a AtomicBool>);

impl Drop for OffsetGuard<'_> {
    fn drop(&mut self) {
        if let Some(l) = self.0 {
            l.store(false, Ordering::Release);
        }
    }
}

/// How long an open file trusts what it learned (as the union trusts a resolved name).
pub const KNOWN_TTL: std::time::Duration = std::time::Duration::from_secs(1);

impl Known {
    pub fn new(table: u64, slot: u64, word: u64, end: u64, head: Arc<[u8]>) -> Known {
        Known { serial: 0, table, slot, word, end, head, attr: None, when: std::time::Instant::now() }
    }

    fn fresh(&self) -> bool {
        self.when.elapsed() < KNOWN_TTL
    }
}

/// Numbers of opens (see `File::serial`).
static SERIALS: AtomicU64 = AtomicU64::new(1);

// SAFETY: `path` is written only by the thread that claimed the slot (refs 0 -> 1) before the
// slot is published in `FDS`, and only read afterwards.
unsafe impl Sync for File {}

impl File {
    const fn new() -> File {
        File {
            refs: AtomicU32::new(0),
            instance: AtomicU32::new(0),
            dev: AtomicU64::new(0),
            flags: AtomicU32::new(0),
            inode: AtomicU64::new(0),
            handle: AtomicU64::new(0),
            offset: AtomicU64::new(0),
            passthrough: AtomicBool::new(false),
            watch_slot: AtomicU64::new(0),
            watch_word: AtomicU64::new(0),
            watch_table: AtomicU64::new(0),
            leaving: AtomicBool::new(false),
            passable: AtomicBool::new(false),
            to_kernel: AtomicBool::new(false),
            calls: AtomicU32::new(0),
            passed_calls: AtomicU64::new(0),
            offset_lock: AtomicBool::new(false),
            path_len: AtomicUsize::new(0),
            path: UnsafeCell::new([0; PATH_KEEP]),
            serial: AtomicU64::new(0),
            known: Mutex::new(None),
            shared: AtomicBool::new(false),
            held: Mutex::new(None),
            anchor: AtomicI32::new(0),
            path_only: AtomicI32::new(0),
        }
    }

    /// Answers a read of `out.len()` bytes at `offset` from what is known of the file, if
    /// `current` (the table's identity and the word of a slot now) says it still holds.
    pub fn read_known(&self, offset: u64, out: &mut [u8], current: impl FnOnce(u64) -> Option<(u64, u64)>) -> Option<usize> {
        let mut g = self.known.try_lock().ok()?;
        let k = g.as_ref()?;
        if k.serial != self.serial.load(Ordering::Acquire) {
            return None;
        }
        if !k.fresh() || current(k.slot) != Some((k.table, k.word)) {
            *g = None;
            return None;
        }
        polytropon_ipc::changes::read_known(&k.head, k.end, offset, out)
    }

    /// The file's attributes from what is known, if it and the instance's names still hold.
    pub fn attr_known(&self, current: impl Fn(u64) -> Option<(u64, u64)>) -> Option<WireAttr> {
        let g = self.known.try_lock().ok()?;
        let k = g.as_ref()?;
        let (attr, names_slot, names_word) = k.attr?;
        let holds = k.serial == self.serial.load(Ordering::Acquire) && k.fresh() && current(k.slot) == Some((k.table, k.word)) && current(names_slot) == Some((k.table, names_word));
        holds.then_some(attr)
    }

    /// This open's number (see `serial`): what a request sent now teaches is kept only if
    /// the slot still holds the same open when the answer comes.
    pub fn serial(&self) -> u64 {
        self.serial.load(Ordering::Acquire)
    }

    /// Keeps what the service told of the file in answer to a request sent while the slot
    /// held open `serial` (nothing, if it holds another one now).
    pub fn learn(&self, mut k: Known, serial: u64) {
        if k.word & polytropon_ipc::changes::OUTSIDE != 0 {
            return;
        }
        if let Ok(mut g) = self.known.try_lock() {
            if self.serial.load(Ordering::Acquire) == serial {
                k.serial = serial;
                *g = Some(Box::new(k));
            }
        }
    }

    /// The absolute path it was opened by.
    pub fn path(&self) -> &[u8] {
        let n = self.path_len.load(Ordering::Acquire).min(PATH_KEEP);
        // SAFETY: see `Sync` above; the bytes up to `path_len` were written before publishing.
        unsafe { &(&*self.path.get())[..n] }
    }

    pub fn append(&self) -> bool {
        self.flags.load(Ordering::Relaxed) & libc::O_APPEND as u32 != 0
    }

    /// Whether its descriptors are the backing file's (the kernel serves its data).
    pub fn passthrough(&self) -> bool {
        self.passthrough.load(Ordering::Acquire)
    }

    /// Whether the file was passed watched (a lower file) and its change-table word moved
    /// since (`current`: the table's identity and a slot's word now, as
    /// `client::change_word`): its backing descriptor may no longer be the file (a copy-up).
    pub fn watch_moved(&self, current: impl FnOnce(u64) -> Option<(u64, u64)>) -> bool {
        let slot = self.watch_slot.load(Ordering::Acquire);
        if slot == 0 {
            return false;
        }
        current(slot - 1) != Some((self.watch_table.load(Ordering::Relaxed), self.watch_word.load(Ordering::Relaxed)))
    }

    /// Takes the file off its backing descriptor `fd`: from now on the service serves its
    /// data calls, from the offset and status flags the kernel kept (the descriptors stay the
    /// backing file's, so a call already on its way to the kernel still completes).
    pub fn leave_passthrough(&self, fd: c_int) {
        if self.leaving.compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire).is_err() {
            // Another thread does it: its offset must be in place before this one goes on.
            while self.passthrough() {
                std::hint::spin_loop();
            }
            return;
        }
        // SAFETY: lseek and F_GETFL on the program's descriptor of this file; integers only.
        let (pos, fl) = unsafe { (real::lseek(fd, 0, libc::SEEK_CUR), real::fcntl(fd, libc::F_GETFL, 0)) };
        if pos >= 0 {
            self.offset.store(pos as u64, Ordering::Relaxed);
        }
        if fl >= 0 {
            let mode = self.flags.load(Ordering::Relaxed) & libc::O_ACCMODE as u32;
            self.flags.store((fl as u32 & !(libc::O_ACCMODE as u32)) | mode, Ordering::Relaxed);
        }
        self.passthrough.store(false, Ordering::Release);
    }

    /// Takes the file's position lock for one call that reads and moves the shared offset, so
    /// that threads sharing the descriptor neither read nor write at one offset twice (the
    /// kernel's guarantee for a regular file). A holder that never lets go (a thread that held
    /// it at a `fork`, in the child) is waited for at most `OFFSET_WAIT`.
    pub fn lock_offset(&self) -> OffsetGuard<'_> {
        let mut spins = 0u32;
        let mut since = None;
        while self.offset_lock.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
            spins += 1;
            if spins.is_multiple_of(64) {
                let start = *since.get_or_insert_with(std::time::Instant::now);
                if start.elapsed() >= OFFSET_WAIT {
                    return OffsetGuard(None);
                }
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
        OffsetGuard(Some(&self.offset_lock))
    }

    /// Counts a data call the kernel serves on the file's backing descriptor.
    pub fn count_passed_call(&self) {
        self.passed_calls.fetch_add(1, Ordering::Relaxed);
    }

    /// Lets the file's backing file be asked for once it proves busy (`OPEN_PASSABLE`).
    pub fn set_passable(&self) {
        self.calls.store(0, Ordering::Relaxed);
        self.passable.store(true, Ordering::Release);
    }

    /// Lets the file be handed to the kernel once it proves busy (`OPEN_KERNEL_CACHED`).
    pub fn set_kernel_cached(&self) {
        self.to_kernel.store(true, Ordering::Relaxed);
        self.set_passable();
    }

    /// Whether the file goes to the kernel once busy.
    pub fn kernel_cached(&self) -> bool {
        self.to_kernel.load(Ordering::Relaxed)
    }

    /// Counts a data call at user level; whether this is the one at which the file proves
    /// busy (the [`PASS_AFTER`]th while passable), so that its backing file is asked for.
    pub fn busy(&self) -> bool {
        self.passable.load(Ordering::Relaxed) && self.calls.fetch_add(1, Ordering::Relaxed) + 1 >= PASS_AFTER
    }

    /// Takes the right to ask for the backing file (one thread, once per open).
    pub fn take_passable(&self) -> bool {
        self.passable.swap(false, Ordering::AcqRel)
    }

    /// Whether the file can take its backing file at descriptor `fd`: that is its only
    /// descriptor, it is not the kernel's open file for its locks, nor a listing's, nor a
    /// handle shared with the memory of opens.
    pub fn may_take_backing(&self) -> bool {
        self.refs.load(Ordering::Acquire) == 1
            && self.anchor.load(Ordering::Acquire) == 0
            && self.path_only.load(Ordering::Acquire) == 0
            && !self.shared.load(Ordering::Acquire)
            && !self.passthrough()
    }

    /// Puts the backing file's descriptor `backing` (sent by the service; closed here) in
    /// place of the file's descriptor `fd`, at the offset the library kept; from then on the
    /// kernel serves its data calls. Whether it did (otherwise nothing changed). `serial`: the
    /// file's open number when it was asked for: if `fd` was closed meanwhile (and its number
    /// perhaps given to another open), nothing is put in place.
    pub fn take_backing(&self, fd: c_int, backing: c_int, serial: u64) -> bool {
        // No read or write at user level is moving the offset meanwhile.
        let _pos = self.lock_offset();
        let same = self.serial() == serial && get(fd).is_some_and(|(_, f)| std::ptr::eq(f, self)) && self.may_take_backing();
        if !put_in_place(backing, fd, same) {
            return false;
        }
        // The backing file was opened anew: its offset starts where the program's is.
        let pos = self.offset.load(Ordering::Acquire);
        // SAFETY: lseek on the descriptor just put in place; integers only.
        unsafe { real::lseek(fd, pos as i64, libc::SEEK_SET) };
        self.passthrough.store(true, Ordering::Release);
        true
    }

    /// Puts a kernel open file of this file (reopened through the mount, as the program
    /// itself) in place of descriptor `fd`, as [`File::take_backing`] does with a backing
    /// file: the kernel serves its data calls from then on, and the service handle stays
    /// until the last close, so calls other threads have in flight on it finish. Whether it
    /// did (otherwise nothing changed).
    pub fn take_kernel_open(&self, fd: c_int) -> bool {
        let serial = self.serial();
        match open_in_kernel(self) {
            Ok(kernel) => self.take_backing(fd, kernel, serial),
            Err(_) => false,
        }
    }

    pub fn access(&self) -> c_int {
        self.flags.load(Ordering::Relaxed) as c_int & libc::O_ACCMODE
    }

    /// Whether it was opened for reading (see [`readable`]).
    pub fn readable(&self) -> bool {
        readable(self.access())
    }

    /// Whether it was opened for writing (see [`writable`]).
    pub fn writable(&self) -> bool {
        writable(self.access())
    }
}

static FILES: [File; MAX_FILES] = [const { File::new() }; MAX_FILES];
/// Descriptor number -> index in `FILES` + 1 (0: not ours).
static FDS: [AtomicU32; MAX_FDS] = [const { AtomicU32::new(0) }; MAX_FDS];
/// Kernel descriptors of directories on a pool mount -> index in `FILES` + 1 of a slot that
/// records the directory (instance, inode, device, path), so that calls relative to them
/// (`openat(dirfd, ...)`, `fstatat`, ...) can take the user-level path.
static DIRFDS: [AtomicU32; MAX_FDS] = [const { AtomicU32::new(0) }; MAX_FDS];
/// One above the highest descriptor ever made ours, to bound scans.
static HIGH: AtomicUsize = AtomicUsize::new(0);
static HINT: AtomicUsize = AtomicUsize::new(0);
/// The `/dev/null` descriptor reserved ones are duplicated from (-1: none yet). It sits high
/// and moves out of the way when the program claims its number (see [`devnull_in_the_way`]).
static DEVNULL: AtomicI32 = AtomicI32::new(-1);
const DEVNULL_MIN: c_int = 512;

/// An instance index no service has: requests on an orphaned file fail (`ENODEV`).
pub const ORPHANED: u32 = u32::MAX;

/// After the process moved to a restarted service's segment: every open file and directory
/// record names the dead service's handles and inodes, which the new one must never mistake
/// for its own; their requests now fail.
pub fn orphan_all() {
    for f in &FILES {
        if f.refs.load(Ordering::Acquire) != 0 {
            f.instance.store(ORPHANED, Ordering::Release);
        }
    }
}

/// What the service said about a file just opened.
pub struct Opened {
    pub instance: u32,
    pub dev: u64,
    pub inode: u64,
    pub handle: u64,
    pub flags: c_int,
}

/// The file behind descriptor `fd`, if it is ours.
pub fn get(fd: c_int) -> Option<(u32, &'static File)> {
    let i = FDS.get(usize::try_from(fd).ok()?)?.load(Ordering::Acquire);
    (i != 0).then(|| (i, &FILES[i as usize - 1]))
}

/// Whether status flags `flags` allow reading (access mode 3, `O_RDWR|O_WRONLY`, allows
/// neither reading nor writing, as in the kernel).
pub fn readable(flags: c_int) -> bool {
    matches!(flags & libc::O_ACCMODE, libc::O_RDONLY | libc::O_RDWR)
}

/// Whether status flags `flags` allow writing.
pub fn writable(flags: c_int) -> bool {
    matches!(flags & libc::O_ACCMODE, libc::O_WRONLY | libc::O_RDWR)
}

pub fn is_ours(fd: c_int) -> bool {
    get(fd).is_some()
}

fn devnull() -> Result<c_int, c_int> {
    let fd = DEVNULL.load(Ordering::Acquire);
    if fd >= 0 {
        return Ok(fd);
    }
    // SAFETY: opening /dev/null and moving it up; results checked.
    let low = unsafe { real::open(c"/dev/null".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC, 0) };
    if low < 0 {
        return Err(errno());
    }
    // SAFETY: duplicating the descriptor just opened above a number; integer arguments only.
    let high = unsafe { real::fcntl(low, libc::F_DUPFD_CLOEXEC, DEVNULL_MIN as libc::c_ulong) };
    let fd = if high >= 0 {
        // SAFETY: closing the low duplicate just made.
        unsafe { real::close(low) };
        high
    } else {
        low
    };
    match DEVNULL.compare_exchange(-1, fd, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => Ok(fd),
        Err(other) => {
            // Another thread won the race.
            // SAFETY: closing our own duplicate.
            unsafe { real::close(fd) };
            Ok(other)
        }
    }
}

/// Whether the program is about to close or replace descriptor `fd`, which is the one this
/// library keeps `/dev/null` on: `close` must then fail as for a descriptor the program
/// never opened, and before `dup2` onto it (or a `close_range` over it) ours moves away.
pub fn devnull_in_the_way(fd: c_int) -> bool {
    fd >= 0 && devnull_fd() == fd
}

/// The number of our `/dev/null` descriptor (-1: none).
pub fn devnull_fd() -> c_int {
    DEVNULL.load(Ordering::Acquire)
}

/// Moves our `/dev/null` descriptor off its number (the program wants that number), above
/// `above` when it can; otherwise forgets it (the kernel will close it).
pub fn move_devnull(above: c_int) {
    let fd = DEVNULL.load(Ordering::Acquire);
    if fd < 0 {
        return;
    }
    let min = above.saturating_add(1).max(DEVNULL_MIN) as libc::c_ulong;
    // SAFETY: duplicating our own descriptor; the result is checked.
    let moved = if above == c_int::MAX { -1 } else { unsafe { real::fcntl(fd, libc::F_DUPFD_CLOEXEC, min) } };
    DEVNULL.store(moved.max(-1), Ordering::Release);
}

/// A fresh kernel descriptor number for one of our files.
fn reserve(cloexec: bool) -> Result<c_int, c_int> {
    let null = devnull()?;
    let cmd = if cloexec { libc::F_DUPFD_CLOEXEC } else { libc::F_DUPFD };
    // SAFETY: duplicating a descriptor this library owns.
    let fd = unsafe { real::fcntl(null, cmd, 0) };
    if fd < 0 {
        return Err(errno());
    }
    Ok(fd)
}

/// Takes a free slot of `FILES` (its references go 0 -> 1; it is ours alone until published).
fn claim() -> Option<u32> {
    let start = HINT.load(Ordering::Relaxed);
    for k in 0..MAX_FILES {
        let i = (start + k) % MAX_FILES;
        if FILES[i].refs.compare_exchange(0, 1, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
            HINT.store(i + 1, Ordering::Relaxed);
            return Some(i as u32 + 1);
        }
    }
    None
}

/// Writes what the service said about a file into slot `idx`, just claimed and not yet
/// published (a path longer than `PATH_KEEP` is cut; callers refuse those before).
fn fill(idx: u32, o: &Opened, path: &[u8]) {
    let f = &FILES[idx as usize - 1];
    f.instance.store(o.instance, Ordering::Relaxed);
    f.dev.store(o.dev, Ordering::Relaxed);
    f.inode.store(o.inode, Ordering::Relaxed);
    f.handle.store(o.handle, Ordering::Relaxed);
    f.flags.store(o.flags as u32, Ordering::Relaxed);
    f.offset.store(0, Ordering::Relaxed);
    f.passthrough.store(false, Ordering::Relaxed);
    f.watch_slot.store(0, Ordering::Relaxed);
    f.leaving.store(false, Ordering::Relaxed);
    f.passable.store(false, Ordering::Relaxed);
    f.to_kernel.store(false, Ordering::Relaxed);
    f.calls.store(0, Ordering::Relaxed);
    f.passed_calls.store(0, Ordering::Relaxed);
    f.offset_lock.store(false, Ordering::Relaxed);
    f.serial.store(SERIALS.fetch_add(1, Ordering::Relaxed), Ordering::Release);
    if let Ok(mut g) = f.known.try_lock() {
        *g = None;
    }
    f.shared.store(false, Ordering::Release);
    f.anchor.store(0, Ordering::Release);
    f.path_only.store(0, Ordering::Release);
    let n = path.len().min(PATH_KEEP);
    // SAFETY: the slot is ours alone until published (its references went 0 -> 1 in `claim`
    // and no descriptor names it yet).
    unsafe { (&mut *f.path.get())[..n].copy_from_slice(&path[..n]) };
    f.path_len.store(n, Ordering::Release);
}

fn publish(fd: c_int, idx: u32) {
    let i = fd as usize;
    FDS[i].store(idx, Ordering::Release);
    HIGH.fetch_max(i + 1, Ordering::AcqRel);
}

/// A descriptor number and a table slot set aside for a file before the service opens it,
/// so that a full table sends the open to the kernel before the service has created or
/// truncated anything (an `O_EXCL` open must not be made twice).
pub struct Reserved {
    fd: c_int,
    idx: u32,
}

/// Sets a descriptor and a slot aside; `None` when the tables are full or the descriptor
/// number is too high (the open goes to the kernel).
pub fn reserve_slot(cloexec: bool) -> Result<Option<Reserved>, c_int> {
    let fd = reserve(cloexec)?;
    if fd as usize >= MAX_FDS {
        // SAFETY: closing the descriptor just reserved.
        unsafe { real::close(fd) };
        return Ok(None);
    }
    let Some(idx) = claim() else {
        // SAFETY: closing the descriptor this function just opened, never handed out.
        unsafe { real::close(fd) };
        return Ok(None);
    };
    Ok(Some(Reserved { fd, idx }))
}

impl Reserved {
    /// Gives the reserved descriptor the file the service opened; returns the descriptor.
    pub fn install(self, o: &Opened, path: &[u8]) -> c_int {
        fill(self.idx, o, path);
        publish(self.fd, self.idx);
        self.fd
    }

    /// As `install`, with the backing file's descriptor `backing` (sent by the service) put
    /// in place of the reserved one, at its number and with its close-on-exec flag; `backing`
    /// is closed. Falls back to `install` if the kernel refuses.
    /// `watch`: a lower file's witness (the table's identity, its slot and word), for
    /// `File::watch_moved`.
    pub fn install_passthrough(self, o: &Opened, path: &[u8], backing: c_int, watch: Option<(u64, u64, u64)>) -> c_int {
        let moved = put_in_place(backing, self.fd, true);
        fill(self.idx, o, path);
        let f = &FILES[self.idx as usize - 1];
        if let Some((table, slot, word)) = watch {
            f.watch_table.store(table, Ordering::Relaxed);
            f.watch_word.store(word, Ordering::Relaxed);
            f.watch_slot.store(slot + 1, Ordering::Release);
        }
        f.passthrough.store(moved, Ordering::Release);
        publish(self.fd, self.idx);
        self.fd
    }

    /// As `install`, for a file whose service handle (`o.handle`) is shared with the memory
    /// of opens: `held` is this descriptor's share.
    pub fn install_shared(self, o: &Opened, path: &[u8], held: Arc<LastRef>) -> c_int {
        fill(self.idx, o, path);
        let f = &FILES[self.idx as usize - 1];
        f.shared.store(true, Ordering::Release);
        if let Ok(mut g) = f.held.try_lock() {
            *g = Some(held);
        }
        publish(self.fd, self.idx);
        self.fd
    }

    /// Gives the descriptor and the slot back (the open failed).
    pub fn cancel(self) {
        FILES[self.idx as usize - 1].refs.store(0, Ordering::Release);
        // SAFETY: closing the descriptor reserved for the file, never published.
        unsafe { real::close(self.fd) };
    }
}

/// Makes `fd` (a descriptor the kernel just made by duplicating one of ours) name `idx` too.
pub fn share(fd: c_int, idx: u32) {
    if fd >= 0 && (fd as usize) < MAX_FDS {
        FILES[idx as usize - 1].refs.fetch_add(1, Ordering::AcqRel);
        publish(fd, idx);
    }
}

/// A directory of a pool mount that the program opened (an `O_PATH` descriptor, or one the
/// kernel opened).
pub struct Dir {
    pub instance: u32,
    pub inode: u64,
    pub dev: u64,
    pub path: &'static [u8],
}

/// The directory behind kernel descriptor `fd`, if it is one on a pool mount.
pub fn dir(fd: c_int) -> Option<Dir> {
    let f = dir_file(fd)?;
    Some(Dir { instance: f.instance.load(Ordering::Relaxed), inode: f.inode.load(Ordering::Relaxed), dev: f.dev.load(Ordering::Relaxed), path: f.path() })
}

/// The record of the directory behind kernel descriptor `fd`: its `handle` is the service's
/// listing handle (0: none opened yet) and its `offset` the listing's position (a cookie),
/// shared by the descriptors dup'd from it as a kernel file position is.
pub fn dir_file(fd: c_int) -> Option<&'static File> {
    let i = DIRFDS.get(usize::try_from(fd).ok()?)?.load(Ordering::Acquire);
    (i != 0).then(|| &FILES[i as usize - 1])
}

/// Drops a directory record's reference: the listing handle to end at the service when it
/// was the last one and a listing was opened.
fn unref_dir(idx: u32) -> Option<LastRef> {
    unref(idx).filter(|l| l.handle != 0)
}

/// In a child after fork: the listing handles are the parent's (it ends them); the child's
/// directories open their own on their next listing, at the same position.
pub fn disown_dir_handles() {
    let high = HIGH.load(Ordering::Acquire).min(MAX_FDS);
    for slot in DIRFDS.iter().take(high) {
        let i = slot.load(Ordering::Acquire);
        if i != 0 {
            FILES[i as usize - 1].handle.store(0, Ordering::Release);
        }
    }
}

/// Records kernel descriptor `fd` if it is a directory on the mount of `dev` (checked with
/// fstat: the FUSE mount reports the instance's inode numbers). A stale record of the same
/// number (closed behind this library's back) is replaced; its listing handle, if it was the
/// last reference, goes to `release`. `flags`: the open's flags, with `O_PATH` when `fd` is
/// an `O_PATH` descriptor standing for a directory the program opened (see
/// [`open_dir_in_kernel`]).
pub fn remember_dir(fd: c_int, instance: u32, dev: u64, path: &[u8], flags: c_int, release: impl FnOnce(LastRef)) -> bool {
    let Some(slot) = usize::try_from(fd).ok().and_then(|i| DIRFDS.get(i)) else { return false };
    // SAFETY: zeroed `stat` is a valid out-parameter for fstat on the caller's descriptor.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat of a descriptor number into a valid out-parameter (an unknown number is EBADF).
    if unsafe { real::fstat(fd, &mut st) } != 0 || st.st_mode & libc::S_IFMT != libc::S_IFDIR || st.st_dev != dev {
        return false;
    }
    if path.len() > PATH_KEEP {
        return false;
    }
    // The status flags the kernel keeps (what `F_GETFL` tells once it opens the directory).
    let kept = flags & !(libc::O_PATH | libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC | libc::O_NOCTTY | libc::O_CLOEXEC);
    let o = Opened { instance, dev, inode: st.st_ino, handle: 0, flags: kept };
    if let Some(idx) = claim() {
        fill(idx, &o, path);
        if flags & libc::O_PATH != 0 {
            FILES[idx as usize - 1].path_only.store(PATH_ONLY, Ordering::Release);
        }
        HIGH.fetch_max(fd as usize + 1, Ordering::AcqRel);
        if let Some(last) = std::num::NonZeroU32::new(slot.swap(idx, Ordering::AcqRel)).and_then(|old| unref_dir(old.get())) {
            release(last);
        }
        return true;
    }
    false
}

/// Whether directory descriptor `fd` is one of ours that is an `O_PATH` descriptor (a
/// directory the program opened, which the kernel never opened).
pub fn dir_path_only(fd: c_int) -> bool {
    dir_file(fd).is_some_and(|f| matches!(f.path_only.load(Ordering::Acquire), PATH_ONLY | OPENING))
}

/// Opens the directory behind `O_PATH` descriptor `fd` in the kernel (through the FUSE
/// mount) and moves every descriptor of its record onto that open directory, keeping each
/// one's `FD_CLOEXEC`, before a call only the kernel serves on an open directory (`fchmod`,
/// locks, `ioctl`, a listing the service cannot give, exec). The record stays: listings,
/// `fsync` and calls relative to it stay on the user-level path. Nothing to do for any
/// other descriptor.
/// Listing handles of records found stale on the way go to `release`.
pub fn open_dir_in_kernel(fd: c_int, release: &mut dyn FnMut(LastRef)) -> Result<(), c_int> {
    let Some(idx) = usize::try_from(fd).ok().and_then(|i| DIRFDS.get(i)).map(|s| s.load(Ordering::Acquire)).filter(|&i| i != 0) else { return Ok(()) };
    let f = &FILES[idx as usize - 1];
    loop {
        match f.path_only.compare_exchange(PATH_ONLY, OPENING, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => break,
            // Another thread is opening it: its descriptors are about to change.
            Err(OPENING) => std::thread::yield_now(),
            Err(_) => return Ok(()),
        }
    }
    let (dev, inode) = (f.dev.load(Ordering::Relaxed), f.inode.load(Ordering::Relaxed));
    if !names_record(fd, dev, inode) {
        // Closed behind this library's back (glibc's internal close, say) and its number
        // reused: not ours to touch, and no longer the record's.
        f.path_only.store(PATH_ONLY, Ordering::Release);
        forget_stale(fd as usize, idx, release);
        return Ok(());
    }
    let flags = f.flags.load(Ordering::Relaxed) as c_int & (libc::O_DIRECTORY | libc::O_NONBLOCK | libc::O_LARGEFILE);
    let tmp = reopen_dir(fd, libc::O_RDONLY | libc::O_CLOEXEC | flags);
    if tmp < 0 {
        let e = errno();
        f.path_only.store(PATH_ONLY, Ordering::Release);
        return Err(e);
    }
    // At the listing's position (FUSE readdir offsets are the service's cookies): what the
    // kernel lists from now on (an exec'd program, say) continues where ours stood.
    // SAFETY: lseek on the descriptor just opened; integers only.
    unsafe { real::lseek(tmp, f.offset.load(Ordering::Acquire) as i64, libc::SEEK_SET) };
    let high = HIGH.load(Ordering::Acquire).min(MAX_FDS);
    let mut failed = None;
    for (n, slot) in DIRFDS.iter().enumerate().take(high) {
        if slot.load(Ordering::Acquire) != idx {
            continue;
        }
        if !names_record(n as c_int, dev, inode) {
            forget_stale(n, idx, release);
            continue;
        }
        // One of the program's O_PATH descriptors of the same directory (checked above).
        if dup_onto(tmp, n as c_int) < 0 {
            failed = Some(errno());
        }
    }
    // SAFETY: closing the temporary descriptor opened above.
    unsafe { real::close(tmp) };
    f.path_only.store(OPENED, Ordering::Release);
    failed.map_or(Ok(()), Err)
}

/// Forgets that descriptor number `n` names directory record `idx` (closed behind this
/// library's back); the listing handle goes to `release` if that was the record's last
/// reference.
fn forget_stale(n: usize, idx: u32, release: &mut dyn FnMut(LastRef)) {
    if DIRFDS[n].compare_exchange(idx, 0, Ordering::AcqRel, Ordering::Acquire).is_ok() {
        if let Some(last) = unref_dir(idx) {
            release(last);
        }
    }
}

/// Whether kernel descriptor `fd` is still an `O_PATH` descriptor of directory `inode` of the
/// mount of `dev` (the FUSE mount reports the instance's inode numbers).
fn names_record(fd: c_int, dev: u64, inode: u64) -> bool {
    // SAFETY: zeroed `stat` is a valid out-parameter; fstat and F_GETFL on a descriptor
    // number (an unknown one is EBADF).
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        real::fstat(fd, &mut st) == 0 && st.st_dev == dev && st.st_ino == inode && real::fcntl(fd, libc::F_GETFL, 0) & libc::O_PATH != 0
    }
}

/// Opens the directory behind `O_PATH` descriptor `fd` with `flags`: through
/// `/proc/self/fd` (which asks read permission only, as the program's open did), or where
/// no `/proc` is mounted, as "." relative to it (which asks search permission too).
fn reopen_dir(fd: c_int, flags: c_int) -> c_int {
    const PREFIX: &[u8] = b"/proc/self/fd/";
    let mut path = [0u8; 32];
    path[..PREFIX.len()].copy_from_slice(PREFIX);
    let digits = fd.max(0).to_string();
    path[PREFIX.len()..PREFIX.len() + digits.len()].copy_from_slice(digits.as_bytes());
    // SAFETY: a NUL-terminated path in a local buffer (at most 14 + 10 digits of 32 bytes,
    // the rest zeros).
    let tmp = unsafe { real::open(path.as_ptr().cast(), flags, 0) };
    if tmp >= 0 || errno() != libc::ENOENT {
        return tmp;
    }
    // SAFETY: "." relative to the program's O_PATH descriptor of the directory names the
    // directory itself; a NUL-terminated literal.
    unsafe { real::openat(fd, c".".as_ptr(), flags, 0) }
}

/// Opens in the kernel the `O_PATH` directories that exec would leave to the new program
/// (those without `FD_CLOEXEC`; every one with `all`: a spawn's file actions may copy any),
/// which knows nothing of this library's records.
pub fn open_inherited_dirs_in_kernel(all: bool, release: &mut dyn FnMut(LastRef)) {
    let high = HIGH.load(Ordering::Acquire).min(MAX_FDS);
    for fd in 0..high as c_int {
        // SAFETY: F_GETFD on a descriptor of this process; integer arguments only.
        if dir_path_only(fd) && (all || unsafe { real::fcntl(fd, libc::F_GETFD, 0) } & libc::FD_CLOEXEC == 0) {
            let _ = open_dir_in_kernel(fd, release);
        }
    }
}

/// Forgets that kernel descriptor `fd` is a directory of ours (it is being closed or
/// replaced): the listing handle to end at the service, if this was its last reference.
#[must_use]
pub fn forget_dir(fd: c_int) -> Option<LastRef> {
    let slot = usize::try_from(fd).ok().and_then(|i| DIRFDS.get(i))?;
    std::num::NonZeroU32::new(slot.swap(0, Ordering::AcqRel)).and_then(|i| unref_dir(i.get()))
}

/// Forgets the directories among descriptors `first..=last` (the kernel closes them); the
/// listing handles whose last reference went go to `release`.
pub fn forget_dirs_in(first: usize, last: usize, mut release: impl FnMut(LastRef)) {
    let high = HIGH.load(Ordering::Acquire).min(MAX_FDS);
    for fd in first..high.min(last.saturating_add(1)) {
        if let Some(l) = forget_dir(fd as c_int) {
            release(l);
        }
    }
}

/// After the kernel duplicated directory descriptor `old` onto `new`: the listing handle of
/// what `new` named before, to end at the service if that was its last reference.
#[must_use]
pub fn dup_dir(old: c_int, new: c_int) -> Option<LastRef> {
    let replaced = forget_dir(new);
    let (Some(o), Some(n)) = (usize::try_from(old).ok(), usize::try_from(new).ok()) else { return replaced };
    let (Some(os), Some(ns)) = (DIRFDS.get(o), DIRFDS.get(n)) else { return replaced };
    let i = os.load(Ordering::Acquire);
    if i != 0 {
        FILES[i as usize - 1].refs.fetch_add(1, Ordering::AcqRel);
        ns.store(i, Ordering::Release);
        HIGH.fetch_max(n + 1, Ordering::AcqRel);
        settle_copy(&FILES[i as usize - 1], old, new);
    }
    replaced
}

/// After the kernel copied directory descriptor `old` onto `new`: if another thread opened
/// the record in the kernel meanwhile, the copy may have been taken from the `O_PATH`
/// descriptor before it was replaced, after the replacing thread passed `new`. It is made a
/// copy of the open directory too.
fn settle_copy(f: &File, old: c_int, new: c_int) {
    let mut state = f.path_only.load(Ordering::Acquire);
    while state == OPENING {
        std::thread::yield_now();
        state = f.path_only.load(Ordering::Acquire);
    }
    // (Records the kernel opened from the start never had an O_PATH descriptor to copy.)
    // SAFETY: F_GETFL on the program's descriptor; integer arguments only.
    if state == OPENED && old != new && unsafe { real::fcntl(new, libc::F_GETFL, 0) } & libc::O_PATH != 0 {
        dup_onto(old, new);
    }
}

/// Makes descriptor `dst` a copy of `src`, keeping `dst`'s `FD_CLOEXEC` (dup3's result).
fn dup_onto(src: c_int, dst: c_int) -> c_int {
    // SAFETY: F_GETFD on a descriptor number, then dup3 onto it, which atomically replaces
    // what it named; integer arguments only (the callers pass descriptors that name the same
    // file as `src`, or that this library reserved).
    unsafe {
        let cloexec = real::fcntl(dst, libc::F_GETFD, 0) & libc::FD_CLOEXEC != 0;
        real::dup3(src, dst, if cloexec { libc::O_CLOEXEC } else { 0 })
    }
}

/// What must be released at the service when the last descriptor of a file goes.
#[derive(Debug, PartialEq, Eq)]
pub struct LastRef {
    pub instance: u32,
    pub inode: u64,
    pub handle: u64,
    /// Data calls the kernel served on the file's backing descriptor (a passed file), told
    /// to the service with the release so that it counts them with the user-level path's.
    pub passed_calls: u64,
}

/// Forgets descriptor `fd`, which the program is closing, once no move of its file to the
/// backing file is half done: a move holds the file's position lock from its check that `fd`
/// still names the file until the backing file is in place ([`File::take_backing`]), so the
/// number the kernel is about to free, and give to the next open, is never written over.
pub fn forget_closed(fd: c_int) -> Option<LastRef> {
    let Some((_, f)) = get(fd) else { return forget_fd(fd) };
    let _pos = f.lock_offset();
    forget_fd(fd)
}

/// Forgets that `fd` is ours (the caller closes or replaces the kernel descriptor).
pub fn forget_fd(fd: c_int) -> Option<LastRef> {
    let i = FDS.get(usize::try_from(fd).ok()?)?.swap(0, Ordering::AcqRel);
    if i == 0 {
        return None;
    }
    unref(i)
}

/// `refs` of a slot whose last reference is being let go of: `claim` does not take it until
/// what it held is gone.
const TEARDOWN: u32 = u32::MAX;

fn unref(idx: u32) -> Option<LastRef> {
    let f = &FILES[idx as usize - 1];
    let last = LastRef { instance: f.instance.load(Ordering::Relaxed), inode: f.inode.load(Ordering::Relaxed), handle: f.handle.load(Ordering::Relaxed), passed_calls: f.passed_calls.load(Ordering::Relaxed) };
    let mut r = f.refs.load(Ordering::Acquire);
    loop {
        let next = match r {
            0 | TEARDOWN => return None,
            1 => TEARDOWN,
            n => n - 1,
        };
        match f.refs.compare_exchange_weak(r, next, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) if next == TEARDOWN => break,
            Ok(_) => return None,
            Err(now) => r = now,
        }
    }
    // The bytes go now; a slot used again starts without them anyway (its new serial).
    if let Ok(mut g) = f.known.try_lock() {
        *g = None;
    }
    // Its kernel file (if anchored) goes with the program's last descriptor of it.
    if f.anchor.swap(0, Ordering::AcqRel) == ANCHOR {
        ANCHORED.fetch_sub(1, Ordering::AcqRel);
    }
    let out = if f.shared.load(Ordering::Acquire) {
        // A shared handle is released by whoever lets go of it last (here, or the memory of
        // opens), and never after its service is gone (a successor numbers its own handles);
        // a share that cannot be taken (a lock held across fork) is never released twice, at
        // worst kept until the process ends.
        let share = f.held.try_lock().ok().and_then(|mut g| g.take());
        share.and_then(Arc::into_inner).filter(|_| last.instance != ORPHANED)
    } else {
        Some(last)
    };
    f.refs.store(0, Ordering::Release);
    out
}

/// The descriptors currently ours, lowest first (into `out`; returns how many).
pub fn ours(out: &mut Vec<c_int>) {
    let high = HIGH.load(Ordering::Acquire).min(MAX_FDS);
    out.extend((0..high).filter(|&i| FDS[i].load(Ordering::Acquire) != 0).map(|i| i as c_int));
}

/// Reopens file `idx` through the kernel (the FUSE mount) and moves every descriptor naming
/// it onto that open file, keeping each one's `FD_CLOEXEC`. Returns the service handle to
/// release, if the last reference went.
fn reopen_in_kernel(idx: u32) -> Result<Option<LastRef>, c_int> {
    let f = &FILES[idx as usize - 1];
    // Under the position lock, as a move to the backing file (`File::take_backing`): a move
    // half done (the backing file in place, not yet marked passed) is never reopened at the
    // user-level offset and its record freed under it, and no call moves the offset meanwhile.
    // (No caller holds it: hand-overs run outside the data calls' user-level part.)
    let _pos = f.lock_offset();
    let (dev, inode) = (f.dev.load(Ordering::Relaxed), f.inode.load(Ordering::Relaxed));
    let high = HIGH.load(Ordering::Acquire).min(MAX_FDS);
    if f.anchor.swap(0, Ordering::AcqRel) == ANCHOR {
        // Its descriptors are the kernel's open file already (with its locks): at our offset,
        // they are the kernel's alone from now on.
        ANCHORED.fetch_sub(1, Ordering::AcqRel);
        note_kernel_locked(dev, inode);
        if let Some(fd) = FDS.iter().take(high).position(|s| s.load(Ordering::Acquire) == idx) {
            // SAFETY: lseek on the program's descriptor of the file (all of them share one
            // open file).
            unsafe { real::lseek(fd as c_int, f.offset.load(Ordering::Relaxed) as i64, libc::SEEK_SET) };
        }
        return Ok(forget_all(idx));
    }
    let tmp = open_in_kernel(f)?;
    let off = if f.passthrough() {
        // The kernel kept the offset, on any of the file's descriptors.
        let any = FDS.iter().take(high).position(|s| s.load(Ordering::Acquire) == idx);
        // SAFETY: lseek on a descriptor of this process naming the file; integers only.
        any.map_or(0, |fd| unsafe { real::lseek(fd as c_int, 0, libc::SEEK_CUR) }.max(0))
    } else {
        f.offset.load(Ordering::Relaxed) as i64
    };
    // SAFETY: plain syscalls on descriptors owned by this process.
    unsafe { real::lseek(tmp, off, libc::SEEK_SET) };
    let first = onto_descriptors(idx, tmp)?;
    let last = forget_all(idx);
    let_go_of_temporary(tmp, first, dev, inode);
    Ok(last)
}

/// Forgets every descriptor naming file `idx`: the service handle to release, if the last
/// reference went.
fn forget_all(idx: u32) -> Option<LastRef> {
    let high = HIGH.load(Ordering::Acquire).min(MAX_FDS);
    let mut last = None;
    for (fd, slot) in FDS.iter().enumerate().take(high) {
        if slot.load(Ordering::Acquire) == idx {
            if let Some(l) = forget_fd(fd as c_int) {
                last = Some(l);
            }
        }
    }
    last
}

/// Makes every descriptor naming file `idx` a copy of kernel descriptor `tmp` (keeping each
/// one's `FD_CLOEXEC`); the first of them, if any.
fn onto_descriptors(idx: u32, tmp: c_int) -> Result<Option<c_int>, c_int> {
    let high = HIGH.load(Ordering::Acquire).min(MAX_FDS);
    let mut first = None;
    for (fd, slot) in FDS.iter().enumerate().take(high) {
        if slot.load(Ordering::Acquire) != idx {
            continue;
        }
        let fd = fd as c_int;
        first = first.or(Some(fd));
        // The temporary descriptor onto our reserved one.
        if dup_onto(tmp, fd) < 0 {
            let e = errno();
            // SAFETY: closing the temporary descriptor opened by the caller.
            unsafe { real::close(tmp) };
            return Err(e);
        }
    }
    Ok(first)
}

/// Done with temporary kernel descriptor `tmp` of file (`dev`, `inode`), copied onto the
/// program's numbers (`first` the lowest). The kernel drops the process's POSIX locks on the
/// file at any close of it: when the process may hold some through another open, `tmp`
/// stays open beside `first` and goes when the program closes that number.
fn let_go_of_temporary(tmp: c_int, first: Option<c_int>, dev: u64, inode: u64) {
    let kept = any_anchor(dev, inode).is_some() || kernel_locked(dev, inode);
    match first.filter(|_| kept) {
        Some(fd) => hold_beside(fd, tmp),
        // SAFETY: closing the temporary descriptor; the numbers it was copied to stay.
        None => unsafe {
            real::close(tmp);
        },
    }
}

/// Opens `f` through the kernel (its path on the FUSE mount, its status flags).
pub fn open_in_kernel(f: &File) -> Result<c_int, c_int> {
    let mut path = [0u8; PATH_KEEP + 1];
    let p = f.path();
    path[..p.len()].copy_from_slice(p);
    let flags = (f.flags.load(Ordering::Relaxed) as c_int & polytropon_ipc::REOPEN_FLAGS) | libc::O_CLOEXEC;
    // SAFETY: `path` is NUL-terminated (one spare zero byte at least).
    let fd = unsafe { real::open(path.as_ptr() as *const libc::c_char, flags, 0) };
    if fd < 0 {
        return Err(errno());
    }
    // The path may name another file by now (the file was renamed, or another renamed over
    // it): that one must not stand in for this one.
    // SAFETY: an all-zero stat is a valid value of the C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat of the descriptor just opened into the local struct above.
    if unsafe { real::fstat(fd, &mut st) } != 0 || st.st_ino != f.inode.load(Ordering::Relaxed) || st.st_dev != f.dev.load(Ordering::Relaxed) {
        // SAFETY: closing the descriptor just opened.
        unsafe { real::close(fd) };
        return Err(libc::ESTALE);
    }
    Ok(fd)
}

/// Files on which this process may hold POSIX locks through descriptors that are not ours
/// (files handed over to the kernel, opened on the FUSE path), by a key of their device and
/// inode (0: a free entry; two files with one key only make the library careful twice): the
/// kernel drops those locks at any close of the file by the process, so this library's own
/// descriptors of such a file are never closed behind the program's back (an anchor stays
/// where the kernel opened it), and a close of one of ours drops them as the kernel would.
/// Lock-free (a lock held by another thread at a fork would stay held in the child).
static KERNEL_LOCKED: [AtomicU64; 64] = [const { AtomicU64::new(0) }; 64];
/// Entries in use, and whether more files than `KERNEL_LOCKED` holds were noted (any file
/// may then have such locks).
static KERNEL_LOCKED_USED: AtomicUsize = AtomicUsize::new(0);
static ANY_LOCKED: AtomicBool = AtomicBool::new(false);

fn locked_key(dev: u64, inode: u64) -> u64 {
    (inode ^ dev.rotate_left(40)) | 1
}

/// Whether the process may hold POSIX locks on the file through descriptors not ours.
pub fn kernel_locked(dev: u64, inode: u64) -> bool {
    if KERNEL_LOCKED_USED.load(Ordering::Acquire) == 0 {
        return ANY_LOCKED.load(Ordering::Acquire);
    }
    let key = locked_key(dev, inode);
    ANY_LOCKED.load(Ordering::Acquire) || KERNEL_LOCKED.iter().any(|k| k.load(Ordering::Acquire) == key)
}

/// Notes that the process may hold POSIX locks on file (`dev`, `inode`) through descriptors
/// not ours.
pub fn note_kernel_locked(dev: u64, inode: u64) {
    let key = locked_key(dev, inode);
    if KERNEL_LOCKED.iter().any(|k| k.load(Ordering::Acquire) == key) {
        return;
    }
    match KERNEL_LOCKED.iter().find(|k| k.compare_exchange(0, key, Ordering::AcqRel, Ordering::Acquire).is_ok()) {
        Some(_) => {
            KERNEL_LOCKED_USED.fetch_add(1, Ordering::AcqRel);
        }
        None => ANY_LOCKED.store(true, Ordering::Release),
    }
}

/// The process's POSIX locks on file (`dev`, `inode`) through descriptors not ours are gone.
pub fn forget_kernel_locked(dev: u64, inode: u64) {
    let key = locked_key(dev, inode);
    for k in &KERNEL_LOCKED {
        if k.compare_exchange(key, 0, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            KERNEL_LOCKED_USED.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Files with an anchor (scans for one are skipped while there is none).
static ANCHORED: AtomicUsize = AtomicUsize::new(0);
/// Kernel descriptors kept open beside a program's descriptor number since a hand-over, plus
/// one (0: none), closed when the program closes that number (see `reopen_in_kernel`).
static HELD: [AtomicI32; MAX_FDS] = [const { AtomicI32::new(0) }; MAX_FDS];

fn hold_beside(fd: c_int, kept: c_int) {
    match HELD.get(fd as usize) {
        Some(h) => {
            let old = h.swap(kept + 1, Ordering::AcqRel);
            if old > 0 {
                // SAFETY: a descriptor this library kept open, now replaced.
                unsafe { real::close(old - 1) };
            }
        }
        // SAFETY: closing our own descriptor (no number to keep it beside).
        None => unsafe {
            real::close(kept);
        },
    }
}

/// The program closes (or replaces) descriptor `fd`: a descriptor this library kept open
/// beside it goes too.
pub fn let_go_beside(fd: c_int) {
    let Some(h) = usize::try_from(fd).ok().and_then(|i| HELD.get(i)) else { return };
    let kept = h.swap(0, Ordering::AcqRel);
    if kept > 0 {
        // SAFETY: a descriptor this library kept open beside `fd`.
        unsafe { real::close(kept - 1) };
    }
}

/// Makes the kernel's size of the anchored file behind `fd` at least `size` (what the
/// service says it is), before the kernel serves the file. It was opened there before the user-level path
/// changed the file: a notice only marks the kernel's attributes stale, and a reply to the
/// kernel's own request for them is dropped when a notice about the file came meanwhile, so
/// its size may still be an old one, past which an `mmap` of the file faults. Asked afresh
/// until it holds (a few times at most, or the kernel is left as it is).
pub fn refresh_anchor(fd: c_int, size: u64) {
    let Some((_, f)) = get(fd) else { return };
    if !anchored(f) {
        return;
    }
    for _ in 0..50 {
        // SAFETY: an all-zero statx is a valid value of the C struct.
        let mut stx: libc::statx = unsafe { std::mem::zeroed() };
        // SAFETY: statx of our own descriptor into the local struct above.
        unsafe { real::statx(fd, c"".as_ptr(), libc::AT_EMPTY_PATH | libc::AT_STATX_FORCE_SYNC, libc::STATX_SIZE, &mut stx) };
        // SAFETY: lseek on the program's descriptor: the kernel's size of the file (its
        // kernel offset does not matter: set again before any use).
        let end = unsafe { real::lseek(fd, 0, libc::SEEK_END) };
        if end < 0 || end as u64 >= size {
            return;
        }
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
}

/// Whether `f`'s descriptors are the file itself, opened through the kernel.
pub fn anchored(f: &File) -> bool {
    f.anchor.load(Ordering::Acquire) == ANCHOR
}

/// The kernel is about to close descriptors `first..=last`: descriptors kept beside the
/// program's numbers that are among them, or beside numbers among them, are let go of.
pub fn before_close_range(first: usize, last: usize) {
    let high = HIGH.load(Ordering::Acquire).min(MAX_FDS);
    for (fd, h) in HELD.iter().enumerate().take(high) {
        let kept = h.load(Ordering::Acquire);
        if kept > 0 && ((first..=last).contains(&fd) || (first..=last).contains(&((kept - 1) as usize))) {
            let_go_beside(fd as c_int);
        }
    }
}

/// A descriptor of an anchored open file of ours on inode `inode` of device `dev` (see
/// the `locks` module).
pub fn any_anchor(dev: u64, inode: u64) -> Option<c_int> {
    if ANCHORED.load(Ordering::Acquire) == 0 {
        return None;
    }
    let idx = FILES.iter().position(|f| f.refs.load(Ordering::Acquire) != 0 && f.dev.load(Ordering::Relaxed) == dev && f.inode.load(Ordering::Relaxed) == inode && anchored(f))? as u32 + 1;
    let high = HIGH.load(Ordering::Acquire).min(MAX_FDS);
    FDS.iter().take(high).position(|s| s.load(Ordering::Acquire) == idx).map(|fd| fd as c_int)
}

/// Makes the descriptors of our file behind `fd` the file itself, opened through the kernel
/// (its FUSE mount) at their numbers, if they were not: lock calls then run on them, in the
/// kernel's lock table of the file, while its data stays at user level.
pub fn anchor(fd: c_int) -> Result<(), c_int> {
    let Some((idx, f)) = get(fd) else { return Err(libc::EBADF) };
    loop {
        match f.anchor.compare_exchange(0, OPENING, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => break,
            Err(OPENING) => std::thread::yield_now(),
            Err(_) => return Ok(()),
        }
    }
    let (dev, inode) = (f.dev.load(Ordering::Relaxed), f.inode.load(Ordering::Relaxed));
    let made = open_in_kernel(f).and_then(|tmp| {
        let first = onto_descriptors(idx, tmp)?;
        let_go_of_temporary(tmp, first, dev, inode);
        Ok(())
    });
    match made {
        Ok(()) => {
            ANCHORED.fetch_add(1, Ordering::AcqRel);
            f.anchor.store(ANCHOR, Ordering::Release);
            Ok(())
        }
        Err(e) => {
            f.anchor.store(0, Ordering::Release);
            Err(e)
        }
    }
}

/// Hands descriptor `fd` over to the kernel, if it is ours: the service handle to release
/// when that was its file's last descriptor.
pub fn materialize(fd: c_int) -> Result<Option<LastRef>, c_int> {
    let Some((idx, _)) = get(fd) else { return Ok(None) };
    reopen_in_kernel(idx)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table is process-wide: its tests take turns.
    static TABLE: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn opened(handle: u64) -> Opened {
        Opened { instance: 4, dev: 9, inode: 100 + handle, handle, flags: libc::O_RDWR }
    }

    #[test]
    fn a_file_lives_until_its_last_descriptor_is_forgotten() {
        let _turn = TABLE.lock().unwrap_or_else(|p| p.into_inner());
        let slot = reserve_slot(true).expect("reserve").expect("room in the table");
        let fd = slot.install(&opened(11), b"/mnt/a/f");
        let (idx, f) = get(fd).expect("ours");
        assert!(is_ours(fd));
        assert_eq!((f.instance.load(Ordering::Relaxed), f.inode.load(Ordering::Relaxed), f.handle.load(Ordering::Relaxed)), (4, 111, 11));
        assert_eq!(f.path(), b"/mnt/a/f");
        // A duplicate names the same file.
        // SAFETY: duplicating a descriptor this test owns.
        let dup = unsafe { real::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
        assert!(dup >= 0);
        share(dup, idx);
        assert_eq!(get(dup).map(|(i, _)| i), Some(idx));
        assert!(forget_fd(fd).is_none(), "another descriptor still names it");
        let last = forget_fd(dup).expect("the last one");
        assert_eq!((last.instance, last.inode, last.handle), (4, 111, 11));
        assert!(!is_ours(fd) && !is_ours(dup));
        assert_eq!(FILES[idx as usize - 1].refs.load(Ordering::Relaxed), 0, "the slot is free again");
        // SAFETY: closing the kernel descriptors this test made.
        unsafe {
            real::close(fd);
            real::close(dup);
        }
    }

    #[test]
    fn a_cancelled_reservation_gives_everything_back_and_a_full_table_says_so() {
        let _turn = TABLE.lock().unwrap_or_else(|p| p.into_inner());
        let slot = reserve_slot(false).expect("reserve").expect("room");
        let idx = slot.idx;
        slot.cancel();
        assert_eq!(FILES[idx as usize - 1].refs.load(Ordering::Relaxed), 0);
        // Fill the table (descriptors permitting): the next open must go to the kernel.
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: `lim` is a valid out-parameter.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
            lim.rlim_cur = lim.rlim_cur.max(MAX_FILES as u64 + 64).min(lim.rlim_max);
            // SAFETY: raising this process's soft limit within its hard limit.
            unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
        }
        let mut held = Vec::new();
        let full = loop {
            match reserve_slot(true) {
                Ok(Some(s)) => held.push(s),
                Ok(None) => break true,
                Err(_) => break false, // out of descriptors before the table filled
            }
        };
        let n = held.len();
        for s in held {
            s.cancel();
        }
        if full {
            assert_eq!(n, MAX_FILES, "the table holds MAX_FILES files");
        }
        assert!(reserve_slot(true).expect("reserve").is_some_and(|s| {
            s.cancel();
            true
        }), "room again once the reservations are cancelled");
    }
}
