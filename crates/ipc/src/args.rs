//! The one encoding of the fields packed into a descriptor's words (its `arg`, a client
//! area's owner word), used by the library and the service alike: no other code shifts or
//! masks an op's fields, so the two ends cannot disagree on which half holds what.

/// `lo` in the low half of a word, `hi` in the high half.
const fn pack(lo: u32, hi: u32) -> u64 {
    lo as u64 | (hi as u64) << 32
}

/// The halves of a word, low first.
const fn unpack(w: u64) -> (u32, u32) {
    (w as u32, (w >> 32) as u32)
}

/// `OpenPath`'s `arg`: the `open` flags, and the mode of a file it creates (the caller's
/// umask already applied).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenArg {
    pub flags: i32,
    pub mode: u32,
}

impl OpenArg {
    pub const fn encode(self) -> u64 {
        pack(self.flags as u32, self.mode)
    }

    pub const fn decode(w: u64) -> Self {
        let (flags, mode) = unpack(w);
        OpenArg { flags: flags as i32, mode }
    }
}

/// `Mkdir`'s `arg`: the mode asked for and the caller's umask (the service applies it, as the
/// kernel does, unless a default ACL says otherwise).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MkdirArg {
    pub mode: u32,
    pub umask: u32,
}

impl MkdirArg {
    pub const fn encode(self) -> u64 {
        pack(self.mode & 0o7777, self.umask & 0o777)
    }

    /// Permission bits only: anything else a client put there is dropped.
    pub const fn decode(w: u64) -> Self {
        let (mode, umask) = unpack(w);
        MkdirArg { mode: mode & 0o7777, umask: umask & 0o777 }
    }
}

/// `Access`'s `arg`: the `access` mode (`F_OK`, `R_OK`...) and the `AT_*` flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccessArg {
    pub mode: i32,
    pub flags: i32,
}

impl AccessArg {
    pub const fn encode(self) -> u64 {
        pack(self.mode as u32, self.flags as u32)
    }

    pub const fn decode(w: u64) -> Self {
        let (mode, flags) = unpack(w);
        AccessArg { mode: mode as i32, flags: flags as i32 }
    }
}

/// A client area's owner word: the owner's pid namespace (the low 32 bits of its inode; 0
/// when unknown) and its pid in that namespace. 0 as a whole: the area is free.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owner {
    pub ns: u32,
    pub pid: u32,
}

impl Owner {
    pub const fn encode(self) -> u64 {
        pack(self.pid, self.ns)
    }

    pub const fn decode(w: u64) -> Self {
        let (pid, ns) = unpack(w);
        Owner { ns, pid }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_arg_comes_back_as_it_went() {
        let open = OpenArg { flags: libc::O_CREAT | libc::O_EXCL | libc::O_RDWR | libc::O_CLOEXEC, mode: 0o644 };
        assert_eq!(OpenArg::decode(open.encode()), open);
        let negative = OpenArg { flags: -1, mode: u32::MAX };
        assert_eq!(OpenArg::decode(negative.encode()), negative);
        let mkdir = MkdirArg { mode: 0o1777, umask: 0o022 };
        assert_eq!(MkdirArg::decode(mkdir.encode()), mkdir);
        assert_eq!(MkdirArg::decode(u64::MAX), MkdirArg { mode: 0o7777, umask: 0o777 });
        let access = AccessArg { mode: libc::R_OK | libc::W_OK, flags: libc::AT_SYMLINK_NOFOLLOW | libc::AT_EACCESS };
        assert_eq!(AccessArg::decode(access.encode()), access);
        let owner = Owner { ns: 0xdead_beef, pid: 4_194_303 };
        assert_eq!(Owner::decode(owner.encode()), owner);
        // The owner word of the original layout: namespace above the pid.
        assert_eq!(Owner { ns: 1, pid: 2 }.encode(), (1 << 32) | 2);
    }
}
