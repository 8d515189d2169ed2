//! The service's descriptors stay bounded however many objects a tenant makes the kernel
//! remember (issue 21, item 4). A test binary of its own: it loads both cpus for a minute,
//! and would starve whatever test ran beside it.

mod common;

use common::host::Host;

#[test]
/// One tenant creates and stats 100,000 files through the kernel side of its mount (so the
/// kernel remembers every one), while another mount of the same pool keeps writing, reading
/// and removing files: the other never gets an error, and the service's descriptors (shown in
/// `inspect`) stay bounded however many objects the kernel remembers (issue 21, item 4).
fn a_hundred_thousand_remembered_files_leave_the_service_bounded_and_the_neighbour_working() {
    let files: usize = std::env::var("POLYTROPON_MANY_FILES").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let mut h = Host::new("manyfiles");
    let pool = h.create("p", &["--cpus", "0-1"]);
    h.ok(&["service", "run", "--pool", &pool, "--detach"]);
    let (upper_a, mnt_a) = (h.scratch.mkdir("a-upper"), h.scratch.mkdir("a-mnt"));
    let (upper_b, mnt_b) = (h.scratch.mkdir("b-upper"), h.scratch.mkdir("b-mnt"));
    for (upper, mnt) in [(&upper_a, &mnt_a), (&upper_b, &mnt_b)] {
        h.ok(&["mount", "--pool", &pool, &mnt.display().to_string(), "--upper", &upper.display().to_string()]);
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let neighbour = {
        let (stop, dir) = (stop.clone(), mnt_b.clone());
        std::thread::spawn(move || -> Result<u64, String> {
            let mut rounds = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let f = dir.join(format!("n{}", rounds % 50));
                let body = format!("round {rounds}");
                std::fs::write(&f, &body).map_err(|e| format!("write {}: {e}", f.display()))?;
                let back = std::fs::read_to_string(&f).map_err(|e| format!("read {}: {e}", f.display()))?;
                if back != body {
                    return Err(format!("{} holds {back:?}, not {body:?}", f.display()));
                }
                if rounds.is_multiple_of(3) {
                    std::fs::remove_file(&f).map_err(|e| format!("unlink {}: {e}", f.display()))?;
                }
                rounds += 1;
            }
            Ok(rounds)
        })
    };
    let mut most = 0u64;
    for i in 0..files {
        let dir = mnt_a.join(format!("d{}", i / 1000));
        if i % 1000 == 0 {
            std::fs::create_dir(&dir).expect("mkdir");
        }
        std::fs::write(dir.join(format!("f{i}")), b"x").expect("create");
        if i % 20_000 == 19_999 {
            let open = h.inspect(&pool)["service"]["descriptors"]["open"].as_u64().expect("descriptors in inspect");
            most = most.max(open);
        }
    }
    for i in 0..files {
        let m = std::fs::metadata(mnt_a.join(format!("d{}/f{i}", i / 1000))).expect("stat");
        assert_eq!(m.len(), 1);
    }
    let json = h.inspect(&pool);
    let open = json["service"]["descriptors"]["open"].as_u64().expect("descriptors in inspect");
    most = most.max(open);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let rounds = neighbour.join().expect("neighbour thread").expect("the neighbour mount failed");
    eprintln!("most descriptors {most}, neighbour rounds {rounds}");
    assert!(rounds > 10, "the neighbour did almost nothing ({rounds} rounds)");
    // Two local backends of 8,192 each (DEFAULT_HELD_DESCRIPTORS) plus the service's own.
    let bound = 2 * polytropon::backend::local::DEFAULT_HELD_DESCRIPTORS as u64 + 2_000;
    if files >= 50_000 {
        assert!(most <= bound, "the service held {most} descriptors for {files} remembered files (bound {bound}): {json}");
    }
    assert_eq!(std::fs::read_dir(&upper_a).expect("upper").count(), files.div_ceil(1000));
    for mnt in [&mnt_a, &mnt_b] {
        h.ok(&["umount", &mnt.display().to_string()]);
    }
}
