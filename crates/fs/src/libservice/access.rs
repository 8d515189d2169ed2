//! The kernel's permission rules for a caller the service serves without the kernel in
//! between (the user-level path; the FUSE path has the kernel check, `default_permissions`).
//! Pure functions of a caller's [`Creds`] and objects' [`Attr`]s, as `fs/namei.c`,
//! `fs/attr.c` and `fs/inode.c` decide. A caller in a user namespace of its own (a container
//! mapped onto its pool's id range) holds its capabilities over objects whose owner and group
//! are mapped in it only (`capable_wrt_inode_uidgid`), and none of the initial namespace's.

use std::io;

use super::{errno, Attr, FileKind};

/// Capability bits (`linux/capability.h`) the rules look at.
pub const CAP_CHOWN: u32 = 0;
pub const CAP_DAC_OVERRIDE: u32 = 1;
pub const CAP_DAC_READ_SEARCH: u32 = 2;
pub const CAP_FOWNER: u32 = 3;
pub const CAP_FSETID: u32 = 4;
pub const CAP_SYS_ADMIN: u32 = 21;
pub const CAP_SETFCAP: u32 = 31;

/// What a caller is, as the kernel says: filesystem ids, supplementary groups, effective
/// capabilities.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Creds {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    /// `CapEff` bits.
    pub caps: u64,
    /// The caller's user namespace when it is not the service's (the initial one).
    pub userns: Option<UserNs>,
}

/// One line of a user namespace's id map: `count` ids from `inside` are `outside`'s in the
/// namespace of whoever reads the map (the service's, here).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdRange {
    pub inside: u32,
    pub outside: u32,
    pub count: u32,
}

/// A user namespace's uid and gid maps, as `/proc/PID/uid_map` and `gid_map` show them to the
/// service.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserNs {
    pub uids: Vec<IdRange>,
    pub gids: Vec<IdRange>,
}

/// The id the kernel shows for one a namespace does not map (`/proc/sys/kernel/overflowuid`'s
/// default).
pub const OVERFLOW_ID: u32 = 65534;

fn to_inside(map: &[IdRange], id: u32) -> Option<u32> {
    map.iter().find(|r| id >= r.outside && id - r.outside < r.count).map(|r| r.inside + (id - r.outside))
}

fn to_outside(map: &[IdRange], id: u32) -> Option<u32> {
    map.iter().find(|r| id >= r.inside && id - r.inside < r.count).map(|r| r.outside + (id - r.inside))
}

impl UserNs {
    /// Parses a `uid_map` / `gid_map` text; `None` for the identity map of the initial
    /// namespace (`0 0 4294967295`) or a malformed one.
    pub fn parse_map(text: &str) -> Option<Vec<IdRange>> {
        let mut out = Vec::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let mut f = line.split_whitespace().map(|v| v.parse::<u32>().ok());
            let (Some(Some(inside)), Some(Some(outside)), Some(Some(count))) = (f.next(), f.next(), f.next()) else { return None };
            out.push(IdRange { inside, outside, count });
        }
        Some(out)
    }

    /// Whether `uids` and `gids` are the identity maps (the initial namespace, or one
    /// mapping everything onto itself).
    pub fn is_identity(uids: &[IdRange], gids: &[IdRange]) -> bool {
        let whole = [IdRange { inside: 0, outside: 0, count: u32::MAX }];
        uids == whole && gids == whole
    }

    /// A service-side uid as the caller sees it (unmapped: the overflow id).
    pub fn uid_inside(&self, uid: u32) -> u32 {
        to_inside(&self.uids, uid).unwrap_or(OVERFLOW_ID)
    }

    pub fn gid_inside(&self, gid: u32) -> u32 {
        to_inside(&self.gids, gid).unwrap_or(OVERFLOW_ID)
    }

    /// A uid the caller names, as the service's; `None` if its namespace does not map it.
    pub fn uid_outside(&self, uid: u32) -> Option<u32> {
        to_outside(&self.uids, uid)
    }

    pub fn gid_outside(&self, gid: u32) -> Option<u32> {
        to_outside(&self.gids, gid)
    }

    /// Whether both ids of an object are mapped in the namespace.
    pub fn maps(&self, uid: u32, gid: u32) -> bool {
        to_inside(&self.uids, uid).is_some() && to_inside(&self.gids, gid).is_some()
    }
}

/// Access bits asked for, as `access(2)`'s.
pub const MAY_READ: u32 = 4;
pub const MAY_WRITE: u32 = 2;
pub const MAY_EXEC: u32 = 1;

impl Creds {
    /// The capabilities that pass every rule here but the exec bits and the extended
    /// attribute namespaces (a root process's, or a container root's under runc's default
    /// set): nothing else needs checking.
    /// A caller in a user namespace of its own never passes them all: its capabilities
    /// count only on objects its namespace maps.
    pub fn all_caps(&self) -> bool {
        const FS_CAPS: u64 = 1 << CAP_CHOWN | 1 << CAP_DAC_OVERRIDE | 1 << CAP_FOWNER | 1 << CAP_FSETID;
        self.userns.is_none() && self.caps & FS_CAPS == FS_CAPS
    }

    /// `capable`: the capability in the initial user namespace.
    pub fn capable(&self, cap: u32) -> bool {
        self.userns.is_none() && self.caps & (1u64 << cap) != 0
    }

    /// `capable_wrt_inode_uidgid`: the capability, over an object whose owner and group the
    /// caller's namespace maps.
    pub fn capable_on(&self, cap: u32, a: &Attr) -> bool {
        self.caps & (1u64 << cap) != 0 && self.userns.as_ref().is_none_or(|ns| ns.maps(a.uid, a.gid))
    }

    pub fn in_group(&self, gid: u32) -> bool {
        self.gid == gid || self.groups.contains(&gid)
    }

    pub fn owns(&self, a: &Attr) -> bool {
        self.uid == a.uid
    }

    /// `inode_owner_or_capable`.
    pub fn owner_or_fowner(&self, a: &Attr) -> bool {
        self.owns(a) || self.capable_on(CAP_FOWNER, a)
    }

    /// `generic_permission`: `EACCES` unless `mask` (`MAY_*`) is allowed on `a`.
    pub fn permit(&self, a: &Attr, mask: u32) -> io::Result<()> {
        let mask = mask & 7;
        if mask == 0 {
            return Ok(());
        }
        let mode = a.mode;
        let bits = if self.owns(a) {
            (mode >> 6) & 7
        } else if self.in_group(a.gid) {
            (mode >> 3) & 7
        } else {
            mode & 7
        };
        if mask & !bits == 0 {
            return Ok(());
        }
        let dir = a.kind() == FileKind::Directory;
        // Read and search of directories, and read of anything: CAP_DAC_READ_SEARCH.
        if self.capable_on(CAP_DAC_READ_SEARCH, a) && mask & MAY_WRITE == 0 && (dir || mask & MAY_EXEC == 0) {
            return Ok(());
        }
        if self.capable_on(CAP_DAC_OVERRIDE, a) {
            // Execute of a non-directory needs some x bit even for the capable.
            if mask & MAY_EXEC != 0 && !dir && mode & 0o111 == 0 {
                return Err(errno(libc::EACCES));
            }
            return Ok(());
        }
        Err(errno(libc::EACCES))
    }

    /// Search permission on a directory on the way.
    pub fn search(&self, dir: &Attr) -> io::Result<()> {
        self.permit(dir, MAY_EXEC)
    }

    /// Adding or removing a name in `dir` (`may_create`, the directory half of `may_delete`).
    pub fn change_names(&self, dir: &Attr) -> io::Result<()> {
        self.permit(dir, MAY_WRITE | MAY_EXEC)
    }

    /// Removing (or renaming away, or replacing) `victim` from `dir`: write and search on the
    /// directory, and the sticky rule (`check_sticky`).
    pub fn remove(&self, dir: &Attr, victim: &Attr) -> io::Result<()> {
        self.change_names(dir)?;
        if dir.mode & libc::S_ISVTX != 0 && !self.owns(victim) && !self.owns(dir) && !self.capable_on(CAP_FOWNER, victim) {
            return Err(errno(libc::EPERM));
        }
        Ok(())
    }

    /// The mode and group of a new object made by this caller in `dir` with requested mode
    /// `mode` (type bits included), as `inode_init_owner` sets them: the group of a set-group-id
    /// directory (and, for a directory, its set-group-id bit), and no set-group-id bit on a
    /// file of a group the caller is not in, unless it may (`CAP_FSETID`).
    pub fn new_owner(&self, dir: &Attr, mode: u32) -> (u32, u32) {
        let mut mode = mode;
        let gid = if dir.mode & libc::S_ISGID != 0 {
            if mode & libc::S_IFMT == libc::S_IFDIR {
                mode |= libc::S_ISGID;
            } else if mode & libc::S_ISGID != 0 && mode & libc::S_IXGRP != 0 && !self.in_group(dir.gid) && !self.capable_on(CAP_FSETID, dir) {
                mode &= !libc::S_ISGID;
            }
            dir.gid
        } else {
            self.gid
        };
        (mode, gid)
    }

    /// `chmod` to `mode` (permission bits): owner or `CAP_FOWNER`; the set-group-id bit goes
    /// when the caller is not in the file's group and lacks `CAP_FSETID`. The mode to set.
    pub fn chmod(&self, a: &Attr, mode: u32) -> io::Result<u32> {
        if !self.owner_or_fowner(a) {
            return Err(errno(libc::EPERM));
        }
        let mut mode = mode & 0o7777;
        if mode & libc::S_ISGID != 0 && !self.in_group(a.gid) && !self.capable_on(CAP_FSETID, a) {
            mode &= !libc::S_ISGID;
        }
        Ok(mode)
    }

    /// `chown` to `uid`/`gid` (`None`: unchanged), as `chown_ok`/`chgrp_ok` allow: a new owner
    /// needs `CAP_CHOWN`; a new group needs the owner in that group, or `CAP_CHOWN`.
    pub fn chown(&self, a: &Attr, uid: Option<u32>, gid: Option<u32>) -> io::Result<()> {
        let uid_ok = uid.is_none_or(|u| u == a.uid && self.owns(a)) || self.capable_on(CAP_CHOWN, a);
        let gid_ok = gid.is_none_or(|g| self.owns(a) && (g == a.gid || self.in_group(g))) || self.capable_on(CAP_CHOWN, a);
        if uid_ok && gid_ok {
            Ok(())
        } else {
            Err(errno(libc::EPERM))
        }
    }

    /// Setting times: to now (`now`) needs owner, write permission, or `CAP_FOWNER`; to
    /// given times, owner or `CAP_FOWNER`.
    pub fn set_times(&self, a: &Attr, now: bool) -> io::Result<()> {
        if self.owner_or_fowner(a) {
            return Ok(());
        }
        if now {
            return self.permit(a, MAY_WRITE);
        }
        Err(errno(libc::EPERM))
    }

    /// Whether writing to (or truncating) `a` must first clear its set-user-id bit and its
    /// set-group-id bit when group-executable (`file_remove_privs`): the mode to set, if any.
    pub fn kill_privs(&self, a: &Attr) -> Option<u32> {
        if self.capable(CAP_FSETID) {
            return None;
        }
        privs_killed(a, |gid| self.in_group(gid))
    }

    /// `O_NOATIME` on an open: owner or `CAP_FOWNER`.
    pub fn noatime(&self, a: &Attr) -> io::Result<()> {
        if self.owner_or_fowner(a) {
            Ok(())
        } else {
            Err(errno(libc::EPERM))
        }
    }

    /// Setting or removing extended attribute `name` on `a` (`xattr_permission`).
    pub fn xattr_write(&self, a: &Attr, name: &[u8]) -> io::Result<()> {
        if self.xattr_privileged(name)? {
            return Ok(());
        }
        if name.starts_with(b"user.") {
            match a.kind() {
                FileKind::Regular | FileKind::Directory => {}
                _ => return Err(errno(libc::EPERM)),
            }
            if a.kind() == FileKind::Directory && a.mode & libc::S_ISVTX != 0 && !self.owner_or_fowner(a) {
                return Err(errno(libc::EPERM));
            }
        }
        self.permit(a, MAY_WRITE)
    }

    /// What setting or removing `name` needs beyond the file's permissions, by the kernel's
    /// rules (`xattr_permission`, the capability module's `cap_inode_setxattr` and
    /// `cap_convert_nscap`): `CAP_SYS_ADMIN` for the trusted and security namespaces, but
    /// `CAP_SETFCAP` for file capabilities, each of the initial namespace (a file capability
    /// written for a caller of another namespace would be written as given, for the whole host:
    /// the kernel converts those, so such callers go through it). `Ok(true)` for a name of those
    /// namespaces that the caller may change, `Ok(false)` for any other name.
    pub fn xattr_privileged(&self, name: &[u8]) -> io::Result<bool> {
        let allowed = if name == b"security.capability" {
            self.capable(CAP_SETFCAP)
        } else if name.starts_with(b"trusted.") || name.starts_with(b"security.") {
            self.capable(CAP_SYS_ADMIN)
        } else {
            return Ok(false);
        };
        if allowed {
            Ok(true)
        } else {
            Err(errno(libc::EPERM))
        }
    }

    /// Reading extended attribute `name` of `a`.
    pub fn xattr_read(&self, a: &Attr, name: &[u8]) -> io::Result<()> {
        if name.starts_with(b"trusted.") {
            // Not an error: the attribute is just not visible.
            return if self.capable(CAP_SYS_ADMIN) { Ok(()) } else { Err(errno(libc::ENODATA)) };
        }
        if name.starts_with(b"user.") && !matches!(a.kind(), FileKind::Regular | FileKind::Directory) {
            return Err(errno(libc::ENODATA));
        }
        if name.starts_with(b"security.") {
            return Ok(());
        }
        self.permit(a, MAY_READ)
    }

    /// A hard link to `a` under `fs.protected_hardlinks` (`may_linkat`): owner, or read and
    /// write permission on a regular file that is not set-user-id nor executable
    /// set-group-id, or `CAP_FOWNER`.
    pub fn link(&self, a: &Attr, protected: bool) -> io::Result<()> {
        if !protected || self.owner_or_fowner(a) {
            return Ok(());
        }
        let safe = a.kind() == FileKind::Regular && a.mode & libc::S_ISUID == 0 && !(a.mode & libc::S_ISGID != 0 && a.mode & libc::S_IXGRP != 0);
        if safe && self.permit(a, MAY_READ | MAY_WRITE).is_ok() {
            return Ok(());
        }
        Err(errno(libc::EPERM))
    }
}

/// The mode regular file `a` keeps once written or truncated by a caller without
/// `CAP_FSETID`, if that clears anything (the kernel's `setattr_should_drop_suidgid`): without
/// its set-user-id bit, and without its set-group-id bit when group-executable or when the
/// caller is not in the file's group (`in_group`, asked only then).
pub fn privs_killed(a: &Attr, in_group: impl FnOnce(u32) -> bool) -> Option<u32> {
    if a.kind() != FileKind::Regular {
        return None;
    }
    let mut kill = 0;
    if a.mode & libc::S_ISUID != 0 {
        kill |= libc::S_ISUID;
    }
    if a.mode & libc::S_ISGID != 0 && (a.mode & libc::S_IXGRP != 0 || !in_group(a.gid)) {
        kill |= libc::S_ISGID;
    }
    (kill != 0).then_some(a.mode & 0o7777 & !kill)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(mode: u32, uid: u32, gid: u32) -> Attr {
        let t = crate::libservice::Timespec::default();
        Attr { ino: 1, dev: 1, mode, nlink: 1, uid, gid, rdev: 0, size: 0, blksize: 4096, blocks: 0, atime: t, mtime: t, ctime: t }
    }

    fn user(uid: u32, gid: u32, groups: &[u32]) -> Creds {
        Creds { uid, gid, groups: groups.to_vec(), caps: 0, userns: None }
    }

    fn root() -> Creds {
        Creds { caps: u64::MAX, ..Creds::default() }
    }

    const FILE: u32 = libc::S_IFREG;
    const DIR: u32 = libc::S_IFDIR;

    #[test]
    fn owner_group_and_other_bits_and_supplementary_groups() {
        let f = attr(FILE | 0o640, 10, 20);
        assert!(user(10, 1, &[]).permit(&f, MAY_READ | MAY_WRITE).is_ok());
        assert!(user(11, 20, &[]).permit(&f, MAY_READ).is_ok());
        assert!(user(11, 20, &[]).permit(&f, MAY_WRITE).is_err());
        assert!(user(11, 1, &[20]).permit(&f, MAY_READ).is_ok(), "a supplementary group counts");
        assert!(user(11, 1, &[]).permit(&f, MAY_READ).is_err());
        // The owner class decides for the owner even when the group's bits would allow.
        assert!(user(10, 20, &[]).permit(&attr(FILE | 0o070, 10, 20), MAY_READ).is_err());
    }

    #[test]
    fn root_passes_everything_but_exec_of_a_file_without_x_bits() {
        assert!(root().permit(&attr(FILE, 1, 1), MAY_READ | MAY_WRITE).is_ok());
        assert!(root().permit(&attr(FILE | 0o600, 1, 1), MAY_EXEC).is_err());
        assert!(root().permit(&attr(FILE | 0o001, 1, 1), MAY_EXEC).is_ok());
        assert!(root().permit(&attr(DIR, 1, 1), MAY_EXEC).is_ok());
        let no_caps = Creds::default();
        assert!(no_caps.permit(&attr(FILE | 0o600, 1, 1), MAY_READ).is_err(), "root without capabilities is an ordinary user");
    }

    #[test]
    fn sticky_directories_keep_others_names() {
        let d = attr(DIR | 0o1777, 1, 1);
        let f = attr(FILE | 0o666, 2, 2);
        assert_eq!(user(3, 3, &[]).remove(&d, &f).map_err(|e| e.raw_os_error()), Err(Some(libc::EPERM)));
        assert!(user(2, 3, &[]).remove(&d, &f).is_ok(), "the file's owner");
        assert!(user(1, 3, &[]).remove(&d, &f).is_ok(), "the directory's owner");
        assert!(root().remove(&d, &f).is_ok());
    }

    #[test]
    fn setgid_directories_pass_their_group_on() {
        let d = attr(DIR | 0o2775, 1, 50);
        assert_eq!(user(3, 3, &[]).new_owner(&d, FILE | 0o644), (FILE | 0o644, 50));
        assert_eq!(user(3, 3, &[]).new_owner(&d, DIR | 0o755), (DIR | 0o2755, 50));
        assert_eq!(user(3, 3, &[]).new_owner(&d, FILE | 0o2755), (FILE | 0o755, 50), "not in the group: no set-group-id file");
        assert_eq!(user(3, 3, &[]).new_owner(&attr(DIR | 0o777, 1, 50), FILE | 0o644), (FILE | 0o644, 3));
    }

    #[test]
    fn chmod_chown_and_times() {
        let f = attr(FILE | 0o644, 5, 6);
        assert!(user(7, 7, &[]).chmod(&f, 0o600).is_err());
        assert_eq!(user(5, 7, &[]).chmod(&f, 0o2755).expect("owner"), 0o755, "not in the group: the set-group-id bit goes");
        assert_eq!(user(5, 6, &[]).chmod(&f, 0o2755).expect("owner"), 0o2755);
        assert!(user(5, 6, &[]).chown(&f, Some(9), None).is_err(), "giving a file away needs CAP_CHOWN");
        assert!(user(5, 6, &[8]).chown(&f, None, Some(8)).is_ok(), "to a group of one's own");
        assert!(user(5, 6, &[]).chown(&f, None, Some(8)).is_err());
        assert!(user(5, 6, &[]).chown(&f, Some(5), Some(6)).is_ok(), "no change is allowed to the owner");
        assert!(user(7, 6, &[]).chown(&f, Some(5), None).is_err(), "but not to others");
        assert!(root().chown(&f, Some(9), Some(9)).is_ok());
        assert!(user(7, 7, &[]).set_times(&attr(FILE | 0o666, 5, 6), true).is_ok(), "writers may touch to now");
        assert!(user(7, 7, &[]).set_times(&attr(FILE | 0o666, 5, 6), false).is_err());
    }

    #[test]
    fn writes_clear_set_id_bits_unless_capable() {
        let f = attr(FILE | 0o6755, 5, 6);
        assert_eq!(user(5, 6, &[]).kill_privs(&f), Some(0o755));
        assert_eq!(user(5, 6, &[]).kill_privs(&attr(FILE | 0o2644, 5, 6)), None, "set-group-id without group exec, written by a member of the group, is kept");
        assert_eq!(user(5, 7, &[]).kill_privs(&attr(FILE | 0o2644, 5, 6)), Some(0o644), "the same written by another (Linux 6.x)");
        assert_eq!(user(5, 7, &[6]).kill_privs(&attr(FILE | 0o2644, 5, 6)), None, "a supplementary group is membership");
        assert_eq!(root().kill_privs(&f), None);
    }

    #[test]
    fn xattr_namespaces() {
        let f = attr(FILE | 0o666, 5, 6);
        assert!(user(7, 7, &[]).xattr_write(&f, b"trusted.x").is_err());
        assert!(root().xattr_write(&f, b"trusted.x").is_ok());
        // The security namespace: CAP_SYS_ADMIN, file capabilities CAP_SETFCAP; owning the
        // file is not enough.
        assert!(user(5, 6, &[]).xattr_write(&f, b"security.ima").is_err());
        let no_admin = Creds { caps: !(1 << CAP_SYS_ADMIN), ..root() };
        assert!(no_admin.xattr_write(&f, b"security.ima").is_err() && no_admin.xattr_write(&f, b"security.capability").is_ok());
        let no_setfcap = Creds { caps: !(1 << CAP_SETFCAP), ..root() };
        assert!(no_setfcap.xattr_write(&f, b"security.ima").is_ok() && no_setfcap.xattr_write(&f, b"security.capability").is_err());
        assert!(user(7, 7, &[]).xattr_write(&f, b"user.x").is_ok(), "write permission is enough");
        assert!(user(7, 7, &[]).xattr_write(&attr(libc::S_IFLNK | 0o777, 5, 6), b"user.x").is_err());
        assert!(user(7, 7, &[]).xattr_write(&attr(FILE | 0o644, 5, 6), b"user.x").is_err());
    }

    /// A container root in a user namespace mapped `0 1000000 65536`.
    fn container_root() -> Creds {
        let map = vec![IdRange { inside: 0, outside: 1_000_000, count: 65536 }];
        Creds { uid: 1_000_000, gid: 1_000_000, groups: vec![], caps: u64::MAX, userns: Some(UserNs { uids: map.clone(), gids: map }) }
    }

    #[test]
    fn capabilities_in_a_user_namespace_count_over_mapped_objects_only() {
        let c = container_root();
        assert!(!c.all_caps(), "never the unchecked path");
        let mapped = attr(FILE | 0o600, 1_000_005, 1_000_005);
        let host = attr(FILE | 0o644, 0, 0);
        assert!(c.permit(&mapped, MAY_READ | MAY_WRITE).is_ok(), "DAC_OVERRIDE over a mapped file");
        assert!(c.permit(&host, MAY_WRITE).is_err(), "not over the host's root's file");
        assert!(c.permit(&host, MAY_READ).is_ok(), "its other bits still apply");
        assert!(c.chown(&mapped, Some(1_000_007), None).is_ok());
        assert!(c.chown(&host, Some(1_000_007), None).is_err());
        assert!(c.chmod(&host, 0o777).is_err() && c.chmod(&mapped, 0o777).is_ok());
        assert!(c.xattr_write(&mapped, b"trusted.x").is_err(), "trusted.* needs the initial namespace's CAP_SYS_ADMIN");
        assert_eq!(c.kill_privs(&attr(FILE | 0o4755, 1_000_000, 1_000_000)), Some(0o755), "CAP_FSETID of the initial namespace only");
        let ns = c.userns.as_ref().expect("userns");
        assert_eq!((ns.uid_inside(1_000_042), ns.uid_inside(0), ns.uid_outside(42), ns.uid_outside(70000)), (42, OVERFLOW_ID, Some(1_000_042), None));
        assert_eq!(UserNs::parse_map("         0          0 4294967295\n"), Some(vec![IdRange { inside: 0, outside: 0, count: u32::MAX }]));
        assert!(UserNs::parse_map("0 x 1").is_none());
    }
}
