//! `polytropon mount`: serve a filesystem instance through FUSE.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{ensure, Context};
use polytropon::cli::{BackendKind, MountArgs};
use polytropon::instance;
use polytropon::service::fuse::{self, FuseConfig};
use polytropon::service::records::{mount_file, MountRecord};
use polytropon::spec::{BackendSpec, BranchMode, BranchSpec, CacheMode, CacheSpec, CephSpec, InstanceSpec};


/// Tells a detached daemon where its log goes, for its mount record.
const LOG_ENV: &str = "POLYTROPON_MOUNT_LOG";

/// The instance the arguments describe: a spec file, or the quick form.
fn instance_spec(args: &MountArgs) -> anyhow::Result<InstanceSpec> {
    let mut spec = match &args.file {
        Some(f) => InstanceSpec::from_file(f)?,
        None => {
            let upper = args.upper.as_ref().context("give a spec with -f, or --upper DIR (and --lower DIR ...)")?;
            let mut branches = vec![BranchSpec { path: upper.clone(), mode: BranchMode::Rw, local: false }];
            branches.extend(args.lower.iter().map(|p| BranchSpec { path: p.clone(), mode: BranchMode::Ro, local: false }));
            let backend = match args.backend {
                BackendKind::Local => {
                    for b in &mut branches {
                        ensure!(b.path.is_dir(), "branch {} is not a directory", b.path.display());
                        // The service (or a detached daemon) opens it from another directory.
                        b.path = std::path::absolute(&b.path).with_context(|| format!("branch {}", b.path.display()))?;
                    }
                    BackendSpec::Local
                }
                BackendKind::Cephfs => {
                    let conf = args.ceph.ceph_conf.clone().context("--backend cephfs needs --ceph-conf FILE")?;
                    // The service (or a detached daemon) reads it from another directory.
                    let conf = std::path::absolute(&conf).with_context(|| format!("--ceph-conf {}", conf.display()))?;
                    for b in &branches {
                        ensure!(b.path.is_absolute(), "CephFS branch {} must be an absolute path inside the file system", b.path.display());
                    }
                    BackendSpec::Cephfs(CephSpec { conf, id: args.ceph.ceph_id.clone(), fs: args.ceph.ceph_fs.clone(), ..CephSpec::default() })
                }
            };
            InstanceSpec { backend, branches, cache: CacheSpec::default(), union: Default::default(), id_shift: None, quota: Default::default(), fuse: Default::default() }
        }
    };
    if let Some(mode) = args.cache {
        spec.cache.mode = mode;
    }
    if let Some(size) = &args.cache_size {
        polytropon::pool::spec::parse_size("--cache-size", size)?;
        spec.cache.size = Some(size.clone());
    }
    if args.no_passthrough {
        spec.cache.passthrough = false;
    }
    if args.user_passthrough {
        spec.cache.user_passthrough = true;
    }
    if args.no_busy_passthrough {
        spec.cache.busy_passthrough = false;
    }
    if args.no_close_to_open {
        ensure!(spec.cache.mode == CacheMode::Writeback, "--no-close-to-open needs the writeback cache mode (--cache writeback)");
        spec.cache.close_to_open = false;
    }
    if args.no_learn {
        spec.cache.learn = false;
    }
    if let Some(t) = args.fuse_transport {
        spec.fuse.transport = t;
    }
    if let Some(q) = &args.quota {
        spec.quota = polytropon::spec::QuotaSpec::parse(q).map_err(|why| anyhow::anyhow!("--quota {q:?}: {why}"))?;
        ensure!(spec.upper().is_some(), "--quota needs a writable (rw) first branch");
    }
    if let Some(t) = args.timeout {
        polytropon::spec::check_seconds("--timeout", t, 0.0, polytropon::spec::MAX_SECONDS).map_err(anyhow::Error::msg)?;
        spec.cache.attr_timeout = t;
        spec.cache.entry_timeout = t;
    }
    // As a spec file's instance is checked (in its fields' names: `branches[1].path: same
    // directory as branches[0]` for `--upper /x --lower /x`).
    spec.check().map_err(|why| anyhow::anyhow!("{why}"))?;
    Ok(spec)
}

fn canonical_mountpoint(p: &Path) -> anyhow::Result<PathBuf> {
    let _ = fuse::clear_stale(p);
    let c = std::fs::canonicalize(p).with_context(|| format!("mount point {}", p.display()))?;
    ensure!(c.is_dir(), "mount point {} is not a directory", c.display());
    ensure!(!fuse::is_our_mount(&c), "{} is already a polytropon mount", c.display());
    Ok(c)
}

pub fn run(state_dir: &Path, args: MountArgs) -> anyhow::Result<ExitCode> {
    ensure!(rustix::process::geteuid().is_root(), "mount needs root (FUSE mounts with allow_other, dev and suid)");
    let spec = instance_spec(&args)?;
    if let Some(pool) = &args.pool {
        return add_to_pool(state_dir, pool, &args.mountpoint, spec);
    }
    let mountpoint = canonical_mountpoint(&args.mountpoint)?;
    if args.detach {
        return detach(state_dir, &mountpoint);
    }
    polytropon::service::limits::raise_descriptor_limit();
    let fs = instance::build(&spec).context("cannot build the filesystem instance")?;
    let cfg = FuseConfig::from_instance(&spec);
    let log = std::env::var_os(LOG_ENV).map(PathBuf::from);
    let record = MountRecord { mountpoint: mountpoint.clone(), pid: std::process::id(), log };
    let mut saved = Ok(());
    let served = fuse::run_foreground(fs, &mountpoint, &cfg, || saved = record.save(state_dir))
        .with_context(|| format!("cannot serve {}", mountpoint.display()));
    MountRecord::remove(state_dir, &mountpoint);
    saved.with_context(|| format!("cannot write the mount record under {}", state_dir.display()))?;
    served?;
    Ok(ExitCode::SUCCESS)
}

/// Re-runs this command as a daemon and returns once its mount is in place.
fn detach(state_dir: &Path, mountpoint: &Path) -> anyhow::Result<ExitCode> {
    let log = mount_file(state_dir, mountpoint, "log");
    let pid = super::spawn_detached("mount daemon", &log, LOG_ENV, &[], Duration::from_secs(15), |_| {
        // Up once mounted and recorded (a `umount` right after must find the record).
        Ok(fuse::is_our_mount(mountpoint) && MountRecord::load(state_dir, mountpoint).ok().flatten().is_some())
    })?;
    println!("{pid}");
    Ok(ExitCode::SUCCESS)
}

/// `mount --pool`: adds the instance to the pool's running service.
fn add_to_pool(state_dir: &Path, pool: &str, mountpoint: &Path, spec: InstanceSpec) -> anyhow::Result<ExitCode> {
    use polytropon::pool::Pools;
    use polytropon::service::control::{self, Request};
    let pools = Pools::new(state_dir);
    pools.get(pool)?.with_context(|| format!("no pool named {pool}"))?;
    let svc = pools.live_service(pool)?.with_context(|| format!("the service of pool {pool} is not running (start it with `polytropon service run --pool {pool}`)"))?;
    let mp = std::fs::canonicalize(mountpoint).with_context(|| format!("mount point {}", mountpoint.display()))?;
    control::call(&svc.socket, &Request::Mount { mountpoint: mp, spec: Box::new(spec) }, Duration::from_secs(30))?;
    Ok(ExitCode::SUCCESS)
}
