//! Plain data types of the libservice interface.

use std::ffi::OsString;

/// Inode number as a libservice hands it out (a FUSE node id).
pub type Inode = u64;
/// Open file or directory handle.
pub type Handle = u64;

/// `renameat2` flag: fail with `EEXIST` if the target exists.
pub const RENAME_NOREPLACE: u32 = libc::RENAME_NOREPLACE;
/// `renameat2` flag: atomically exchange source and target.
pub const RENAME_EXCHANGE: u32 = libc::RENAME_EXCHANGE;
/// `renameat2` flag: leave an overlay-style whiteout at the source.
pub const RENAME_WHITEOUT: u32 = libc::RENAME_WHITEOUT;

/// Credentials of the process a request comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Context {
    pub uid: u32,
    pub gid: u32,
    pub pid: i32,
}

impl Context {
    /// The credentials of the calling service process itself.
    pub fn current() -> Self {
        Context {
            uid: rustix::process::geteuid().as_raw(),
            gid: rustix::process::getegid().as_raw(),
            pid: rustix::process::getpid().as_raw_nonzero().get(),
        }
    }
}

/// A seconds + nanoseconds timestamp.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timespec {
    pub sec: i64,
    pub nsec: u32,
}

/// The type of a filesystem object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileKind {
    Regular,
    Directory,
    Symlink,
    CharDevice,
    BlockDevice,
    Fifo,
    Socket,
}

impl FileKind {
    /// Type from the `S_IFMT` bits of a mode; unknown bits read as a regular file.
    pub fn from_mode(mode: u32) -> Self {
        match mode & libc::S_IFMT {
            libc::S_IFDIR => FileKind::Directory,
            libc::S_IFLNK => FileKind::Symlink,
            libc::S_IFCHR => FileKind::CharDevice,
            libc::S_IFBLK => FileKind::BlockDevice,
            libc::S_IFIFO => FileKind::Fifo,
            libc::S_IFSOCK => FileKind::Socket,
            _ => FileKind::Regular,
        }
    }

    /// The `S_IFMT` bits of this type.
    pub fn mode_bits(self) -> u32 {
        match self {
            FileKind::Regular => libc::S_IFREG,
            FileKind::Directory => libc::S_IFDIR,
            FileKind::Symlink => libc::S_IFLNK,
            FileKind::CharDevice => libc::S_IFCHR,
            FileKind::BlockDevice => libc::S_IFBLK,
            FileKind::Fifo => libc::S_IFIFO,
            FileKind::Socket => libc::S_IFSOCK,
        }
    }
}

/// Attributes of an inode (`struct stat` without the parts no transport needs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attr {
    /// The inode number the libservice reports (`st_ino`).
    pub ino: u64,
    /// Device of the backing filesystem (`st_dev`), meaningful inside one backend only.
    pub dev: u64,
    /// Type and permission bits.
    pub mode: u32,
    pub nlink: u64,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u64,
    pub size: u64,
    pub blksize: u32,
    pub blocks: u64,
    pub atime: Timespec,
    pub mtime: Timespec,
    pub ctime: Timespec,
}

impl Attr {
    /// The type of the object.
    pub fn kind(&self) -> FileKind {
        FileKind::from_mode(self.mode)
    }

    /// Whether this is an overlay-style whiteout (a 0/0 character device).
    pub fn is_whiteout(&self) -> bool {
        self.kind() == FileKind::CharDevice && self.rdev == 0
    }
}

/// Result of a lookup or of an operation that creates a name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub inode: Inode,
    pub generation: u64,
    pub attr: Attr,
}

/// How `setattr` changes a timestamp.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeUpdate {
    /// The current time (`UTIME_NOW`).
    Now,
    /// A given time.
    Set(Timespec),
}

/// Attributes to change; `None` leaves one as it is (`UTIME_OMIT` for times).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SetAttr {
    /// Permission bits (the type bits are ignored).
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<TimeUpdate>,
    pub mtime: Option<TimeUpdate>,
}

impl SetAttr {
    /// Whether nothing is to change.
    pub fn is_empty(&self) -> bool {
        *self == SetAttr::default()
    }
}

/// One directory entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    /// Inode number as `st_ino` would report it.
    pub ino: u64,
    /// Cookie to pass as `offset` to `readdir` to continue after this entry.
    pub offset: u64,
    pub kind: FileKind,
    pub name: OsString,
}

/// Filesystem statistics (`statvfs`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatFs {
    pub blocks: u64,
    pub bfree: u64,
    pub bavail: u64,
    pub files: u64,
    pub ffree: u64,
    pub bsize: u32,
    pub namelen: u32,
    pub frsize: u32,
}

/// A host file behind an open handle, for zero-copy paths (reflink, `copy_file_range`, FUSE
/// passthrough), with the identity of the object it is.
#[derive(Clone, Debug)]
pub struct BackingFile {
    pub fd: std::sync::Arc<std::os::fd::OwnedFd>,
    /// `(st_dev, st_ino)` of the host object.
    pub id: (u64, u64),
    /// Its size when asked for.
    pub size: u64,
    /// Whether the file may be opened for writing where it is (a writable branch, the union's
    /// upper one); a file that may not is copied up first, so another file serves writers.
    pub writable: bool,
    /// The union's layer it is in (0: the writable one, 1.. the lower branches in order);
    /// `None` outside a union.
    pub layer: Option<usize>,
}

/// What an open (`O_SYNC`, `O_DSYNC`) or a single write (`RWF_SYNC`, `RWF_DSYNC`, which FUSE
/// passes as the same open flags) promises about a write's durability: before the write
/// returns, its data (and for `All` the file's metadata) is on stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteSync {
    None,
    Data,
    All,
}

impl WriteSync {
    /// The promise made by open flags `flags` (`O_SYNC` includes `O_DSYNC`'s bit).
    pub fn of(flags: i32) -> Self {
        if flags & libc::O_SYNC == libc::O_SYNC {
            WriteSync::All
        } else if flags & libc::O_DSYNC != 0 {
            WriteSync::Data
        } else {
            WriteSync::None
        }
    }

    /// The `fsync` that keeps the promise: `Some(datasync)`, or `None` when nothing is due.
    pub fn fsync(self) -> Option<bool> {
        match self {
            WriteSync::None => None,
            WriteSync::Data => Some(true),
            WriteSync::All => Some(false),
        }
    }
}
