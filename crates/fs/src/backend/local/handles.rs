//! Kernel file handles (`name_to_handle_at`, `open_by_handle_at`): how the local backend lets
//! go of an object's `O_PATH` descriptor and finds the very same object again later.
//!
//! A file handle names an inode of one filesystem, not a path: re-opening it gives the object
//! the backend held (wherever it has moved since), or `ESTALE` once the object is gone. The
//! kernel allows `open_by_handle_at` only with `CAP_DAC_READ_SEARCH`, so handles are used only
//! when a probe at start shows that it works here; otherwise descriptors are never released.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// `MAX_HANDLE_SZ` of `<linux/exportfs.h>`: no filesystem's handle is longer.
const MAX_HANDLE_BYTES: usize = 128;

/// The fixed head of `struct file_handle`: `handle_bytes` and `handle_type`.
const HEAD: usize = std::mem::size_of::<libc::file_handle>();

/// One object's file handle: `struct file_handle` as the kernel wrote it.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct FileHandle(Box<[u8]>);

/// A `struct file_handle` with room for the longest handle, aligned as the kernel expects.
#[repr(C)]
struct RawHandle {
    head: libc::file_handle,
    bytes: [u8; MAX_HANDLE_BYTES],
}

impl RawHandle {
    fn empty() -> Self {
        RawHandle {
            head: libc::file_handle { handle_bytes: MAX_HANDLE_BYTES as u32, handle_type: 0, f_handle: [] },
            bytes: [0; MAX_HANDLE_BYTES],
        }
    }
}

/// The handle of the object `fd` holds, and the id of the mount it is on.
pub(super) fn handle_of(fd: BorrowedFd<'_>) -> io::Result<(FileHandle, i32)> {
    let mut raw = RawHandle::empty();
    let mut mount_id: libc::c_int = 0;
    // SAFETY: `raw` is a `file_handle` head followed by MAX_HANDLE_BYTES bytes, and its
    // `handle_bytes` says exactly that, so the kernel writes within it; the path is a valid
    // empty C string, `mount_id` a valid int, and `fd` stays open for the call.
    let rc = unsafe {
        libc::name_to_handle_at(
            fd.as_raw_fd(),
            c"".as_ptr(),
            std::ptr::addr_of_mut!(raw.head),
            &mut mount_id,
            libc::AT_EMPTY_PATH,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let len = (raw.head.handle_bytes as usize).min(MAX_HANDLE_BYTES);
    let mut bytes = Vec::with_capacity(HEAD + len);
    bytes.extend_from_slice(&raw.head.handle_bytes.to_ne_bytes());
    bytes.extend_from_slice(&raw.head.handle_type.to_ne_bytes());
    bytes.extend_from_slice(&raw.bytes[..len]);
    Ok((FileHandle(bytes.into_boxed_slice()), mount_id))
}

/// Opens the object named by `handle` on the filesystem of `mount` with `O_PATH`, without
/// following it if it is a symlink.
pub(super) fn open_path(mount: BorrowedFd<'_>, handle: &FileHandle) -> io::Result<OwnedFd> {
    open_with(mount, handle, libc::O_PATH)
}

/// Opens the object named by `handle` through `mount` (the open file is on that mount, with
/// its flags: a read-only mount makes a read-only file) with `flags`, without following a
/// symlink.
pub(super) fn open_with(mount: BorrowedFd<'_>, handle: &FileHandle, flags: libc::c_int) -> io::Result<OwnedFd> {
    let mut raw = RawHandle::empty();
    let b = &handle.0;
    if b.len() < HEAD || b.len() - HEAD > MAX_HANDLE_BYTES {
        return Err(io::Error::from_raw_os_error(libc::ESTALE));
    }
    let mut word = [0u8; 4];
    word.copy_from_slice(&b[0..4]);
    raw.head.handle_bytes = u32::from_ne_bytes(word);
    word.copy_from_slice(&b[4..8]);
    raw.head.handle_type = i32::from_ne_bytes(word);
    raw.bytes[..b.len() - HEAD].copy_from_slice(&b[HEAD..]);
    // SAFETY: `raw` holds the handle the kernel gave us, `handle_bytes` not above the room
    // that follows the head; `mount` stays open for the call.
    let fd = unsafe {
        libc::open_by_handle_at(
            mount.as_raw_fd(),
            std::ptr::addr_of_mut!(raw.head),
            flags | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a descriptor the kernel just opened for us and nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
