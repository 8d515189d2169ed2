//! The cost of one user-level round trip: a client on one cpu sends `Getattr` of the root to
//! a back driver (its worker pinned to another cpu) serving a plain local directory, through
//! the real channel socket, private area and shared queue. `cargo run --release --example
//! ipc_roundtrip`.

use std::sync::Arc;
use std::time::Instant;

use polytropon::backend::local::{LocalFs, LocalOptions};
use polytropon::libservice::FileSystem;
use polytropon::service::shm::{BackDriver, UserInstance};
use polytropon_ipc::client::Client;
use polytropon_ipc::segment::Geometry;
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
    let dir = std::env::temp_dir().join(format!("ptn-roundtrip-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch directory");
    let fs: Arc<dyn FileSystem> = Arc::new(LocalFs::new(&dir, LocalOptions::default()).expect("local directory"));
    let table = Arc::new(std::sync::RwLock::new(vec![Some(UserInstance { fs, stats: Arc::default(), kernel: None, device: None, passthrough: false, changes: None, lower: None, upper: None })]));
    let g = Geometry { queues: 1, slots: 64, clients: 4, buffer_size: 1 << 20 };
    let driver = BackDriver::start_table(table, g, &[1], None, &dir.with_extension("sock")).expect("back driver");
    let path = std::ffi::CString::new(driver.channel().as_os_str().as_encoded_bytes()).expect("socket path");
    pin(0);
    let mut c = Client::connect(&path, 0).expect("connect");
    let mut samples = Vec::new();
    for _ in 0..21 {
        let n = 20_000;
        let t = Instant::now();
        for _ in 0..n {
            c.call(Descriptor { op: Op::Getattr as u32, inode: 1, ..Descriptor::default() }, &[]).expect("call");
        }
        samples.push(t.elapsed().as_nanos() as f64 / n as f64);
    }
    samples.sort_by(f64::total_cmp);
    println!("round trip: median {:.0} ns, min {:.0} ns, max {:.0} ns", samples[10], samples[0], samples[20]);
    drop(c);
    drop(driver);
    let _ = std::fs::remove_dir_all(&dir);
}
