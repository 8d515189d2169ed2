//! Namespace changes in the union: create, remove, rename, link.
//!
//! Every function here runs with the namespace lock held exclusively.

use std::ffi::OsStr;
use std::io;
use std::sync::Arc;

use super::node::UNode;
use super::{is_enoent, whiteout, UnionFs};
use crate::libservice::{
    check_name, errno, Context, Entry, FileSystem, Inode, RENAME_EXCHANGE, RENAME_NOREPLACE,
};

/// Drops the lookup reference an internal lookup took, when it goes out of scope.
struct Held<'a> {
    fs: &'a UnionFs,
    node: Arc<UNode>,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.fs.unref(&self.node, 1);
    }
}

impl UnionFs {
    fn hold(&self, node: Arc<UNode>) -> Held<'_> {
        Held { fs: self, node }
    }

    fn lookup_held(&self, ctx: &Context, dir: &Arc<UNode>, name: &OsStr) -> io::Result<Option<Held<'_>>> {
        Ok(self.try_lookup_node(ctx, dir, name)?.map(|n| self.hold(n)))
    }

    /// Whether the upper branch holds a whiteout at `name` in upper directory `dir`.
    fn upper_whiteout(&self, ctx: &Context, dir: Inode, name: &OsStr) -> io::Result<bool> {
        let ufs = self.upper_fs()?;
        match ufs.lookup(ctx, dir, name) {
            Ok(e) => {
                ufs.forget(e.inode, 1);
                Ok(e.attr.is_whiteout())
            }
            Err(e) if is_enoent(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Creates a new object `name` in `parent` through `make`, which builds it in the upper
    /// branch under the name it is given (the caller holds the namespace lock, taken when
    /// the epoch was `began`). Over a whiteout, the object is built under a scratch
    /// name and moved over the whiteout atomically (a directory is made opaque first).
    pub(super) fn create_in_upper(
        &self,
        ctx: &Context,
        parent: &Arc<UNode>,
        name: &OsStr,
        is_dir: bool,
        began: u64,
        mut make: impl FnMut(&dyn FileSystem, Inode, &OsStr) -> io::Result<Entry>,
    ) -> io::Result<(Arc<UNode>, crate::libservice::Attr)> {
        if !parent.is_dir() {
            return Err(errno(libc::ENOTDIR));
        }
        if parent.is_removed() {
            return Err(errno(libc::ENOENT));
        }
        check_name(name)?;
        if whiteout::is_scratch(name) {
            return Err(errno(libc::EINVAL));
        }
        // Found missing by a lookup since which nothing changed the name: no need to look
        // through the branches again.
        let probe = if self.absent(parent.ino, name) { super::Resolved::default() } else { self.resolve(ctx, &parent.layers(), name)? };
        if !probe.found.is_empty() {
            self.forget_found(&probe.found);
            return Err(errno(libc::EEXIST));
        }
        let ufs = self.upper_fs()?;
        let dir = self.copy_up(ctx, parent, None)?;
        let entry = if probe.upper_whiteout {
            let scratch = self.scratch_name();
            let e = make(ufs, dir, &scratch)?;
            let placed = if is_dir {
                whiteout::set_opaque(ufs, &self.own, e.inode)
                    .and_then(|_| ufs.rename(&self.own, dir, &scratch, dir, name, RENAME_EXCHANGE))
                    .and_then(|_| ufs.unlink(&self.own, dir, &scratch))
            } else {
                ufs.rename(&self.own, dir, &scratch, dir, name, 0)
            };
            if let Err(err) = placed {
                let _ = if is_dir { ufs.rmdir(&self.own, dir, &scratch) } else { ufs.unlink(&self.own, dir, &scratch) };
                ufs.forget(e.inode, 1);
                return Err(err);
            }
            e
        } else {
            make(ufs, dir, name)?
        };
        let node = self.register_new(parent, name, &entry);
        // What the name resolves to once this change is over (the epoch moves twice under
        // the namespace lock the caller holds: at its start and at its end).
        self.remember_name(parent.ino, name, node.ino, began.wrapping_add(2));
        let attr = self.adjust(&node, 0, entry.attr);
        Ok((node, attr))
    }

    /// Removes whiteouts (and stray scratch entries) left in the upper directory of `node`
    /// before that directory is removed or replaced. The union listing must be empty.
    fn clear_upper_dir(&self, ctx: &Context, node: &UNode) -> io::Result<()> {
        let Some(upper) = node.layers().upper else { return Ok(()) };
        let ufs = self.upper_fs()?;
        let h = ufs.opendir(ctx, upper, libc::O_RDONLY)?;
        let listed = ufs.readdir(ctx, upper, h, 0, usize::MAX);
        let _ = ufs.releasedir(ctx, upper, h);
        for e in listed? {
            if e.name == "." || e.name == ".." {
                continue;
            }
            match ufs.unlink(&self.own, upper, &e.name) {
                Ok(()) => {}
                Err(err) if err.raw_os_error() == Some(libc::EISDIR) => ufs.rmdir(&self.own, upper, &e.name)?,
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }

    /// Whether the union listing of directory `node` is empty.
    fn union_empty(&self, ctx: &Context, node: &Arc<UNode>) -> io::Result<bool> {
        Ok(self.merged_listing(ctx, node)?.iter().all(|e| e.name == "." || e.name == ".."))
    }

    /// `unlink` (`dir == false`) or `rmdir` (`dir == true`) of `parent/name`, under the
    /// namespace lock the caller holds; what the name named.
    pub(super) fn remove(&self, ctx: &Context, parent: &Arc<UNode>, name: &OsStr, dir: bool) -> io::Result<Arc<UNode>> {
        let child = self.try_lookup_node(ctx, parent, name)?.map(|n| self.hold(n)).ok_or_else(|| errno(libc::ENOENT))?;
        match (dir, child.node.is_dir()) {
            (true, false) => return Err(errno(libc::ENOTDIR)),
            (false, true) => return Err(errno(libc::EISDIR)),
            _ => {}
        }
        if dir && !self.union_empty(ctx, &child.node)? {
            return Err(errno(libc::ENOTEMPTY));
        }
        let ufs = self.upper_fs()?;
        let updir = self.copy_up(ctx, parent, None)?;
        let needs_whiteout = self.lower_positive(ctx, parent, name)?;
        let gone = child.node.clone();
        if child.node.layers().upper.is_none() {
            return whiteout::make_whiteout(ufs, &self.own, updir, name).map(|()| gone);
        }
        if dir {
            self.clear_upper_dir(ctx, &child.node)?;
        }
        if !needs_whiteout {
            return if dir { ufs.rmdir(ctx, updir, name) } else { ufs.unlink(ctx, updir, name) }.map(|()| gone);
        }
        // Replace the upper object by a whiteout in one step.
        let scratch = self.scratch_name();
        whiteout::make_whiteout(ufs, &self.own, updir, &scratch)?;
        let swapped = ufs.rename(&self.own, updir, &scratch, updir, name, RENAME_EXCHANGE);
        let cleanup = if dir { ufs.rmdir(&self.own, updir, &scratch) } else { ufs.unlink(&self.own, updir, &scratch) };
        swapped?;
        cleanup.map(|()| gone)
    }

    /// Whether `ancestor` is `node` or one of its parents.
    fn is_ancestor(ancestor: &UNode, node: &Arc<UNode>) -> bool {
        let mut cur = Some(node.clone());
        while let Some(n) = cur {
            if n.ino == ancestor.ino {
                return true;
            }
            cur = n.parent().map(|(p, _)| p);
        }
        false
    }

    pub(super) fn do_rename(
        &self,
        ctx: &Context,
        parent: &Arc<UNode>,
        name: &OsStr,
        new_parent: &Arc<UNode>,
        new_name: &OsStr,
        flags: u32,
    ) -> io::Result<(Arc<UNode>, Option<Arc<UNode>>)> {
        if flags & !(RENAME_NOREPLACE | RENAME_EXCHANGE) != 0
            || flags == RENAME_NOREPLACE | RENAME_EXCHANGE
        {
            return Err(errno(libc::EINVAL));
        }
        check_name(new_name)?;
        if whiteout::is_scratch(new_name) {
            return Err(errno(libc::EINVAL));
        }
        let exchange = flags & RENAME_EXCHANGE != 0;
        // Nothing is moved out of or into a dead directory (before any copy-up).
        if [parent, new_parent].iter().any(|d| d.is_removed()) {
            return Err(errno(libc::ENOENT));
        }
        let src = self.lookup_held(ctx, parent, name)?.ok_or_else(|| errno(libc::ENOENT))?;
        let tgt = self.lookup_held(ctx, new_parent, new_name)?;
        let (s, t) = (&src.node, tgt.as_ref().map(|h| &h.node));
        let named = (s.clone(), t.cloned());
        match t {
            None if exchange => return Err(errno(libc::ENOENT)),
            Some(_) if flags & RENAME_NOREPLACE != 0 => return Err(errno(libc::EEXIST)),
            _ => {}
        }
        // The checks the VFS makes before any filesystem sees a rename.
        if s.is_dir() && Self::is_ancestor(s, new_parent) {
            return Err(errno(libc::EINVAL));
        }
        if let Some(t) = t {
            if t.is_dir() && Self::is_ancestor(t, parent) {
                return Err(errno(if exchange { libc::EINVAL } else { libc::ENOTEMPTY }));
            }
            if t.ino == s.ino {
                return Ok(named);
            }
            if !exchange {
                match (s.is_dir(), t.is_dir()) {
                    (true, false) => return Err(errno(libc::ENOTDIR)),
                    (false, true) => return Err(errno(libc::EISDIR)),
                    _ => {}
                }
            }
        }
        // A directory with lower parts moves with a redirect to them (overlayfs with
        // `redirect_dir=on`), or not at all (`off`: user space copies it).
        let has_lower = |n: &UNode| n.is_dir() && !n.layers().lowers.is_empty();
        let (s_lower, t_lower) = (has_lower(s), exchange && t.is_some_and(|t| has_lower(t)));
        if (s_lower || t_lower) && !self.redirect_dir {
            return Err(errno(libc::EXDEV));
        }
        // A merged or lower target directory must look empty; an upper-only one is left to
        // the upper branch's rename, after the copy-ups (as overlayfs: a source directory
        // is then copied up, and has its redirect, even when the rename fails).
        let t_merged = t.is_some_and(|t| has_lower(t));
        if let Some(t) = t.filter(|_| !exchange && t_merged) {
            if !self.union_empty(ctx, t)? {
                return Err(errno(libc::ENOTEMPTY));
            }
        }
        let ufs = self.upper_fs()?;
        self.copy_up(ctx, s, None)?;
        let updir = self.copy_up(ctx, parent, None)?;
        let new_updir = self.copy_up(ctx, new_parent, None)?;
        if let Some(t) = t.filter(|_| exchange) {
            self.copy_up(ctx, t, None)?;
        }
        let old_positive = self.lower_positive(ctx, parent, name)?;
        let new_positive = self.lower_positive(ctx, new_parent, new_name)?;
        let samedir = parent.ino == new_parent.ino;
        if s_lower {
            self.redirect(s, samedir)?;
        }
        if let Some(t) = t.filter(|_| t_lower) {
            self.redirect(t, samedir)?;
        }
        // A directory of the upper branch alone landing where a lower one is visible must not
        // merge with it (one with a redirect merges with what the redirect names).
        if s.is_dir() && !s_lower && new_positive {
            if let Some(u) = s.layers().upper {
                whiteout::set_opaque(ufs, &self.own, u)?;
            }
        }
        if exchange {
            if let Some(t) = t.filter(|t| t.is_dir() && !t_lower && old_positive) {
                if let Some(u) = t.layers().upper {
                    whiteout::set_opaque(ufs, &self.own, u)?;
                }
            }
            ufs.rename(ctx, updir, name, new_updir, new_name, RENAME_EXCHANGE)?;
        } else {
            if let Some(t) = t.filter(|_| t_merged) {
                self.clear_upper_dir(ctx, t)?;
            }
            if s.is_dir() && self.upper_whiteout(ctx, new_updir, new_name)? {
                ufs.unlink(&self.own, new_updir, new_name)?;
            }
            ufs.rename(ctx, updir, name, new_updir, new_name, 0)?;
            if old_positive {
                whiteout::make_whiteout(ufs, &self.own, updir, name)?;
            }
        }
        s.state().parent = Some((new_parent.clone(), new_name.to_owned()));
        if let Some(t) = t.filter(|_| exchange) {
            t.state().parent = Some((parent.clone(), name.to_owned()));
        }
        Ok(named)
    }

    /// Records on directory `node` (copied up, still at its place before a rename) where its
    /// lower parts are, as overlayfs does: a redirect it has is kept when it stays in its
    /// directory or is absolute; else its old name when it stays in its directory, or the
    /// path of its lower parts from the root (ancestors' redirects followed).
    fn redirect(&self, node: &Arc<UNode>, samedir: bool) -> io::Result<()> {
        let ufs = self.upper_fs()?;
        let upper = node.layers().upper.ok_or_else(|| errno(libc::EIO))?;
        let current = whiteout::read_redirect(ufs, &self.own, upper)?;
        if current.as_ref().is_some_and(|r| samedir || matches!(r, whiteout::Redirect::Absolute(_))) {
            return Ok(());
        }
        let redirect = if samedir {
            let (_, name) = node.parent().ok_or_else(|| errno(libc::EBUSY))?;
            whiteout::Redirect::Relative(name)
        } else {
            whiteout::Redirect::Absolute(self.lower_path(node)?)
        };
        if redirect.to_bytes().len() > whiteout::REDIRECT_MAX {
            return Err(errno(libc::EXDEV));
        }
        whiteout::set_redirect(ufs, &self.own, upper, &redirect)
    }

    /// The path, from the root of the lower branches, at which `node`'s lower parts are
    /// looked up: its name and its ancestors', each replaced by the redirect it has.
    fn lower_path(&self, node: &Arc<UNode>) -> io::Result<Vec<std::ffi::OsString>> {
        let ufs = self.upper_fs()?;
        let mut parts = Vec::new();
        let mut cur = node.clone();
        while let Some((parent, name)) = cur.parent() {
            let redirect = match cur.layers().upper {
                Some(u) => whiteout::read_redirect(ufs, &self.own, u)?,
                None => None,
            };
            match redirect {
                Some(whiteout::Redirect::Absolute(path)) => {
                    parts.extend(path.into_iter().rev());
                    break;
                }
                Some(whiteout::Redirect::Relative(n)) => parts.push(n),
                None => parts.push(name),
            }
            cur = parent;
        }
        parts.reverse();
        Ok(parts)
    }

    pub(super) fn do_link(
        &self,
        ctx: &Context,
        node: &Arc<UNode>,
        new_parent: &Arc<UNode>,
        new_name: &OsStr,
    ) -> io::Result<()> {
        if !new_parent.is_dir() {
            return Err(errno(libc::ENOTDIR));
        }
        if new_parent.is_removed() {
            return Err(errno(libc::ENOENT));
        }
        check_name(new_name)?;
        if whiteout::is_scratch(new_name) {
            return Err(errno(libc::EINVAL));
        }
        // As the VFS: an existing target is reported before a directory source.
        if self.lookup_held(ctx, new_parent, new_name)?.is_some() {
            return Err(errno(libc::EEXIST));
        }
        if node.is_dir() {
            return Err(errno(libc::EPERM));
        }
        let ufs = self.upper_fs()?;
        let upper = self.copy_up(ctx, node, None)?;
        let dir = self.copy_up(ctx, new_parent, None)?;
        let e = if self.upper_whiteout(ctx, dir, new_name)? {
            let scratch = self.scratch_name();
            let e = ufs.link(ctx, upper, dir, &scratch)?;
            if let Err(err) = ufs.rename(&self.own, dir, &scratch, dir, new_name, 0) {
                let _ = ufs.unlink(&self.own, dir, &scratch);
                ufs.forget(e.inode, 1);
                return Err(err);
            }
            e
        } else {
            ufs.link(ctx, upper, dir, new_name)?
        };
        // The node already holds a reference to this upper object.
        ufs.forget(e.inode, 1);
        // Counted under the node table's lock, as `unref` counts down.
        let _nodes = super::lock(&self.nodes);
        node.lookups.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }
}
