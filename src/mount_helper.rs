//! The mount(8) and umount(8) helpers' command lines: what `mount -t polytropon` (or a line
//! of `/etc/fstab`) passes to `mount.polytropon`, translated into a `polytropon mount`
//! command line. Option names follow overlayfs's (`lowerdir=` topmost first, `upperdir=`,
//! `workdir=`) plus polytropon's own (`pool=`, `cache=`, ...).

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

/// The names the binary answers to besides `polytropon` (`install-links` creates them).
pub const MOUNT_NAMES: [&str; 2] = ["mount.polytropon", "mount.fuse.polytropon"];
/// umount(8) runs `umount.<type>` for a mount of type `fuse.polytropon`.
pub const UMOUNT_NAMES: [&str; 1] = ["umount.fuse.polytropon"];

/// Which helper a program name asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Helper {
    Mount,
    Umount,
}

impl Helper {
    /// The helper named by `argv0` (its last path component), if any.
    pub fn for_name(argv0: &OsStr) -> Option<Helper> {
        let name = std::path::Path::new(argv0).file_name()?.to_str()?;
        if MOUNT_NAMES.contains(&name) {
            Some(Helper::Mount)
        } else if UMOUNT_NAMES.contains(&name) {
            Some(Helper::Umount)
        } else {
            None
        }
    }
}

/// A helper's command line that cannot be followed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HelperError {
    #[error("usage: {0}")]
    Usage(&'static str),
    #[error("unknown option {0:?} (mount.polytropon takes overlayfs's lowerdir=, upperdir=, workdir= and pool=, cache=, cache_size=, backend=, ceph_conf=, ceph_id=, ceph_fs=, timeout=, nopassthrough, userpassthrough, nobusypassthrough, nolearn, spec=; see polytropon-mount(8))")]
    UnknownOption(String),
    #[error("option {0:?} needs a value ({0}=...)")]
    NoValue(String),
    #[error("option {0:?} is not supported: {1}")]
    Unsupported(String, &'static str),
    #[error("flag {0} is not supported by this helper")]
    Flag(String),
    #[error("no branches: give upperdir= (and lowerdir=), or spec=FILE")]
    NoBranches,
    #[error("options lowerdir/upperdir and spec= exclude each other")]
    SpecAndBranches,
}

const MOUNT_USAGE: &str = "mount.polytropon SOURCE DIR [-sfnv] [-o OPTIONS] [-t TYPE]";
const UMOUNT_USAGE: &str = "umount.fuse.polytropon DIR [-nlfvr] [-t TYPE]";

/// Per-mount flags applied by remounting the mount point after it is up.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MountFlags {
    pub nosuid: bool,
    pub nodev: bool,
    pub noexec: bool,
}

impl MountFlags {
    pub fn any(&self) -> bool {
        self.nosuid || self.nodev || self.noexec
    }
}

/// What `mount.polytropon` was asked to do.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MountCall {
    /// Arguments of `polytropon` (`mount DIR ...`).
    pub args: Vec<OsString>,
    pub mountpoint: PathBuf,
    pub flags: MountFlags,
    /// `-v`: say what is run.
    pub verbose: bool,
    /// `-f`: check everything, mount nothing.
    pub fake: bool,
    /// Options ignored under `-s` (sloppy).
    pub ignored: Vec<String>,
}

/// What `umount.fuse.polytropon` was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UmountCall {
    pub mountpoint: PathBuf,
    pub verbose: bool,
}

/// Splits a helper's command line (without its name) into positional arguments, single-letter
/// flags, `-o` option strings; `-t` and `-N` take a value.
fn split(args: &[OsString], usage: &'static str, flags_ok: &str) -> Result<(Vec<OsString>, String, Vec<u8>), HelperError> {
    let (mut positional, mut flags, mut options) = (Vec::new(), String::new(), Vec::new());
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let b = a.as_bytes();
        if b.len() < 2 || b[0] != b'-' {
            positional.push(a.clone());
            continue;
        }
        let letters = &b[1..];
        for (i, &c) in letters.iter().enumerate() {
            match c {
                b'o' | b't' | b'N' => {
                    // The value is the rest of this word or the next word.
                    let rest = &letters[i + 1..];
                    let value = if rest.is_empty() { it.next().ok_or(HelperError::Usage(usage))?.as_bytes().to_vec() } else { rest.to_vec() };
                    match c {
                        b'o' => {
                            if !options.is_empty() {
                                options.push(b',');
                            }
                            options.extend_from_slice(&value);
                        }
                        b'N' => return Err(HelperError::Flag("-N (mount namespace)".into())),
                        _ => {} // -t: the type is ours by construction.
                    }
                    break;
                }
                c if flags_ok.as_bytes().contains(&c) => flags.push(c as char),
                c => return Err(HelperError::Flag(format!("-{}", c as char))),
            }
        }
    }
    Ok((positional, flags, options))
}

/// Splits `lowerdir=`'s value at unescaped colons (overlayfs escapes a colon in a path as `\:`).
fn lower_dirs(v: &[u8]) -> Vec<PathBuf> {
    let (mut out, mut cur) = (Vec::new(), Vec::new());
    let mut bytes = v.iter().copied();
    while let Some(c) = bytes.next() {
        match c {
            b'\\' => cur.extend(bytes.next()),
            b':' => out.push(PathBuf::from(OsString::from_vec(std::mem::take(&mut cur)))),
            c => cur.push(c),
        }
    }
    out.push(PathBuf::from(OsString::from_vec(cur)));
    out.retain(|p| !p.as_os_str().is_empty());
    out
}

/// Splits an option string at commas not escaped by a backslash.
fn options(v: &[u8]) -> Vec<Vec<u8>> {
    let (mut out, mut cur) = (Vec::new(), Vec::new());
    let mut bytes = v.iter().copied();
    while let Some(c) = bytes.next() {
        match c {
            b'\\' => {
                cur.push(c);
                cur.extend(bytes.next());
            }
            b',' => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out.retain(|o| !o.is_empty());
    out
}

/// An option's value without the backslashes that escape its next byte.
fn unescape(v: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len());
    let mut bytes = v.iter().copied();
    while let Some(c) = bytes.next() {
        match c {
            b'\\' => out.extend(bytes.next()),
            c => out.push(c),
        }
    }
    out
}

/// Translates `mount.polytropon SOURCE DIR [flags] -o OPTIONS`.
pub fn mount_call(args: &[OsString]) -> Result<MountCall, HelperError> {
    let (positional, flags, opts) = split(args, MOUNT_USAGE, "sfnvirw")?;
    let [source, dir] = <[OsString; 2]>::try_from(positional).map_err(|_| HelperError::Usage(MOUNT_USAGE))?;
    let sloppy = flags.contains('s');
    // `-r` is `-o ro`, refused as it is (mount(8) passes it on rather than folding it in).
    if flags.contains('r') {
        return Err(HelperError::Unsupported("ro".into(), "the user-level path would still write; mount read-write and bind-mount it read-only"));
    }
    let mut call = MountCall { mountpoint: PathBuf::from(&dir), verbose: flags.contains('v'), fake: flags.contains('f'), ..MountCall::default() };
    let mut rest: Vec<OsString> = Vec::new();
    let (mut lowers, mut upper, mut spec) = (Vec::new(), None, None);
    let mut pool = false;
    for o in options(&opts) {
        let (key, value) = match o.iter().position(|&c| c == b'=') {
            Some(i) => (String::from_utf8_lossy(&o[..i]).into_owned(), Some(o[i + 1..].to_vec())),
            None => (String::from_utf8_lossy(&o).into_owned(), None),
        };
        // `lowerdir=` unescapes its own (`\:` there keeps a colon); every other value loses the
        // backslashes that kept its commas (and backslashes) in.
        let (raw, value) = (value.clone(), value.map(|v| unescape(&v)));
        let need = |v: Option<Vec<u8>>| v.filter(|v| !v.is_empty()).map(OsString::from_vec).ok_or_else(|| HelperError::NoValue(key.clone()));
        let flag = |name: &str| -> OsString { OsString::from(format!("--{name}")) };
        match key.as_str() {
            "lowerdir" => lowers.extend(lower_dirs(&need(raw)?.into_vec())),
            "upperdir" => upper = Some(need(value)?),
            // Kept for overlayfs's syntax: polytropon's copy-up needs no work directory.
            "workdir" => drop(need(value)?),
            "spec" => spec = Some(need(value)?),
            "pool" => {
                pool = true;
                rest.extend([flag("pool"), need(value)?]);
            }
            "cache" | "cache_size" | "backend" | "ceph_conf" | "ceph_id" | "ceph_fs" | "timeout" => rest.extend([flag(&key.replace('_', "-")), need(value)?]),
            "nopassthrough" => rest.push(flag("no-passthrough")),
            "userpassthrough" => rest.push(flag("user-passthrough")),
            "nobusypassthrough" => rest.push(flag("no-busy-passthrough")),
            "nolearn" => rest.push(flag("no-learn")),
            "nosuid" => call.flags.nosuid = true,
            "nodev" => call.flags.nodev = true,
            "noexec" => call.flags.noexec = true,
            "ro" => return Err(HelperError::Unsupported(key, "the user-level path would still write; mount read-write and bind-mount it read-only")),
            // What every mount is, or what mount(8) itself acts on.
            "rw" | "defaults" | "suid" | "dev" | "exec" | "auto" | "noauto" | "nofail" | "_netdev" | "user" | "nouser" | "users" | "owner" | "group" | "comment" => {}
            k if k.starts_with("x-") => {}
            _ if sloppy => call.ignored.push(key),
            _ => return Err(HelperError::UnknownOption(key)),
        }
    }
    // A source naming an instance spec file is the same as spec=.
    if spec.is_none() && lowers.is_empty() && upper.is_none() && std::path::Path::new(&source).is_file() {
        spec = Some(source);
    }
    let mut out: Vec<OsString> = vec!["mount".into(), dir];
    match (spec, upper) {
        (Some(_), Some(_)) => return Err(HelperError::SpecAndBranches),
        (Some(_), None) if !lowers.is_empty() => return Err(HelperError::SpecAndBranches),
        (Some(f), None) => out.extend(["-f".into(), f]),
        (None, Some(u)) => {
            out.extend(["--upper".into(), u]);
            for l in lowers {
                out.extend(["--lower".into(), l.into_os_string()]);
            }
        }
        (None, None) => return Err(HelperError::NoBranches),
    }
    out.extend(rest);
    // mount(8) returns once the filesystem is mounted: the daemon detaches (a pool's service
    // serves it otherwise).
    if !pool {
        out.push("--detach".into());
    }
    call.args = out;
    Ok(call)
}

/// Translates `umount.fuse.polytropon DIR [flags]`.
pub fn umount_call(args: &[OsString]) -> Result<UmountCall, HelperError> {
    let (positional, flags, _) = split(args, UMOUNT_USAGE, "nlfvrid")?;
    let [dir] = <[OsString; 1]>::try_from(positional).map_err(|_| HelperError::Usage(UMOUNT_USAGE))?;
    Ok(UmountCall { mountpoint: PathBuf::from(dir), verbose: flags.contains('v') })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(line: &str) -> Result<MountCall, HelperError> {
        mount_call(&line.split(' ').map(OsString::from).collect::<Vec<_>>())
    }

    fn args(c: &MountCall) -> String {
        c.args.iter().map(|a| a.to_string_lossy().into_owned()).collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn overlayfs_options_become_branches_topmost_first() {
        let c = call("none /mnt -o lowerdir=/a:/b\\:c:/d,upperdir=/u,workdir=/w").expect("parsed");
        assert_eq!(args(&c), "mount /mnt --upper /u --lower /a --lower /b:c --lower /d --detach");
        let c = call("none /mnt -n -o upperdir=/u,pool=tenant,cache=writeback,cache_size=64M,nosuid,nodev,x-systemd.automount,defaults").expect("parsed");
        assert_eq!(args(&c), "mount /mnt --upper /u --pool tenant --cache writeback --cache-size 64M");
        assert_eq!(c.flags, MountFlags { nosuid: true, nodev: true, noexec: false });
        let c = call("none /mnt -vf -oupperdir=/u -o nopassthrough,timeout=2").expect("two -o");
        assert!(c.verbose && c.fake);
        assert_eq!(args(&c), "mount /mnt --upper /u --no-passthrough --timeout 2 --detach");
        // An escaped comma or backslash belongs to the value, without its escape.
        let c = call("none /mnt -o lowerdir=/a\\,b:/c\\\\d,upperdir=/u\\,v\\\\w,pool=p").expect("escapes");
        assert_eq!(args(&c), "mount /mnt --upper /u,v\\w --lower /a,b --lower /c\\d --pool p");
    }

    #[test]
    fn bad_command_lines_name_the_problem() {
        assert_eq!(call("none /mnt -o upperdir=/u,colour=blue"), Err(HelperError::UnknownOption("colour".into())));
        assert_eq!(call("none /mnt -s -o upperdir=/u,colour=blue").expect("sloppy").ignored, vec!["colour".to_string()]);
        assert_eq!(call("none /mnt -o upperdir="), Err(HelperError::NoValue("upperdir".into())));
        assert_eq!(call("none /mnt -o lowerdir=/a"), Err(HelperError::NoBranches));
        assert_eq!(call("none /mnt -o upperdir=/u,spec=/s.yaml"), Err(HelperError::SpecAndBranches));
        assert!(matches!(call("none /mnt -o upperdir=/u,ro"), Err(HelperError::Unsupported(o, _)) if o == "ro"));
        assert!(matches!(call("none /mnt -r -o upperdir=/u"), Err(HelperError::Unsupported(o, _)) if o == "ro"), "-r is -o ro");
        assert_eq!(call("/mnt -o upperdir=/u"), Err(HelperError::Usage(MOUNT_USAGE)));
        assert_eq!(call("none /mnt -o"), Err(HelperError::Usage(MOUNT_USAGE)));
        assert!(matches!(call("none /mnt -N 1 -o upperdir=/u"), Err(HelperError::Flag(_))));
        assert!(matches!(call("none /mnt -x"), Err(HelperError::Flag(f)) if f == "-x"));
    }

    #[test]
    fn helpers_answer_to_their_names_only() {
        assert_eq!(Helper::for_name(OsStr::new("/sbin/mount.polytropon")), Some(Helper::Mount));
        assert_eq!(Helper::for_name(OsStr::new("mount.fuse.polytropon")), Some(Helper::Mount));
        assert_eq!(Helper::for_name(OsStr::new("/usr/sbin/umount.fuse.polytropon")), Some(Helper::Umount));
        assert_eq!(Helper::for_name(OsStr::new("polytropon")), None);
        let u = umount_call(&["/mnt".into(), "-v".into(), "-t".into(), "fuse.polytropon".into()]).expect("umount");
        assert_eq!(u, UmountCall { mountpoint: "/mnt".into(), verbose: true });
    }
}
