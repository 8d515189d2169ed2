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

/// A change-table slot and the word it held, as an answer carries them (see
/// `crate::changes`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Witness {
    pub slot: u64,
    pub word: u64,
}

/// A short `Read`'s answer words (`aux[0]`, `aux[1]`): where the file ended was seen under
/// this witness ([`crate::READ_EOF`]).
#[derive(Debug)]
pub struct ReadEnd;

impl ReadEnd {
    pub fn encode(w: Witness, aux: &mut [u64; 4]) {
        aux[0] = w.word;
        aux[1] = crate::READ_EOF | (w.slot << 32);
    }

    pub fn decode(aux: &[u64; 4]) -> Option<Witness> {
        (aux[1] & crate::READ_EOF != 0).then(|| Witness { slot: aux[1] >> 32, word: aux[0] })
    }
}

/// An `OpenPath` answer's words for the file's bytes ([`crate::OPEN_PREFETCHED`] in the low
/// half of `aux[2]`, beside `OPEN_PASSED`; the file's witness in its high half and `aux[3]`).
#[derive(Debug)]
pub struct Prefetched;

impl Prefetched {
    pub fn encode(file: Witness, aux: &mut [u64; 4]) {
        aux[2] |= crate::OPEN_PREFETCHED | (file.slot << 32);
        aux[3] = file.word;
    }

    pub fn decode(aux: &[u64; 4]) -> Option<Witness> {
        (aux[2] & crate::OPEN_PREFETCHED != 0).then(|| Witness { slot: aux[2] >> 32, word: aux[3] })
    }
}

/// An `OpenPath` answer's words for a lower file passed read-only ([`crate::OPEN_WATCHED`]
/// beside `OPEN_PASSED` in the low half of `aux[2]`; the file's witness in its high half and
/// `aux[3]`, as [`Prefetched`] carries it).
#[derive(Debug)]
pub struct Passed;

impl Passed {
    pub fn encode(file: Witness, aux: &mut [u64; 4]) {
        aux[2] = (aux[2] & 0xffff_ffff) | crate::OPEN_WATCHED | (file.slot << 32);
        aux[3] = file.word;
    }

    pub fn decode(aux: &[u64; 4]) -> Option<Witness> {
        (aux[2] & (crate::OPEN_PASSED | crate::OPEN_WATCHED) == crate::OPEN_PASSED | crate::OPEN_WATCHED).then(|| Witness { slot: aux[2] >> 32, word: aux[3] })
    }
}

/// A `StatPath` answer's words for attributes the client may keep
/// ([`crate::STAT_LEARNED`]): the names' witness (word in `aux[1]`, slot in bits 16..40 of
/// `aux[2]`) and the file's (slot in bits 40.. of `aux[2]`, word in `aux[3]`).
#[derive(Debug)]
pub struct StatLearned;

impl StatLearned {
    pub fn encode(names: Witness, file: Witness, aux: &mut [u64; 4]) {
        aux[1] = names.word;
        aux[2] = crate::STAT_LEARNED | ((names.slot & 0xff_ffff) << 16) | (file.slot << 40);
        aux[3] = file.word;
    }

    /// The names' and the file's witnesses.
    pub fn decode(aux: &[u64; 4]) -> Option<(Witness, Witness)> {
        (aux[2] & crate::STAT_LEARNED != 0).then(|| (Witness { slot: (aux[2] >> 16) & 0xff_ffff, word: aux[1] }, Witness { slot: aux[2] >> 40, word: aux[3] }))
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
        let (names, file) = (Witness { slot: 8191, word: u64::MAX - 1 }, Witness { slot: 4097, word: 42 });
        let mut aux = [7, 0, 0, 0];
        ReadEnd::encode(file, &mut aux);
        assert_eq!(ReadEnd::decode(&aux), Some(file));
        let mut aux = [5, 6, crate::OPEN_PASSED, 0];
        assert_eq!(Prefetched::decode(&aux), None);
        Prefetched::encode(file, &mut aux);
        assert_eq!((Prefetched::decode(&aux), aux[2] & crate::OPEN_PASSED, aux[0], aux[1]), (Some(file), crate::OPEN_PASSED, 5, 6));
        let mut aux = [5, 6, crate::OPEN_PASSED, 0];
        assert_eq!(Passed::decode(&aux), None);
        Passed::encode(file, &mut aux);
        assert_eq!((Passed::decode(&aux), aux[2] & crate::OPEN_PASSED, aux[0], aux[1]), (Some(file), crate::OPEN_PASSED, 5, 6));
        // Without the descriptor, no watch.
        aux[2] &= !crate::OPEN_PASSED;
        assert_eq!(Passed::decode(&aux), None);
        let mut aux = [9, 0, 0, 0];
        assert_eq!(StatLearned::decode(&aux), None);
        StatLearned::encode(names, file, &mut aux);
        assert_eq!((StatLearned::decode(&aux), aux[0]), (Some((names, file)), 9));
    }
}
