//! `polytropon image import|list|remove`.

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context};
use polytropon::cli::{ImageImportArgs, ImageListArgs, ImageRemoveArgs, OutputFormat};
use polytropon::container::state::Containers;
use polytropon::image::{CephStore, Store};
use polytropon::pool::Pools;

pub fn import(data_dir: &Path, a: ImageImportArgs) -> anyhow::Result<ExitCode> {
    let store = Store::new(data_dir);
    let ceph = match &a.ceph.ceph_conf {
        Some(conf) => {
            anyhow::ensure!(a.ceph_dir.is_absolute(), "--ceph-dir {}: must be an absolute path inside the CephFS", a.ceph_dir.display());
            Some(CephStore { conf: conf.clone(), id: a.ceph.ceph_id.clone(), fs: a.ceph.ceph_fs.clone(), dir: a.ceph_dir.clone() })
        }
        None => None,
    };
    let rec = store.import(&a.path, a.name.as_deref(), ceph.as_ref()).with_context(|| format!("cannot import {}", a.path.display()))?;
    println!("{} {} ({} layers)", rec.name, rec.id, rec.layers.len());
    Ok(ExitCode::SUCCESS)
}

pub fn list(data_dir: &Path, a: ImageListArgs) -> anyhow::Result<ExitCode> {
    let images = Store::new(data_dir).list()?;
    if a.format == OutputFormat::Json {
        println!("{}", serde_json::to_string_pretty(&images)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut s = String::new();
    let _ = writeln!(s, "{:<32} {:<20} {:>6}  COMMAND", "NAME", "ID", "LAYERS");
    for i in &images {
        let id: String = i.id.trim_start_matches("sha256:").chars().take(12).collect();
        let cmd = i.config.entrypoint.iter().chain(&i.config.cmd).cloned().collect::<Vec<_>>().join(" ");
        let _ = writeln!(s, "{:<32} {:<20} {:>6}  {cmd}", i.name, id, i.layers.len());
    }
    print!("{s}");
    Ok(ExitCode::SUCCESS)
}

pub fn remove(state_dir: &Path, data_dir: &Path, a: ImageRemoveArgs) -> anyhow::Result<ExitCode> {
    let pools = Pools::new(state_dir);
    for pool in pools.list()? {
        for c in Containers::new(&pools, &pool.name).list() {
            if c.image.as_deref() == Some(a.name.as_str()) && c.state() == "running" {
                bail!("image {} is in use by container {} of pool {}", a.name, c.name, pool.name);
            }
        }
    }
    Store::new(data_dir).remove(&a.name)?;
    Ok(ExitCode::SUCCESS)
}
