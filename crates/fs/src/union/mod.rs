//! The `union` libservice: copy-on-write branches over any libservices.
//!
//! One writable upper branch over N read-only lower branches, in order, with the semantics of
//! kernel overlayfs with `redirect_dir=on` (without `index` or `metacopy`):
//!
//! - lookup stops at the first branch holding the name or a whiteout; directories merge down
//!   to the first opaque one;
//! - a lower object is copied up (atomically, through a hidden scratch name) on first write,
//!   truncate, setattr, xattr change or link; parent directories first;
//! - a directory that exists in a lower branch is renamed by copying it up and recording in
//!   the upper branch where its lower parts are (`trusted.overlay.redirect`: the old name when
//!   it stays in its directory, else the path from the root), which lookups follow; with
//!   `redirect_dir` off such a rename fails with `EXDEV`, and user space (`mv`) copies it;
//! - union inode numbers are stable for the life of the instance, across copy-up.
//!
//! Concurrency: namespace changes (anything that creates, removes, renames or copies up) take
//! the instance's namespace lock exclusively; lookups and listings share it; data operations on
//! open handles take no union-wide lock at all.

mod copyup;
mod dirops;
mod node;
mod readdir;
mod whiteout;

use std::collections::HashMap;

use rustc_hash::FxHashMap;
use std::ffi::{OsStr, OsString};
use std::io::{self, IoSlice, IoSliceMut};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::libservice::{
    check_access, errno, Attr, BackingFile, Context, DirEntry, Entry, FileKind, FileSystem, Handle, Inode,
    SetAttr, StatFs, ROOT_INODE,
};
use node::{Layer, Layers, NodeState, UNode};

/// Errors building a union.
#[derive(Debug, thiserror::Error)]
pub enum UnionError {
    #[error("a union needs at least one branch")]
    NoBranches,
    #[error("cannot read the root of branch {index}")]
    BranchRoot {
        index: usize,
        #[source]
        source: io::Error,
    },
}

enum UHandle {
    File { node: Arc<UNode>, open: Mutex<(Layer, Handle)>, flags: i32 },
    Dir { node: Arc<UNode>, listing: Mutex<readdir::Listing> },
}

/// A union of branches, itself a libservice.
pub struct UnionFs {
    upper: Option<Arc<dyn FileSystem>>,
    lowers: Vec<Arc<dyn FileSystem>>,
    /// Namespace lock (see the module documentation).
    ns: RwLock<()>,
    nodes: Mutex<FxHashMap<Inode, Arc<UNode>>>,
    /// Branch object identity `(layer, st_dev, st_ino)` to union inode number. Kept for the
    /// life of the instance so that numbers never change, even after a forget.
    ids: Arc<Ids>,
    /// Each layer's `st_dev` as its root showed it (the device of every object a CephFS
    /// branch reports), by layer.
    root_devs: Vec<u64>,
    next_ino: AtomicU64,
    handles: Mutex<FxHashMap<Handle, Arc<UHandle>>>,
    next_handle: AtomicU64,
    scratch_seq: AtomicU64,
    /// OCI markers of lower directories, by `(layer, branch inode)`.
    oci: Mutex<OciCache>,
    /// The same, by `(layer, st_dev, st_ino)` of the directory.
    oci_ids: Mutex<OciIdCache>,
    /// Listings of directories with no upper part (see `merged_listing`).
    lower_listings: Mutex<readdir::LowerListings>,
    /// Credentials for the union's own objects (whiteouts, scratch entries).
    own: Context,
    /// Ids of the read-only branches as shown (and as copied up).
    shift: Option<crate::spec::IdShift>,
    /// Bumped by every rename and rmdir (see `FileSystem::namespace_generation`).
    ns_generation: AtomicU64,
    /// Bumped by every unlink, rmdir and rename (see `FileSystem::removal_generation`).
    removals: AtomicU64,
    /// Bumped when a namespace change starts and when it ends: a cached name is good only
    /// while this stays as it was when the name was resolved.
    ns_epoch: AtomicU64,
    /// Resolved names: parent -> name -> (inode, epoch, when). Resolving a name walks every
    /// branch; this makes repeated lookups (stat, open of the same files) cost a hash probe.
    names: Mutex<HashMap<Inode, NamesOf>>,
    /// Told of every change of a file's data or size (see `FileSystem::watch_changes`).
    changes: std::sync::OnceLock<Arc<dyn crate::libservice::ChangeSink>>,
    /// Directories with lower parts may be renamed, with a redirect (see `with_redirect_dir`).
    redirect_dir: bool,
    /// Names found missing in a lower (read-only) branch's directory, and when: a name
    /// created, looked up or removed again within `NAME_TTL` costs no lookup in the lower
    /// branches (a new file's name is looked for there at its create and at its removal).
    /// By `(layer, directory)` then name, so that a check allocates nothing.
    absent: Mutex<FxHashMap<(Layer, Inode), HashMap<std::ffi::OsString, std::time::Instant>>>,
    /// Names added to `names` and to `absent` since each was last cleared (removals are not
    /// counted: a clear comes sooner, never later): both are cleared past [`NAMES_MAX`], so
    /// names a tenant makes up (a `stat` of a new missing name each time) cost a bounded
    /// amount of the service's memory.
    added: [std::sync::atomic::AtomicUsize; 2],
}

/// Branch object identity `(layer, st_dev, st_ino)` to union inode number.
type Ids = Mutex<FxHashMap<(Layer, u64, u64), Inode>>;

/// A directory's resolved names: name -> (inode, namespace epoch, when resolved).
type NamesOf = HashMap<std::ffi::OsString, (Inode, u64, std::time::Instant)>;

/// How long a resolved name is trusted even without namespace changes through the union
/// (changes made directly in a branch directory are not seen otherwise).
const NAME_TTL: std::time::Duration = std::time::Duration::from_secs(1);
/// Entries the union's name caches hold at most (each: a name and its answer, a few hundred
/// bytes at most).
const NAMES_MAX: usize = 1 << 16;
/// The inode a resolved name maps to when it was found missing (union numbers start at 1).
const ABSENT: Inode = 0;

/// The namespace lock held for a change; the epoch moves again when it is released. The
/// names the change makes, removes or replaces, and the names in directories it removes or
/// replaces, are forgotten then (not what it made: `create_in_upper` remembers that at the
/// epoch after the change); every other resolved name stays trusted (lookups take the lock
/// for reading, so none overlaps a change).
struct NsWrite<'a> {
    _guard: RwLockWriteGuard<'a, ()>,
    epoch: &'a AtomicU64,
    /// The epoch before this change began.
    before: u64,
    /// Told when the change is over (`FileSystem::watch_changes`), for a change of names.
    names: Option<&'a dyn crate::libservice::ChangeSink>,
    /// The union's resolved names.
    cache: &'a Mutex<HashMap<Inode, NamesOf>>,
    /// Names (parent, name) this change makes, removes or replaces.
    gone: Vec<(Inode, OsString)>,
    /// Directories it removes or replaces: every name resolved in them goes.
    gone_dirs: Vec<Inode>,
    /// It failed, maybe half-way (a directory replaced but no whiteout made, whiteouts of a
    /// directory cleared but not the directory): every resolved name goes.
    failed: bool,
}

/// What a shared branch announces others change, passed on to the union's watcher in union
/// inode numbers (an object the union never numbered is nobody's knowledge yet).
struct LayerSink {
    layer: Layer,
    dev: u64,
    ids: Arc<Ids>,
    sink: Arc<dyn crate::libservice::ChangeSink>,
}

impl crate::libservice::ChangeSink for LayerSink {
    fn changed(&self, inode: Inode) {
        let ours = lock(&self.ids).get(&(self.layer, self.dev, inode)).copied();
        if let Some(ino) = ours {
            self.sink.others_change(Some(ino));
        }
    }

    fn names_changed(&self) {
        self.sink.others_change(None);
    }

    fn outside_writer(&self, _inode: Inode, _begins: bool) {}
}

/// Reports a change of a file to the watcher when dropped (see `UnionFs::changed`).
struct Changed<'a>(&'a UnionFs, Inode);

impl Drop for Changed<'_> {
    fn drop(&mut self) {
        self.0.changed(self.1);
    }
}

impl NsWrite<'_> {
    /// This change makes, removes or replaces `name` in `parent` (told before it does).
    fn changes_name(&mut self, parent: Inode, name: &OsStr) {
        self.gone.push((parent, name.to_owned()));
    }

    /// `r`, the outcome of the change's work; a failure that may have come half-way makes
    /// every resolved name go when the change ends. The errors the checks give before
    /// anything is changed (a name missing or there already, a directory not empty, a rename
    /// refused...) forget nothing: `git` and `rm -r` fail such calls all the time.
    fn outcome<T>(&mut self, r: io::Result<T>) -> io::Result<T> {
        const CHECKS: [i32; 12] = [libc::ENOENT, libc::EEXIST, libc::ENOTEMPTY, libc::ENOTDIR, libc::EISDIR, libc::EXDEV, libc::EINVAL, libc::EPERM, libc::EACCES, libc::ELOOP, libc::ENAMETOOLONG, libc::EROFS];
        if let Err(e) = &r {
            self.failed |= !e.raw_os_error().is_some_and(|n| CHECKS.contains(&n));
        }
        r
    }

    /// This change removed or replaced directory `dir`: it is dead (nothing is found or made
    /// in it any more) and the names resolved in it go.
    fn removed_dir(&mut self, dir: &UNode) {
        if dir.is_dir() {
            dir.removed.store(true, Ordering::Release);
            self.gone_dirs.push(dir.ino);
        }
    }

    /// The change is over and made, removed or replaced names of regular files only (a
    /// `link` too): no path to anything else leads elsewhere, and none is refused that was
    /// not, so the watcher hears of the files and directories it changed (`inodes`: the
    /// directories whose entries changed, the files named or unnamed) instead of a change
    /// of names. What a client learned of a path to any other file holds.
    fn files_only(&mut self, union: &UnionFs, inodes: &[Inode]) {
        if self.names.take().is_some() {
            for &ino in inodes {
                union.changed(ino);
            }
        }
    }
}

impl Drop for NsWrite<'_> {
    fn drop(&mut self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        if self.failed {
            lock(self.cache).clear();
        } else if !self.gone.is_empty() || !self.gone_dirs.is_empty() {
            let made = self.before.wrapping_add(2);
            let mut names = lock(self.cache);
            for (parent, name) in self.gone.drain(..) {
                if let Some(m) = names.get_mut(&parent) {
                    if m.get(&name).is_some_and(|e| e.1 != made) {
                        m.remove(&name);
                    }
                    if m.is_empty() {
                        names.remove(&parent);
                    }
                }
            }
            for dir in self.gone_dirs.drain(..) {
                names.remove(&dir);
            }
        }
        if let Some(sink) = self.names {
            sink.names_changed();
        }
    }
}

impl std::fmt::Debug for UnionFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnionFs")
            .field("upper", &self.upper.is_some())
            .field("lowers", &self.lowers.len())
            .finish_non_exhaustive()
    }
}

/// OCI markers of lower directories by `(layer, branch inode)`; `None`: the directory has none.
type OciCache = HashMap<(Layer, Inode), Option<Arc<whiteout::OciMarkers>>>;
/// The same by `(layer, st_dev, st_ino)` of the directory.
type OciIdCache = HashMap<(Layer, u64, u64), Option<Arc<whiteout::OciMarkers>>>;

/// Lower directories whose OCI markers are remembered (the cache restarts beyond this).
const OCI_CACHE: usize = 1 << 16;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn is_enoent(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ENOENT)
}

/// A lookup reference in a branch, dropped with this (never the branch root's).
struct BranchRef<'a> {
    fs: &'a dyn FileSystem,
    inode: Inode,
}

impl Drop for BranchRef<'_> {
    fn drop(&mut self) {
        if self.inode != ROOT_INODE {
            self.fs.forget(self.inode, 1);
        }
    }
}

/// What one branch's part of a lookup says of the branches below it.
enum Step {
    /// Go on with the next branch.
    Next,
    /// Nothing below counts.
    Stop,
    /// Go on below at the place a redirect names.
    Redirect(whiteout::Redirect),
}

/// What a name resolves to across the branches of one directory.
#[derive(Default)]
struct Resolved {
    /// `(layer, entry)`, topmost first; one entry for a non-directory; empty when the name
    /// does not exist.
    found: Vec<(Layer, Entry)>,
    /// The search ended at a whiteout in the upper branch.
    upper_whiteout: bool,
}

impl UnionFs {
    /// Builds a union of `upper` (writable; `None` for a read-only union) over `lowers`
    /// (topmost first).
    pub fn new(
        upper: Option<Arc<dyn FileSystem>>,
        lowers: Vec<Arc<dyn FileSystem>>,
    ) -> Result<Self, UnionError> {
        if upper.is_none() && lowers.is_empty() {
            return Err(UnionError::NoBranches);
        }
        let mut fs = UnionFs {
            upper,
            lowers,
            ns: RwLock::new(()),
            nodes: Mutex::new(FxHashMap::default()),
            ids: Arc::default(),
            root_devs: Vec::new(),
            next_ino: AtomicU64::new(ROOT_INODE + 1),
            handles: Mutex::new(FxHashMap::default()),
            next_handle: AtomicU64::new(1),
            scratch_seq: AtomicU64::new(0),
            oci: Mutex::new(HashMap::new()),
            oci_ids: Mutex::new(HashMap::new()),
            lower_listings: Mutex::new(readdir::LowerListings::default()),
            own: Context::current(),
            shift: None,
            ns_generation: AtomicU64::new(0),
            removals: AtomicU64::new(0),
            ns_epoch: AtomicU64::new(0),
            names: Mutex::new(HashMap::new()),
            changes: std::sync::OnceLock::new(),
            redirect_dir: true,
            absent: Mutex::new(FxHashMap::default()),
            added: Default::default(),
        };
        let mut layers = Layers::default();
        for layer in 0..=fs.lowers.len() {
            let Some(b) = fs.branch(layer) else { continue };
            let attr = b
                .getattr(&fs.own, ROOT_INODE, None)
                .map_err(|source| UnionError::BranchRoot { index: layer, source })?;
            lock(&fs.ids).insert((layer, attr.dev, attr.ino), ROOT_INODE);
            fs.root_devs.resize(layer + 1, 0);
            fs.root_devs[layer] = attr.dev;
            if layer == 0 {
                layers.upper = Some(ROOT_INODE);
            } else {
                layers.lowers.push((layer, ROOT_INODE));
            }
        }
        let root = UNode::new(ROOT_INODE, FileKind::Directory, NodeState { parent: None, layers }, 1);
        lock(&fs.nodes).insert(ROOT_INODE, Arc::new(root));
        Ok(fs)
    }

    /// Shows the read-only branches' owner and group ids shifted by `shift`.
    pub fn with_id_shift(mut self, shift: Option<crate::spec::IdShift>) -> Self {
        self.shift = shift;
        self
    }

    /// Whether a directory with lower parts may be renamed (`true`, the default: the upper
    /// branch records where its lower parts are, as overlayfs with `redirect_dir=on` does) or
    /// fails with `EXDEV` (`false`, overlayfs's `redirect_dir=off`). Redirects already in the
    /// branches are followed either way.
    pub fn with_redirect_dir(mut self, on: bool) -> Self {
        self.redirect_dir = on;
        self
    }

    /// Reports a change of `inode`'s data or size to the watcher, if any.
    fn changed(&self, inode: Inode) {
        if let Some(sink) = self.changes.get() {
            sink.changed(inode);
        }
    }

    /// Owner and group of an object of `layer` as the union shows them.
    pub(super) fn shown_ids(&self, layer: Layer, attr: &mut Attr) {
        if let (Some(s), true) = (self.shift, layer != 0) {
            attr.uid = s.apply(attr.uid);
            attr.gid = s.apply(attr.gid);
        }
    }

    /// The branch serving `layer`.
    fn branch(&self, layer: Layer) -> Option<&dyn FileSystem> {
        if layer == 0 {
            self.upper.as_deref()
        } else {
            self.lowers.get(layer - 1).map(|b| &**b)
        }
    }

    fn fs(&self, layer: Layer) -> io::Result<&dyn FileSystem> {
        self.branch(layer).ok_or_else(|| errno(libc::EIO))
    }

    fn upper_fs(&self) -> io::Result<&dyn FileSystem> {
        self.upper.as_deref().ok_or_else(|| errno(libc::EROFS))
    }

    fn read_ns(&self) -> RwLockReadGuard<'_, ()> {
        self.ns.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_ns(&self) -> NsWrite<'_> {
        let guard = self.ns.write().unwrap_or_else(|p| p.into_inner());
        let before = self.ns_epoch.fetch_add(1, Ordering::AcqRel);
        NsWrite { _guard: guard, epoch: &self.ns_epoch, before, names: None, cache: &self.names, gone: Vec::new(), gone_dirs: Vec::new(), failed: false }
    }

    /// As `write_ns`, for a change of names or of what decides access to them (ownership,
    /// modes, ACLs): the watcher hears of it when it is over.
    fn change_names(&self) -> NsWrite<'_> {
        let mut w = self.write_ns();
        w.names = self.changes.get().map(|s| &**s);
        w
    }

    /// Makes the new name `name` in `parent` through `make` (see `create_in_upper`), as one
    /// change of names that forgets only that name and tells the watcher of the directory
    /// alone (a new name led nowhere before).
    fn make_name(&self, ctx: &Context, parent: Inode, name: &OsStr, is_dir: bool, make: impl FnMut(&dyn FileSystem, Inode, &OsStr) -> io::Result<Entry>) -> io::Result<(Arc<UNode>, Attr)> {
        let mut ns = self.change_names();
        ns.changes_name(parent, name);
        let p = self.node(parent)?;
        let made = self.create_in_upper(ctx, &p, name, is_dir, ns.before, make);
        let made = ns.outcome(made)?;
        ns.files_only(self, &[p.ino]);
        Ok(made)
    }

    /// The node `name` in `parent` resolved to, if that is still known to hold (resolved
    /// within `NAME_TTL`, and no change of that name or of its directory's existence since:
    /// see `NsWrite`), with one more lookup reference (taken under the node table's lock, as
    /// `lookup_node` does).
    fn cached_name(&self, parent: Inode, name: &OsStr) -> Option<Arc<UNode>> {
        let (ino, _, at) = *lock(&self.names).get(&parent)?.get(name)?;
        if ino == ABSENT || at.elapsed() > NAME_TTL {
            return None;
        }
        let nodes = lock(&self.nodes);
        let node = nodes.get(&ino)?.clone();
        node.lookups.fetch_add(1, Ordering::Relaxed);
        Some(node)
    }

    /// Whether `name` in `parent` was found missing (no whiteout in the upper branch either)
    /// within `NAME_TTL`, and nothing changed that name since (see `NsWrite`): a create of
    /// it needs not look for it again.
    fn absent(&self, parent: Inode, name: &OsStr) -> bool {
        lock(&self.names).get(&parent).and_then(|m| m.get(name)).is_some_and(|&(ino, _, at)| ino == ABSENT && at.elapsed() <= NAME_TTL)
    }

    fn remember_name(&self, parent: Inode, name: &OsStr, ino: Inode, epoch: u64) {
        let mut names = lock(&self.names);
        if self.full(0) {
            names.clear();
        }
        names.entry(parent).or_default().insert(name.to_owned(), (ino, epoch, std::time::Instant::now()));
    }

    /// Counts one more entry of cache `which` (0: `names`, 1: `absent`, under its lock); true
    /// when the cache is to be cleared first (it reached [`NAMES_MAX`] entries).
    fn full(&self, which: usize) -> bool {
        let added = &self.added[which];
        if added.fetch_add(1, Ordering::Relaxed) + 1 > NAMES_MAX {
            added.store(1, Ordering::Relaxed);
            return true;
        }
        false
    }

    fn node(&self, ino: Inode) -> io::Result<Arc<UNode>> {
        lock(&self.nodes).get(&ino).cloned().ok_or_else(|| errno(libc::EBADF))
    }

    fn dir_node(&self, ino: Inode) -> io::Result<Arc<UNode>> {
        let n = self.node(ino)?;
        if !n.is_dir() {
            return Err(errno(libc::ENOTDIR));
        }
        Ok(n)
    }

    /// The stable union number of branch object `(layer, dev, ino)`, assigned on first sight.
    fn ino_for(&self, layer: Layer, attr: &Attr) -> Inode {
        *lock(&self.ids)
            .entry((layer, attr.dev, attr.ino))
            .or_insert_with(|| self.next_ino.fetch_add(1, Ordering::Relaxed))
    }

    /// A new union number for branch object `(layer, attr)`, its own from now on: the one it
    /// had names a node that is still held for another object. A number the kernel holds
    /// (a FUSE node id) must never come to name another object: its holder, another user
    /// maybe, would reach that object with the attributes, and the permissions, of its own.
    fn renumber(&self, layer: Layer, attr: &Attr) -> Inode {
        let fresh = self.next_ino.fetch_add(1, Ordering::Relaxed);
        lock(&self.ids).insert((layer, attr.dev, attr.ino), fresh);
        fresh
    }

    /// A fresh scratch name for the upper branch.
    fn scratch_name(&self) -> OsString {
        let n = self.scratch_seq.fetch_add(1, Ordering::Relaxed);
        OsString::from(format!(".wh..wh.ptn.{}.{n}", std::process::id()))
    }

    fn forget_found(&self, found: &[(Layer, Entry)]) {
        for (layer, e) in found {
            if let Some(b) = self.branch(*layer) {
                b.forget(e.inode, 1);
            }
        }
    }

    /// OCI markers of lower directory `dir` of `layer`, read once per directory (lower
    /// branches never change); `None` when it has none. Cached by branch inode and, since a
    /// branch may hand out a new inode number after a forget, by `(st_dev, st_ino)` too.
    fn oci_markers(&self, ctx: &Context, layer: Layer, dir: Inode) -> io::Result<Option<Arc<whiteout::OciMarkers>>> {
        if let Some(m) = lock(&self.oci).get(&(layer, dir)) {
            return Ok(m.clone());
        }
        let fs = self.fs(layer)?;
        let attr = fs.getattr(ctx, dir, None)?;
        let id = (layer, attr.dev, attr.ino);
        let known = lock(&self.oci_ids).get(&id).cloned();
        let m = match known {
            Some(m) => m,
            None => whiteout::read_oci_markers(fs, ctx, dir)?.map(Arc::new),
        };
        let mut cache = lock(&self.oci);
        let mut ids = lock(&self.oci_ids);
        if cache.len() >= OCI_CACHE {
            cache.clear();
        }
        if ids.len() >= OCI_CACHE {
            ids.clear();
        }
        cache.insert((layer, dir), m.clone());
        ids.insert(id, m.clone());
        Ok(m)
    }

    /// Whether directory `dir` of `layer` is opaque (xattr form; OCI form in lower branches).
    fn is_opaque(&self, ctx: &Context, layer: Layer, dir: Inode) -> io::Result<bool> {
        if whiteout::has_opaque_xattr(self.fs(layer)?, ctx, dir)? {
            return Ok(true);
        }
        Ok(layer > 0 && self.oci_markers(ctx, layer, dir)?.is_some_and(|m| m.opaque))
    }

    /// Resolves `name` across the branches of directory `dir` (layers as given), following
    /// redirects as overlayfs does: a directory found with a relative redirect is merged with
    /// the redirect's name in the parent's lower directories, one with an absolute redirect
    /// with that path from the root of every lower branch below it.
    fn resolve(&self, ctx: &Context, dir: &Layers, name: &OsStr) -> io::Result<Resolved> {
        let mut res = Resolved::default();
        match self.resolve_into(ctx, dir, name, &mut res) {
            Ok(()) => Ok(res),
            Err(e) => {
                self.forget_found(&res.found);
                Err(e)
            }
        }
    }

    /// `resolve`'s walk, adding what it finds to `res` (which the caller releases on an error).
    fn resolve_into(&self, ctx: &Context, dir: &Layers, name: &OsStr, res: &mut Resolved) -> io::Result<()> {
        let mut want = std::borrow::Cow::Borrowed(name);
        let mut absolute = None;
        let last = self.lowers.len();
        for (layer, dino) in dir.all() {
            match self.resolve_in(ctx, layer, dino, &want, layer < last, res)? {
                Step::Next => {}
                Step::Stop => return Ok(()),
                Step::Redirect(whiteout::Redirect::Relative(n)) => want = std::borrow::Cow::Owned(n),
                Step::Redirect(whiteout::Redirect::Absolute(path)) => {
                    absolute = Some((layer, path));
                    break;
                }
            }
        }
        let Some((from, mut path)) = absolute else { return Ok(()) };
        for layer in from + 1..=last {
            match self.resolve_path(ctx, layer, &path, layer < last, res)? {
                Step::Next => {}
                Step::Stop => break,
                Step::Redirect(whiteout::Redirect::Relative(n)) => {
                    if let Some(end) = path.last_mut() {
                        *end = n;
                    }
                }
                Step::Redirect(whiteout::Redirect::Absolute(p)) => path = p,
            }
        }
        Ok(())
    }

    /// One branch's part of `resolve`: `name` in directory `dino` of `layer`, added to `res`.
    /// `below`: lower branches follow (a redirect matters only then).
    fn resolve_in(&self, ctx: &Context, layer: Layer, dino: Inode, name: &OsStr, below: bool, res: &mut Resolved) -> io::Result<Step> {
        let fs = self.fs(layer)?;
        if layer > 0 {
            if whiteout::is_oci_marker(name) {
                // `.wh.*` entries of a lower branch are markers, never visible objects.
                return Ok(Step::Next);
            }
            if self.oci_markers(ctx, layer, dino)?.is_some_and(|m| m.hidden.contains(name)) {
                return Ok(Step::Stop);
            }
        }
        if layer > 0 && lock(&self.absent).get(&(layer, dino)).and_then(|m| m.get(name)).is_some_and(|at| at.elapsed() <= NAME_TTL) {
            return Ok(Step::Next);
        }
        let e = match fs.lookup(ctx, dino, name) {
            Ok(e) => e,
            Err(e) if is_enoent(&e) => {
                if layer > 0 {
                    let mut absent = lock(&self.absent);
                    if self.full(1) {
                        absent.clear();
                    }
                    absent.entry((layer, dino)).or_default().insert(name.to_owned(), std::time::Instant::now());
                }
                return Ok(Step::Next);
            }
            Err(e) => return Err(e),
        };
        if e.attr.is_whiteout() {
            fs.forget(e.inode, 1);
            res.upper_whiteout = layer == 0;
            return Ok(Step::Stop);
        }
        let is_dir = e.attr.kind() == FileKind::Directory;
        if !res.found.is_empty() && !is_dir {
            // A non-directory below a directory ends the merge.
            fs.forget(e.inode, 1);
            return Ok(Step::Stop);
        }
        res.found.push((layer, e));
        if !is_dir || self.is_opaque(ctx, layer, e.inode)? {
            return Ok(Step::Stop);
        }
        if !below {
            return Ok(Step::Next);
        }
        Ok(match whiteout::read_redirect(fs, ctx, e.inode)? {
            Some(r) => Step::Redirect(r),
            None => Step::Next,
        })
    }

    /// `resolve_in` for the path of an absolute redirect, walked from the root of `layer`: a
    /// missing directory on the way means nothing in this branch; a whiteout, a hidden name
    /// or a non-directory on the way ends the search; an opaque directory on the way ends it
    /// after this branch.
    fn resolve_path(&self, ctx: &Context, layer: Layer, path: &[OsString], below: bool, res: &mut Resolved) -> io::Result<Step> {
        let Some((last, dirs)) = path.split_last() else { return Ok(Step::Stop) };
        let fs = self.fs(layer)?;
        let mut cur = BranchRef { fs, inode: ROOT_INODE };
        let mut stop = false;
        for part in dirs {
            if whiteout::is_oci_marker(part) || self.oci_markers(ctx, layer, cur.inode)?.is_some_and(|m| m.hidden.contains(part)) {
                return Ok(Step::Stop);
            }
            let e = match fs.lookup(ctx, cur.inode, part) {
                Ok(e) => e,
                Err(err) if is_enoent(&err) => return Ok(if stop { Step::Stop } else { Step::Next }),
                Err(err) => return Err(err),
            };
            cur = BranchRef { fs, inode: e.inode };
            if e.attr.kind() != FileKind::Directory {
                return Ok(Step::Stop);
            }
            stop |= self.is_opaque(ctx, layer, cur.inode)?;
        }
        let step = self.resolve_in(ctx, layer, cur.inode, last, below && !stop, res)?;
        Ok(if stop { Step::Stop } else { step })
    }

    /// Whether `name` is visible in a lower branch of directory `dir` (a removal or rename
    /// there must then leave a whiteout).
    fn lower_positive(&self, ctx: &Context, dir: &UNode, name: &OsStr) -> io::Result<bool> {
        let layers = Layers { upper: None, lowers: dir.layers().lowers };
        let r = self.resolve(ctx, &layers, name)?;
        self.forget_found(&r.found);
        Ok(!r.found.is_empty())
    }

    /// Looks up `name` in `parent` (from the resolved names when they hold: see
    /// `cached_name`) and returns its union inode, with one more lookup reference, and its
    /// attributes as the union reports them.
    fn lookup_node(&self, ctx: &Context, parent: &Arc<UNode>, name: &OsStr) -> io::Result<(Arc<UNode>, Attr)> {
        if !parent.is_dir() {
            return Err(errno(libc::ENOTDIR));
        }
        if parent.is_removed() {
            return Err(errno(libc::ENOENT));
        }
        crate::libservice::check_name(name)?;
        if whiteout::is_scratch(name) {
            return Err(errno(libc::ENOENT));
        }
        if let Some(node) = self.cached_name(parent.ino, name) {
            match self.attr_of(ctx, &node) {
                Ok(attr) => {
                    node.state().parent = Some((parent.clone(), name.to_owned()));
                    return Ok((node, attr));
                }
                // Gone behind our back: resolve it afresh.
                Err(_) => self.unref(&node, 1),
            }
        }
        let epoch = self.ns_epoch.load(Ordering::Acquire);
        let res = self.resolve(ctx, &parent.layers(), name)?;
        let Some(&(top_layer, top)) = res.found.first() else {
            if !res.upper_whiteout {
                // A create of the name that follows (open with O_CREAT looks first) needs
                // not look again while nothing changed.
                self.remember_name(parent.ino, name, ABSENT, epoch);
            }
            return Err(errno(libc::ENOENT));
        };
        let ino = self.ino_for(top_layer, &top.attr);
        let mut nodes = lock(&self.nodes);
        if let Some(existing) = nodes.get(&ino) {
            // A directory removed stays dead for whoever still holds it; a name that shows
            // its object again (a whiteout gone after a failed change) gets a new node; so
            // does an upper object that is not the one the node holds (its `st_ino` is the
            // number of one removed while held, which the branch's file system gave again).
            let same = top_layer != 0 || existing.layers().upper == Some(top.inode);
            if existing.kind == top.attr.kind() && !existing.is_removed() && same {
                let existing = existing.clone();
                existing.lookups.fetch_add(1, Ordering::Relaxed);
                drop(nodes);
                self.forget_found(&res.found);
                existing.state().parent = Some((parent.clone(), name.to_owned()));
                let attr = self.adjust(&existing, top_layer, top.attr);
                self.remember_name(parent.ino, name, ino, epoch);
                return Ok((existing, attr));
            }
        }
        let mut layers = Layers::default();
        for (layer, e) in &res.found {
            if *layer == 0 {
                layers.upper = Some(e.inode);
            } else {
                layers.lowers.push((*layer, e.inode));
            }
        }
        let state = NodeState { parent: Some((parent.clone(), name.to_owned())), layers };
        let ino = if nodes.contains_key(&ino) { self.renumber(top_layer, &top.attr) } else { ino };
        let node = Arc::new(UNode::new(ino, top.attr.kind(), state, 1));
        nodes.insert(ino, node.clone());
        drop(nodes);
        self.remember_name(parent.ino, name, ino, epoch);
        let attr = self.adjust(&node, top_layer, top.attr);
        Ok((node, attr))
    }

    /// Like `lookup_node`, but `None` when the name does not exist.
    fn try_lookup_node(
        &self,
        ctx: &Context,
        parent: &Arc<UNode>,
        name: &OsStr,
    ) -> io::Result<Option<Arc<UNode>>> {
        match self.lookup_node(ctx, parent, name) {
            Ok((n, _)) => Ok(Some(n)),
            Err(e) if is_enoent(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Registers a new object created in the upper branch under `parent/name`.
    fn register_new(&self, parent: &Arc<UNode>, name: &OsStr, entry: &Entry) -> Arc<UNode> {
        let ino = self.ino_for(0, &entry.attr);
        let layers = Layers { upper: Some(entry.inode), lowers: Vec::new() };
        let state = NodeState { parent: Some((parent.clone(), name.to_owned())), layers };
        let mut nodes = lock(&self.nodes);
        // A node still holding the number is another object's (one removed while held,
        // whose `st_ino` the branch's file system gave this new one): it keeps it.
        let ino = if nodes.contains_key(&ino) { self.renumber(0, &entry.attr) } else { ino };
        let node = Arc::new(UNode::new(ino, entry.attr.kind(), state, 1));
        nodes.insert(ino, node.clone());
        drop(nodes);
        // A new object has no names in it, whatever an object that had its number before
        // (a recycled identity) left resolved.
        lock(&self.names).remove(&ino);
        node
    }

    fn release_layers(&self, layers: &Layers) {
        for (layer, ino) in layers.all() {
            if let Some(b) = self.branch(layer) {
                b.forget(ino, 1);
            }
        }
    }

    /// Drops `count` lookup references of `node`; the last one releases its branch objects.
    fn unref(&self, node: &UNode, count: u64) {
        if node.ino == ROOT_INODE {
            return;
        }
        let mut nodes = lock(&self.nodes);
        let left = node.lookups.load(Ordering::Relaxed).saturating_sub(count);
        node.lookups.store(left, Ordering::Relaxed);
        if left > 0 {
            return;
        }
        if nodes.get(&node.ino).is_some_and(|n| std::ptr::eq(Arc::as_ptr(n), node)) {
            nodes.remove(&node.ino);
        }
        drop(nodes);
        let layers = std::mem::take(&mut node.state().layers);
        self.release_layers(&layers);
        node.state().parent = None;
    }

    /// Attributes as the union reports them, from the topmost branch object's.
    fn adjust(&self, node: &UNode, layer: Layer, mut attr: Attr) -> Attr {
        self.shown_ids(layer, &mut attr);
        attr.ino = node.ino;
        attr.dev = 0;
        if node.is_dir() && node.layers().is_merged() {
            // As overlayfs: the real count is unknown for a merged directory.
            attr.nlink = 1;
        }
        attr
    }

    /// Attributes as the union reports them.
    fn attr_of(&self, ctx: &Context, node: &UNode) -> io::Result<Attr> {
        let (layer, ino) = node.layers().top().ok_or_else(|| errno(libc::ESTALE))?;
        let attr = self.fs(layer)?.getattr(ctx, ino, None)?;
        Ok(self.adjust(node, layer, attr))
    }

    fn entry_of(&self, ctx: &Context, node: &UNode) -> io::Result<Entry> {
        Ok(Entry { inode: node.ino, generation: 0, attr: self.attr_of(ctx, node)? })
    }

    fn insert_handle(&self, h: UHandle) -> Handle {
        let id = self.next_handle.fetch_add(1, Ordering::Relaxed);
        lock(&self.handles).insert(id, Arc::new(h));
        id
    }

    fn handle(&self, h: Handle) -> io::Result<Arc<UHandle>> {
        lock(&self.handles).get(&h).cloned().ok_or_else(|| errno(libc::EBADF))
    }

    /// `EBADF` unless file handle `h` was opened with an access mode that allows `access`
    /// (`O_RDONLY`: reading, `O_WRONLY`: writing), as the kernel checks a descriptor's mode
    /// before anything else. No copy-up, no cache and no change of privileges may come first.
    fn check_access(&self, h: Handle, access: i32) -> io::Result<()> {
        let uh = self.handle(h)?;
        let UHandle::File { flags, .. } = &*uh else { return Err(errno(libc::EISDIR)) };
        let mode = flags & libc::O_ACCMODE;
        if mode == libc::O_RDWR || mode == access {
            Ok(())
        } else {
            Err(errno(libc::EBADF))
        }
    }

    /// The branch file behind a file handle, re-opened on the upper branch if the file was
    /// copied up since it was opened (as overlayfs does).
    fn file_handle(&self, ctx: &Context, h: Handle) -> io::Result<(Layer, Handle, Arc<UNode>)> {
        let uh = self.handle(h)?;
        let UHandle::File { node, open, flags } = &*uh else { return Err(errno(libc::EISDIR)) };
        let mut open = lock(open);
        if open.0 != 0 {
            if let Some(upper) = node.layers().upper {
                let ufs = self.upper_fs()?;
                let nh = ufs.open(ctx, upper, flags & !(libc::O_TRUNC | libc::O_CREAT | libc::O_EXCL))?;
                if let Ok(old) = self.fs(open.0) {
                    let _ = old.release(ctx, 0, open.1);
                }
                *open = (0, nh);
            }
        }
        Ok((open.0, open.1, node.clone()))
    }

    fn node_of_layer_inode(&self, node: &UNode, layer: Layer) -> Option<Inode> {
        let layers = node.layers();
        if layer == 0 {
            layers.upper
        } else {
            layers.lowers.iter().find(|(l, _)| *l == layer).map(|(_, i)| *i)
        }
    }
}

/// As the VFS: `user.*` attributes only exist on regular files and directories; changing one
/// elsewhere is `EPERM` (checked before anything is copied up).
fn user_xattr_writable(node: &UNode, name: &OsStr) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let plain = matches!(node.kind, FileKind::Regular | FileKind::Directory);
    if name.as_bytes().starts_with(b"user.") && !plain {
        return Err(errno(libc::EPERM));
    }
    Ok(())
}

fn wants_write(flags: i32) -> bool {
    flags & libc::O_ACCMODE != libc::O_RDONLY || flags & libc::O_TRUNC != 0
}

impl FileSystem for UnionFs {
    fn lookup(&self, ctx: &Context, parent: Inode, name: &OsStr) -> io::Result<Entry> {
        let _ns = self.read_ns();
        let p = self.node(parent)?;
        let (node, attr) = self.lookup_node(ctx, &p, name)?;
        Ok(Entry { inode: node.ino, generation: 0, attr })
    }

    fn retain(&self, inode: Inode) -> io::Result<()> {
        let nodes = lock(&self.nodes);
        let node = nodes.get(&inode).ok_or_else(|| errno(libc::ESTALE))?;
        node.lookups.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn forget(&self, inode: Inode, count: u64) {
        if let Ok(node) = self.node(inode) {
            self.unref(&node, count);
        }
    }

    fn getattr(&self, ctx: &Context, inode: Inode, _handle: Option<Handle>) -> io::Result<Attr> {
        let node = self.node(inode)?;
        self.attr_of(ctx, &node)
    }

    fn setattr(
        &self,
        ctx: &Context,
        inode: Inode,
        handle: Option<Handle>,
        set: &SetAttr,
    ) -> io::Result<Attr> {
        let node = self.node(inode)?;
        if let (Some(_), Some(h)) = (set.size, handle) {
            // As `ftruncate` of a descriptor not open for writing: refused before any copy-up.
            self.check_access(h, libc::O_WRONLY).map_err(|e| if e.raw_os_error() == Some(libc::EBADF) { errno(libc::EINVAL) } else { e })?;
        }
        // Reported whatever comes of it: a copy-up that ran (cut to the new size) changed the
        // file even if the change of attributes then failed.
        let _report = Changed(self, node.ino);
        // Owner and mode decide access to the file and, for a directory, to what is in it.
        // A regular file's are its own (reported above): what is learned of it holds under
        // its word, and no path through it exists.
        let access = (set.mode.is_some() || set.uid.is_some() || set.gid.is_some()) && node.kind != FileKind::Regular;
        {
            let _ns = if access { self.change_names() } else { self.write_ns() };
            let limit = set.size;
            let upper = self.copy_up(ctx, &node, limit)?;
            let bh = match handle.map(|h| self.file_handle(ctx, h)) {
                Some(Ok((0, bh, _))) => Some(bh),
                _ => None,
            };
            self.upper_fs()?.setattr(ctx, upper, bh, set)?;
        }
        self.attr_of(ctx, &node)
    }

    fn open(&self, ctx: &Context, inode: Inode, flags: i32) -> io::Result<Handle> {
        let node = self.node(inode)?;
        if node.is_dir() && wants_write(flags) {
            return Err(errno(libc::EISDIR));
        }
        // An open for writing copies up (a new change time, and with `O_TRUNC` no data):
        // reported whatever comes of the open.
        let _report = wants_write(flags).then(|| Changed(self, node.ino));
        let (layer, ino) = if wants_write(flags) {
            match node.layers().upper {
                // Already in the upper branch: no copy-up, so no change of names (the
                // namespace lock would also make every name resolved so far stale).
                Some(upper) => (0, upper),
                None => {
                    let _ns = self.write_ns();
                    let limit = (flags & libc::O_TRUNC != 0).then_some(0);
                    (0, self.copy_up(ctx, &node, limit)?)
                }
            }
        } else {
            node.layers().top().ok_or_else(|| errno(libc::ESTALE))?
        };
        let bh = self.fs(layer)?.open(ctx, ino, flags)?;
        Ok(self.insert_handle(UHandle::File { node, open: Mutex::new((layer, bh)), flags }))
    }

    fn create(
        &self,
        ctx: &Context,
        parent: Inode,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
    ) -> io::Result<(Entry, Handle)> {
        let mut bh = None;
        let (node, attr) = self.make_name(ctx, parent, name, false, |ufs, dir, n| {
            let (e, h) = ufs.create(ctx, dir, n, mode, umask, flags)?;
            bh = Some(h);
            Ok(e)
        })?;
        let bh = bh.ok_or_else(|| errno(libc::EIO))?;
        let entry = Entry { inode: node.ino, generation: 0, attr };
        self.changed(node.ino);
        let h = self.insert_handle(UHandle::File { node, open: Mutex::new((0, bh)), flags });
        Ok((entry, h))
    }

    fn read(
        &self,
        ctx: &Context,
        _inode: Inode,
        handle: Handle,
        bufs: &mut [IoSliceMut<'_>],
        offset: u64,
    ) -> io::Result<usize> {
        self.check_access(handle, libc::O_RDONLY)?;
        let (layer, bh, node) = self.file_handle(ctx, handle)?;
        let ino = self.node_of_layer_inode(&node, layer).unwrap_or(0);
        self.fs(layer)?.read(ctx, ino, bh, bufs, offset)
    }

    fn write(
        &self,
        ctx: &Context,
        _inode: Inode,
        handle: Handle,
        bufs: &[IoSlice<'_>],
        offset: u64,
    ) -> io::Result<usize> {
        self.check_access(handle, libc::O_WRONLY)?;
        let (layer, bh, node) = self.file_handle(ctx, handle)?;
        if layer != 0 {
            return Err(errno(libc::EBADF));
        }
        let ino = self.node_of_layer_inode(&node, 0).unwrap_or(0);
        let n = self.upper_fs()?.write(ctx, ino, bh, bufs, offset)?;
        self.changed(node.ino);
        Ok(n)
    }

    fn flush(&self, ctx: &Context, _inode: Inode, handle: Handle) -> io::Result<()> {
        // To the layer the handle is open on now, never reopened for it (a reopen's error
        // would fail the caller's `close`): a handle still on a lower layer wrote nothing.
        let uh = self.handle(handle)?;
        let UHandle::File { node, open, .. } = &*uh else { return Err(errno(libc::EISDIR)) };
        let (layer, bh) = *lock(open);
        let ino = self.node_of_layer_inode(node, layer).unwrap_or(0);
        self.fs(layer)?.flush(ctx, ino, bh)
    }

    fn fsync(&self, ctx: &Context, _inode: Inode, handle: Handle, datasync: bool) -> io::Result<()> {
        let (layer, bh, node) = self.file_handle(ctx, handle)?;
        let ino = self.node_of_layer_inode(&node, layer).unwrap_or(0);
        self.fs(layer)?.fsync(ctx, ino, bh, datasync)
    }

    fn release(&self, ctx: &Context, _inode: Inode, handle: Handle) -> io::Result<()> {
        let Some(uh) = lock(&self.handles).remove(&handle) else { return Err(errno(libc::EBADF)) };
        if let UHandle::File { node, open, .. } = &*uh {
            let (layer, bh) = *lock(open);
            let ino = self.node_of_layer_inode(node, layer).unwrap_or(0);
            self.fs(layer)?.release(ctx, ino, bh)?;
        }
        Ok(())
    }

    fn mkdir(
        &self,
        ctx: &Context,
        parent: Inode,
        name: &OsStr,
        mode: u32,
        umask: u32,
    ) -> io::Result<Entry> {
        let (node, attr) = self.make_name(ctx, parent, name, true, |ufs, dir, n| ufs.mkdir(ctx, dir, n, mode, umask))?;
        Ok(Entry { inode: node.ino, generation: 0, attr })
    }

    fn mknod(
        &self,
        ctx: &Context,
        parent: Inode,
        name: &OsStr,
        mode: u32,
        rdev: u64,
        umask: u32,
    ) -> io::Result<Entry> {
        // A 0/0 character device is a whiteout in the upper branch: made by anyone, it would
        // hide a name rather than make one (overlayfs refuses it to everyone too).
        if mode & libc::S_IFMT == libc::S_IFCHR && rdev == 0 {
            return Err(errno(libc::EPERM));
        }
        let (node, attr) = self.make_name(ctx, parent, name, false, |ufs, dir, n| ufs.mknod(ctx, dir, n, mode, rdev, umask))?;
        Ok(Entry { inode: node.ino, generation: 0, attr })
    }

    fn unlink(&self, ctx: &Context, parent: Inode, name: &OsStr) -> io::Result<()> {
        let mut ns = self.change_names();
        ns.changes_name(parent, name);
        self.removals.fetch_add(1, Ordering::AcqRel);
        let p = self.node(parent)?;
        let gone = ns.outcome(self.remove(ctx, &p, name, false))?;
        // A regular file's name: the paths that led to it are learned under its word. (A
        // symlink's may have led through it anywhere.)
        if gone.kind == FileKind::Regular {
            ns.files_only(self, &[p.ino, gone.ino]);
        }
        Ok(())
    }

    fn rmdir(&self, ctx: &Context, parent: Inode, name: &OsStr) -> io::Result<()> {
        let mut ns = self.change_names();
        ns.changes_name(parent, name);
        self.ns_generation.fetch_add(1, Ordering::AcqRel);
        self.removals.fetch_add(1, Ordering::AcqRel);
        let p = self.node(parent)?;
        let gone = ns.outcome(self.remove(ctx, &p, name, true))?;
        ns.removed_dir(&gone);
        Ok(())
    }

    fn rename(
        &self,
        ctx: &Context,
        parent: Inode,
        name: &OsStr,
        new_parent: Inode,
        new_name: &OsStr,
        flags: u32,
    ) -> io::Result<()> {
        let mut ns = self.change_names();
        ns.changes_name(parent, name);
        ns.changes_name(new_parent, new_name);
        self.ns_generation.fetch_add(1, Ordering::AcqRel);
        self.removals.fetch_add(1, Ordering::AcqRel);
        let p = self.dir_node(parent)?;
        let np = self.dir_node(new_parent)?;
        let (moved, replaced) = ns.outcome(self.do_rename(ctx, &p, name, &np, new_name, flags))?;
        // A directory replaced is gone (one exchanged is still itself, elsewhere; a rename
        // onto the same object changes nothing).
        if let Some(r) = replaced.as_ref().filter(|r| flags & crate::libservice::RENAME_EXCHANGE == 0 && r.ino != moved.ino) {
            ns.removed_dir(r);
        }
        // Regular files moved, and at most one replaced (or exchanged): the paths that led to
        // them are learned under their words; a directory's or a symlink's may lead through
        // them anywhere.
        if moved.kind == FileKind::Regular && replaced.as_ref().is_none_or(|r| r.kind == FileKind::Regular) {
            let mut inodes = vec![p.ino, np.ino, moved.ino];
            inodes.extend(replaced.map(|r| r.ino));
            ns.files_only(self, &inodes);
        }
        Ok(())
    }

    fn namespace_generation(&self) -> u64 {
        self.ns_generation.load(Ordering::Acquire)
    }

    fn removal_generation(&self) -> u64 {
        self.removals.load(Ordering::Acquire)
    }

    fn link(
        &self,
        ctx: &Context,
        inode: Inode,
        new_parent: Inode,
        new_name: &OsStr,
    ) -> io::Result<Entry> {
        let mut ns = self.change_names();
        ns.changes_name(new_parent, new_name);
        let node = self.node(inode)?;
        let np = self.node(new_parent)?;
        ns.outcome(self.do_link(ctx, &node, &np, new_name))?;
        // A new name of a file (directories have no links): its number of links and the
        // directory changed, no path that led somewhere.
        ns.files_only(self, &[np.ino, node.ino]);
        self.entry_of(ctx, &node)
    }

    fn symlink(
        &self,
        ctx: &Context,
        target: &OsStr,
        parent: Inode,
        name: &OsStr,
    ) -> io::Result<Entry> {
        let (node, attr) = self.make_name(ctx, parent, name, false, |ufs, dir, n| ufs.symlink(ctx, target, dir, n))?;
        Ok(Entry { inode: node.ino, generation: 0, attr })
    }

    fn readlink(&self, ctx: &Context, inode: Inode) -> io::Result<Vec<u8>> {
        let node = self.node(inode)?;
        let (layer, ino) = node.layers().top().ok_or_else(|| errno(libc::ESTALE))?;
        self.fs(layer)?.readlink(ctx, ino)
    }

    fn opendir(&self, _ctx: &Context, inode: Inode, _flags: i32) -> io::Result<Handle> {
        let node = self.dir_node(inode)?;
        Ok(self.insert_handle(UHandle::Dir { node, listing: Mutex::new(readdir::Listing::default()) }))
    }

    fn readdir(
        &self,
        ctx: &Context,
        _inode: Inode,
        handle: Handle,
        offset: u64,
        max: usize,
    ) -> io::Result<Vec<DirEntry>> {
        let uh = self.handle(handle)?;
        let UHandle::Dir { node, listing } = &*uh else { return Err(errno(libc::ENOTDIR)) };
        let mut listing = lock(listing);
        if offset == 0 || listing.is_empty() {
            let _ns = self.read_ns();
            *listing = self.merged_listing(ctx, node)?;
        }
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(listing.len());
        Ok(listing.slice(start, max))
    }

    fn releasedir(&self, _ctx: &Context, _inode: Inode, handle: Handle) -> io::Result<()> {
        lock(&self.handles).remove(&handle).map(|_| ()).ok_or_else(|| errno(libc::EBADF))
    }

    fn fsyncdir(&self, ctx: &Context, inode: Inode, _handle: Handle, datasync: bool) -> io::Result<()> {
        let node = self.dir_node(inode)?;
        let Some(upper) = node.layers().upper else { return Ok(()) };
        let ufs = self.upper_fs()?;
        let h = ufs.opendir(ctx, upper, libc::O_RDONLY)?;
        let r = ufs.fsyncdir(ctx, upper, h, datasync);
        let _ = ufs.releasedir(ctx, upper, h);
        r
    }

    fn statfs(&self, ctx: &Context, _inode: Inode) -> io::Result<StatFs> {
        let layer = if self.upper.is_some() { 0 } else { 1 };
        self.fs(layer)?.statfs(ctx, ROOT_INODE)
    }

    fn getxattr(&self, ctx: &Context, inode: Inode, name: &OsStr) -> io::Result<Vec<u8>> {
        if unsupported_xattr(name) {
            return Err(errno(libc::EOPNOTSUPP));
        }
        let node = self.node(inode)?;
        let (layer, ino) = node.layers().top().ok_or_else(|| errno(libc::ESTALE))?;
        self.fs(layer)?.getxattr(ctx, ino, name)
    }

    fn setxattr(
        &self,
        ctx: &Context,
        inode: Inode,
        name: &OsStr,
        value: &[u8],
        flags: i32,
    ) -> io::Result<()> {
        if unsupported_xattr(name) {
            return Err(errno(libc::EOPNOTSUPP));
        }
        let node = self.node(inode)?;
        user_xattr_writable(&node, name)?;
        // An ACL decides access to a directory's names; a regular file's is its own change.
        let _ns = if node.kind == FileKind::Regular { self.write_ns() } else { self.change_names() };
        let upper = self.copy_up(ctx, &node, None)?;
        self.upper_fs()?.setxattr(ctx, upper, name, value, flags)?;
        self.changed(node.ino);
        Ok(())
    }

    fn listxattr(&self, ctx: &Context, inode: Inode) -> io::Result<Vec<OsString>> {
        let node = self.node(inode)?;
        let (layer, ino) = node.layers().top().ok_or_else(|| errno(libc::ESTALE))?;
        let mut names = self.fs(layer)?.listxattr(ctx, ino)?;
        names.retain(|n| !unsupported_xattr(n));
        Ok(names)
    }

    fn removexattr(&self, ctx: &Context, inode: Inode, name: &OsStr) -> io::Result<()> {
        if unsupported_xattr(name) {
            return Err(errno(libc::EOPNOTSUPP));
        }
        let node = self.node(inode)?;
        user_xattr_writable(&node, name)?;
        // As for `setxattr`.
        let _ns = if node.kind == FileKind::Regular { self.write_ns() } else { self.change_names() };
        let layers = node.layers();
        if let (None, Some((layer, ino))) = (layers.upper, layers.top()) {
            // As overlayfs: removing an attribute a lower object lacks copies nothing up.
            self.fs(layer)?.getxattr(ctx, ino, name)?;
        }
        let upper = self.copy_up(ctx, &node, None)?;
        self.upper_fs()?.removexattr(ctx, upper, name)?;
        self.changed(node.ino);
        Ok(())
    }

    fn access(&self, ctx: &Context, inode: Inode, mask: i32) -> io::Result<()> {
        let node = self.node(inode)?;
        if mask & libc::W_OK != 0 && self.upper.is_none() {
            return Err(errno(libc::EROFS));
        }
        check_access(&self.attr_of(ctx, &node)?, ctx, mask)
    }

    fn fallocate(
        &self,
        ctx: &Context,
        _inode: Inode,
        handle: Handle,
        mode: i32,
        offset: u64,
        length: u64,
    ) -> io::Result<()> {
        self.check_access(handle, libc::O_WRONLY)?;
        let (layer, bh, node) = self.file_handle(ctx, handle)?;
        if layer != 0 {
            return Err(errno(libc::EBADF));
        }
        let ino = self.node_of_layer_inode(&node, 0).unwrap_or(0);
        self.upper_fs()?.fallocate(ctx, ino, bh, mode, offset, length)?;
        self.changed(node.ino);
        Ok(())
    }

    fn lseek(
        &self,
        ctx: &Context,
        _inode: Inode,
        handle: Handle,
        offset: u64,
        whence: i32,
    ) -> io::Result<u64> {
        let (layer, bh, node) = self.file_handle(ctx, handle)?;
        let ino = self.node_of_layer_inode(&node, layer).unwrap_or(0);
        self.fs(layer)?.lseek(ctx, ino, bh, offset, whence)
    }

    fn syncfs(&self, ctx: &Context) -> io::Result<()> {
        match &self.upper {
            Some(u) => u.syncfs(ctx),
            None => Ok(()),
        }
    }

    /// Told of every change made through the union; a shared branch must also announce
    /// what other clients are about to change (see `FileSystem::watch_others`), else the
    /// union refuses.
    fn watch_changes(&self, sink: Arc<dyn crate::libservice::ChangeSink>) -> bool {
        if self.changes.get().is_some() {
            return false;
        }
        for layer in 0..=self.lowers.len() {
            let Some(b) = self.branch(layer).filter(|b| b.shared()) else { continue };
            let dev = self.root_devs.get(layer).copied().unwrap_or(0);
            if !b.watch_others(Arc::new(LayerSink { layer, dev, ids: self.ids.clone(), sink: sink.clone() })) {
                return false;
            }
        }
        // Only the first watcher is told: a second one must not believe it is.
        self.changes.set(sink).is_ok()
    }

    fn shared(&self) -> bool {
        self.upper.iter().chain(&self.lowers).any(|b| b.shared())
    }

    fn outside_writer(&self, inode: Inode, begins: bool) {
        if let Some(sink) = self.changes.get() {
            sink.outside_writer(inode, begins);
        }
    }

    fn backing_file(&self, _inode: Inode, handle: Handle) -> io::Result<BackingFile> {
        let ctx = self.own;
        let (layer, bh, node) = self.file_handle(&ctx, handle)?;
        let ino = self.node_of_layer_inode(&node, layer).unwrap_or(0);
        let b = self.fs(layer)?.backing_file(ino, bh)?;
        // A lower file is copied up before anyone writes it.
        Ok(BackingFile { writable: b.writable && layer == 0, layer: Some(layer), ..b })
    }
}

/// Extended attributes no user gets, sets or lists here: the union's own, and POSIX ACLs,
/// which no permission check of the service or of the FUSE mount reads. An instance is a
/// filesystem without ACL support, as one mounted `noacl` (`EOPNOTSUPP`; `getfacl` shows
/// the mode): an ACL it took would be a promise nothing keeps (a red-team reading found
/// `setfacl -m u:someone:---` accepted and ignored on both paths).
fn unsupported_xattr(name: &OsStr) -> bool {
    whiteout::is_private_xattr(name) || std::os::unix::ffi::OsStrExt::as_bytes(name).starts_with(b"system.posix_acl_")
}

#[cfg(test)]
mod tests;
