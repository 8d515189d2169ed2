//! One way for the adapter to answer a request, whichever transport carried it.
//!
//! The classic transport answers with fuser's reply types; the io_uring transport with a
//! [`RingAnswer`], which encodes the same replies (`wire`) and hands them to the ring thread
//! that owns the request's ring entry. The adapter's request handlers are generic over these
//! traits, so both transports run the same code.

use std::ffi::OsStr;
use std::os::fd::BorrowedFd;
use std::os::unix::ffi::OsStrExt;
use std::time::Duration;

use crossbeam_channel::Sender;
use fuser::{FileAttr, FileType};
use tracing::debug;

use super::passthrough_id::Backing;
use super::wire::{self, Out};

/// Every answer can be an error (an errno).
pub trait Answer: Send + 'static {
    fn error(self, errno: i32);
}

pub trait EntryAnswer: Answer {
    fn entry(self, ttl: &Duration, attr: &FileAttr, generation: u64);
}

pub trait AttrAnswer: Answer {
    fn attr(self, ttl: &Duration, attr: &FileAttr);
}

pub trait DataAnswer: Answer {
    fn data(self, data: &[u8]);
}

pub trait EmptyAnswer: Answer {
    fn ok(self);
}

pub trait WriteAnswer: Answer {
    fn written(self, size: u32);
}

pub trait StatfsAnswer: Answer {
    #[allow(clippy::too_many_arguments)]
    fn statfs(self, blocks: u64, bfree: u64, bavail: u64, files: u64, ffree: u64, bsize: u32, namelen: u32, frsize: u32);
}

pub trait XattrAnswer: Answer {
    fn size(self, size: u32);
    fn value(self, data: &[u8]);
}

pub trait LseekAnswer: Answer {
    fn offset(self, offset: i64);
}

pub trait OpenAnswer: Answer {
    fn opened(self, fh: u64, flags: u32);
    fn opened_passthrough(self, fh: u64, flags: u32, id: &Backing);
    /// Registers `fd` as a backing file on this answer's connection.
    fn open_backing(&self, fd: BorrowedFd<'_>) -> std::io::Result<Backing>;
}

pub trait CreateAnswer: Answer {
    fn created(self, ttl: &Duration, attr: &FileAttr, generation: u64, fh: u64, flags: u32);
}

pub trait DirAnswer: Answer {
    /// Adds an entry; true when the answer is full (the entry was not added).
    fn add(&mut self, ino: u64, offset: i64, kind: FileType, name: &OsStr) -> bool;
    fn ok(self);
}

macro_rules! classic_error {
    ($($t:ty),*) => {$(
        impl Answer for $t {
            fn error(self, errno: i32) {
                <$t>::error(self, errno)
            }
        }
    )*};
}

classic_error!(
    fuser::ReplyEntry,
    fuser::ReplyAttr,
    fuser::ReplyData,
    fuser::ReplyEmpty,
    fuser::ReplyWrite,
    fuser::ReplyStatfs,
    fuser::ReplyXattr,
    fuser::ReplyLseek,
    fuser::ReplyOpen,
    fuser::ReplyCreate,
    fuser::ReplyDirectory
);

impl EntryAnswer for fuser::ReplyEntry {
    fn entry(self, ttl: &Duration, attr: &FileAttr, generation: u64) {
        fuser::ReplyEntry::entry(self, ttl, attr, generation)
    }
}

impl AttrAnswer for fuser::ReplyAttr {
    fn attr(self, ttl: &Duration, attr: &FileAttr) {
        fuser::ReplyAttr::attr(self, ttl, attr)
    }
}

impl DataAnswer for fuser::ReplyData {
    fn data(self, data: &[u8]) {
        fuser::ReplyData::data(self, data)
    }
}

impl EmptyAnswer for fuser::ReplyEmpty {
    fn ok(self) {
        fuser::ReplyEmpty::ok(self)
    }
}

impl WriteAnswer for fuser::ReplyWrite {
    fn written(self, size: u32) {
        fuser::ReplyWrite::written(self, size)
    }
}

impl StatfsAnswer for fuser::ReplyStatfs {
    fn statfs(self, blocks: u64, bfree: u64, bavail: u64, files: u64, ffree: u64, bsize: u32, namelen: u32, frsize: u32) {
        fuser::ReplyStatfs::statfs(self, blocks, bfree, bavail, files, ffree, bsize, namelen, frsize)
    }
}

impl XattrAnswer for fuser::ReplyXattr {
    fn size(self, size: u32) {
        fuser::ReplyXattr::size(self, size)
    }
    fn value(self, data: &[u8]) {
        fuser::ReplyXattr::data(self, data)
    }
}

impl LseekAnswer for fuser::ReplyLseek {
    fn offset(self, offset: i64) {
        fuser::ReplyLseek::offset(self, offset)
    }
}

impl OpenAnswer for fuser::ReplyOpen {
    fn opened(self, fh: u64, flags: u32) {
        fuser::ReplyOpen::opened(self, fh, flags)
    }
    fn opened_passthrough(self, fh: u64, flags: u32, id: &Backing) {
        match id {
            Backing::Classic(id) => fuser::ReplyOpen::opened_passthrough(self, fh, flags, id),
            // fuser can only send its own ids; a backing file registered for the ring is not
            // one (the classic transport serves only what comes before the ring is ready).
            Backing::Ring(_) => {
                debug!("a ring backing id cannot be sent on the classic transport");
                fuser::ReplyOpen::error(self, libc::EBUSY)
            }
        }
    }
    fn open_backing(&self, fd: BorrowedFd<'_>) -> std::io::Result<Backing> {
        fuser::ReplyOpen::open_backing(self, fd).map(Backing::Classic)
    }
}

impl CreateAnswer for fuser::ReplyCreate {
    fn created(self, ttl: &Duration, attr: &FileAttr, generation: u64, fh: u64, flags: u32) {
        fuser::ReplyCreate::created(self, ttl, attr, generation, fh, flags)
    }
}

impl DirAnswer for fuser::ReplyDirectory {
    fn add(&mut self, ino: u64, offset: i64, kind: FileType, name: &OsStr) -> bool {
        fuser::ReplyDirectory::add(self, ino, offset, kind, name)
    }
    fn ok(self) {
        fuser::ReplyDirectory::ok(self)
    }
}

/// What a ring request's handler answered: a payload, or an errno.
pub type Answered = Result<Vec<u8>, i32>;

/// An answer to a request carried by the io_uring transport. It is sent to the ring thread
/// that holds the request's entry; one that is dropped unanswered answers `EIO` (as fuser's
/// replies do).
pub struct RingAnswer {
    to: Option<Sender<Answered>>,
    /// The connection's device, for backing-file registrations.
    dev: std::sync::Weak<std::os::fd::OwnedFd>,
    /// A listing's entries so far, and the size the kernel asked for.
    dir: Out,
    limit: usize,
}

impl RingAnswer {
    pub fn new(to: Sender<Answered>, dev: std::sync::Weak<std::os::fd::OwnedFd>, limit: usize) -> Self {
        RingAnswer { to: Some(to), dev, dir: Out::default(), limit }
    }

    fn send(mut self, a: Answered) {
        if let Some(to) = self.to.take() {
            // The ring thread waits for this answer; it is gone only when the mount is.
            let _ = to.send(a);
        }
    }

    fn payload(self, out: Out) {
        self.send(Ok(out.0))
    }
}

impl Drop for RingAnswer {
    fn drop(&mut self) {
        if let Some(to) = self.to.take() {
            let _ = to.send(Err(libc::EIO));
        }
    }
}

impl Answer for RingAnswer {
    fn error(self, errno: i32) {
        self.send(Err(errno))
    }
}

impl EntryAnswer for RingAnswer {
    fn entry(self, ttl: &Duration, attr: &FileAttr, generation: u64) {
        let mut o = Out::default();
        o.entry(ttl, attr, generation);
        self.payload(o)
    }
}

impl AttrAnswer for RingAnswer {
    fn attr(self, ttl: &Duration, attr: &FileAttr) {
        let mut o = Out::default();
        o.attr_out(ttl, attr);
        self.payload(o)
    }
}

impl DataAnswer for RingAnswer {
    fn data(self, data: &[u8]) {
        self.send(Ok(data.to_vec()))
    }
}

impl EmptyAnswer for RingAnswer {
    fn ok(self) {
        self.send(Ok(Vec::new()))
    }
}

impl WriteAnswer for RingAnswer {
    fn written(self, size: u32) {
        let mut o = Out::default();
        o.u32(size).u32(0);
        self.payload(o)
    }
}

impl StatfsAnswer for RingAnswer {
    fn statfs(self, blocks: u64, bfree: u64, bavail: u64, files: u64, ffree: u64, bsize: u32, namelen: u32, frsize: u32) {
        let mut o = Out::default();
        o.u64(blocks).u64(bfree).u64(bavail).u64(files).u64(ffree).u32(bsize).u32(namelen).u32(frsize).u32(0);
        for _ in 0..6 {
            o.u32(0);
        }
        self.payload(o)
    }
}

impl XattrAnswer for RingAnswer {
    fn size(self, size: u32) {
        let mut o = Out::default();
        o.u32(size).u32(0);
        self.payload(o)
    }
    fn value(self, data: &[u8]) {
        self.send(Ok(data.to_vec()))
    }
}

impl LseekAnswer for RingAnswer {
    fn offset(self, offset: i64) {
        let mut o = Out::default();
        o.u64(offset as u64);
        self.payload(o)
    }
}

impl OpenAnswer for RingAnswer {
    fn opened(self, fh: u64, flags: u32) {
        let mut o = Out::default();
        o.open(fh, flags, 0);
        self.payload(o)
    }
    fn opened_passthrough(self, fh: u64, flags: u32, id: &Backing) {
        match id.raw() {
            Some(raw) => {
                let mut o = Out::default();
                o.open(fh, flags | wire::FOPEN_PASSTHROUGH, raw);
                self.payload(o)
            }
            None => self.error(libc::EBUSY),
        }
    }
    fn open_backing(&self, fd: BorrowedFd<'_>) -> std::io::Result<Backing> {
        let dev = self.dev.upgrade().ok_or_else(|| std::io::Error::from_raw_os_error(libc::ENOTCONN))?;
        super::passthrough_id::RingBacking::open(&dev, fd).map(Backing::Ring)
    }
}

impl CreateAnswer for RingAnswer {
    fn created(self, ttl: &Duration, attr: &FileAttr, generation: u64, fh: u64, flags: u32) {
        let mut o = Out::default();
        o.entry(ttl, attr, generation).open(fh, flags, 0);
        self.payload(o)
    }
}

impl DirAnswer for RingAnswer {
    fn add(&mut self, ino: u64, offset: i64, kind: FileType, name: &OsStr) -> bool {
        if self.dir.0.len() + wire::dirent_size(name.len()) > self.limit {
            return true;
        }
        self.dir.dirent(ino, offset, kind, name.as_bytes());
        false
    }
    fn ok(mut self) {
        let dir = std::mem::take(&mut self.dir);
        self.payload(dir)
    }
}
