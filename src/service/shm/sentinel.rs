//! The service's liveness word in its segment, kept by a robust futex.
//!
//! A sentinel thread writes its thread id into the segment header's `service` word and
//! registers the word on its robust-futex list (`set_robust_list(2)`). However the process
//! ends — kill -9, a crash, an abort — the kernel walks that list as the thread exits and
//! sets `FUTEX_OWNER_DIED` in the word, which clients check while they wait
//! (`Segment::service_gone`). A clean stop sets the word to 0 itself.
//!
//! The thread owns no other robust futex, so replacing glibc's list head for it loses
//! nothing; the head is restored before the thread ends.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

/// `struct robust_list` of the kernel's ABI.
#[repr(C)]
struct RobustList {
    next: *mut RobustList,
}

/// `struct robust_list_head` of the kernel's ABI.
#[repr(C)]
struct RobustListHead {
    list: RobustList,
    futex_offset: libc::c_long,
    list_op_pending: *mut RobustList,
}

/// A running sentinel; the word goes to 0 (stopped) when dropped.
pub struct Sentinel {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Sentinel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sentinel").finish_non_exhaustive()
    }
}

/// Address of the liveness word, sendable to the sentinel thread.
#[derive(Clone, Copy)]
struct Word(usize);

impl Word {
    fn get(&self) -> &AtomicU32 {
        // SAFETY: the address of the header's `service` word of a segment the back driver
        // keeps attached until after the sentinel has stopped (`BackDriver::drop`).
        unsafe { &*(self.0 as *const AtomicU32) }
    }
}

impl Sentinel {
    /// Starts the sentinel of `word` and returns once the word holds its thread id.
    ///
    /// The word must stay mapped until the returned `Sentinel` is dropped.
    pub fn start(word: &AtomicU32) -> std::io::Result<Sentinel> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let w = Word(word as *const AtomicU32 as usize);
        let theirs = stop.clone();
        let thread = std::thread::Builder::new().name("ptn-sentinel".into()).spawn(move || watch(w, &theirs, &ready_tx))?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Sentinel { stop, thread: Some(thread) }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => Err(std::io::Error::other("the sentinel thread ended before it started")),
        }
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let (lock, cv) = &*self.stop;
        *lock.lock().unwrap_or_else(|p| p.into_inner()) = true;
        cv.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn watch(w: Word, stop: &(Mutex<bool>, Condvar), ready: &std::sync::mpsc::Sender<std::io::Result<()>>) {
    // SAFETY: gettid cannot fail.
    let tid = unsafe { libc::gettid() } as u32;
    let word = w.get();
    let mut head = Box::new(RobustListHead { list: RobustList { next: std::ptr::null_mut() }, futex_offset: 0, list_op_pending: std::ptr::null_mut() });
    // One entry: the list head itself points at the entry, the entry back at the head (the
    // kernel's end marker); the futex word is found at `entry + futex_offset`.
    let mut entry = Box::new(RobustList { next: &mut head.list });
    head.list.next = &mut *entry;
    head.futex_offset = (w.0 as libc::c_long).wrapping_sub(&*entry as *const RobustList as libc::c_long);
    let mut old_head: *mut RobustListHead = std::ptr::null_mut();
    let mut old_len: libc::size_t = 0;
    // SAFETY: get_robust_list(0, ...) reads the calling thread's registration into two
    // valid out-parameters.
    if unsafe { libc::syscall(libc::SYS_get_robust_list, 0, &mut old_head, &mut old_len) } != 0 {
        // Nothing to give back: an empty registration (a null head is allowed).
        (old_head, old_len) = (std::ptr::null_mut(), std::mem::size_of::<RobustListHead>());
    }
    // SAFETY: `head` and `entry` are heap blocks that outlive the registration: it is
    // replaced before they are freed at the end of this function.
    let set = unsafe { libc::syscall(libc::SYS_set_robust_list, &mut *head as *mut RobustListHead, std::mem::size_of::<RobustListHead>()) };
    if set != 0 {
        let _ = ready.send(Err(std::io::Error::last_os_error()));
        return;
    }
    // Registered first, so that from the moment the word names this thread, its death is
    // recorded in it.
    word.store(tid, Ordering::Release);
    let _ = ready.send(Ok(()));
    let (lock, cv) = stop;
    let mut stopped = lock.lock().unwrap_or_else(|p| p.into_inner());
    while !*stopped {
        stopped = cv.wait(stopped).unwrap_or_else(|p| p.into_inner());
    }
    drop(stopped);
    // A clean stop: clients see 0 ("not serving") rather than a dead owner.
    word.store(0, Ordering::Release);
    // SAFETY: giving glibc's own registration back (or none).
    unsafe { libc::syscall(libc::SYS_set_robust_list, old_head, old_len) };
    drop(entry);
    drop(head);
}
