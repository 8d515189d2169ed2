//! Spec parsing: valid specs, and errors that name the file, line and field.

use std::path::Path;

use super::*;

fn parse(text: &str) -> Result<InstanceSpec, SpecError> {
    InstanceSpec::parse(text, Path::new("/etc/polytropon/c1.yaml"))
}

fn error(text: &str) -> String {
    parse(text).expect_err("spec should be rejected").to_string()
}

#[test]
fn a_full_spec_parses_and_resolves_relative_paths() {
    let spec = parse(
        "backend:\n  type: local\nbranches:\n  - path: upper\n    mode: rw\n  - path: /images/base\n    mode: ro\ncache:\n  mode: direct\n  attr_timeout: 0\n",
    )
    .expect("valid spec");
    assert_eq!(spec.backend, BackendSpec::Local);
    assert_eq!(spec.upper().map(|b| b.path.clone()), Some("/etc/polytropon/upper".into()));
    assert_eq!(spec.lowers().map(|b| b.path.clone()).collect::<Vec<_>>(), vec![std::path::PathBuf::from("/images/base")]);
    assert_eq!(spec.cache.mode, CacheMode::Direct);
    assert_eq!(spec.cache.attr_timeout, 0.0);
    let wt = parse("branches:\n  - {path: /a, mode: rw}\ncache:\n  mode: writethrough\n  size: 64M\n").expect("writethrough");
    assert_eq!((wt.cache.mode, wt.cache.size_bytes()), (CacheMode::Writethrough, 64 << 20));
    assert_eq!(spec.cache.entry_timeout, 1.0, "defaults fill what the spec leaves out");
    let wb = parse("branches:\n  - {path: /a, mode: rw}\ncache:\n  mode: writeback\n  size: 100M\n  dirty_ratio: 0.25\n  dirty_expire: 30\n").expect("writeback");
    let w = wb.cache.writeback();
    assert_eq!((wb.cache.mode, w.dirty_limit, w.expire.as_secs(), w.interval.as_secs()), (CacheMode::Writeback, 25 << 20, 30, 1));
    assert_eq!(spec.cache.writeback().dirty_limit, 128 << 20, "the papers' defaults: half of 256M");
}

#[test]
fn a_read_only_instance_has_no_upper() {
    let spec = parse("branches:\n  - {path: /a, mode: ro}\n  - {path: /b, mode: ro}\n").expect("valid");
    assert!(spec.upper().is_none());
    assert_eq!(spec.lowers().count(), 2);
}

#[test]
fn errors_name_file_line_and_field() {
    let e = error("branches:\n  - path: /a\n    mode: rx\n");
    assert!(e.starts_with("/etc/polytropon/c1.yaml:3:"), "{e}");
    assert!(e.contains("branches[0].mode") && e.contains("rx"), "{e}");

    let e = error("branches:\n  - path: /a\n    mode: ro\n    colour: blue\n");
    assert!(e.contains("/etc/polytropon/c1.yaml:") && e.contains("colour"), "{e}");

    let e = error("branches:\n  - {path: /a, mode: ro}\n  - {path: /b, mode: rw}\n");
    assert!(e.contains("branches[1].mode") && e.contains("only the first"), "{e}");

    let e = error("branches:\n  - {path: /a, mode: rw}\n  - {path: /a, mode: ro}\n");
    assert!(e.contains("branches[1].path") && e.contains("same directory"), "{e}");

    let e = error("backend:\n  type: nfs\nbranches: []\n");
    assert!(e.contains("nfs") && e.contains(":2:"), "{e}");

    let e = error("branches: []\n");
    assert!(e.contains("at least one branch"), "{e}");

    let e = error("branches:\n  - {path: /a, mode: rw}\ncache:\n  attr_timeout: -1\n");
    assert!(e.contains("cache.attr_timeout"), "{e}");
    let e = error("branches:\n  - {path: /a, mode: rw}\ncache:\n  mode: writethrough\n  size: 12X\n");
    assert!(e.contains("cache.size") && e.contains("12X"), "{e}");
    for (bad, field) in [("dirty_ratio: 0", "cache.dirty_ratio"), ("dirty_ratio: 1.5", "cache.dirty_ratio"), ("dirty_expire: -2", "cache.dirty_expire"), ("writeback_interval: 0", "cache.writeback_interval")] {
        let e = error(&format!("branches:\n  - {{path: /a, mode: rw}}\ncache:\n  mode: writeback\n  {bad}\n"));
        assert!(e.contains(field), "{bad}: {e}");
    }
    let e = error("branches:\n  - {path: /a, mode: rw}\ncache:\n  mode: writeforward\n");
    assert!(e.contains("writeforward"), "{e}");

    let e = error("branches: [\n");
    assert!(e.starts_with("/etc/polytropon/c1.yaml:"), "{e}");

    let e = error("cache: {mode: kernel}\n");
    assert!(e.contains("branches"), "{e}");
}

#[test]
fn a_missing_file_is_named() {
    let e = InstanceSpec::from_file(Path::new("/nonexistent/spec.yaml")).expect_err("missing");
    assert!(e.to_string().contains("/nonexistent/spec.yaml"));
}

#[test]
fn a_cephfs_instance_parses_with_defaults() {
    let yaml = "backend:\n  type: cephfs\n  conf: /etc/ceph/ceph.conf\nbranches:\n  - path: /c1\n    mode: rw\n  - path: /images/debian\n    mode: ro\n";
    let spec = parse(yaml).expect("valid spec");
    match &spec.backend {
        BackendSpec::Cephfs(c) => {
            assert_eq!(c.conf, std::path::PathBuf::from("/etc/ceph/ceph.conf"));
            assert_eq!(c.id, "admin");
            assert_eq!(c.client, crate::spec::CephClientMode::Shared);
            assert!(c.fs.is_none() && c.settings.is_empty());
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_cephfs_branch_must_be_absolute() {
    let e = error("backend:\n  type: cephfs\n  conf: ceph.conf\nbranches:\n  - path: c1\n    mode: rw\n");
    assert!(e.contains("branches[0].path: c1 must be absolute"), "{e}");
    let e = error("backend:\n  type: cephfs\nbranches:\n  - path: /c1\n    mode: rw\n");
    assert!(e.contains("conf"), "a cephfs backend names its conf: {e}");
}

#[test]
fn redirect_dir_is_on_unless_the_spec_turns_it_off() {
    let plain = parse("branches:\n  - {path: /a, mode: rw}\n").expect("valid");
    assert_eq!(plain.union.redirect_dir, RedirectDir::On);
    let off = parse("branches:\n  - {path: /a, mode: rw}\nunion:\n  redirect_dir: off\n").expect("off");
    assert_eq!(off.union.redirect_dir, RedirectDir::Off);
    let on = parse("branches:\n  - {path: /a, mode: rw}\nunion: {redirect_dir: on}\n").expect("on");
    assert_eq!(on.union.redirect_dir, RedirectDir::On);
    let bad = error("branches:\n  - {path: /a, mode: rw}\nunion:\n  redirect_dir: sometimes\n");
    assert!(bad.contains("redirect_dir") && bad.contains("sometimes"), "{bad}");
    let unknown = error("branches:\n  - {path: /a, mode: rw}\nunion:\n  index: on\n");
    assert!(unknown.contains("index"), "{unknown}");
    // Written back out, the default is left out and `off` kept.
    assert!(!serde_yaml_ng::to_string(&plain).expect("yaml").contains("union"));
    assert!(serde_yaml_ng::to_string(&off).expect("yaml").contains("redirect_dir: off"));
}

#[test]
fn the_fuse_transport_is_auto_unless_the_spec_names_one() {
    use super::FuseTransport;
    let plain = parse("branches:\n  - {path: /a, mode: rw}\n").expect("valid");
    assert_eq!(plain.fuse.transport, FuseTransport::Auto);
    for (text, want) in [("uring", FuseTransport::Uring), ("classic", FuseTransport::Classic), ("auto", FuseTransport::Auto)] {
        let s = parse(&format!("branches:\n  - {{path: /a, mode: rw}}\nfuse:\n  transport: {text}\n")).expect(text);
        assert_eq!(s.fuse.transport, want);
    }
    let bad = error("branches:\n  - {path: /a, mode: rw}\nfuse: {transport: carrier-pigeon}\n");
    assert!(bad.contains("transport") && bad.contains("carrier-pigeon"), "{bad}");
    let unknown = error("branches:\n  - {path: /a, mode: rw}\nfuse: {queues: 4}\n");
    assert!(unknown.contains("queues"), "{unknown}");
    assert!(!serde_yaml_ng::to_string(&plain).expect("yaml").contains("fuse"));
}

/// The local backend takes no keys but its type: a CephFS key there is a mistake to name, not
/// to ignore.
#[test]
fn the_local_backend_takes_no_other_keys() {
    let unknown = error("branches:\n  - {path: /a, mode: rw}\nbackend: {type: local, conf: /etc/ceph/ceph.conf}\n");
    assert!(unknown.contains("conf"), "{unknown}");
    assert_eq!(parse("branches:\n  - {path: /a, mode: rw}\nbackend: {type: local}\n").expect("local").backend, BackendSpec::Local);
    assert_eq!(parse("branches:\n  - {path: /a, mode: rw}\nbackend: {type: local}\n").expect("local"), parse("branches:\n  - {path: /a, mode: rw}\n").expect("default"));
}
