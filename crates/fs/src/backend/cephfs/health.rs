//! Cluster health for `inspect`: the monitors' `health` command through librados, loaded at
//! run time (`librados.so.2`) for the same reason as libcephfs (see `ffi`): the binary must
//! run where Ceph is absent. ceph-rust, the design's choice for librados, links the library
//! at build time, which would break that rule; the handful of calls needed are bound here.

use std::ffi::{c_char, c_int, c_void, CString};
use std::path::Path;

use libloading::Library;
use serde::Serialize;

/// The library's file name (Debian package `librados2`).
pub const LIBRARY: &str = "librados.so.2";

type Rados = *mut c_void;

/// A cluster's health, as its monitors report it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Health {
    /// `HEALTH_OK`, `HEALTH_WARN` or `HEALTH_ERR`.
    pub status: String,
    /// Each failing check: its code and summary.
    pub checks: Vec<(String, String)>,
}

/// Reads the monitors' JSON answer to `health`.
pub fn parse(json: &[u8]) -> Result<Health, String> {
    let v: serde_json::Value = serde_json::from_slice(json).map_err(|e| format!("the monitors' answer is not JSON: {e}"))?;
    let status = v["status"].as_str().ok_or("the monitors' answer has no status")?.to_string();
    let checks = v["checks"]
        .as_object()
        .map(|m| m.iter().map(|(code, c)| (code.clone(), c["summary"]["message"].as_str().unwrap_or("").to_string())).collect())
        .unwrap_or_default();
    Ok(Health { status, checks })
}

/// Asks the cluster of `conf` (as `client.ID`) for its health, waiting at most `timeout_s`
/// seconds for the monitors.
pub fn health(conf: &Path, id: &str, timeout_s: u32) -> Result<Health, String> {
    let c = |s: &str| CString::new(s).map_err(|_| format!("{s:?} contains a NUL byte"));
    let (conf_c, id_c) = (c(&conf.to_string_lossy())?, c(id)?);
    // SAFETY: loading librados runs its initialisers, which set up its own state only.
    let lib = unsafe { Library::new(LIBRARY) }.map_err(|e| format!("cluster health needs {LIBRARY} (Debian package librados2): {e}"))?;
    macro_rules! sym {
        ($name:literal, $ty:ty) => {
            // SAFETY: `$ty` is the C prototype of `$name` in librados.h (Ceph 16); the
            // pointer is used only while `lib` is held (this function).
            unsafe { lib.get::<$ty>(concat!($name, "\0").as_bytes()) }.map(|s| *s).map_err(|e| format!("{LIBRARY}: {e}"))?
        };
    }
    let create = sym!("rados_create", unsafe extern "C" fn(*mut Rados, *const c_char) -> c_int);
    let conf_read_file = sym!("rados_conf_read_file", unsafe extern "C" fn(Rados, *const c_char) -> c_int);
    let conf_set = sym!("rados_conf_set", unsafe extern "C" fn(Rados, *const c_char, *const c_char) -> c_int);
    let connect = sym!("rados_connect", unsafe extern "C" fn(Rados) -> c_int);
    type MonCommand = unsafe extern "C" fn(Rados, *const *const c_char, usize, *const c_char, usize, *mut *mut c_char, *mut usize, *mut *mut c_char, *mut usize) -> c_int;
    let mon_command = sym!("rados_mon_command", MonCommand);
    let buffer_free = sym!("rados_buffer_free", unsafe extern "C" fn(*mut c_char));
    let shutdown = sym!("rados_shutdown", unsafe extern "C" fn(Rados));
    let fail = |what: &str, r: c_int| format!("{what}: {}", std::io::Error::from_raw_os_error(-r));
    let mut cluster: Rados = std::ptr::null_mut();
    // SAFETY: rados_create fills `cluster` on success; `id_c` is NUL-terminated.
    let r = unsafe { create(&mut cluster, id_c.as_ptr()) };
    if r < 0 {
        return Err(fail("rados_create", r));
    }
    let result = (|| {
        // SAFETY: `cluster` is a live handle until `shutdown` below; strings are NUL-terminated.
        let r = unsafe { conf_read_file(cluster, conf_c.as_ptr()) };
        if r < 0 {
            return Err(fail(&format!("cannot read {}", conf.display()), r));
        }
        let secs = c(&timeout_s.max(1).to_string())?;
        for key in ["client_mount_timeout", "rados_mon_op_timeout"] {
            let k = c(key)?;
            // SAFETY: as above.
            unsafe { conf_set(cluster, k.as_ptr(), secs.as_ptr()) };
        }
        // SAFETY: as above.
        let r = unsafe { connect(cluster) };
        if r < 0 {
            return Err(fail("cannot reach the monitors", r));
        }
        let cmd = c(r#"{"prefix": "health", "format": "json"}"#)?;
        let cmds = [cmd.as_ptr()];
        let (mut out, mut outlen, mut status, mut statuslen) = (std::ptr::null_mut(), 0usize, std::ptr::null_mut(), 0usize);
        // SAFETY: one command string, no input buffer; librados allocates `out` and `status`
        // (freed below with rados_buffer_free).
        let r = unsafe { mon_command(cluster, cmds.as_ptr(), 1, std::ptr::null(), 0, &mut out, &mut outlen, &mut status, &mut statuslen) };
        let answer = if out.is_null() {
            Vec::new()
        } else {
            // SAFETY: librados returned `outlen` bytes at `out`.
            unsafe { std::slice::from_raw_parts(out.cast::<u8>(), outlen) }.to_vec()
        };
        for p in [out, status] {
            if !p.is_null() {
                // SAFETY: buffers librados allocated for this call, freed once.
                unsafe { buffer_free(p) };
            }
        }
        if r < 0 {
            return Err(fail("the monitors refused the health command", r));
        }
        parse(&answer)
    })();
    // SAFETY: the handle made above, shut down once.
    unsafe { shutdown(cluster) };
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_monitors_answer() {
        let ok = parse(br#"{"status":"HEALTH_OK","checks":{},"mutes":[]}"#).expect("ok");
        assert_eq!(ok, Health { status: "HEALTH_OK".into(), checks: vec![] });
        let warn = parse(br#"{"status":"HEALTH_WARN","checks":{"OSD_DOWN":{"severity":"HEALTH_WARN","summary":{"message":"1 osds down","count":1}}}}"#).expect("warn");
        assert_eq!(warn.checks, vec![("OSD_DOWN".to_string(), "1 osds down".to_string())]);
        assert!(parse(b"not json").is_err());
        assert!(parse(br#"{"checks":{}}"#).is_err());
    }
}
