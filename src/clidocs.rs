//! Completion scripts and man pages generated from the clap definitions in [`crate::cli`].

use std::io;
use std::path::Path;

use clap::CommandFactory;

use crate::cli::{Cli, Shell};

/// The binary's name as users type it.
pub const BIN: &str = "polytropon";

/// The completion script for `shell`.
pub fn completion(shell: Shell) -> Vec<u8> {
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    let generator = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    clap_complete::generate(generator, &mut cmd, BIN, &mut out);
    out
}

/// File name under `completions/` of the script for `shell`.
pub fn completion_file(shell: Shell) -> &'static str {
    match shell {
        Shell::Bash => "polytropon.bash",
        Shell::Zsh => "_polytropon",
        Shell::Fish => "polytropon.fish",
    }
}

/// The main man page, `polytropon(1)`.
pub fn main_man_page() -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    clap_mangen::Man::new(Cli::command()).render(&mut out)?;
    Ok(out)
}

/// Writes one man page per command (`polytropon.1`, `polytropon-pool-create.1`, ...) to `dir`,
/// and `mount.polytropon.8` for the mount(8) helper.
pub fn write_man_pages(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    clap_mangen::generate_to(Cli::command(), dir)?;
    let mut page = Vec::new();
    clap_mangen::Man::new(mount_helper_command()).section("8").render(&mut page)?;
    std::fs::write(dir.join("mount.polytropon.8"), page)
}

/// The mount(8) helper's command line, for its man page (parsed by `mount_helper`, whose
/// syntax is mount(8)'s, not clap's).
fn mount_helper_command() -> clap::Command {
    use clap::{Arg, ArgAction};
    let flag = |c: char, id: &'static str, help: &'static str| Arg::new(id).short(c).action(ArgAction::SetTrue).help(help);
    clap::Command::new("mount.polytropon")
        .about("mount(8) helper: mount a polytropon filesystem instance by type (`mount -t polytropon`) or from /etc/fstab")
        .long_about(
            "Called by mount(8) as mount.polytropon (or mount.fuse.polytropon) SOURCE DIR [-sfnv] -o OPTIONS, \
             after `polytropon install-links` has made the names. SOURCE is ignored (`none`), or names an instance \
             spec file. Without pool=, a daemon of its own serves the mount (as `polytropon mount --detach`); \
             umount(8) of DIR takes it down, and a pool's service drops an instance unmounted so. \
             umount.fuse.polytropon DIR is the matching umount(8) helper.\n\n\
             Example (fstab): none /srv/c1 polytropon lowerdir=/images/a:/images/b,upperdir=/var/c1,workdir=/var/c1w,pool=tenant-a 0 0",
        )
        .arg(Arg::new("source").value_name("SOURCE").required(true).help("`none`, or an instance spec (YAML) file"))
        .arg(Arg::new("dir").value_name("DIR").required(true).help("Mount point"))
        .arg(
            Arg::new("options")
                .short('o')
                .value_name("OPTIONS")
                .help(
                    "Comma-separated: lowerdir=DIR[:DIR...] (read-only branches, topmost first; `\\:` for a colon in a path), \
                     upperdir=DIR (writable branch), workdir=DIR (accepted for overlayfs's syntax, not needed), \
                     pool=NAME (serve it in that pool's running service), cache=kernel|direct|writethrough|writeback, \
                     cache_size=SIZE, backend=local|cephfs, ceph_conf=FILE, ceph_id=ID, ceph_fs=NAME, timeout=SECS, \
                     nopassthrough, userpassthrough, nobusypassthrough, nolearn, spec=FILE, nosuid, nodev, noexec; rw, defaults, auto, noauto, nofail, _netdev and x-* are \
                     mount(8)'s and ignored; ro is refused (the user-level path would still write)",
                ),
        )
        .arg(flag('s', "sloppy", "Sloppy: ignore unknown options (with a warning)"))
        .arg(flag('f', "fake", "Fake: check the options and print the command, mount nothing"))
        .arg(flag('n', "no-mtab", "No mtab (there is none to write)"))
        .arg(flag('v', "verbose", "Verbose: print the polytropon command run"))
}
