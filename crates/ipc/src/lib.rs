//! The shared-memory protocol between a pool's filesystem service (back driver) and the
//! preload library in container processes (front driver).
//!
//! Both sides depend on this crate and nothing heavier, so the preload library stays small.
//! Every type placed in the segment is `#[repr(C)]`, holds integers and offsets (never
//! pointers) and implements [`ShmSafe`]. The service treats everything it reads from the
//! segment as hostile: it copies a [`Descriptor`] out of its slot first, then [`decode`]s the
//! copy against the segment's real bounds.

#![no_std]

#[cfg(test)]
extern crate std;

#[cfg(not(loom))]
pub mod area;
pub mod args;
pub mod changes;
pub mod mount_table;
#[cfg(not(loom))]
pub mod client;
pub mod queue;
#[cfg(not(loom))]
pub mod segment;
pub mod sync;

pub use queue::{PushError, Queue, QueueHeader, Slot};

/// Marker for types that may live in a shared-memory segment mapped by untrusted processes.
///
/// # Safety
/// Implementors must be `#[repr(C)]`, contain no pointers or references (only integers and
/// offsets), and stay valid for every bit pattern, since the other side may write anything.
pub unsafe trait ShmSafe {}

/// Version of the protocol; the service and the library refuse to talk across versions.
pub const PROTOCOL_VERSION: u32 = 11;

/// SysV key of a pool service's segment inside the pool's own IPC namespace (one service per
/// namespace): a client whose service died finds its successor's segment by it.
pub const SEGMENT_KEY: i32 = 0x5054_4e31; // "PTN1"

/// Why a request was not served on the user-level path: the one typed outcome both ends
/// share. The service stores it as a request's (negative) result; [`Unserved::from_result`]
/// reads it back. No other code spells its wire form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unserved {
    /// Not on this path: the target is something the user-level path does not serve (a
    /// directory to list, a symlink to follow, a device, a fifo...), or the client cannot
    /// reach a service; the client makes the same call through the kernel (the FUSE mount of
    /// the same instance), which serves it correctly.
    Kernel,
    /// The call failed with this errno, as the kernel would have failed it.
    Errno(i32),
}

/// The wire code of [`Unserved::Kernel`]: never a real errno (those stay below 4096).
const KERNEL_PATH: i64 = 0x1_0000;

impl Unserved {
    /// The value a request's result word holds for this outcome.
    pub fn result(self) -> u64 {
        let code = match self {
            Unserved::Kernel => KERNEL_PATH,
            // An errno outside 1..4096 is not one the kernel returns: EIO stands for it.
            Unserved::Errno(e) if (1..4096).contains(&e) => i64::from(e),
            Unserved::Errno(_) => i64::from(libc::EIO),
        };
        (-code) as u64
    }

    /// The outcome a result word holds, `None` when it is a success (a non-negative value).
    pub fn from_result(value: u64) -> Option<Self> {
        let signed = value as i64;
        if signed >= 0 {
            return None;
        }
        Some(match signed.unsigned_abs() {
            c if c == KERNEL_PATH as u64 => Unserved::Kernel,
            c if (1..4096).contains(&c) => Unserved::Errno(c as i32),
            // Not something a service writes: the reply cannot be trusted.
            _ => Unserved::Errno(libc::EIO),
        })
    }

    /// The errno a caller that cannot take the kernel path reports (`EXDEV` for
    /// [`Unserved::Kernel`], as the direct API documents).
    pub fn errno_or(self, kernel: i32) -> i32 {
        match self {
            Unserved::Kernel => kernel,
            Unserved::Errno(e) => e,
        }
    }
}

impl From<i32> for Unserved {
    /// An errno value.
    fn from(e: i32) -> Self {
        Unserved::Errno(e)
    }
}

/// Descriptor flag: the client does not wait for this request (a `Release`, whose outcome
/// nobody can act on); the service answers nothing.
pub const FLAG_NO_REPLY: u32 = 1;
/// Descriptor flag, a scheduling hint: the client runs on the cpu the queue's worker last
/// served on (its doorbell's `cpu`). Neither side can make progress while the other spins
/// there, so the client yields at once instead of spinning, and the worker yields as soon as
/// it has answered; after a run of such requests an unpinned worker moves to another of its
/// cpus. A wrong hint costs a `sched_yield` or two, or a move within the pool's own cpus.
pub const FLAG_NEAR: u32 = 2;
/// `OpenPath` flag: the client takes a kernel descriptor of the file's backing file (see
/// [`OPEN_PASSED`]); without it the service never sends one.
pub const FLAG_FD_OK: u32 = 4;
/// `OpenPath` answer (bit of `aux[2]`): the service sent the client, over its connection, a
/// descriptor of the backing file opened with the request's access mode and status flags
/// (passthrough: the client's reads, writes, seeks and syncs of the file are then the
/// kernel's own). Only for a writable branch's regular file in the `kernel` cache mode, or
/// (with [`OPEN_WATCHED`]) a lower branch's opened read-only.
pub const OPEN_PASSED: u64 = 1;
/// `OpenPath` answer (bit of `aux[2]`, with [`OPEN_PASSED`]): the passed descriptor is a
/// lower branch's file, read-only on a read-only mount; `aux[3]` is the file's change-table
/// word as it was before the service chose the backing file and the high half of `aux[2]` its
/// slot. Once the word moves (the file was copied up, or changed), the client serves the file's
/// data calls through the service (see [`args::Passed`]).
pub const OPEN_WATCHED: u64 = 4;
/// `OpenPath` answer (bit of `aux[2]`): the file, opened for writing and not passed, may be
/// passed later ([`Op::PassFile`]): a regular file of the writable branch of an instance whose
/// data lives in its backing files (the `kernel` cache mode of the local backend, no storage
/// quota).
pub const OPEN_PASSABLE: u64 = 8;
/// `OpenPath` answer (bit of `aux[2]`): the file, opened read-only and not passed nor
/// prefetched, is better served by the kernel once busy: its instance's backend is shared
/// with other clients (CephFS), so no backing descriptor can be passed, and its FUSE mount
/// keeps file data in the kernel's page cache (the `kernel` cache mode). After
/// [`PASS_AFTER`]-many data calls the client reopens it through the mount and puts that open
/// file in place of its descriptor, keeping the service handle until the last close as for a
/// passed backing file (counted as [`HandOver::Busy`]).
pub const OPEN_KERNEL_CACHED: u64 = 16;
/// Data calls at user level after which a file is busy: passed ([`OPEN_PASSABLE`]) or
/// handed to the kernel ([`OPEN_KERNEL_CACHED`]). A file written once or twice (created,
/// appended, closed) or read whole never pays for that; one used on and on (a log, a
/// database) soon is the kernel's.
pub const PASS_AFTER: u32 = 4;
/// `OpenPath` flag: the client keeps a small file's bytes that come with the open (see
/// [`OPEN_PREFETCHED`]); without it the service sends none.
pub const FLAG_PREFETCH: u32 = 8;
/// `OpenPath` answer (bit of `aux[2]`): the file, opened read-only, is at most
/// [`changes::PREFETCH_MAX`] bytes long and all of them are in the buffer, the answer's value
/// being their number; `aux[3]` is its change-table word as it was before they were read and
/// the high half of `aux[2]` its slot.
pub const OPEN_PREFETCHED: u64 = 2;
/// `StatPath` flag: the client keeps the attributes (see [`STAT_LEARNED`]).
pub const FLAG_LEARN: u32 = 16;
/// `StatPath` answer (bit of `aux[2]`): the attributes in the buffer were read after the
/// file's change-table word `aux[3]` (its slot in bits 40.. of `aux[2]`), under the
/// instance's names' word `aux[1]` as it was before the walk (its slot in bits 16..40):
/// they hold while both do.
pub const STAT_LEARNED: u64 = 1;
/// `Read` answer (bit of `aux[1]`): the read stopped at the file's end (it answered fewer
/// bytes than asked for); `aux[0]` is the file's change-table word as it was before the read
/// and the high half of `aux[1]` its slot.
pub const READ_EOF: u64 = 1;
/// The open flags a file keeps when it is opened again elsewhere (a backing file's descriptor
/// for the client, the library's hand-over to the kernel): access mode and status flags.
pub const REOPEN_FLAGS: i32 = libc::O_ACCMODE | libc::O_APPEND | libc::O_NONBLOCK | libc::O_DSYNC | libc::O_SYNC | libc::O_DIRECT | libc::O_NOATIME;

/// The calling thread's cpu plus one, 0 when unknown (glibc reads it from the thread's
/// restartable-sequences area: no system call).
pub fn current_cpu() -> u32 {
    // SAFETY: sched_getcpu has no preconditions.
    let c = unsafe { libc::sched_getcpu() };
    u32::try_from(c).map_or(0, |c| c.wrapping_add(1))
}

/// `Write` flag (in `arg`): append at the end of the file; the new end comes back in `aux[0]`.
pub const WRITE_APPEND: u64 = 1;
/// `Write` flag (in `arg`): the data is still being copied in when the request is sent; the
/// client area's `filled` word says how much is there, and the service writes it piece by
/// piece as it arrives, so that the client's copy and the service's write overlap.
pub const WRITE_STREAMED: u64 = 2;
/// `StatPath` flag (in `arg`): do not follow a final symlink (lstat).
pub const STAT_NOFOLLOW: u64 = 1;

/// A request as it travels through a queue slot: plain integers, any bit pattern allowed.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Descriptor {
    /// An [`Op`] number.
    pub op: u32,
    /// Index of the client's buffer, where bulk data and the completion go.
    pub client: u32,
    /// Sequence number of the request in that buffer, echoed in the completion.
    pub seq: u64,
    /// Which filesystem instance of the service (its filesystem table index).
    pub instance: u32,
    /// `FLAG_*` bits.
    pub flags: u32,
    pub inode: u64,
    pub handle: u64,
    pub offset: u64,
    /// Bytes of bulk data (in the client's buffer) this request reads or writes.
    pub len: u64,
    /// Operation-specific (flags, mode, whence...).
    pub arg: u64,
}

// SAFETY: `#[repr(C)]`, integers only, every bit pattern is a valid value.
unsafe impl ShmSafe for Descriptor {}

impl Descriptor {
    /// The descriptor as eight words (how a client area holds its request).
    pub fn to_words(&self) -> [u64; 8] {
        [
            u64::from(self.op) | u64::from(self.client) << 32,
            self.seq,
            u64::from(self.instance) | u64::from(self.flags) << 32,
            self.inode,
            self.handle,
            self.offset,
            self.len,
            self.arg,
        ]
    }

    /// The descriptor eight words hold (any words make some descriptor).
    pub fn from_words(w: [u64; 8]) -> Descriptor {
        Descriptor {
            op: w[0] as u32,
            client: (w[0] >> 32) as u32,
            seq: w[1],
            instance: w[2] as u32,
            flags: (w[2] >> 32) as u32,
            inode: w[3],
            handle: w[4],
            offset: w[5],
            len: w[6],
            arg: w[7],
        }
    }
}

/// What a client sends first on the pool's channel socket: the protocol it speaks and the
/// thread that connects (whose credentials the service reads from the kernel; the process
/// is the one the kernel names as the socket's peer).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Hello {
    pub version: u32,
    pub tid: u32,
    /// The cpu the thread ran on as it said hello, plus one (0: unknown): a hint only, by
    /// which the service wakes a worker on another cpu for its first request.
    pub cpu: u32,
}

/// Bytes of a [`Hello`] on the wire; the first four are the version, so that a client of
/// another protocol is told so whatever the length of its hello.
pub const HELLO_SIZE: usize = 12;

/// The service's answer on the channel socket, with the client's area (a memfd) attached
/// when `status` is 0: the client index its hints name, the shared segment (queues) to
/// attach, and the area's data size. A non-zero `status` is the errno of a refusal.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Welcome {
    pub version: u32,
    pub status: i32,
    pub client: u32,
    pub shmid: i32,
    pub buffer_size: u64,
    /// A digest of the credentials the service serves this connection with: two connections
    /// of one process with the same digest are served alike (the library shares what one
    /// thread's opens found with the threads whose digest is the same).
    pub creds: u64,
}

/// Bytes of a [`Welcome`] on the wire.
pub const WELCOME_SIZE: usize = 32;

impl Hello {
    pub fn to_bytes(self) -> [u8; HELLO_SIZE] {
        let mut b = [0u8; HELLO_SIZE];
        b[..4].copy_from_slice(&self.version.to_le_bytes());
        b[4..8].copy_from_slice(&self.tid.to_le_bytes());
        b[8..].copy_from_slice(&self.cpu.to_le_bytes());
        b
    }

    pub fn from_bytes(b: [u8; HELLO_SIZE]) -> Hello {
        let word = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        Hello { version: word(0), tid: word(4), cpu: word(8) }
    }
}

impl Welcome {
    pub fn to_bytes(self) -> [u8; WELCOME_SIZE] {
        let mut b = [0u8; WELCOME_SIZE];
        b[..4].copy_from_slice(&self.version.to_le_bytes());
        b[4..8].copy_from_slice(&self.status.to_le_bytes());
        b[8..12].copy_from_slice(&self.client.to_le_bytes());
        b[12..16].copy_from_slice(&self.shmid.to_le_bytes());
        b[16..24].copy_from_slice(&self.buffer_size.to_le_bytes());
        b[24..].copy_from_slice(&self.creds.to_le_bytes());
        b
    }

    pub fn from_bytes(b: [u8; WELCOME_SIZE]) -> Welcome {
        let word = |i: usize| [b[i], b[i + 1], b[i + 2], b[i + 3]];
        let dword = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(w)
        };
        Welcome {
            version: u32::from_le_bytes(word(0)),
            status: i32::from_le_bytes(word(4)),
            client: u32::from_le_bytes(word(8)),
            shmid: i32::from_le_bytes(word(12)),
            buffer_size: dword(16),
            creds: dword(24),
        }
    }
}
// SAFETY: as above: atomics and integer cells only.
unsafe impl ShmSafe for Slot {}
// SAFETY: as above.
unsafe impl ShmSafe for QueueHeader {}

/// Operations a descriptor may ask for.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Lookup = 1,
    Getattr = 2,
    Open = 3,
    Read = 4,
    Write = 5,
    Release = 6,
    Create = 7,
    Unlink = 8,
    Fsync = 9,
    /// Open the path in the buffer (`arg`: open flags, mode in the upper 32 bits); aux:
    /// inode, handle. For the `*Path` operations the path is relative to directory `inode`
    /// (0: the instance root), which the service checks it still knows.
    OpenPath = 10,
    /// Attributes of the path in the buffer (`arg` 1: do not follow a final symlink);
    /// the buffer gets a [`WireAttr`].
    StatPath = 11,
    /// Remove the path in the buffer.
    UnlinkPath = 12,
    /// Set the size of an open file (`arg`: the new size).
    Truncate = 13,
    /// Change attributes of an open file: a [`WireSetattr`] in the buffer.
    Setattr = 14,
    /// Extended attribute named in the buffer, of an open file; `arg`: the caller's buffer
    /// size (0: only the length). Reply: the value in the buffer, its length as the result.
    Getxattr = 15,
    /// Names of an open file's extended attributes, NUL-terminated each; `arg` as above.
    Listxattr = 16,
    /// Set one: the buffer holds the name, a NUL and the value; `offset`: the name's length;
    /// `arg`: `XATTR_CREATE`/`XATTR_REPLACE` or 0.
    Setxattr = 17,
    /// Remove the one named in the buffer.
    Removexattr = 18,
    /// Make the directory at the path in the buffer (`arg`: mode, umask in the upper 32 bits).
    Mkdir = 19,
    /// Remove the empty directory at the path in the buffer.
    Rmdir = 20,
    /// Rename: the buffer holds the old path then the new one, `offset` being the old one's
    /// length; `inode` and `handle` are the directories they are relative to; `arg`: the
    /// `RENAME_*` flags.
    Rename = 21,
    /// Hard link: paths and bases as for `Rename`; `arg`: the `linkat` flags.
    Link = 22,
    /// Symbolic link: the buffer holds the target then the new link's path, `offset` being
    /// the target's length.
    Symlink = 23,
    /// The target of the symbolic link at the path in the buffer, into the buffer; its
    /// length as the result.
    Readlink = 24,
    /// `faccessat` of the path in the buffer (`arg`: the mode, `AT_*` flags in the upper 32
    /// bits).
    Access = 25,
    /// Change attributes by path: the path then a [`WireSetattr`], `offset` being the path's
    /// length (`arg` as for `StatPath`).
    SetattrPath = 26,
    /// Open directory `inode` (one the client holds open through the kernel) for listing;
    /// aux: the handle. Takes no lookup reference: end it with `Releasedir`.
    Opendir = 27,
    /// Entries of directory handle `handle` after cookie `offset`, as `linux_dirent64`
    /// records (`d_off` being each entry's cookie) filling at most `len` bytes of the buffer;
    /// their total length as the result (0: the end).
    Readdir = 28,
    /// Ends directory handle `handle` (from `Opendir`).
    Releasedir = 29,
    /// Filesystem statistics (a [`WireStatfs`] in the buffer) of the instance holding the
    /// path in the buffer, or, with no path, inode `inode`.
    Statfs = 30,
    /// Allocate or deallocate space of an open file: a [`WireFallocate`] in the buffer.
    Fallocate = 31,
    /// Write out everything the instance holds for its backend (`syncfs`).
    Syncfs = 32,
    /// Posted only (no answer is needed): the client gave one of its descriptors of instance
    /// `instance` to the kernel, for the reason in `handle` (a [`HandOver`]).
    HandOver = 33,
    /// Write out directory `inode` through listing handle `handle` (from `Opendir`): its
    /// entries reach the backend (`fsync` of a directory descriptor; `arg` 1: `fdatasync`).
    Fsyncdir = 34,
    /// Pass the client the backing file of its open file `handle` (of `inode`), opened anew
    /// with the status flags in `arg` (the open's, as the client keeps them), over its
    /// connection (`FLAG_FD_OK`): for a file opened for writing whose open answer said
    /// [`OPEN_PASSABLE`], once the client finds it busy. Answer: 0 with [`OPEN_PASSED`] in
    /// `aux[2]` when sent; `EAGAIN` when the service will not pass it (the client then stops
    /// asking).
    PassFile = 35,
}

/// Why the library gave one of its descriptors to the kernel (reopened it through the FUSE
/// mount, for good): what `inspect` counts, by instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandOver {
    /// `mmap` of the file.
    Mmap = 0,
    /// `flock`, `lockf` or an `fcntl` lock.
    Lock = 1,
    /// `splice`, `tee`, or a copy to or from something that is not ours.
    Splice = 2,
    /// The descriptor became standard input, output or error (libc's stdio drives those).
    Stdio = 3,
    /// Before `fork`, `exec` or a spawn (the descriptor is inherited).
    Process = 4,
    /// The service sent a call on the descriptor back to the kernel.
    Unserved = 5,
    /// An `ioctl` only the kernel answers.
    Ioctl = 6,
    /// A busy file the kernel's page cache serves better ([`OPEN_KERNEL_CACHED`]): its data
    /// calls are the kernel's (the descriptor stays the library's, as a passed one).
    Busy = 7,
}

impl HandOver {
    pub const ALL: [HandOver; 8] = [HandOver::Mmap, HandOver::Lock, HandOver::Splice, HandOver::Stdio, HandOver::Process, HandOver::Unserved, HandOver::Ioctl, HandOver::Busy];

    /// Its name in `inspect` and the metrics.
    pub fn name(self) -> &'static str {
        match self {
            HandOver::Mmap => "mmap",
            HandOver::Lock => "lock",
            HandOver::Splice => "splice",
            HandOver::Stdio => "stdio",
            HandOver::Process => "process",
            HandOver::Unserved => "unserved",
            HandOver::Ioctl => "ioctl",
            HandOver::Busy => "busy",
        }
    }

    /// The reason a `HandOver` request's `handle` word names (`None`: no such reason).
    pub fn from_word(w: u64) -> Option<HandOver> {
        HandOver::ALL.into_iter().find(|h| *h as u64 == w)
    }
}

/// `fallocate`'s arguments as they travel in a client buffer (the service checks them as
/// the kernel's `vfs_fallocate` does: any bytes give some value).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WireFallocate {
    /// `FALLOC_FL_*`.
    pub mode: u32,
    pub pad: u32,
    pub offset: i64,
    pub length: i64,
}

// SAFETY: `#[repr(C)]`, integers only.
unsafe impl ShmSafe for WireFallocate {}

impl WireFallocate {
    /// Its bytes, for the buffer.
    pub fn to_bytes(&self) -> [u8; core::mem::size_of::<WireFallocate>()] {
        // SAFETY: `#[repr(C)]` integers laid out 4,4,8,8: no padding bytes.
        unsafe { core::mem::transmute_copy(self) }
    }

    /// Reads one from buffer bytes (any bytes give some value).
    pub fn from_bytes(b: &[u8; core::mem::size_of::<WireFallocate>()]) -> WireFallocate {
        // SAFETY: valid for every bit pattern; `read_unaligned` needs no alignment.
        unsafe { core::ptr::read_unaligned(b.as_ptr() as *const WireFallocate) }
    }
}

/// `WireSetattr::valid` bits.
pub const SET_MODE: u32 = 1;
pub const SET_UID: u32 = 2;
pub const SET_GID: u32 = 4;
pub const SET_ATIME: u32 = 8;
pub const SET_MTIME: u32 = 16;
pub const SET_SIZE: u32 = 32;

/// Attribute changes as they travel in a client buffer. Times use the `utimensat`
/// conventions (`tv_nsec` `UTIME_NOW` for the current time).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WireSetattr {
    pub valid: u32,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub atime: i64,
    pub atime_nsec: i64,
    pub mtime: i64,
    pub mtime_nsec: i64,
    pub size: u64,
}

// SAFETY: `#[repr(C)]`, integers only.
unsafe impl ShmSafe for WireSetattr {}

impl WireSetattr {
    /// Its bytes, for the buffer.
    pub fn to_bytes(&self) -> [u8; core::mem::size_of::<WireSetattr>()] {
        // SAFETY: `#[repr(C)]` integers laid out 4,4,4,4 then 8,8,8,8,8: no padding bytes.
        unsafe { core::mem::transmute_copy(self) }
    }

    /// Reads one from buffer bytes (any bytes give some value).
    pub fn from_bytes(b: &[u8; core::mem::size_of::<WireSetattr>()]) -> WireSetattr {
        // SAFETY: valid for every bit pattern; `read_unaligned` needs no alignment.
        unsafe { core::ptr::read_unaligned(b.as_ptr() as *const WireSetattr) }
    }
}

/// Attributes as they travel in a client buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WireAttr {
    pub ino: u64,
    pub size: u64,
    pub blocks: u64,
    pub atime: i64,
    pub mtime: i64,
    pub ctime: i64,
    pub atime_nsec: u32,
    pub mtime_nsec: u32,
    pub ctime_nsec: u32,
    pub mode: u32,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub blksize: u32,
    pub rdev: u64,
}

// SAFETY: `#[repr(C)]`, integers only.
unsafe impl ShmSafe for WireAttr {}

impl WireAttr {
    /// Its bytes, for the buffer.
    pub fn to_bytes(&self) -> [u8; core::mem::size_of::<WireAttr>()] {
        // SAFETY: `WireAttr` is `#[repr(C)]` plain integers with no padding bytes that could be
        // uninitialised (fields are laid out 8,8,8,8,8,8,4x8 then 8: no gaps), so every byte
        // is initialised.
        unsafe { core::mem::transmute_copy(self) }
    }

    /// Reads one from buffer bytes (any bytes give some value).
    pub fn from_bytes(b: &[u8; core::mem::size_of::<WireAttr>()]) -> WireAttr {
        // SAFETY: `WireAttr` is valid for every bit pattern; `read_unaligned` needs no alignment.
        unsafe { core::ptr::read_unaligned(b.as_ptr() as *const WireAttr) }
    }
}

/// Filesystem statistics as they travel in a client buffer (`statvfs` fields the instance
/// knows; the kernel's mount supplies type, id and flags).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WireStatfs {
    pub blocks: u64,
    pub bfree: u64,
    pub bavail: u64,
    pub files: u64,
    pub ffree: u64,
    pub bsize: u32,
    pub namelen: u32,
    pub frsize: u32,
    pub pad: u32,
}

// SAFETY: `#[repr(C)]`, integers only.
unsafe impl ShmSafe for WireStatfs {}

impl WireStatfs {
    /// Its bytes, for the buffer.
    pub fn to_bytes(&self) -> [u8; core::mem::size_of::<WireStatfs>()] {
        // SAFETY: `#[repr(C)]` integers laid out 8x5 then 4x4 (an explicit pad field): no
        // padding bytes.
        unsafe { core::mem::transmute_copy(self) }
    }

    /// Reads one from buffer bytes (any bytes give some value).
    pub fn from_bytes(b: &[u8; core::mem::size_of::<WireStatfs>()]) -> WireStatfs {
        // SAFETY: valid for every bit pattern; `read_unaligned` needs no alignment.
        unsafe { core::ptr::read_unaligned(b.as_ptr() as *const WireStatfs) }
    }
}

/// Fixed part of a `linux_dirent64` record (`d_ino`, `d_off`, `d_reclen`, `d_type`); the
/// NUL-terminated name follows, and records are padded to 8 bytes.
pub const DIRENT_HEADER: usize = 19;

/// The length of the record for a name of `name_len` bytes.
pub const fn dirent_len(name_len: usize) -> usize {
    (DIRENT_HEADER + name_len + 1 + 7) & !7
}

/// Appends a `linux_dirent64` record to `out` if it fits within `cap` bytes in all.
pub fn push_dirent(out: &mut [u8], used: usize, ino: u64, off: u64, kind: u8, name: &[u8]) -> Option<usize> {
    let n = dirent_len(name.len());
    let rec = out.get_mut(used..used.checked_add(n)?)?;
    rec[..8].copy_from_slice(&ino.to_ne_bytes());
    rec[8..16].copy_from_slice(&off.to_ne_bytes());
    rec[16..18].copy_from_slice(&(n as u16).to_ne_bytes());
    rec[18] = kind;
    rec[DIRENT_HEADER..DIRENT_HEADER + name.len()].copy_from_slice(name);
    rec[DIRENT_HEADER + name.len()..].fill(0);
    Some(used + n)
}

/// Checks a `linux_dirent64` record at the start of `b` (bytes from an untrusted buffer):
/// its length when whole (a length of at least the header and a name, within `b`, 8-aligned,
/// the name NUL-terminated inside it), else `None`.
pub fn dirent_ok(b: &[u8]) -> Option<usize> {
    let n = u16::from_ne_bytes([*b.get(16)?, *b.get(17)?]) as usize;
    if n < dirent_len(1) || n > b.len() || !n.is_multiple_of(8) {
        return None;
    }
    let name = &b[DIRENT_HEADER..n];
    (name.first() != Some(&0) && name.contains(&0)).then_some(n)
}

impl Op {
    pub fn from_u32(v: u32) -> Option<Op> {
        Some(match v {
            1 => Op::Lookup,
            2 => Op::Getattr,
            3 => Op::Open,
            4 => Op::Read,
            5 => Op::Write,
            6 => Op::Release,
            7 => Op::Create,
            8 => Op::Unlink,
            9 => Op::Fsync,
            10 => Op::OpenPath,
            11 => Op::StatPath,
            12 => Op::UnlinkPath,
            13 => Op::Truncate,
            14 => Op::Setattr,
            15 => Op::Getxattr,
            16 => Op::Listxattr,
            17 => Op::Setxattr,
            18 => Op::Removexattr,
            19 => Op::Mkdir,
            20 => Op::Rmdir,
            21 => Op::Rename,
            22 => Op::Link,
            23 => Op::Symlink,
            24 => Op::Readlink,
            25 => Op::Access,
            26 => Op::SetattrPath,
            27 => Op::Opendir,
            28 => Op::Readdir,
            29 => Op::Releasedir,
            30 => Op::Statfs,
            31 => Op::Fallocate,
            32 => Op::Syncfs,
            33 => Op::HandOver,
            34 => Op::Fsyncdir,
            35 => Op::PassFile,
            _ => return None,
        })
    }
}

/// The bounds a descriptor is checked against: the segment's real geometry, as the service
/// set it up (never as the segment now claims).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub clients: u32,
    /// Usable bytes of one client buffer.
    pub buffer_size: u64,
    /// Longest name (lookup, create, unlink) in bytes.
    pub name_max: u64,
    /// Longest path (the `*Path` operations) in bytes.
    pub path_max: u64,
}

/// A descriptor that passed validation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    pub op: Op,
    pub flags: u32,
    pub client: u32,
    pub seq: u64,
    pub instance: u32,
    pub inode: u64,
    pub handle: u64,
    pub offset: u64,
    pub len: u64,
    pub arg: u64,
}

/// Why a descriptor was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    UnknownOp(u32),
    BadClient(u32),
    /// `len` larger than the client buffer (or than a name may be).
    TooLong(u64),
    /// `offset + len` overflows a file offset, or `offset` does not split the buffer into
    /// the parts the operation needs.
    BadOffset,
}

/// The size of a [`WireSetattr`] in a buffer.
const SETATTR_LEN: u64 = core::mem::size_of::<WireSetattr>() as u64;
/// Bytes of a [`WireFallocate`] in the buffer.
const FALLOCATE_LEN: u64 = core::mem::size_of::<WireFallocate>() as u64;

/// Validates a descriptor copied out of shared memory.
pub fn decode(d: Descriptor, lim: &Limits) -> Result<Request, DecodeError> {
    let op = Op::from_u32(d.op).ok_or(DecodeError::UnknownOp(d.op))?;
    if d.client >= lim.clients {
        return Err(DecodeError::BadClient(d.client));
    }
    let max = max_len(op, lim).min(lim.buffer_size);
    if d.len > max {
        return Err(DecodeError::TooLong(d.len));
    }
    if !offset_ok(op, d.offset, d.len, d.arg, lim) {
        return Err(DecodeError::BadOffset);
    }
    Ok(Request { op, flags: d.flags, client: d.client, seq: d.seq, instance: d.instance, inode: d.inode, handle: d.handle, offset: d.offset, len: d.len, arg: d.arg })
}

/// The longest `len` operation `op` may carry (before capping at the buffer size).
fn max_len(op: Op, lim: &Limits) -> u64 {
    match op {
        Op::Lookup | Op::Create | Op::Unlink | Op::Getxattr | Op::Removexattr => lim.name_max,
        Op::OpenPath | Op::StatPath | Op::UnlinkPath | Op::Mkdir | Op::Rmdir | Op::Readlink | Op::Access | Op::Statfs => lim.path_max,
        Op::Rename | Op::Link | Op::Symlink => lim.path_max.saturating_mul(2),
        Op::SetattrPath => lim.path_max.saturating_add(SETATTR_LEN),
        Op::Read | Op::Write | Op::Setxattr | Op::Readdir => lim.buffer_size,
        Op::Setattr => SETATTR_LEN,
        Op::Fallocate => FALLOCATE_LEN,
        Op::Getattr | Op::Open | Op::Release | Op::Fsync | Op::Truncate | Op::Listxattr | Op::Opendir | Op::Releasedir | Op::Syncfs | Op::HandOver | Op::Fsyncdir | Op::PassFile => 0,
    }
}

/// Whether `offset` (and `arg`, where it is a size) fits the operation's rules.
fn offset_ok(op: Op, offset: u64, len: u64, arg: u64, lim: &Limits) -> bool {
    match op {
        Op::Read | Op::Write => offset.checked_add(len).is_some_and(|end| end <= i64::MAX as u64),
        Op::Truncate => arg <= i64::MAX as u64,
        Op::Setxattr => offset > 0 && offset < len,
        // Two non-empty paths (or a target and a path), each at most `path_max`.
        Op::Rename | Op::Link | Op::Symlink => offset > 0 && offset < len && offset <= lim.path_max && len - offset <= lim.path_max,
        Op::SetattrPath => offset > 0 && offset <= lim.path_max && len == offset + SETATTR_LEN,
        _ => true,
    }
}

#[cfg(all(test, not(loom)))]
mod tests;

/// Shared by the fuzz target (`fuzz/fuzz_targets/decode.rs`) and the tests that replay what
/// it found: how raw bytes become a descriptor and limits, and the decoder's contract.
#[doc(hidden)]
pub mod fuzzing {
    use super::{Descriptor, Limits, Op, Request, WireSetattr};

    /// A descriptor and a geometry made from arbitrary bytes (`None` when too short).
    pub fn input(data: &[u8]) -> Option<(Descriptor, Limits)> {
        let n = core::mem::size_of::<Descriptor>();
        let g = data.get(n..n + 3)?;
        // SAFETY: `Descriptor` is plain integers, valid for every bit pattern; the read is
        // unaligned and within `data` (checked above).
        let d: Descriptor = unsafe { core::ptr::read_unaligned(data.as_ptr() as *const Descriptor) };
        let lim = Limits { clients: u32::from(g[0]) + 1, buffer_size: (u64::from(g[1]) + 1) << (g[2] % 21), name_max: 255, path_max: 4096 };
        Some((d, lim))
    }

    /// Whether a decoded request keeps every promise `decode` makes.
    pub fn within(r: &Request, lim: &Limits) -> bool {
        let size_ok = r.client < lim.clients && r.len <= lim.buffer_size;
        size_ok
            && match r.op {
                Op::Read | Op::Write => r.offset.checked_add(r.len).is_some_and(|e| e <= i64::MAX as u64),
                Op::Lookup | Op::Create | Op::Unlink | Op::Getxattr | Op::Removexattr => r.len <= lim.name_max,
                Op::OpenPath | Op::StatPath | Op::UnlinkPath | Op::Mkdir | Op::Rmdir | Op::Readlink | Op::Access | Op::Statfs => r.len <= lim.path_max,
                Op::Readdir => true,
                Op::Rename | Op::Link | Op::Symlink => r.offset > 0 && r.offset < r.len && r.offset <= lim.path_max && r.len - r.offset <= lim.path_max,
                Op::SetattrPath => r.offset > 0 && r.offset <= lim.path_max && r.len == r.offset + core::mem::size_of::<WireSetattr>() as u64,
                Op::Setattr => r.len as usize <= core::mem::size_of::<WireSetattr>(),
                Op::Fallocate => r.len as usize <= core::mem::size_of::<super::WireFallocate>(),
                Op::Setxattr => r.offset > 0 && r.offset < r.len,
                Op::Truncate => r.arg <= i64::MAX as u64 && r.len == 0,
                Op::Getattr | Op::Open | Op::Release | Op::Fsync | Op::Listxattr | Op::Opendir | Op::Releasedir | Op::Syncfs | Op::HandOver | Op::Fsyncdir | Op::PassFile => r.len == 0,
            }
    }
}
