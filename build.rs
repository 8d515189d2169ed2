//! Builds the preload library (`crates/preload`) so that the `polytropon` binary carries it:
//! the binary is the whole product (issue 26). The library is a `cdylib` of this workspace,
//! which a build script cannot depend on as an artefact on stable cargo, so it is built here
//! by a nested cargo into a target directory of its own (same cargo, same profile), and its
//! bytes are included by `src/frontend.rs` (`POLYTROPON_PRELOAD_SO`), with their SHA-256
//! (`POLYTROPON_PRELOAD_SHA256`) naming the place the binary writes them at run time.

use std::env;
use std::path::PathBuf;
use std::process::Command;

use sha2::{Digest, Sha256};

const LIBRARY: &str = "libpolytropon_preload.so";

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let root = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    for watched in ["crates/preload", "crates/ipc", "Cargo.lock", "build.rs"] {
        println!("cargo:rerun-if-changed={watched}");
    }
    // `release` for the release and profiling profiles (optimised code), `debug` otherwise.
    let release = env::var("PROFILE").is_ok_and(|p| p == "release");
    let target_dir = out.join("preload-target");
    let mut cargo = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cargo
        .args(["build", "--locked", "--lib", "-p", "polytropon-preload", "--manifest-path"])
        .arg(root.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir);
    if release {
        cargo.arg("--release");
    }
    // The library is loaded into every program of a tenant: none of the flags or wrappers of
    // the outer build (clippy, sanitizers of a fuzz build, coverage) belong in it.
    for var in ["CARGO_ENCODED_RUSTFLAGS", "RUSTFLAGS", "CARGO_BUILD_RUSTFLAGS", "RUSTC_WRAPPER", "RUSTC_WORKSPACE_WRAPPER", "CARGO_TARGET_DIR", "CARGO_BUILD_TARGET_DIR"] {
        cargo.env_remove(var);
    }
    // Neither the binary nor the library needs libgcc_s.so.1 (issue 26: glibc only): the
    // unwinder comes from gcc's static libgcc_eh.a, which `-lgcc_s` finds first here.
    if let Some(dir) = static_unwinder(&out) {
        println!("cargo:rustc-link-search=native={}", dir.display());
        cargo.env("CARGO_ENCODED_RUSTFLAGS", format!("-L\x1fnative={}", dir.display()));
    }
    let status = cargo.status().expect("running cargo for the preload library");
    assert!(status.success(), "building the preload library failed ({status})");
    let built = target_dir.join(if release { "release" } else { "debug" }).join(LIBRARY);
    let bytes = std::fs::read(&built).unwrap_or_else(|e| panic!("reading {}: {e}", built.display()));
    let copy = out.join(LIBRARY);
    std::fs::write(&copy, &bytes).unwrap_or_else(|e| panic!("writing {}: {e}", copy.display()));
    let digest: String = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
    println!("cargo:rustc-env=POLYTROPON_PRELOAD_SO={}", copy.display());
    println!("cargo:rustc-env=POLYTROPON_PRELOAD_SHA256={digest}");
}

/// A directory holding `libgcc_s.a`, a link to the C compiler's `libgcc_eh.a`; `None` (and
/// the usual dynamic libgcc_s) where there is no such archive.
fn static_unwinder(out: &std::path::Path) -> Option<PathBuf> {
    let cc = env::var_os("CC").unwrap_or_else(|| "cc".into());
    let found = Command::new(cc).arg("-print-file-name=libgcc_eh.a").output().ok()?;
    let eh = PathBuf::from(String::from_utf8(found.stdout).ok()?.trim());
    if !eh.is_absolute() || !eh.is_file() {
        return None;
    }
    let dir = out.join("static-unwinder");
    std::fs::create_dir_all(&dir).ok()?;
    let link = dir.join("libgcc_s.a");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&eh, &link).ok()?;
    Some(dir)
}
