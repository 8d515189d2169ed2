//! The table of mounts a process started for a pool is given (`POLYTROPON_MOUNTS`): entries
//! `PATH=INSTANCE` joined by `:`. A mount point may hold any byte but NUL, `:` and `=`
//! included (`/srv/debian:12`): in a path, `%`, `:` and `=` are written `%25`, `%3A` and
//! `%3D`, so that the table splits at its own separators only.

/// Bytes written as `%XX` in a path of the table.
const ESCAPED: [u8; 3] = [b'%', b':', b'='];
const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Separator between the table's entries.
pub const ENTRIES: u8 = b':';
/// Separator between an entry's path and its instance.
pub const INSTANCE: u8 = b'=';

/// Calls `put` with each byte of `path` as the table holds it.
pub fn escape(path: &[u8], mut put: impl FnMut(u8)) {
    for &b in path {
        if ESCAPED.contains(&b) {
            put(b'%');
            put(HEX[usize::from(b >> 4)]);
            put(HEX[usize::from(b & 15)]);
        } else {
            put(b);
        }
    }
}

/// Calls `put` with each byte of the path `text` (as the table holds it) stands for; false
/// when an escape is cut short or not hexadecimal.
pub fn unescape(text: &[u8], mut put: impl FnMut(u8)) -> bool {
    let digit = |c: u8| char::from(c).to_digit(16).and_then(|d| u8::try_from(d).ok());
    let mut i = 0;
    while i < text.len() {
        if text[i] == b'%' {
            let (Some(&h), Some(&l)) = (text.get(i + 1), text.get(i + 2)) else { return false };
            let (Some(h), Some(l)) = (digit(h), digit(l)) else { return false };
            put(h << 4 | l);
            i += 3;
        } else {
            put(text[i]);
            i += 1;
        }
    }
    true
}

/// Splits one entry into its path (still escaped) and its instance number.
pub fn entry(text: &[u8]) -> Option<(&[u8], u32)> {
    let at = text.iter().rposition(|&b| b == INSTANCE)?;
    let digits = core::str::from_utf8(&text[at + 1..]).ok()?;
    Some((&text[..at], digits.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    #[test]
    fn paths_with_the_separators_go_through_whole() {
        for path in [&b"/mnt/plain"[..], b"/srv/debian:12", b"/a=b/c%d", b"/%3A", b"/\xff\xfe"] {
            let mut escaped = Vec::new();
            escape(path, |b| escaped.push(b));
            assert!(!escaped.contains(&ENTRIES) && !escaped.contains(&INSTANCE), "{escaped:?}");
            let mut back = Vec::new();
            assert!(unescape(&escaped, |b| back.push(b)));
            assert_eq!(back, path);
        }
        assert_eq!(entry(b"/srv/debian%3A12=3"), Some((&b"/srv/debian%3A12"[..], 3)));
        assert_eq!(entry(b"/x"), None);
        assert_eq!(entry(b"/x=y"), None);
        for bad in [&b"/x%"[..], b"/x%4", b"/x%zz"] {
            assert!(!unescape(bad, |_| {}), "{bad:?}");
        }
    }
}
