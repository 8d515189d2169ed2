//! The FUSE protocol's requests and replies as the io_uring transport carries them.
//!
//! fuser decodes the classic transport's requests itself but keeps its decoder private, so
//! the io_uring transport has this one: a request arrives split in three (the `fuse_in_header`,
//! the op's own header, the rest in the payload buffer), is decoded into an [`Op`] with every
//! length checked against what the kernel said it sent, and its answer is encoded into a
//! payload (the `fuse_out_header` goes beside it). Plain safe code over byte slices: the
//! kernel is trusted for the layout, never for a length to index with.

use std::borrow::Cow;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{FileAttr, FileType, TimeOrNow};

/// Size of `struct fuse_in_header`.
pub const IN_HEADER: usize = 40;
/// Size of `struct fuse_out_header`.
pub const OUT_HEADER: usize = 16;

/// Opcodes this transport decodes (include/uapi/linux/fuse.h).
pub mod opcode {
    pub const LOOKUP: u32 = 1;
    pub const GETATTR: u32 = 3;
    pub const SETATTR: u32 = 4;
    pub const READLINK: u32 = 5;
    pub const SYMLINK: u32 = 6;
    pub const MKNOD: u32 = 8;
    pub const MKDIR: u32 = 9;
    pub const UNLINK: u32 = 10;
    pub const RMDIR: u32 = 11;
    pub const RENAME: u32 = 12;
    pub const LINK: u32 = 13;
    pub const OPEN: u32 = 14;
    pub const READ: u32 = 15;
    pub const WRITE: u32 = 16;
    pub const STATFS: u32 = 17;
    pub const RELEASE: u32 = 18;
    pub const FSYNC: u32 = 20;
    pub const SETXATTR: u32 = 21;
    pub const GETXATTR: u32 = 22;
    pub const LISTXATTR: u32 = 23;
    pub const REMOVEXATTR: u32 = 24;
    pub const FLUSH: u32 = 25;
    pub const OPENDIR: u32 = 27;
    pub const READDIR: u32 = 28;
    pub const RELEASEDIR: u32 = 29;
    pub const FSYNCDIR: u32 = 30;
    pub const ACCESS: u32 = 34;
    pub const CREATE: u32 = 35;
    pub const FALLOCATE: u32 = 43;
    pub const RENAME2: u32 = 45;
    pub const LSEEK: u32 = 46;
}

const FATTR_MODE: u32 = 1 << 0;
const FATTR_UID: u32 = 1 << 1;
const FATTR_GID: u32 = 1 << 2;
const FATTR_SIZE: u32 = 1 << 3;
const FATTR_ATIME: u32 = 1 << 4;
const FATTR_MTIME: u32 = 1 << 5;
const FATTR_FH: u32 = 1 << 6;
const FATTR_ATIME_NOW: u32 = 1 << 7;
const FATTR_MTIME_NOW: u32 = 1 << 8;
const FUSE_GETATTR_FH: u32 = 1 << 0;
const FUSE_FSYNC_FDATASYNC: u32 = 1 << 0;
/// `FOPEN_PASSTHROUGH` in an open reply's flags.
pub const FOPEN_PASSTHROUGH: u32 = 1 << 7;

/// Why a request could not be decoded (answered `EINVAL`, or `ENOSYS` for an opcode this
/// transport does not serve).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("request shorter than its header")]
    Short,
    #[error("request length {len} disagrees with the {got} bytes delivered")]
    Length { len: u32, got: usize },
    #[error("opcode {0} is not served on this transport")]
    Unsupported(u32),
    #[error("opcode {0}: truncated or out-of-range arguments")]
    Invalid(u32),
}

/// `struct fuse_in_header`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InHeader {
    pub len: u32,
    pub opcode: u32,
    pub unique: u64,
    pub nodeid: u64,
    pub uid: u32,
    pub gid: u32,
    pub pid: u32,
}

impl InHeader {
    pub fn parse(b: &[u8]) -> Result<Self, DecodeError> {
        let mut c = Cursor::new(b, &[]);
        let short = |_| DecodeError::Short;
        Ok(InHeader {
            len: c.u32().map_err(short)?,
            opcode: c.u32().map_err(short)?,
            unique: c.u64().map_err(short)?,
            nodeid: c.u64().map_err(short)?,
            uid: c.u32().map_err(short)?,
            gid: c.u32().map_err(short)?,
            pid: c.u32().map_err(short)?,
        })
    }
}

/// A decoded request (the fields the adapter uses).
#[derive(Debug)]
pub enum Op<'a> {
    Lookup { name: &'a OsStr },
    Getattr { fh: Option<u64> },
    Setattr(Box<Setattr>),
    Readlink,
    Symlink { name: &'a OsStr, target: &'a OsStr },
    Mknod { name: &'a OsStr, mode: u32, umask: u32, rdev: u32 },
    Mkdir { name: &'a OsStr, mode: u32, umask: u32 },
    Unlink { name: &'a OsStr },
    Rmdir { name: &'a OsStr },
    Rename { name: &'a OsStr, newdir: u64, newname: &'a OsStr, flags: u32 },
    Link { oldnode: u64, newname: &'a OsStr },
    Open { flags: i32 },
    Read { fh: u64, offset: i64, size: u32 },
    Write { fh: u64, offset: i64, data: Cow<'a, [u8]>, flags: i32, write_flags: u32 },
    Statfs,
    Release { fh: u64, flags: i32 },
    Fsync { fh: u64, datasync: bool },
    Setxattr { name: &'a OsStr, value: &'a [u8], flags: i32 },
    Getxattr { name: &'a OsStr, size: u32 },
    Listxattr { size: u32 },
    Removexattr { name: &'a OsStr },
    Flush { fh: u64, lock_owner: u64 },
    Opendir { flags: i32 },
    Readdir { fh: u64, offset: i64, size: u32 },
    Releasedir { fh: u64, flags: i32 },
    Fsyncdir { fh: u64, datasync: bool },
    Access { mask: i32 },
    Create { name: &'a OsStr, mode: u32, umask: u32, flags: i32 },
    Fallocate { fh: u64, offset: i64, length: i64, mode: i32 },
    Lseek { fh: u64, offset: i64, whence: i32 },
}

/// `struct fuse_setattr_in`, as the adapter takes it.
#[derive(Debug, Default)]
pub struct Setattr {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<TimeOrNow>,
    pub mtime: Option<TimeOrNow>,
    pub fh: Option<u64>,
}

/// Reads fixed fields and strings from a request's arguments, which the ring delivers in two
/// parts (the op header, the payload); a field may not straddle them.
pub struct Cursor<'a> {
    parts: [&'a [u8]; 2],
    part: usize,
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(a: &'a [u8], b: &'a [u8]) -> Self {
        Cursor { parts: [a, b], part: 0, pos: 0 }
    }

    /// Moves past the current part when it is used up.
    fn settle(&mut self) {
        while self.part < 2 && self.pos == self.parts[self.part].len() {
            self.part += 1;
            self.pos = 0;
        }
    }

    /// The next `n` bytes of one part.
    fn take(&mut self, n: usize) -> Result<&'a [u8], ()> {
        if n > 0 {
            self.settle();
        }
        let part = *self.parts.get(self.part).ok_or(())?;
        let end = self.pos.checked_add(n).ok_or(())?;
        let s = part.get(self.pos..end).ok_or(())?;
        self.pos = end;
        Ok(s)
    }

    fn u32(&mut self) -> Result<u32, ()> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, ()> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    /// A NUL-terminated name (the NUL consumed, not returned).
    fn name(&mut self) -> Result<&'a OsStr, ()> {
        self.settle();
        let part = *self.parts.get(self.part).ok_or(())?;
        let rest = &part[self.pos..];
        let n = rest.iter().position(|&c| c == 0).ok_or(())?;
        self.pos += n + 1;
        Ok(OsStr::from_bytes(&rest[..n]))
    }

    /// The rest of the current part (and of the next, when the current one is done).
    fn rest(&mut self) -> &'a [u8] {
        self.settle();
        match self.parts.get(self.part) {
            Some(p) => {
                let r = &p[self.pos..];
                self.pos = p.len();
                r
            }
            None => &[],
        }
    }
}

/// Decodes the arguments of one request: `op_in` is its op header as delivered, `payload`
/// the rest.
pub fn decode<'a>(h: &InHeader, op_in: &'a [u8], payload: &'a [u8]) -> Result<Op<'a>, DecodeError> {
    let got = IN_HEADER + op_in.len() + payload.len();
    if h.len as usize != got {
        return Err(DecodeError::Length { len: h.len, got });
    }
    let mut c = Cursor::new(op_in, payload);
    let op = h.opcode;
    decode_args(op, op_in.len(), &mut c).map_err(|()| DecodeError::Invalid(op))?.ok_or(DecodeError::Unsupported(op))
}

/// A time of `fuse_setattr_in`: seconds are signed (before 1970 is negative); a time the
/// clock cannot hold is refused rather than wrapped.
fn time(set: bool, now: bool, sec: u64, nsec: u32) -> Result<Option<TimeOrNow>, ()> {
    if now {
        return Ok(Some(TimeOrNow::Now));
    }
    if !set {
        return Ok(None);
    }
    let sec = sec as i64;
    let nsec = Duration::from_nanos(u64::from(nsec.min(999_999_999)));
    let t = if sec >= 0 {
        UNIX_EPOCH.checked_add(Duration::from_secs(sec.unsigned_abs())).and_then(|t| t.checked_add(nsec))
    } else {
        UNIX_EPOCH.checked_sub(Duration::from_secs(sec.unsigned_abs())).and_then(|t| t.checked_add(nsec))
    };
    t.map(|t| Some(TimeOrNow::SpecificTime(t))).ok_or(())
}

fn decode_args<'a>(op: u32, header_len: usize, c: &mut Cursor<'a>) -> Result<Option<Op<'a>>, ()> {
    use opcode::*;
    Ok(Some(match op {
        LOOKUP => Op::Lookup { name: c.name()? },
        GETATTR => {
            let flags = c.u32()?;
            c.u32()?;
            let fh = c.u64()?;
            Op::Getattr { fh: (flags & FUSE_GETATTR_FH != 0).then_some(fh) }
        }
        SETATTR => {
            let valid = c.u32()?;
            c.u32()?;
            let fh = c.u64()?;
            let size = c.u64()?;
            c.u64()?; // lock_owner
            let (atime, mtime) = (c.u64()?, c.u64()?);
            c.u64()?; // ctime
            let (atimensec, mtimensec) = (c.u32()?, c.u32()?);
            c.u32()?; // ctimensec
            let mode = c.u32()?;
            c.u32()?;
            let (uid, gid) = (c.u32()?, c.u32()?);
            c.u32()?;
            let has = |f: u32| valid & f != 0;
            Op::Setattr(Box::new(Setattr {
                mode: has(FATTR_MODE).then_some(mode),
                uid: has(FATTR_UID).then_some(uid),
                gid: has(FATTR_GID).then_some(gid),
                size: has(FATTR_SIZE).then_some(size),
                atime: time(has(FATTR_ATIME), has(FATTR_ATIME_NOW), atime, atimensec)?,
                mtime: time(has(FATTR_MTIME), has(FATTR_MTIME_NOW), mtime, mtimensec)?,
                fh: has(FATTR_FH).then_some(fh),
            }))
        }
        READLINK => Op::Readlink,
        SYMLINK => {
            let name = c.name()?;
            Op::Symlink { name, target: c.name()? }
        }
        MKNOD => {
            let (mode, rdev, umask) = (c.u32()?, c.u32()?, c.u32()?);
            c.u32()?;
            Op::Mknod { name: c.name()?, mode, umask, rdev }
        }
        MKDIR => {
            let (mode, umask) = (c.u32()?, c.u32()?);
            Op::Mkdir { name: c.name()?, mode, umask }
        }
        UNLINK => Op::Unlink { name: c.name()? },
        RMDIR => Op::Rmdir { name: c.name()? },
        RENAME | RENAME2 => {
            let newdir = c.u64()?;
            let flags = if op == RENAME2 {
                let f = c.u32()?;
                c.u32()?;
                f
            } else {
                0
            };
            let name = c.name()?;
            Op::Rename { name, newdir, newname: c.name()?, flags }
        }
        LINK => {
            let oldnode = c.u64()?;
            Op::Link { oldnode, newname: c.name()? }
        }
        OPEN | OPENDIR => {
            let flags = c.u32()? as i32;
            if op == OPEN {
                Op::Open { flags }
            } else {
                Op::Opendir { flags }
            }
        }
        READ | READDIR => {
            let (fh, offset, size) = (c.u64()?, c.u64()? as i64, c.u32()?);
            if op == READ {
                Op::Read { fh, offset, size }
            } else {
                Op::Readdir { fh, offset, size }
            }
        }
        WRITE => {
            let (fh, offset, size) = (c.u64()?, c.u64()? as i64, c.u32()?);
            let write_flags = c.u32()?;
            c.u64()?; // lock_owner
            let flags = c.u32()? as i32;
            c.u32()?;
            let data = c.rest();
            if data.len() < size as usize {
                return Err(());
            }
            Op::Write { fh, offset, data: Cow::Borrowed(&data[..size as usize]), flags, write_flags }
        }
        STATFS => Op::Statfs,
        RELEASE | RELEASEDIR => {
            let (fh, flags) = (c.u64()?, c.u32()? as i32);
            if op == RELEASE {
                Op::Release { fh, flags }
            } else {
                Op::Releasedir { fh, flags }
            }
        }
        FSYNC | FSYNCDIR => {
            let (fh, flags) = (c.u64()?, c.u32()?);
            let datasync = flags & FUSE_FSYNC_FDATASYNC != 0;
            if op == FSYNC {
                Op::Fsync { fh, datasync }
            } else {
                Op::Fsyncdir { fh, datasync }
            }
        }
        SETXATTR => {
            let (size, flags) = (c.u32()?, c.u32()?);
            // The extended form (FUSE_SETXATTR_EXT) adds two words.
            if header_len >= 16 {
                c.u32()?;
                c.u32()?;
            }
            let name = c.name()?;
            let value = c.rest();
            Op::Setxattr { name, value: value.get(..size as usize).ok_or(())?, flags: flags as i32 }
        }
        GETXATTR => {
            let size = c.u32()?;
            c.u32()?;
            Op::Getxattr { name: c.name()?, size }
        }
        LISTXATTR => Op::Listxattr { size: c.u32()? },
        REMOVEXATTR => Op::Removexattr { name: c.name()? },
        FLUSH => {
            let fh = c.u64()?;
            c.u32()?;
            c.u32()?;
            Op::Flush { fh, lock_owner: c.u64()? }
        }
        ACCESS => Op::Access { mask: c.u32()? as i32 },
        CREATE => {
            let (flags, mode, umask) = (c.u32()? as i32, c.u32()?, c.u32()?);
            c.u32()?;
            Op::Create { name: c.name()?, mode, umask, flags }
        }
        FALLOCATE => {
            let (fh, offset, length, mode) = (c.u64()?, c.u64()? as i64, c.u64()? as i64, c.u32()? as i32);
            Op::Fallocate { fh, offset, length, mode }
        }
        LSEEK => {
            let (fh, offset, whence) = (c.u64()?, c.u64()? as i64, c.u32()? as i32);
            Op::Lseek { fh, offset, whence }
        }
        _ => return Ok(None),
    }))
}

/// Appends little-endian fields to a reply payload.
#[derive(Debug, Default)]
pub struct Out(pub Vec<u8>);

impl Out {
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// `(seconds, nanoseconds)` of a TTL, as the kernel's `*_valid` and `*_valid_nsec`.
    fn ttl(d: &Duration) -> (u64, u32) {
        (d.as_secs(), d.subsec_nanos())
    }

    /// `struct fuse_attr` (88 bytes).
    pub fn attr(&mut self, a: &FileAttr) -> &mut Self {
        let (at, mt, ct) = (split_time(a.atime), split_time(a.mtime), split_time(a.ctime));
        self.u64(a.ino).u64(a.size).u64(a.blocks).u64(at.0 as u64).u64(mt.0 as u64).u64(ct.0 as u64);
        self.u32(at.1).u32(mt.1).u32(ct.1);
        self.u32(mode_bits(a.kind) | u32::from(a.perm)).u32(a.nlink).u32(a.uid).u32(a.gid).u32(a.rdev);
        self.u32(a.blksize).u32(a.flags)
    }

    /// `struct fuse_entry_out` (128 bytes).
    pub fn entry(&mut self, ttl: &Duration, a: &FileAttr, generation: u64) -> &mut Self {
        let (s, ns) = Self::ttl(ttl);
        self.u64(a.ino).u64(generation).u64(s).u64(s).u32(ns).u32(ns).attr(a)
    }

    /// `struct fuse_attr_out` (104 bytes).
    pub fn attr_out(&mut self, ttl: &Duration, a: &FileAttr) -> &mut Self {
        let (s, ns) = Self::ttl(ttl);
        self.u64(s).u32(ns).u32(0).attr(a)
    }

    /// `struct fuse_open_out` (16 bytes).
    pub fn open(&mut self, fh: u64, flags: u32, backing_id: u32) -> &mut Self {
        self.u64(fh).u32(flags).u32(backing_id)
    }

    /// One `struct fuse_dirent` with its name, padded to 8 bytes.
    pub fn dirent(&mut self, ino: u64, offset: i64, kind: FileType, name: &[u8]) -> &mut Self {
        self.u64(ino).u64(offset as u64).u32(name.len() as u32).u32(mode_bits(kind) >> 12);
        self.0.extend_from_slice(name);
        let pad = dirent_size(name.len()) - DIRENT_HEADER - name.len();
        self.0.extend(std::iter::repeat_n(0u8, pad));
        self
    }
}

const DIRENT_HEADER: usize = 24;

/// The bytes a `fuse_dirent` with a name of `name_len` bytes takes.
pub fn dirent_size(name_len: usize) -> usize {
    (DIRENT_HEADER + name_len + 7) & !7
}

/// Seconds (negative before 1970) and nanoseconds of `t`, as the kernel's time fields hold
/// them.
pub fn split_time(t: SystemTime) -> (i64, u32) {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (d.as_secs() as i64, d.subsec_nanos()),
        Err(e) => {
            let d = e.duration();
            let (mut s, mut ns) = (-(d.as_secs() as i64), d.subsec_nanos());
            if ns > 0 {
                s -= 1;
                ns = 1_000_000_000 - ns;
            }
            (s, ns)
        }
    }
}

fn mode_bits(kind: FileType) -> u32 {
    match kind {
        FileType::NamedPipe => libc::S_IFIFO,
        FileType::CharDevice => libc::S_IFCHR,
        FileType::BlockDevice => libc::S_IFBLK,
        FileType::Directory => libc::S_IFDIR,
        FileType::RegularFile => libc::S_IFREG,
        FileType::Symlink => libc::S_IFLNK,
        FileType::Socket => libc::S_IFSOCK,
    }
}

/// `struct fuse_out_header` for an answer of `payload` bytes, or an error.
pub fn out_header(unique: u64, errno: i32, payload: usize) -> [u8; OUT_HEADER] {
    let mut h = [0u8; OUT_HEADER];
    h[0..4].copy_from_slice(&((OUT_HEADER + payload) as u32).to_le_bytes());
    h[4..8].copy_from_slice(&(-errno).to_le_bytes());
    h[8..16].copy_from_slice(&unique.to_le_bytes());
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(opcode: u32, len: usize) -> InHeader {
        InHeader { len: len as u32, opcode, unique: 7, nodeid: 1, uid: 0, gid: 0, pid: 1 }
    }

    #[test]
    fn lookup_takes_the_name_from_the_payload() {
        let h = header(opcode::LOOKUP, IN_HEADER + 4);
        match decode(&h, &[], b"abc\0") {
            Ok(Op::Lookup { name }) => assert_eq!(name, "abc"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn write_data_comes_from_the_payload_and_is_bounded_by_its_size() {
        let mut op = Out::default();
        op.u64(3).u64(4096).u32(5).u32(4).u64(0).u32(libc::O_SYNC as u32).u32(0);
        let h = header(opcode::WRITE, IN_HEADER + 40 + 5);
        match decode(&h, &op.0, b"hello") {
            Ok(Op::Write { fh: 3, offset: 4096, data, flags, write_flags }) => {
                assert_eq!(&*data, b"hello");
                assert_eq!((flags, write_flags), (libc::O_SYNC, 4), "FUSE_WRITE_KILL_SUIDGID comes through");
            }
            other => panic!("{other:?}"),
        }
        let h = header(opcode::WRITE, IN_HEADER + 40 + 3);
        assert_eq!(decode(&h, &op.0, b"hel").expect_err("refused"), DecodeError::Invalid(opcode::WRITE));
    }

    #[test]
    fn lengths_that_disagree_and_unknown_opcodes_are_refused() {
        let h = header(opcode::LOOKUP, 100);
        assert!(matches!(decode(&h, &[], b"a\0"), Err(DecodeError::Length { .. })));
        let h = header(9999, IN_HEADER);
        assert_eq!(decode(&h, &[], &[]).expect_err("refused"), DecodeError::Unsupported(9999));
        // A name without its NUL.
        let h = header(opcode::UNLINK, IN_HEADER + 3);
        assert_eq!(decode(&h, &[], b"abc").expect_err("refused"), DecodeError::Invalid(opcode::UNLINK));
        // A header too short for its op.
        let h = header(opcode::READ, IN_HEADER + 4);
        assert_eq!(decode(&h, &[0; 4], &[]).expect_err("refused"), DecodeError::Invalid(opcode::READ));
    }

    #[test]
    fn times_before_1970_are_decoded_and_impossible_ones_refused() {
        let setattr = |atime: i64, valid: u32| {
            let mut op = Out::default();
            op.u32(valid).u32(0).u64(0).u64(0).u64(0).u64(atime as u64).u64(0).u64(0);
            op.u32(500).u32(0).u32(0).u32(0).u32(0).u32(0).u32(0).u32(0);
            assert_eq!(op.0.len(), 88);
            let h = header(opcode::SETATTR, IN_HEADER + 88);
            decode(&h, &op.0, &[]).map(|op| match op {
                Op::Setattr(s) => s.atime,
                other => panic!("{other:?}"),
            })
        };
        let before = setattr(-86_400, FATTR_ATIME).expect("a day before 1970");
        let want = UNIX_EPOCH - Duration::from_secs(86_400) + Duration::from_nanos(500);
        assert!(matches!(before, Some(TimeOrNow::SpecificTime(t)) if t == want), "{before:?}");
        assert!(matches!(setattr(0, FATTR_ATIME_NOW), Ok(Some(TimeOrNow::Now))));
        assert!(matches!(setattr(i64::MIN, FATTR_ATIME), Err(DecodeError::Invalid(_)) | Ok(Some(_))));
        assert!(matches!(setattr(5, 0), Ok(None)));
    }

    #[test]
    fn rename2_reads_flags_and_both_names() {
        let mut op = Out::default();
        op.u64(9).u32(libc::RENAME_NOREPLACE).u32(0);
        let h = header(opcode::RENAME2, IN_HEADER + 16 + 4);
        match decode(&h, &op.0, b"a\0b\0") {
            Ok(Op::Rename { name, newdir: 9, newname, flags }) => {
                assert_eq!((name.as_bytes(), newname.as_bytes(), flags), (&b"a"[..], &b"b"[..], libc::RENAME_NOREPLACE));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn replies_have_the_kernels_sizes() {
        let a = FileAttr {
            ino: 5,
            size: 1,
            blocks: 1,
            atime: UNIX_EPOCH,
            mtime: UNIX_EPOCH,
            ctime: UNIX_EPOCH,
            crtime: UNIX_EPOCH,
            kind: FileType::Directory,
            perm: 0o755,
            nlink: 2,
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        };
        assert_eq!(Out::default().attr(&a).0.len(), 88);
        assert_eq!(Out::default().entry(&Duration::from_secs(1), &a, 0).0.len(), 128);
        assert_eq!(Out::default().attr_out(&Duration::from_secs(1), &a).0.len(), 104);
        assert_eq!(Out::default().open(1, 0, 0).0.len(), 16);
        let d = Out::default().dirent(1, 1, FileType::RegularFile, b"abcde").0.clone();
        assert_eq!(d.len(), 32);
        assert_eq!(u32::from_le_bytes([d[20], d[21], d[22], d[23]]), u32::from(libc::DT_REG));
        let mode = u32::from_le_bytes(Out::default().attr(&a).0[60..64].try_into().expect("4 bytes"));
        assert_eq!(mode, libc::S_IFDIR | 0o755);
    }
}
