//! The bare cost of one user-level round trip: a client thread and a service thread on
//! different cpus exchange empty requests over a real SysV segment (the service pops and
//! completes at once). `cargo run --release --example ipc_roundtrip`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use polytropon_ipc::client::Client;
use polytropon_ipc::segment::{Geometry, Layout, Segment};
use polytropon_ipc::{Descriptor, Op};

fn pin(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET stays in bounds for cpu < 1024.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

fn main() {
    let g = Geometry { queues: 1, slots: 64, clients: 4, buffer_size: 1 << 20 };
    let layout = Layout::new(g).expect("layout");
    // SAFETY: plain SysV calls, results checked.
    let id = unsafe { libc::shmget(libc::IPC_PRIVATE, layout.total, libc::IPC_CREAT | 0o600) };
    assert!(id >= 0, "shmget");
    // SAFETY: `id` was just created.
    let addr = unsafe { libc::shmat(id, std::ptr::null(), 0) };
    assert_ne!(addr as isize, -1, "shmat");
    // SAFETY: page-aligned mapping of `layout.total` bytes, detached at the end.
    let seg = unsafe { Segment::new(addr as *mut u8, layout) };
    seg.init();
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    let service = std::thread::spawn(move || {
        pin(1);
        let q = seg.queue(0);
        while !s2.load(Ordering::Relaxed) {
            if let Some(d) = q.pop() {
                seg.complete(d.client, d.seq, 0, [0; 4]);
            } else {
                std::hint::spin_loop();
            }
        }
    });
    pin(0);
    let mut c = Client::attach(id, 0).expect("attach");
    let mut samples = Vec::new();
    for _ in 0..21 {
        let n = 20_000;
        let t = Instant::now();
        for _ in 0..n {
            c.call(Descriptor { op: Op::Getattr as u32, ..Descriptor::default() }, &[]).expect("call");
        }
        samples.push(t.elapsed().as_nanos() as f64 / n as f64);
    }
    samples.sort_by(f64::total_cmp);
    println!("round trip: median {:.0} ns, min {:.0} ns, max {:.0} ns", samples[10], samples[0], samples[20]);
    stop.store(true, Ordering::Relaxed);
    let _ = service.join();
    drop(c);
    // SAFETY: our own mapping and segment.
    unsafe {
        libc::shmdt(addr);
        libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut());
    }
}
