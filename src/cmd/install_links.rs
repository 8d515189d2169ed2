//! `polytropon install-links`: the names by which the binary serves mount(8) and umount(8).

use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context};
use polytropon::cli::InstallLinksArgs;
use polytropon::mount_helper::{MOUNT_NAMES, UMOUNT_NAMES};

pub fn run(a: InstallLinksArgs) -> anyhow::Result<ExitCode> {
    let dir = a.dir.unwrap_or_else(|| if Path::new("/sbin").is_dir() { "/sbin".into() } else { "/usr/local/sbin".into() });
    let exe = polytropon::container::sealed::origin_exe().context("cannot find the polytropon binary")?;
    let exe = std::fs::canonicalize(&exe).with_context(|| format!("cannot resolve {}", exe.display()))?;
    for name in MOUNT_NAMES.iter().chain(&UMOUNT_NAMES) {
        let link = dir.join(name);
        let ours = points_to(&link, &exe);
        if a.remove {
            if ours {
                std::fs::remove_file(&link).with_context(|| format!("cannot remove {}", link.display()))?;
                println!("removed {}", link.display());
            }
            continue;
        }
        if ours {
            println!("{} already links to {}", link.display(), exe.display());
            continue;
        }
        match std::fs::symlink_metadata(&link) {
            Ok(_) if a.force => std::fs::remove_file(&link).with_context(|| format!("cannot replace {}", link.display()))?,
            Ok(_) => bail!("{} exists and is not a link to {} (--force replaces it)", link.display(), exe.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot look at {}", link.display())),
        }
        std::os::unix::fs::symlink(&exe, &link).with_context(|| format!("cannot create {}", link.display()))?;
        println!("{} -> {}", link.display(), exe.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Whether `link` is a symbolic link that resolves to `exe`.
fn points_to(link: &Path, exe: &Path) -> bool {
    std::fs::symlink_metadata(link).is_ok_and(|m| m.file_type().is_symlink()) && std::fs::canonicalize(link).ok().as_deref() == Some(exe)
}

