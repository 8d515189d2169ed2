//! The front driver: a small `cdylib` preloaded into container processes.
//!
//! Under `LD_PRELOAD` it intercepts libc's file calls ([`intercept`]) and serves those on the
//! pool's mounts over the shared-memory queues of the pool's service, with no kernel crossing
//! for the data and metadata calls it covers; everything else, and whatever only the kernel
//! can do, goes to the real libc and so through the FUSE mount of the same instance. It also
//! offers a direct API (`include/polytropon.h`: `polytropon_open`, `polytropon_read`, ...) for
//! programs that can be recompiled. No panic crosses the FFI boundary.

mod api;
mod cbuf;
mod client;
mod config;
mod files;
mod intercept;
mod listing;
mod locks;
mod namespace;
mod outcome;
mod ops;
mod opens;
mod path;
mod real;
mod streams;

/// Protocol version this library speaks (see the `polytropon-ipc` crate).
#[no_mangle]
pub static POLYTROPON_PRELOAD_PROTOCOL: u32 = polytropon_ipc::PROTOCOL_VERSION;

/// Runs when the dynamic loader maps the library, before the program's own code: registers
/// the fork handlers (one `pthread_atfork` call) and, in a process started for a pool, opens
/// its connection to the service without waiting for the answer (see
/// `client::connect_early`). Everything else waits for the first call that needs it.
///
/// glibc calls it with the program's `argc`, `argv` and `envp`, as every `.init_array`
/// function.
#[used]
#[link_section = ".init_array"]
static AT_LOAD: extern "C" fn(std::ffi::c_int, *const *const std::ffi::c_char, *const *const std::ffi::c_char) = at_load;

/// Most arguments looked at for a path under a mount.
const ARGS_SEEN: usize = 64;

extern "C" fn at_load(argc: std::ffi::c_int, argv: *const *const std::ffi::c_char, _envp: *const *const std::ffi::c_char) {
    intercept::process::register_fork_handlers();
    if let Some(_busy) = config::Busy::enter() {
        let count = if argv.is_null() { 0 } else { usize::try_from(argc).unwrap_or(0).min(ARGS_SEEN) };
        let args = (1..count).filter_map(|i| {
            // SAFETY: glibc passes the program's argument vector, `argc` valid pointers to
            // NUL-terminated strings (checked against null all the same); `i < argc`.
            let p = unsafe { *argv.add(i) };
            // SAFETY: as above: a NUL-terminated string that lives as long as the process.
            (!p.is_null()).then(|| unsafe { std::ffi::CStr::from_ptr(p) }.to_bytes())
        });
        client::connect_early(args);
    }
}

#[cfg(test)]
mod layering {
    //! The library's modules form layers: no module reaches, through `crate::` paths, a
    //! module that reaches it back (the file table does not call the operations that use it,
    //! the client does not call the hooks...).

    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;

    /// The top-level modules `text` names through `crate::` paths.
    fn uses(text: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let mut rest = text;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                // `crate::{a, b::c, d::{e, f}}`: the first name of each item.
                let (mut depth, mut item_start) = (0usize, true);
                for (i, c) in group.char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => {
                            rest = &group[i..];
                            break;
                        }
                        '}' => depth -= 1,
                        ',' if depth == 0 => item_start = true,
                        c if item_start && (c.is_ascii_alphabetic() || c == '_') => {
                            let name: String = group[i..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                            out.insert(name);
                            item_start = false;
                        }
                        _ => {}
                    }
                }
            } else {
                let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                out.insert(name);
            }
        }
        out
    }

    /// Module name -> the modules it uses; `intercept/*.rs` count as `intercept`.
    fn graph() -> BTreeMap<String, BTreeSet<String>> {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (dir, module) in [(src.clone(), None), (src.join("intercept"), Some("intercept"))] {
            for entry in std::fs::read_dir(&dir).expect("read src") {
                let path = entry.expect("entry").path();
                if path.extension().and_then(|e| e.to_str()) != Some("rs") {
                    continue;
                }
                let stem = path.file_stem().and_then(|s| s.to_str()).expect("name").to_string();
                let name = module.map_or(stem, str::to_string);
                if name == "lib" {
                    continue;
                }
                let text = std::fs::read_to_string(&path).expect("read module");
                let mut used = uses(&text);
                used.remove(&name);
                used.retain(|u| u != "self");
                g.entry(name).or_default().extend(used);
            }
        }
        g
    }

    /// A cycle through `from`, if any (depth-first search).
    fn cycle(g: &BTreeMap<String, BTreeSet<String>>, from: &str, path: &mut Vec<String>) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|m| m == from) {
            let mut c = path[at..].to_vec();
            c.push(from.to_string());
            return Some(c);
        }
        path.push(from.to_string());
        for next in g.get(from).into_iter().flatten() {
            if let Some(c) = cycle(g, next, path) {
                return Some(c);
            }
        }
        path.pop();
        None
    }

    #[test]
    fn the_parser_sees_plain_and_grouped_imports() {
        let u = uses("use crate::{files::{self, File}, ops};\nlet x = crate::path::resolve();\nuse crate::real::Stat;");
        assert_eq!(u, ["files", "ops", "path", "real"].map(String::from).into_iter().collect());
    }

    #[test]
    fn no_two_modules_import_each_other_in_a_circle() {
        let g = graph();
        assert!(g.contains_key("files") && g.contains_key("intercept") && g["ops"].contains("client"), "the graph misses modules: {g:?}");
        for m in g.keys() {
            assert_eq!(cycle(&g, m, &mut Vec::new()), None, "modules import each other in a circle");
        }
    }
}
