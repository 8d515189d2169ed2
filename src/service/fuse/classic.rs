//! The classic transport: fuser reads requests from `/dev/fuse` and hands them to the adapter.
//!
//! It always runs: it carries INIT (where the io_uring transport is accepted), FORGET and
//! INTERRUPT, and every request when the ring is off or not ready.

use std::ffi::OsStr;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use fuser::{
    KernelConfig, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyLseek, ReplyOpen,
    ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow,
};
use tracing::info;

use super::adapter::{ctx, FuseAdapter};
use super::uring::{Plan, FUSE_OVER_IO_URING};

/// What fuser serves: the adapter, and the io_uring transport to start if INIT accepts it.
pub struct Classic {
    pub adapter: Arc<FuseAdapter>,
    pub ring: Option<Arc<Plan>>,
}

impl fuser::Filesystem for Classic {
    fn init(&mut self, _req: &Request<'_>, config: &mut KernelConfig) -> Result<(), i32> {
        self.adapter.init(config)?;
        if let Some(plan) = self.ring.as_ref().filter(|p| p.ready()) {
            match config.add_capabilities(FUSE_OVER_IO_URING) {
                Ok(()) => plan.start(),
                Err(_) => info!("the kernel did not offer FUSE over io_uring: the classic transport serves this mount"),
            }
        }
        Ok(())
    }

    fn destroy(&mut self) {
        self.adapter.destroy();
    }

    fn lookup(&mut self, req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEntry) {
        self.adapter.lookup(ctx(req), parent, name, reply)
    }

    fn forget(&mut self, _req: &Request<'_>, ino: u64, nlookup: u64) {
        self.adapter.forget(ino, nlookup)
    }

    fn getattr(&mut self, req: &Request<'_>, ino: u64, fh: Option<u64>, reply: ReplyAttr) {
        self.adapter.getattr(ctx(req), ino, fh, reply)
    }

    fn setattr(
        &mut self,
        req: &Request<'_>,
        ino: u64,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        ctime: Option<SystemTime>,
        fh: Option<u64>,
        crtime: Option<SystemTime>,
        chgtime: Option<SystemTime>,
        bkuptime: Option<SystemTime>,
        flags: Option<u32>,
        reply: ReplyAttr,
    ) {
        self.adapter.setattr(ctx(req), ino, mode, uid, gid, size, atime, mtime, ctime, fh, crtime, chgtime, bkuptime, flags, reply)
    }

    fn readlink(&mut self, req: &Request<'_>, ino: u64, reply: ReplyData) {
        self.adapter.readlink(ctx(req), ino, reply)
    }

    fn mknod(&mut self, req: &Request<'_>, parent: u64, name: &OsStr, mode: u32, umask: u32, rdev: u32, reply: ReplyEntry) {
        self.adapter.mknod(ctx(req), parent, name, mode, umask, rdev, reply)
    }

    fn mkdir(&mut self, req: &Request<'_>, parent: u64, name: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        self.adapter.mkdir(ctx(req), parent, name, mode, umask, reply)
    }

    fn unlink(&mut self, req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        self.adapter.unlink(ctx(req), parent, name, reply)
    }

    fn rmdir(&mut self, req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        self.adapter.rmdir(ctx(req), parent, name, reply)
    }

    fn symlink(&mut self, req: &Request<'_>, parent: u64, link_name: &OsStr, target: &Path, reply: ReplyEntry) {
        self.adapter.symlink(ctx(req), parent, link_name, target, reply)
    }

    fn rename(&mut self, req: &Request<'_>, parent: u64, name: &OsStr, newparent: u64, newname: &OsStr, flags: u32, reply: ReplyEmpty) {
        self.adapter.rename(ctx(req), parent, name, newparent, newname, flags, reply)
    }

    fn link(&mut self, req: &Request<'_>, ino: u64, newparent: u64, newname: &OsStr, reply: ReplyEntry) {
        self.adapter.link(ctx(req), ino, newparent, newname, reply)
    }

    fn open(&mut self, req: &Request<'_>, ino: u64, flags: i32, reply: ReplyOpen) {
        self.adapter.open(ctx(req), ino, flags, reply)
    }

    fn read(&mut self, req: &Request<'_>, ino: u64, fh: u64, offset: i64, size: u32, flags: i32, lock: Option<u64>, reply: ReplyData) {
        self.adapter.read(ctx(req), ino, fh, offset, size, flags, lock, reply)
    }

    fn write(&mut self, req: &Request<'_>, ino: u64, fh: u64, offset: i64, data: &[u8], wflags: u32, flags: i32, lock: Option<u64>, reply: ReplyWrite) {
        self.adapter.write(ctx(req), ino, fh, offset, data, wflags, flags, lock, reply)
    }

    fn flush(&mut self, req: &Request<'_>, ino: u64, fh: u64, lock_owner: u64, reply: ReplyEmpty) {
        self.adapter.flush(ctx(req), ino, fh, lock_owner, reply)
    }

    fn release(&mut self, req: &Request<'_>, ino: u64, fh: u64, flags: i32, lock: Option<u64>, flush: bool, reply: ReplyEmpty) {
        self.adapter.release(ctx(req), ino, fh, flags, lock, flush, reply)
    }

    fn fsync(&mut self, req: &Request<'_>, ino: u64, fh: u64, datasync: bool, reply: ReplyEmpty) {
        self.adapter.fsync(ctx(req), ino, fh, datasync, reply)
    }

    fn opendir(&mut self, req: &Request<'_>, ino: u64, flags: i32, reply: ReplyOpen) {
        self.adapter.opendir(ctx(req), ino, flags, reply)
    }

    fn readdir(&mut self, req: &Request<'_>, ino: u64, fh: u64, offset: i64, reply: ReplyDirectory) {
        self.adapter.readdir(ctx(req), ino, fh, offset, reply)
    }

    fn releasedir(&mut self, req: &Request<'_>, ino: u64, fh: u64, flags: i32, reply: ReplyEmpty) {
        self.adapter.releasedir(ctx(req), ino, fh, flags, reply)
    }

    fn fsyncdir(&mut self, req: &Request<'_>, ino: u64, fh: u64, datasync: bool, reply: ReplyEmpty) {
        self.adapter.fsyncdir(ctx(req), ino, fh, datasync, reply)
    }

    fn statfs(&mut self, req: &Request<'_>, ino: u64, reply: ReplyStatfs) {
        self.adapter.statfs(ctx(req), ino, reply)
    }

    fn setxattr(&mut self, req: &Request<'_>, ino: u64, name: &OsStr, value: &[u8], flags: i32, position: u32, reply: ReplyEmpty) {
        self.adapter.setxattr(ctx(req), ino, name, value, flags, position, reply)
    }

    fn getxattr(&mut self, req: &Request<'_>, ino: u64, name: &OsStr, size: u32, reply: ReplyXattr) {
        self.adapter.getxattr(ctx(req), ino, name, size, reply)
    }

    fn listxattr(&mut self, req: &Request<'_>, ino: u64, size: u32, reply: ReplyXattr) {
        self.adapter.listxattr(ctx(req), ino, size, reply)
    }

    fn removexattr(&mut self, req: &Request<'_>, ino: u64, name: &OsStr, reply: ReplyEmpty) {
        self.adapter.removexattr(ctx(req), ino, name, reply)
    }

    fn access(&mut self, req: &Request<'_>, ino: u64, mask: i32, reply: ReplyEmpty) {
        self.adapter.access(ctx(req), ino, mask, reply)
    }

    fn create(&mut self, req: &Request<'_>, parent: u64, name: &OsStr, mode: u32, umask: u32, flags: i32, reply: ReplyCreate) {
        self.adapter.create(ctx(req), parent, name, mode, umask, flags, reply)
    }

    fn fallocate(&mut self, req: &Request<'_>, ino: u64, fh: u64, offset: i64, length: i64, mode: i32, reply: ReplyEmpty) {
        self.adapter.fallocate(ctx(req), ino, fh, offset, length, mode, reply)
    }

    fn lseek(&mut self, req: &Request<'_>, ino: u64, fh: u64, offset: i64, whence: i32, reply: ReplyLseek) {
        self.adapter.lseek(ctx(req), ino, fh, offset, whence, reply)
    }
}
