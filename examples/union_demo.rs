//! The deepest piece that works today (issue 2): filesystem instances built from YAML specs,
//! a union of copy-on-write branches over the local backend, on real directories.
//!
//! Two "cloned containers" share one read-only image branch; each writes, deletes and renames
//! through its own instance. The demo prints what each clone sees and what landed on disk, and
//! checks that the image was never written. `exec`, `mount` and pools land in later issues.
//!
//! Run: `cargo run --release --example union_demo`

use std::ffi::OsStr;
use std::io::{IoSlice, IoSliceMut};
use std::path::Path;
use std::sync::Arc;

use anyhow::{ensure, Context as _};
use polytropon::instance;
use polytropon::libservice::{Context, FileSystem, Inode, ROOT_INODE};
use polytropon::spec::InstanceSpec;

fn lookup(fs: &Arc<dyn FileSystem>, path: &str) -> anyhow::Result<Inode> {
    let ctx = Context::current();
    let mut ino = ROOT_INODE;
    for c in path.split('/') {
        ino = fs.lookup(&ctx, ino, OsStr::new(c)).with_context(|| format!("lookup {path}"))?.inode;
    }
    Ok(ino)
}

fn read(fs: &Arc<dyn FileSystem>, path: &str) -> anyhow::Result<String> {
    let ctx = Context::current();
    let ino = lookup(fs, path)?;
    let h = fs.open(&ctx, ino, libc::O_RDONLY)?;
    let mut buf = vec![0u8; 4096];
    let n = fs.read(&ctx, ino, h, &mut [IoSliceMut::new(&mut buf)], 0)?;
    fs.release(&ctx, ino, h)?;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

fn append(fs: &Arc<dyn FileSystem>, path: &str, text: &str) -> anyhow::Result<()> {
    let ctx = Context::current();
    let ino = lookup(fs, path)?;
    let size = fs.getattr(&ctx, ino, None)?.size;
    let h = fs.open(&ctx, ino, libc::O_WRONLY)?;
    fs.write(&ctx, ino, h, &[IoSlice::new(text.as_bytes())], size)?;
    fs.release(&ctx, ino, h)?;
    Ok(())
}

fn listing(fs: &Arc<dyn FileSystem>, dir: Inode) -> anyhow::Result<Vec<String>> {
    let ctx = Context::current();
    let h = fs.opendir(&ctx, dir, libc::O_RDONLY)?;
    let mut names: Vec<String> = fs
        .readdir(&ctx, dir, h, 0, usize::MAX)?
        .into_iter()
        .map(|e| e.name.to_string_lossy().into_owned())
        .filter(|n| n != "." && n != "..")
        .collect();
    fs.releasedir(&ctx, dir, h)?;
    names.sort();
    Ok(names)
}

fn tree_on_disk(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = walk(dir, dir);
    out.sort();
    out
}

fn walk(root: &Path, dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).map(|r| r.display().to_string()).unwrap_or_default();
            let kind = match e.file_type() {
                Ok(t) if t.is_dir() => "/",
                Ok(t) if std::os::unix::fs::FileTypeExt::is_char_device(&t) => " (whiteout)",
                _ => "",
            };
            out.push(format!("{rel}{kind}"));
            if kind == "/" {
                out.extend(walk(root, &p));
            }
        }
    }
    out
}

fn main() -> anyhow::Result<()> {
    let work = tempfile::Builder::new().prefix("polytropon-demo-").tempdir().context("temp dir")?;
    let image = work.path().join("image");
    std::fs::create_dir_all(image.join("etc")).context("image")?;
    std::fs::write(image.join("etc/motd"), "welcome to the image\n")?;
    std::fs::write(image.join("etc/hostname"), "image\n")?;
    std::fs::write(image.join("README"), "read me\n")?;
    let before = tree_on_disk(&image);

    let mut clones = Vec::new();
    for name in ["c1", "c2"] {
        let upper = work.path().join(name);
        std::fs::create_dir(&upper)?;
        let yaml = format!(
            "backend: {{type: local}}\nbranches:\n  - {{path: {}, mode: rw}}\n  - {{path: {}, mode: ro}}\n",
            upper.display(),
            image.display()
        );
        let spec_path = work.path().join(format!("{name}.yaml"));
        std::fs::write(&spec_path, &yaml)?;
        let spec = InstanceSpec::from_file(&spec_path)?;
        let fs = instance::build(&spec).with_context(|| format!("instance {name}"))?;
        println!("instance {name}: spec {}\n{}", spec_path.display(), yaml.trim_end());
        clones.push((name, upper, fs));
    }

    let ctx = Context::current();
    let (_, _, c1) = &clones[0];
    append(c1, "etc/motd", "c1 was here\n")?;
    c1.unlink(&ctx, ROOT_INODE, OsStr::new("README"))?;
    let etc = lookup(c1, "etc")?;
    c1.rename(&ctx, etc, OsStr::new("hostname"), etc, OsStr::new("hostname.old"), 0)?;
    let (_, _, c2) = &clones[1];
    let (e, h) = c2.create(&ctx, ROOT_INODE, OsStr::new("notes"), 0o644, 0o022, libc::O_WRONLY)?;
    c2.write(&ctx, e.inode, h, &[IoSlice::new(b"c2's own file\n")], 0)?;
    c2.release(&ctx, e.inode, h)?;

    for (name, upper, fs) in &clones {
        println!("\n== {name} sees");
        println!("  /     {:?}", listing(fs, ROOT_INODE)?);
        println!("  /etc  {:?}", listing(fs, lookup(fs, "etc")?)?);
        print!("  /etc/motd: {}", read(fs, "etc/motd")?);
        println!("  upper branch on disk: {:?}", tree_on_disk(upper));
    }
    let after = tree_on_disk(&image);
    ensure!(before == after, "the shared image branch changed: {before:?} -> {after:?}");
    ensure!(read(c2, "etc/motd")? == "welcome to the image\n", "c1's write leaked into c2");
    ensure!(listing(c1, ROOT_INODE)? == ["etc"], "c1 should no longer see README");
    println!("\nimage branch unchanged: {after:?}");
    println!("ok: two clones share one read-only image; each wrote only to its own upper branch");
    Ok(())
}
