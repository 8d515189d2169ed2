//! libcephfs, loaded at run time (`libcephfs.so.2`), so that the binary builds and runs where
//! Ceph is absent: only an instance on the `cephfs` backend needs the library, and without it
//! gets an error naming it. Only the low-level (`ceph_ll_*`) calls the backend uses are bound.

use std::ffi::{c_char, c_int, c_void};

use libloading::Library;

/// The library's file name (Debian package `libcephfs2`).
pub const LIBRARY: &str = "libcephfs.so.2";

/// Opaque libcephfs objects.
pub type MountInfo = c_void;
pub type CInode = c_void;
pub type Fh = c_void;
pub type UserPerm = c_void;
pub type DirResult = c_void;

/// `struct ceph_statx` (ceph_ll_client.h).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Statx {
    pub mask: u32,
    pub blksize: u32,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub mode: u16,
    pub ino: u64,
    pub size: u64,
    pub blocks: u64,
    pub dev: u64,
    pub rdev: u64,
    pub atime: libc::timespec,
    pub ctime: libc::timespec,
    pub mtime: libc::timespec,
    pub btime: libc::timespec,
    pub version: u64,
}

impl Statx {
    pub fn zeroed() -> Statx {
        // SAFETY: every field is a plain integer (or a struct of them): all-zero is valid.
        unsafe { std::mem::zeroed() }
    }
}

/// `CEPH_STATX_BASIC_STATS`.
pub const STATX_BASIC: u32 = 0x7ff;
/// `CEPH_NOSNAP`: the snapshot id (`dev` in a `ceph_statx`) of the live tree.
pub const NOSNAP: u64 = u64::MAX - 1;
/// `CEPH_STATX_VERSION`: `version` is the inode's change attribute.
pub const STATX_VERSION: u32 = 0x1000;
pub const SETATTR_MODE: c_int = 1 << 0;
pub const SETATTR_UID: c_int = 1 << 1;
pub const SETATTR_GID: c_int = 1 << 2;
pub const SETATTR_MTIME: c_int = 1 << 3;
pub const SETATTR_ATIME: c_int = 1 << 4;
pub const SETATTR_SIZE: c_int = 1 << 5;
pub const SETATTR_MTIME_NOW: c_int = 1 << 7;
pub const SETATTR_ATIME_NOW: c_int = 1 << 8;

/// `vinodeno_t`: an inode number and its snapshot id, passed by value to callbacks.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VInodeNo {
    pub ino: u64,
    pub snapid: u64,
}

/// `client_ino_callback_t`: the client dropped its cached data of `ino` in `off..off+len`
/// (`len` 0: all of it).
pub type InoCallback = unsafe extern "C" fn(handle: *mut c_void, ino: VInodeNo, off: i64, len: i64);
/// `client_dentry_callback_t`: the client dropped entry `name` (`len` bytes) of `dir`.
pub type DentryCallback = unsafe extern "C" fn(handle: *mut c_void, dir: VInodeNo, ino: VInodeNo, name: *const c_char, len: usize);

/// `struct ceph_client_callback_args` (ceph_ll_client.h, Ceph 15+): every callback not used is
/// null, which libcephfs takes as "not wanted".
#[repr(C)]
#[derive(Debug)]
pub struct CallbackArgs {
    pub handle: *mut c_void,
    pub ino_cb: Option<InoCallback>,
    pub dentry_cb: Option<DentryCallback>,
    pub switch_intr_cb: *const c_void,
    pub remount_cb: *const c_void,
    pub umask_cb: *const c_void,
    pub ino_release_cb: *const c_void,
}

/// `ceph_deleg_cb_t`: a delegation on `fh` is recalled (called under the client's lock: the
/// callee may not call libcephfs).
pub type DelegCallback = unsafe extern "C" fn(fh: *mut Fh, priv_: *mut c_void);
/// `ceph_ll_delegation` commands.
pub const DELEGATION_NONE: u32 = 0;
pub const DELEGATION_RD: u32 = 1;
/// `ceph_ll_delegation(cmount, fh, cmd, cb, priv)`.
pub type DelegationFn = unsafe extern "C" fn(*mut MountInfo, *mut Fh, u32, Option<DelegCallback>, *mut c_void) -> c_int;
/// `ceph_set_deleg_timeout(cmount, seconds)`.
pub type DelegTimeoutFn = unsafe extern "C" fn(*mut MountInfo, u32) -> c_int;

/// The bound functions. Every one returns a negative errno on failure unless noted.
#[allow(missing_debug_implementations)]
pub struct Api {
    _lib: Library,
    pub create: unsafe extern "C" fn(*mut *mut MountInfo, *const c_char) -> c_int,
    pub conf_read_file: unsafe extern "C" fn(*mut MountInfo, *const c_char) -> c_int,
    pub conf_set: unsafe extern "C" fn(*mut MountInfo, *const c_char, *const c_char) -> c_int,
    pub select_filesystem: unsafe extern "C" fn(*mut MountInfo, *const c_char) -> c_int,
    pub mount: unsafe extern "C" fn(*mut MountInfo, *const c_char) -> c_int,
    pub unmount: unsafe extern "C" fn(*mut MountInfo) -> c_int,
    pub release: unsafe extern "C" fn(*mut MountInfo) -> c_int,
    pub userperm_new: unsafe extern "C" fn(u32, u32, c_int, *mut u32) -> *mut UserPerm,
    pub userperm_destroy: unsafe extern "C" fn(*mut UserPerm),
    pub ll_walk: unsafe extern "C" fn(*mut MountInfo, *const c_char, *mut *mut CInode, *mut Statx, u32, u32, *const UserPerm) -> c_int,
    pub ll_lookup: unsafe extern "C" fn(*mut MountInfo, *mut CInode, *const c_char, *mut *mut CInode, *mut Statx, u32, u32, *const UserPerm) -> c_int,
    pub ll_put: unsafe extern "C" fn(*mut MountInfo, *mut CInode) -> c_int,
    pub ll_getattr: unsafe extern "C" fn(*mut MountInfo, *mut CInode, *mut Statx, u32, u32, *const UserPerm) -> c_int,
    pub ll_setattr: unsafe extern "C" fn(*mut MountInfo, *mut CInode, *mut Statx, c_int, *const UserPerm) -> c_int,
    pub ll_open: unsafe extern "C" fn(*mut MountInfo, *mut CInode, c_int, *mut *mut Fh, *const UserPerm) -> c_int,
    pub ll_create: unsafe extern "C" fn(*mut MountInfo, *mut CInode, *const c_char, libc::mode_t, c_int, *mut *mut CInode, *mut *mut Fh, *mut Statx, u32, u32, *const UserPerm) -> c_int,
    pub ll_read: unsafe extern "C" fn(*mut MountInfo, *mut Fh, i64, u64, *mut c_char) -> c_int,
    pub ll_write: unsafe extern "C" fn(*mut MountInfo, *mut Fh, i64, u64, *const c_char) -> c_int,
    pub ll_fsync: unsafe extern "C" fn(*mut MountInfo, *mut Fh, c_int) -> c_int,
    /// `ceph_ll_sync_inode(cmount, in, syncdataonly)`: an inode's dirty data and metadata,
    /// a directory's too, without an open file.
    pub ll_sync_inode: unsafe extern "C" fn(*mut MountInfo, *mut CInode, c_int) -> c_int,
    /// `ceph_sync_fs(cmount)`: everything this client holds dirty.
    pub sync_fs: unsafe extern "C" fn(*mut MountInfo) -> c_int,
    pub ll_fallocate: unsafe extern "C" fn(*mut MountInfo, *mut Fh, c_int, i64, i64) -> c_int,
    pub ll_close: unsafe extern "C" fn(*mut MountInfo, *mut Fh) -> c_int,
    pub ll_mkdir: unsafe extern "C" fn(*mut MountInfo, *mut CInode, *const c_char, libc::mode_t, *mut *mut CInode, *mut Statx, u32, u32, *const UserPerm) -> c_int,
    pub ll_mknod: unsafe extern "C" fn(*mut MountInfo, *mut CInode, *const c_char, libc::mode_t, libc::dev_t, *mut *mut CInode, *mut Statx, u32, u32, *const UserPerm) -> c_int,
    pub ll_unlink: unsafe extern "C" fn(*mut MountInfo, *mut CInode, *const c_char, *const UserPerm) -> c_int,
    pub ll_rmdir: unsafe extern "C" fn(*mut MountInfo, *mut CInode, *const c_char, *const UserPerm) -> c_int,
    pub ll_rename: unsafe extern "C" fn(*mut MountInfo, *mut CInode, *const c_char, *mut CInode, *const c_char, *const UserPerm) -> c_int,
    pub ll_link: unsafe extern "C" fn(*mut MountInfo, *mut CInode, *mut CInode, *const c_char, *const UserPerm) -> c_int,
    pub ll_symlink: unsafe extern "C" fn(*mut MountInfo, *mut CInode, *const c_char, *const c_char, *mut *mut CInode, *mut Statx, u32, u32, *const UserPerm) -> c_int,
    pub ll_readlink: unsafe extern "C" fn(*mut MountInfo, *mut CInode, *mut c_char, usize, *const UserPerm) -> c_int,
    pub ll_opendir: unsafe extern "C" fn(*mut MountInfo, *mut CInode, *mut *mut DirResult, *const UserPerm) -> c_int,
    pub readdirplus_r: unsafe extern "C" fn(*mut MountInfo, *mut DirResult, *mut libc::dirent, *mut Statx, u32, u32, *mut *mut CInode) -> c_int,
    pub seekdir: unsafe extern "C" fn(*mut MountInfo, *mut DirResult, i64),
    pub telldir: unsafe extern "C" fn(*mut MountInfo, *mut DirResult) -> i64,
    pub ll_releasedir: unsafe extern "C" fn(*mut MountInfo, *mut DirResult) -> c_int,
    pub ll_statfs: unsafe extern "C" fn(*mut MountInfo, *mut CInode, *mut libc::statvfs) -> c_int,
    pub ll_getxattr: unsafe extern "C" fn(*mut MountInfo, *mut CInode, *const c_char, *mut c_void, usize, *const UserPerm) -> c_int,
    pub ll_setxattr: unsafe extern "C" fn(*mut MountInfo, *mut CInode, *const c_char, *const c_void, usize, c_int, *const UserPerm) -> c_int,
    pub ll_listxattr: unsafe extern "C" fn(*mut MountInfo, *mut CInode, *mut c_char, usize, *mut usize, *const UserPerm) -> c_int,
    pub ll_removexattr: unsafe extern "C" fn(*mut MountInfo, *mut CInode, *const c_char, *const UserPerm) -> c_int,
    /// Returns nothing; libcephfs keeps `args`' values, not the struct.
    pub ll_register_callbacks: unsafe extern "C" fn(*mut MountInfo, *mut CallbackArgs),
    /// Read delegations (Ceph 13+), which the pool's cache needs; `None` where the library
    /// lacks them (the cache is then not used for CephFS).
    pub ll_delegation: Option<DelegationFn>,
    pub set_deleg_timeout: Option<DelegTimeoutFn>,
}

/// Errors loading the library.
#[derive(Debug, thiserror::Error)]
#[error("the cephfs backend needs {LIBRARY} (Debian package libcephfs2): {0}")]
pub struct LoadError(#[from] libloading::Error);

/// Names another file to load instead of [`LIBRARY`] (a build of one's own, or a test of
/// what happens without it).
pub const LIBRARY_ENV: &str = "POLYTROPON_LIBCEPHFS";

impl Api {
    /// Loads libcephfs and binds its functions.
    pub fn load() -> Result<Api, LoadError> {
        // SAFETY: loading libcephfs runs its initialisers, which set up its own state only.
        let lib = unsafe { Library::new(std::env::var_os(LIBRARY_ENV).unwrap_or_else(|| LIBRARY.into())) }?;
        // SAFETY: the types are the C prototypes of these symbols in libcephfs.h; the pointers
        // stay valid while `lib` (moved into the `Api`) is held.
        let (ll_delegation, set_deleg_timeout) = unsafe {
            (lib.get::<DelegationFn>(b"ceph_ll_delegation\0").ok().map(|s| *s), lib.get::<DelegTimeoutFn>(b"ceph_set_deleg_timeout\0").ok().map(|s| *s))
        };
        macro_rules! bind {
            ($($field:ident = $sym:literal),* $(,)?) => {{
                $(
                    // SAFETY: the field's type is the C prototype of `$sym` in libcephfs.h
                    // (Ceph 16); the pointer stays valid while `_lib` is held.
                    let $field = unsafe { *lib.get(concat!($sym, "\0").as_bytes())? };
                )*
                Api { $($field,)* ll_delegation, set_deleg_timeout, _lib: lib }
            }};
        }
        Ok(bind! {
            create = "ceph_create",
            conf_read_file = "ceph_conf_read_file",
            conf_set = "ceph_conf_set",
            select_filesystem = "ceph_select_filesystem",
            mount = "ceph_mount",
            unmount = "ceph_unmount",
            release = "ceph_release",
            userperm_new = "ceph_userperm_new",
            userperm_destroy = "ceph_userperm_destroy",
            ll_walk = "ceph_ll_walk",
            ll_lookup = "ceph_ll_lookup",
            ll_put = "ceph_ll_put",
            ll_getattr = "ceph_ll_getattr",
            ll_setattr = "ceph_ll_setattr",
            ll_open = "ceph_ll_open",
            ll_create = "ceph_ll_create",
            ll_read = "ceph_ll_read",
            ll_write = "ceph_ll_write",
            ll_fsync = "ceph_ll_fsync",
            ll_sync_inode = "ceph_ll_sync_inode",
            sync_fs = "ceph_sync_fs",
            ll_fallocate = "ceph_ll_fallocate",
            ll_close = "ceph_ll_close",
            ll_mkdir = "ceph_ll_mkdir",
            ll_mknod = "ceph_ll_mknod",
            ll_unlink = "ceph_ll_unlink",
            ll_rmdir = "ceph_ll_rmdir",
            ll_rename = "ceph_ll_rename",
            ll_link = "ceph_ll_link",
            ll_symlink = "ceph_ll_symlink",
            ll_readlink = "ceph_ll_readlink",
            ll_opendir = "ceph_ll_opendir",
            readdirplus_r = "ceph_readdirplus_r",
            seekdir = "ceph_seekdir",
            telldir = "ceph_telldir",
            ll_releasedir = "ceph_ll_releasedir",
            ll_statfs = "ceph_ll_statfs",
            ll_getxattr = "ceph_ll_getxattr",
            ll_setxattr = "ceph_ll_setxattr",
            ll_listxattr = "ceph_ll_listxattr",
            ll_removexattr = "ceph_ll_removexattr",
            ll_register_callbacks = "ceph_ll_register_callbacks",
        })
    }
}
