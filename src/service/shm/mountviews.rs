//! Which mounts a connecting process sees, kept per mount namespace: reading a process's
//! `/proc/PID/mountinfo` costs tens of µs (the kernel formats every mount), and every short
//! process of a container or of the host would pay it at attach. A namespace's table is read
//! once, through a `mountinfo` file kept open, and read again only when the kernel says the
//! namespace's mounts changed (the file polls `POLLPRI` after any mount or unmount in it).

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek};
use std::os::fd::AsFd;

/// Namespaces remembered at most (the cache starts over beyond).
const NAMESPACES: usize = 64;

/// The device numbers of the mounts of each namespace seen, by the namespace's identity.
#[derive(Default)]
pub struct MountViews {
    by_ns: HashMap<(u64, u64), View>,
}

struct View {
    /// `mountinfo` of a process of the namespace, opened when the namespace was first seen:
    /// the open file keeps the namespace, whatever becomes of the process.
    file: File,
    devices: Vec<u64>,
}

impl MountViews {
    /// The sorted device numbers of the mounts process `pid` sees. The caller checks that
    /// `pid` is still the process it means after this (its pidfd), as for any `/proc` read.
    pub fn devices(&mut self, pid: u32) -> io::Result<Vec<u64>> {
        let ns = rustix::fs::stat(format!("/proc/{pid}/ns/mnt")).map_err(io::Error::from)?;
        let id = (ns.st_dev, ns.st_ino);
        if let Some(v) = self.by_ns.get_mut(&id) {
            if changed(&v.file)? {
                v.devices = read_devices(&mut v.file)?;
            }
            return Ok(v.devices.clone());
        }
        let mut file = File::open(format!("/proc/{pid}/mountinfo"))?;
        let devices = read_devices(&mut file)?;
        if self.by_ns.len() >= NAMESPACES {
            self.by_ns.clear();
        }
        self.by_ns.insert(id, View { file, devices: devices.clone() });
        Ok(devices)
    }
}

/// Whether the namespace's mounts changed since `file` was opened or last polled.
fn changed(file: &File) -> io::Result<bool> {
    let mut fds = [nix::poll::PollFd::new(file.as_fd(), nix::poll::PollFlags::POLLPRI)];
    let n = nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO).map_err(io::Error::from)?;
    Ok(n > 0 && fds[0].revents().is_some_and(|r| r.intersects(nix::poll::PollFlags::POLLPRI | nix::poll::PollFlags::POLLERR)))
}

fn read_devices(file: &mut File) -> io::Result<Vec<u64>> {
    file.rewind()?;
    let mut text = String::with_capacity(8192);
    file.read_to_string(&mut text)?;
    Ok(super::channels::mount_devices(&text))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A mount made in the namespace after it was first read is seen at the next look, and
    /// one taken away is gone from it (needs root: mounts a tmpfs in a private namespace).
    #[test]
    fn a_namespace_is_read_again_after_its_mounts_change() {
        // SAFETY: getuid has no preconditions.
        if unsafe { libc::getuid() } != 0 {
            eprintln!("skipped: needs root");
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().to_path_buf();
        // In a thread of its own, unshared from the test's other threads' namespace.
        let seen = std::thread::spawn(move || {
            use nix::mount::{mount, umount, MsFlags};
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).expect("unshare");
            mount(None::<&str>, "/", None::<&str>, MsFlags::MS_PRIVATE | MsFlags::MS_REC, None::<&str>).expect("private");
            // SAFETY: gettid has no preconditions.
            let tid = unsafe { libc::gettid() } as u32;
            let mut views = MountViews::default();
            let before = views.devices(tid).expect("first read");
            mount(Some("none"), &path, Some("tmpfs"), MsFlags::empty(), None::<&str>).expect("mount tmpfs");
            let dev = rustix::fs::stat(&path).expect("stat").st_dev;
            let with = views.devices(tid).expect("second read");
            umount(&path).expect("umount");
            let after = views.devices(tid).expect("third read");
            (before.contains(&dev), with.contains(&dev), after.contains(&dev))
        })
        .join()
        .expect("the namespace thread");
        assert_eq!(seen, (false, true, false));
    }
}
