//! The command surface: help, not-yet-implemented commands, and the generated completions
//! and man pages, which must match the checked-in files (`POLYTROPON_BLESS=1` rewrites them).

use std::path::{Path, PathBuf};
use std::process::Command;

use polytropon::cli::Shell;
use polytropon::clidocs;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_polytropon"))
}

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

const COMMANDS: [&str; 12] = ["pool", "service", "mount", "umount", "exec", "kill", "rm", "image", "bench", "inspect", "completions", "man"];

#[test]
fn help_shows_every_command() {
    let out = bin().arg("--help").output().expect("run polytropon");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for c in COMMANDS {
        assert!(help.lines().any(|l| l.trim_start().starts_with(c)), "--help lacks {c}:\n{help}");
    }
    for (group, subs) in [("pool", &["create", "list", "destroy"][..]), ("service", &["run", "stop"][..]), ("image", &["import", "list", "remove"][..])] {
        let out = bin().args([group, "--help"]).output().expect("run");
        let help = String::from_utf8_lossy(&out.stdout);
        for s in subs {
            assert!(help.contains(s), "{group} --help lacks {s}");
        }
    }
}

#[test]
fn bad_usage_is_named() {
    let out = bin().args(["pool", "create", "t1", "--cpu", "0"]).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--cpu"));
    let out = bin().args(["completions", "tcsh"]).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("tcsh"));
    // Numbers out of range are refused before anything runs (a `--file-mib` this large
    // wrapped to 0 in the size computed from it; no clones made a report of nothing).
    for (args, named) in [(&["bench", "--clones", "0"][..], "--clones"), (&["bench", "--clones", "4,0"], "--clones"), (&["bench", "--file-mib", "17592186044416"], "--file-mib")] {
        let out = bin().args(args).output().expect("run");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains(named), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

/// A pool or container name that would lead out of its place under the state directory is
/// refused by every command that takes one, naming it, before anything is read or removed:
/// `rm --pool a ../../b/containers/web` reached pool `b`'s container.
#[test]
fn names_that_lead_elsewhere_are_refused_by_every_command() {
    let state = tempfile::tempdir().expect("state dir");
    let victim = state.path().join("pools/b/containers/web");
    std::fs::create_dir_all(&victim).expect("a container record of pool b");
    let commands: [&[&str]; 8] = [
        &["rm", "--pool", "a", "../../b/containers/web", "--force"],
        &["rm", "--pool", "../b", "web", "--force"],
        &["kill", "--pool", "a", "../../b/containers/web"],
        &["inspect", "--pool", "../b"],
        &["service", "stop", "--pool", "../b"],
        &["umount", "--pool", "a/../b", "/mnt"],
        &["exec", "--pool", "a", "--in", "../web", "--", "true"],
        &["exec", "--pool", "a", "--root", "/", "--name", "x/y", "--", "true"],
    ];
    for args in commands {
        let out = bin().arg("--state-dir").arg(state.path()).args(args).output().expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?} was not refused as usage: {err}");
        assert!(err.contains("invalid value") && err.contains("NAME"), "{args:?}: {err}");
    }
    assert!(victim.exists(), "pool b's container record was touched");
}

fn check_or_bless(path: &Path, fresh: &[u8]) -> Option<String> {
    if std::env::var_os("POLYTROPON_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, fresh).expect("write generated file");
        return None;
    }
    match std::fs::read(path) {
        Ok(old) if old == fresh => None,
        Ok(_) => Some(format!("{} is stale", path.display())),
        Err(_) => Some(format!("{} is missing", path.display())),
    }
}

#[test]
fn checked_in_completions_and_man_pages_are_fresh() {
    let mut stale = Vec::new();
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let path = repo("completions").join(clidocs::completion_file(shell));
        stale.extend(check_or_bless(&path, &clidocs::completion(shell)));
        // The binary prints the same script.
        let name = format!("{shell:?}").to_lowercase();
        let out = bin().args(["completions", &name]).output().expect("run");
        assert_eq!(out.stdout, clidocs::completion(shell));
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    clidocs::write_man_pages(tmp.path()).expect("render man pages");
    let mut pages: Vec<_> = std::fs::read_dir(tmp.path()).expect("readdir").map(|e| e.expect("entry").file_name()).collect();
    pages.sort();
    assert!(pages.iter().any(|p| p == "polytropon-pool-create.1"), "{pages:?}");
    for page in &pages {
        let fresh = std::fs::read(tmp.path().join(page)).expect("read page");
        stale.extend(check_or_bless(&repo("man").join(page), &fresh));
    }
    let checked_in: Vec<_> = std::fs::read_dir(repo("man")).expect("man/").map(|e| e.expect("entry").file_name()).collect();
    for page in checked_in {
        if !pages.contains(&page) {
            stale.push(format!("man/{} is no longer generated", page.to_string_lossy()));
        }
    }
    assert!(stale.is_empty(), "regenerate with `POLYTROPON_BLESS=1 cargo test --test cli`: {stale:?}");
    let out = bin().arg("man").output().expect("run");
    assert!(String::from_utf8_lossy(&out.stdout).contains(".TH polytropon"));
}
