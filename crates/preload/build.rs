//! Names the library by its file name (`DT_SONAME`): a program linked against its direct API
//! (`-lpolytropon_preload`) then gets the copy `LD_PRELOAD` already loaded, found by that name
//! without a search, so nobody needs `LD_LIBRARY_PATH` (which would make every program's
//! every library search the library's directory first).
fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libpolytropon_preload.so");
}
