//! The direct C API (`include/polytropon.h`, the papers' `danaus_*` functions): a C program
//! compiled with gcc against the header and the preload library does file I/O over shared
//! memory with a real back driver serving a union.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::Scratch;
use polytropon::service::shm::BackDriver;
use polytropon_ipc::segment::Geometry;

const PROGRAM: &str = include_str!("c/direct_api.c");

fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target").join(if cfg!(debug_assertions) { "debug" } else { "release" })
}

#[test]
fn a_c_program_uses_the_user_level_path() {
    let lib = target_dir().join("libpolytropon_preload.so");
    assert!(lib.exists(), "{} is missing: build the workspace first (`cargo build --workspace`, as scripts/test.sh does)", lib.display());
    let s = Scratch::new("c-api");
    let (lower, upper) = (s.mkdir("lower"), s.mkdir("upper"));
    std::fs::create_dir(lower.join("etc")).expect("mkdir");
    std::fs::write(lower.join("etc/motd"), b"from the image\n").expect("seed");
    let src = s.path().join("prog.c");
    std::fs::write(&src, PROGRAM).expect("write program");
    let exe = s.path().join("prog");
    let include = Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/preload/include");
    let cc = Command::new("gcc")
        .arg("-Wall")
        .arg("-Werror")
        .arg("-I")
        .arg(&include)
        .arg(&src)
        .arg("-o")
        .arg(&exe)
        .arg("-L")
        .arg(target_dir())
        .arg("-lpolytropon_preload")
        .output()
        .expect("run gcc");
    assert!(cc.status.success(), "gcc failed: {}", String::from_utf8_lossy(&cc.stderr));
    let driver = BackDriver::start(common::union(&lower, &upper), Geometry { queues: 1, slots: 64, clients: 8, buffer_size: 1 << 20 }, &common::channel_path()).expect("back driver");
    let out = Command::new(&exe)
        .arg("/mnt/tenant")
        .env("LD_LIBRARY_PATH", target_dir())
        .env("POLYTROPON_CHANNEL", driver.channel())
        .env("POLYTROPON_MOUNTS", "/mnt/other=7:/mnt/tenant=0")
        .output()
        .expect("run the program");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "program failed: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout, "read 15: from the image\nseek end 12\nreread world\nsize 12 mode 640\nok\n");
    assert_eq!(std::fs::read(upper.join("notes")).expect("written to the upper branch"), b"hello world\n");
    assert!(std::fs::symlink_metadata(upper.join("etc/motd")).is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_char_device(&m.file_type())), "unlink left a whiteout");
    assert_eq!(std::fs::read(lower.join("etc/motd")).expect("lower"), b"from the image\n");
}
