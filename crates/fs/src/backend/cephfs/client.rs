//! One libcephfs client (a `ceph_mount_info`): its connection, the inode references and open
//! handles it holds, and the `UserPerm` of each caller's credentials. Branches share one
//! client (one cache) or each have their own (spreading libcephfs' global client lock).

use std::collections::HashMap;
use std::ffi::{CString, OsStr};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};

use super::deleg::{self, Delegation, Returns};
use super::ffi::{Api, CInode, MountInfo, Statx, UserPerm, VInodeNo};
use crate::backend::cache::{BlockCache, FileKey};
use crate::libservice::{errno, Context};

/// How to reach a CephFS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CephOptions {
    pub conf: PathBuf,
    /// Client id (`admin` for `client.admin`).
    pub id: String,
    /// File system name (default: the cluster's default).
    pub fs: Option<String>,
    /// Client options set after the conf file (`client_cache_size`, `client_oc_size`...).
    pub settings: Vec<(String, String)>,
}

/// Errors connecting a client.
#[derive(Debug, thiserror::Error)]
pub enum CephError {
    #[error(transparent)]
    Load(#[from] super::ffi::LoadError),
    #[error("{what}: {source}")]
    Call { what: String, source: io::Error },
    #[error("{0} contains a NUL byte")]
    Nul(String),
}

pub(super) fn cstr(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| errno(libc::EINVAL))
}

/// A libcephfs result: the non-negative value, or the errno it is the negation of.
pub(super) fn check(r: i32) -> io::Result<i32> {
    if r < 0 {
        Err(errno(-r))
    } else {
        Ok(r)
    }
}

/// A raw libcephfs pointer kept in a table (the library is thread-safe).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Ptr(pub usize);

impl Ptr {
    pub fn of<T>(p: *mut T) -> Ptr {
        Ptr(p as usize)
    }

    pub fn get<T>(self) -> *mut T {
        self.0 as *mut T
    }
}

/// What the client drops from its caches because Ceph took back the capability to cache it
/// (another client of the cluster is about to change it).
pub trait Dropped: Send + Sync {
    /// Cached data of ceph ino `ino`.
    fn data(&self, ino: u64);
    /// A cached name (its directory's listing may have changed).
    fn name(&self);
}

/// The listeners of one client's callbacks (the `handle` libcephfs passes them): held until
/// the client is unmounted, since libcephfs has no way to unregister.
#[derive(Default)]
struct Listeners(Mutex<Vec<Weak<dyn Dropped>>>);

impl Listeners {
    fn each(&self, f: impl Fn(&dyn Dropped)) {
        let mut l = self.0.lock().unwrap_or_else(|p| p.into_inner());
        l.retain(|w| w.strong_count() > 0);
        for d in l.iter().filter_map(Weak::upgrade) {
            f(&*d);
        }
    }
}

/// `client_ino_callback_t`.
unsafe extern "C" fn ino_dropped(handle: *mut std::ffi::c_void, ino: VInodeNo, _off: i64, _len: i64) {
    // SAFETY: `handle` is the client's `Listeners`, which outlives its registration (freed
    // only after the client is unmounted, when libcephfs calls nothing any more).
    let l = unsafe { &*(handle as *const Listeners) };
    // No panic may unwind into libcephfs.
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| l.each(|d| d.data(ino.ino))));
}

/// `client_dentry_callback_t`.
unsafe extern "C" fn name_dropped(handle: *mut std::ffi::c_void, _dir: VInodeNo, _ino: VInodeNo, _name: *const std::ffi::c_char, _len: usize) {
    // SAFETY: as in `ino_dropped`.
    let l = unsafe { &*(handle as *const Listeners) };
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| l.each(|d| d.name())));
}

/// An open file of the client.
pub(super) struct OpenFile {
    pub fh: Ptr,
    /// Its read delegation, while held (see [`deleg`]).
    pub deleg: Option<Arc<Delegation>>,
    /// Held shared by every call using `fh` and exclusively to close it, so that a release
    /// waits for calls in flight on the handle (`false` once closed).
    pub live: Arc<RwLock<bool>>,
}

impl OpenFile {
    pub fn new(fh: *mut super::ffi::Fh) -> OpenFile {
        OpenFile { fh: Ptr::of(fh), deleg: None, live: Arc::new(RwLock::new(true)) }
    }
}

/// Delegations a client holds at most: libcephfs keeps an inode's delegations in a list it
/// walks to add, recall and return one, under its client lock, and a recalled one must be
/// back within the timeout (`deleg::TIMEOUT`) however many readers opened the file.
const MAX_DELEGATIONS: usize = 1024;

/// Numbers the clients of this process, for their files' keys in the block cache.
static CLIENTS: AtomicU64 = AtomicU64::new(0);

/// A connected client.
#[allow(missing_debug_implementations)]
pub struct CephClient {
    pub(super) api: Api,
    cmount: Ptr,
    perms: Mutex<HashMap<(u32, u32), Ptr>>,
    /// ceph ino → (its `Inode *`, references this client holds on it).
    inodes: Mutex<HashMap<u64, (Ptr, u64)>>,
    /// handle → open file, or `ceph_dir_result *` (directories).
    pub(super) files: Mutex<HashMap<u64, OpenFile>>,
    /// Open directories by handle, each behind a lock of its own (its stream is one position,
    /// which a listing moves): a listing waiting for the MDS holds its handle only.
    pub(super) dirs: Mutex<HashMap<u64, Arc<Mutex<Ptr>>>>,
    next: AtomicU64,
    /// Told what the client drops from its caches (see [`CephClient::on_dropped`]).
    listeners: Box<Listeners>,
    /// Whether read delegations may be asked for (libcephfs has them and took the timeout).
    delegations: bool,
    /// Recalled delegations, and whether the thread returning them started.
    returns: Arc<Returns>,
    returner: OnceLock<bool>,
    /// Delegations held now.
    delegated: AtomicUsize,
    /// This client's `st_dev` in the block cache's file keys: ceph inos are unique within a
    /// file system only, and each client's cached data is coherent with its own capabilities.
    cache_dev: u64,
}

impl CephClient {
    /// Loads libcephfs, reads `opts.conf`, and mounts the file system's root.
    pub fn connect(opts: &CephOptions) -> Result<CephClient, CephError> {
        let api = Api::load()?;
        let c = |s: &str| CString::new(s).map_err(|_| CephError::Nul(s.to_string()));
        let call = |what: String| move |e: io::Error| CephError::Call { what, source: e };
        let id = c(&opts.id)?;
        let mut cmount: *mut MountInfo = std::ptr::null_mut();
        // SAFETY: ceph_create fills `cmount` on success; `id` is NUL-terminated.
        check(unsafe { (api.create)(&mut cmount, id.as_ptr()) }).map_err(call(format!("ceph_create for client.{}", opts.id)))?;
        let mut client = CephClient {
            api,
            cmount: Ptr::of(cmount),
            perms: Mutex::default(),
            inodes: Mutex::default(),
            files: Mutex::default(),
            dirs: Mutex::default(),
            next: AtomicU64::new(1),
            listeners: Box::default(),
            delegations: false,
            returns: Arc::default(),
            returner: OnceLock::new(),
            delegated: AtomicUsize::new(0),
            // Above any device number the kernel hands out.
            cache_dev: (1 << 63) | CLIENTS.fetch_add(1, Ordering::Relaxed),
        };
        let conf = c(&opts.conf.to_string_lossy())?;
        // SAFETY: a created mount handle and a NUL-terminated path.
        check(unsafe { (client.api.conf_read_file)(cmount, conf.as_ptr()) }).map_err(call(format!("ceph conf {}", opts.conf.display())))?;
        // Permissions are checked before a request reaches the backend, with all the
        // caller's credentials: by the service on the user-level path and by the kernel
        // (`default_permissions`) on the FUSE path, as for the local backend. libcephfs' own
        // check knows only the uid and gid a `UserPerm` carries here, so it refused what a
        // supplementary group grants. The `UserPerm` still owns what a caller makes. (The
        // low-level calls skip their checks under `fuse_default_permissions`, the path-based
        // ones under `client_permissions`.)
        for (k, v) in [(c"fuse_default_permissions", c"true"), (c"client_permissions", c"false")] {
            // SAFETY: a created mount handle and NUL-terminated strings, before mounting.
            check(unsafe { (client.api.conf_set)(cmount, k.as_ptr(), v.as_ptr()) }).map_err(call(format!("ceph setting {}={}", k.to_string_lossy(), v.to_string_lossy())))?;
        }
        for (k, v) in &opts.settings {
            let (ck, cv) = (c(k)?, c(v)?);
            // SAFETY: as above.
            check(unsafe { (client.api.conf_set)(cmount, ck.as_ptr(), cv.as_ptr()) }).map_err(call(format!("ceph setting {k}={v}")))?;
        }
        if let Some(fs) = &opts.fs {
            let cfs = c(fs)?;
            // SAFETY: as above, before mounting.
            check(unsafe { (client.api.select_filesystem)(cmount, cfs.as_ptr()) }).map_err(call(format!("CephFS file system {fs}")))?;
        }
        // SAFETY: as above.
        check(unsafe { (client.api.mount)(cmount, c"/".as_ptr()) }).map_err(call(format!("mounting CephFS with {}", opts.conf.display())))?;
        let mut args = super::ffi::CallbackArgs {
            handle: (&*client.listeners as *const Listeners).cast_mut().cast(),
            ino_cb: Some(ino_dropped),
            dentry_cb: Some(name_dropped),
            switch_intr_cb: std::ptr::null(),
            remount_cb: std::ptr::null(),
            umask_cb: std::ptr::null(),
            ino_release_cb: std::ptr::null(),
        };
        // SAFETY: a mounted client; libcephfs copies the arguments. The handle (boxed: its
        // address does not move with the client) lives until after `ceph_unmount` in Drop,
        // and the callbacks only read it.
        unsafe { (client.api.ll_register_callbacks)(cmount, &mut args) };
        if let Some(set) = client.api.set_deleg_timeout {
            // SAFETY: a mounted client and an integer.
            match check(unsafe { set(cmount, deleg::TIMEOUT) }) {
                Ok(_) => client.delegations = client.api.ll_delegation.is_some(),
                Err(e) => tracing::warn!(error = %e, "CephFS read delegations refused: the pool's cache will not hold CephFS data"),
            }
        }
        Ok(client)
    }

    /// The block cache's key of ceph ino `ino` of this client.
    pub(super) fn cache_key(&self, ino: u64) -> FileKey {
        FileKey { dev: self.cache_dev, ino }
    }

    /// Asks for a read delegation on open file `handle`, whose data `cache` may then hold
    /// (under `key`) until it is recalled; `None` when Ceph does not grant one now (someone
    /// has the file open for writing) or cannot.
    pub(super) fn delegate(self: &Arc<Self>, handle: u64, key: FileKey, cache: &Arc<BlockCache>) -> Option<Arc<Delegation>> {
        let ask = self.api.ll_delegation.filter(|_| self.delegations)?;
        if self.delegated.load(Ordering::Relaxed) >= MAX_DELEGATIONS {
            return None;
        }
        let started = *self.returner.get_or_init(|| match deleg::start_returner(self.returns.clone(), Arc::downgrade(self), CephClient::give_back) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the thread that returns CephFS delegations");
                false
            }
        });
        if !started {
            return None;
        }
        let d = Arc::new(Delegation::new(handle, key, cache.clone(), self.returns.clone()));
        let mut files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        let entry = files.get_mut(&handle)?;
        // SAFETY: an open handle (its entry is held under the lock, so it is not closed
        // meanwhile); `priv` is the delegation, which the entry keeps alive until the
        // delegation is returned or the handle closed.
        let r = unsafe { ask(self.cm(), entry.fh.get(), super::ffi::DELEGATION_RD, Some(deleg::recalled), Arc::as_ptr(&d).cast_mut().cast()) };
        if r != 0 {
            return None;
        }
        entry.deleg = Some(d.clone());
        self.delegated.fetch_add(1, Ordering::Relaxed);
        Some(d)
    }

    /// A delegation ended (returned, or its handle closed).
    pub(super) fn delegation_ended(&self) {
        self.delegated.fetch_sub(1, Ordering::Relaxed);
    }

    /// Returns the recalled delegation of `handle` (if it is still open).
    fn give_back(&self, handle: u64) {
        let Some(ask) = self.api.ll_delegation else { return };
        let mut files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        let Some(entry) = files.get_mut(&handle) else { return };
        if entry.deleg.is_none() {
            return;
        }
        // SAFETY: an open handle (held under the lock); NONE takes no callback.
        let r = unsafe { ask(self.cm(), entry.fh.get(), super::ffi::DELEGATION_NONE, None, std::ptr::null_mut()) };
        let gone = entry.deleg.take();
        if r != 0 {
            tracing::warn!(errno = -r, "returning a CephFS delegation failed");
            // libcephfs may still hold it: its callback's argument stays valid for good.
            std::mem::forget(gone);
        }
        self.delegation_ended();
    }

    /// Tells `to` what this client drops from its caches, for as long as `to` lives (the
    /// client keeps a weak reference).
    pub fn on_dropped(&self, to: &Arc<dyn Dropped>) {
        let mut l = self.listeners.0.lock().unwrap_or_else(|p| p.into_inner());
        // Branches of instances gone since (a shared client outlives many).
        l.retain(|w| w.strong_count() > 0);
        l.push(Arc::downgrade(to));
    }

    pub(super) fn cm(&self) -> *mut MountInfo {
        self.cmount.get()
    }

    pub(super) fn next_handle(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// The `UserPerm` of `ctx`'s credentials (kept for the client's life).
    pub(super) fn perms(&self, ctx: &Context) -> *const UserPerm {
        let mut m = self.perms.lock().unwrap_or_else(|p| p.into_inner());
        m.entry((ctx.uid, ctx.gid))
            // SAFETY: ceph_userperm_new copies the (empty) group list; freed in Drop.
            .or_insert_with(|| Ptr::of(unsafe { (self.api.userperm_new)(ctx.uid, ctx.gid, 0, std::ptr::null_mut()) }))
            .get::<UserPerm>()
    }

    /// Records a reference on `inode` (ceph ino `ino`, of the live tree) that a libcephfs
    /// call just returned. The table is keyed by ino alone, which names one object of the live
    /// tree; a snapshot's object shares its live object's ino, so anything that is not of the
    /// live tree (its `ceph_statx` `dev`, the snapshot id, is not `NOSNAP`) is refused, and the
    /// reference let go of: it would otherwise take the live object's place for every instance
    /// of this client.
    pub(super) fn hold(&self, ino: u64, snap: u64, inode: *mut CInode) -> io::Result<()> {
        let put = || {
            // SAFETY: the reference the caller's libcephfs call just returned, not kept.
            unsafe { (self.api.ll_put)(self.cm(), inode) };
        };
        if snap != super::ffi::NOSNAP {
            put();
            return Err(errno(libc::ENOENT));
        }
        let mut m = self.inodes.lock().unwrap_or_else(|p| p.into_inner());
        let e = m.entry(ino).or_insert((Ptr::of(inode), 0));
        if e.0 != Ptr::of(inode) {
            // Another object under a held ino: never replaces the one held.
            drop(m);
            put();
            return Err(errno(libc::EIO));
        }
        e.1 += 1;
        Ok(())
    }

    /// The `Inode *` of held ceph ino `ino`.
    pub(super) fn inode(&self, ino: u64) -> io::Result<*mut CInode> {
        let m = self.inodes.lock().unwrap_or_else(|p| p.into_inner());
        m.get(&ino).map(|(p, _)| p.get()).ok_or_else(|| errno(libc::ESTALE))
    }

    /// Drops `count` references on ceph ino `ino`.
    pub(super) fn forget(&self, ino: u64, count: u64) {
        let mut m = self.inodes.lock().unwrap_or_else(|p| p.into_inner());
        let Some(e) = m.get_mut(&ino) else { return };
        let n = count.min(e.1);
        for _ in 0..n {
            // SAFETY: each put matches a reference this client took.
            unsafe { (self.api.ll_put)(self.cm(), e.0.get()) };
        }
        e.1 -= n;
        if e.1 == 0 {
            m.remove(&ino);
        }
    }

    /// Walks to `path` (absolute in the file system) and holds it: a branch's root.
    pub(super) fn walk(&self, path: &Path) -> io::Result<(u64, Statx)> {
        let c = cstr(path.as_os_str())?;
        let mut out: *mut CInode = std::ptr::null_mut();
        let mut stx = Statx::zeroed();
        // SAFETY: a mounted client, a NUL-terminated path, out-parameters for one result.
        check(unsafe { (self.api.ll_walk)(self.cm(), c.as_ptr(), &mut out, &mut stx, super::ffi::STATX_BASIC, 0, self.perms(&Context::current())) })?;
        self.hold(stx.ino, stx.dev, out)?;
        Ok((stx.ino, stx))
    }
}

impl Drop for CephClient {
    fn drop(&mut self) {
        let cm = self.cm();
        self.returns.stop();
        for (_, f) in self.files.get_mut().unwrap_or_else(|p| p.into_inner()).drain() {
            // SAFETY: an open handle of this client, closed once (which ends its delegation;
            // the entry, dropped after, kept the callback's argument alive until then).
            unsafe { (self.api.ll_close)(cm, f.fh.get()) };
        }
        for (_, d) in self.dirs.get_mut().unwrap_or_else(|p| p.into_inner()).drain() {
            let d = d.lock().unwrap_or_else(|p| p.into_inner());
            // SAFETY: an open directory of this client, released once.
            unsafe { (self.api.ll_releasedir)(cm, d.get()) };
        }
        for (_, (p, n)) in self.inodes.get_mut().unwrap_or_else(|p| p.into_inner()).drain() {
            for _ in 0..n {
                // SAFETY: references this client holds.
                unsafe { (self.api.ll_put)(cm, p.get()) };
            }
        }
        for (_, p) in self.perms.get_mut().unwrap_or_else(|p| p.into_inner()).drain() {
            // SAFETY: created by ceph_userperm_new, destroyed once.
            unsafe { (self.api.userperm_destroy)(p.get()) };
        }
        // SAFETY: nothing of this client is used after this point.
        unsafe {
            (self.api.unmount)(cm);
            (self.api.release)(cm);
        }
    }
}

// SAFETY: libcephfs clients are thread-safe (the library serialises on its client lock); the
// raw pointers here are only handed to it, under the tables' mutexes where they change.
unsafe impl Send for CephClient {}
// SAFETY: as above.
unsafe impl Sync for CephClient {}
