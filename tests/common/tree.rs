//! Snapshots of a visible tree, for comparing two views of "the same" filesystem.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use polytropon::libservice::FileKind;
use rustix::fs as rfs;

#[derive(PartialEq, Eq)]
pub struct NodeInfo {
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Regular files and symlinks only.
    pub size: Option<u64>,
    pub nlink: u64,
    pub rdev: u64,
    /// First path (in walk order) with the same inode number.
    pub same_as: String,
    pub content: Option<Vec<u8>>,
    pub target: Option<Vec<u8>>,
    pub xattrs: BTreeMap<String, Vec<u8>>,
}

/// Compact: file contents show as their length and first distinct bytes, so a failure report
/// fits in a CI log.
impl std::fmt::Debug for NodeInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let content = self.content.as_ref().map(|c| {
            let mut runs: Vec<String> = Vec::new();
            let mut i = 0;
            while i < c.len() && runs.len() < 8 {
                let j = c[i..].iter().position(|b| *b != c[i]).map_or(c.len(), |n| i + n);
                runs.push(format!("{}x{:#04x}@{}", j - i, c[i], i));
                i = j;
            }
            format!("{} bytes [{}{}]", c.len(), runs.join(" "), if i < c.len() { " ..." } else { "" })
        });
        f.debug_struct("NodeInfo")
            .field("kind", &self.kind)
            .field("mode", &format_args!("{:o}", self.mode))
            .field("uid", &self.uid)
            .field("gid", &self.gid)
            .field("size", &self.size)
            .field("nlink", &self.nlink)
            .field("rdev", &self.rdev)
            .field("same_as", &self.same_as)
            .field("content", &content)
            .field("target", &self.target.as_ref().map(|t| String::from_utf8_lossy(t).into_owned()))
            .field("xattrs", &self.xattrs)
            .finish()
    }
}

pub fn kind_name(k: FileKind) -> &'static str {
    match k {
        FileKind::Regular => "file",
        FileKind::Directory => "dir",
        FileKind::Symlink => "symlink",
        FileKind::CharDevice => "chr",
        FileKind::BlockDevice => "blk",
        FileKind::Fifo => "fifo",
        FileKind::Socket => "sock",
    }
}

pub type Tree = BTreeMap<String, NodeInfo>;

pub fn kernel_tree(root: &Path) -> Tree {
    let mut tree = Tree::new();
    let mut inos: BTreeMap<u64, String> = BTreeMap::new();
    let mut stack = vec![String::new()];
    while let Some(dir) = stack.pop() {
        let mut names: Vec<OsString> = std::fs::read_dir(root.join(&dir))
            .expect("readdir on overlay")
            .map(|e| e.expect("dirent").file_name())
            .collect();
        names.sort();
        for n in names {
            let rel = if dir.is_empty() { n.to_string_lossy().into_owned() } else { format!("{dir}/{}", n.to_string_lossy()) };
            let full = root.join(&rel);
            let md = std::fs::symlink_metadata(&full).expect("lstat on overlay");
            let ft = md.file_type();
            let kind = if ft.is_dir() {
                FileKind::Directory
            } else if ft.is_symlink() {
                FileKind::Symlink
            } else if ft.is_char_device() {
                FileKind::CharDevice
            } else if ft.is_fifo() {
                FileKind::Fifo
            } else if ft.is_block_device() {
                FileKind::BlockDevice
            } else if ft.is_socket() {
                FileKind::Socket
            } else {
                FileKind::Regular
            };
            let same_as = inos.entry(md.ino()).or_insert_with(|| rel.clone()).clone();
            let mut xattrs = BTreeMap::new();
            let mut buf = vec![0u8; 4096];
            let n = rfs::llistxattr(&full, &mut buf[..]).unwrap_or(0);
            for name in buf[..n].split(|b| *b == 0).filter(|s| !s.is_empty()) {
                let name = String::from_utf8_lossy(name).into_owned();
                let mut v = vec![0u8; 4096];
                let vn = rfs::lgetxattr(&full, name.as_str(), &mut v[..]).expect("lgetxattr");
                v.truncate(vn);
                xattrs.insert(name, v);
            }
            tree.insert(
                rel.clone(),
                NodeInfo {
                    kind: kind_name(kind),
                    mode: md.mode(),
                    uid: md.uid(),
                    gid: md.gid(),
                    size: (kind == FileKind::Regular || kind == FileKind::Symlink).then_some(md.size()),
                    nlink: md.nlink(),
                    rdev: md.rdev(),
                    same_as,
                    content: (kind == FileKind::Regular).then(|| std::fs::read(&full).expect("read file on overlay")),
                    target: (kind == FileKind::Symlink)
                        .then(|| std::fs::read_link(&full).expect("readlink").as_os_str().as_bytes().to_vec()),
                    xattrs,
                },
            );
            if kind == FileKind::Directory {
                stack.push(rel);
            }
        }
    }
    tree
}

/// What differs between two trees, `a` being the reference (kernel overlayfs, a plain directory).
pub fn diff(a: &Tree, b: &Tree) -> String {
    let mut out = String::new();
    for (k, v) in a {
        match b.get(k) {
            None => out += &format!("  only in the reference: {k} {v:?}\n"),
            Some(u) if u != v => out += &format!("  {k}:\n    reference: {v:?}\n    ours:      {u:?}\n"),
            _ => {}
        }
    }
    for (k, v) in b {
        if !a.contains_key(k) {
            out += &format!("  only in ours: {k} {v:?}\n");
        }
    }
    out
}
