//! The direct C API (`include/polytropon.h`, the papers' `danaus_*` functions): a C program
//! compiled with gcc against the header and the preload library does file I/O over shared
//! memory with a real back driver serving a union.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use common::Scratch;
use polytropon::backend::local::{LocalFs, LocalOptions};
use polytropon::libservice::FileSystem;
use polytropon::service::shm::BackDriver;
use polytropon::union::UnionFs;
use polytropon_ipc::segment::Geometry;

const PROGRAM: &str = r#"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "polytropon.h"

int main(int argc, char **argv) {
    char path[4096], buf[64];
    snprintf(path, sizeof path, "%s/etc/motd", argv[1]);
    int fd = polytropon_open(path, O_RDONLY, 0);
    if (fd < 0) { perror("open motd"); return 1; }
    ssize_t n = polytropon_read(fd, buf, sizeof buf - 1);
    buf[n > 0 ? n : 0] = 0;
    printf("read %zd: %s", n, buf);
    polytropon_close(fd);

    snprintf(path, sizeof path, "%s/notes", argv[1]);
    fd = polytropon_open(path, O_CREAT | O_EXCL | O_RDWR, 0640);
    if (fd < 0) { perror("create"); return 1; }
    if (fd <= 2) { fprintf(stderr, "fd %d collides with stdio\n", fd); return 1; }
    polytropon_write(fd, "hello ", 6);
    polytropon_write(fd, "world\n", 6);
    printf("seek end %ld\n", (long)polytropon_lseek(fd, 0, SEEK_END));
    polytropon_lseek(fd, 6, SEEK_SET);
    n = polytropon_read(fd, buf, 5);
    buf[n] = 0;
    printf("reread %s\n", buf);
    polytropon_fsync(fd);
    polytropon_close(fd);

    struct stat st;
    if (polytropon_stat(path, &st) != 0) { perror("stat"); return 1; }
    printf("size %ld mode %o\n", (long)st.st_size, st.st_mode & 07777);
    if (polytropon_open(path, O_CREAT | O_EXCL | O_RDWR, 0600) >= 0 || errno != EEXIST) { printf("no EEXIST\n"); return 1; }
    if (polytropon_open("/not/under/a/mount", O_RDONLY, 0) >= 0 || errno != EXDEV) { printf("no EXDEV\n"); return 1; }
    if (polytropon_read(12345, buf, 1) >= 0 || errno != EBADF) { printf("no EBADF\n"); return 1; }
    snprintf(path, sizeof path, "%s/etc/motd", argv[1]);
    if (polytropon_unlink(path) != 0) { perror("unlink"); return 1; }
    if (polytropon_stat(path, &st) == 0 || errno != ENOENT) { printf("still there\n"); return 1; }
    printf("ok\n");
    return 0;
}
"#;

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
    let include = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib_preload/include");
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
    let l: Arc<dyn FileSystem> = Arc::new(LocalFs::new(&lower, LocalOptions { read_only: true }).expect("lower"));
    let u: Arc<dyn FileSystem> = Arc::new(LocalFs::new(&upper, LocalOptions::default()).expect("upper"));
    let union: Arc<dyn FileSystem> = Arc::new(UnionFs::new(Some(u), vec![l]).expect("union"));
    let driver = BackDriver::start(union, Geometry { queues: 1, slots: 64, clients: 8, buffer_size: 1 << 20 }).expect("back driver");
    let out = Command::new(&exe)
        .arg("/mnt/tenant")
        .env("LD_LIBRARY_PATH", target_dir())
        .env("POLYTROPON_SHMID", driver.shmid().to_string())
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
