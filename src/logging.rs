//! Logging, set up once: `tracing` to stderr, as text or JSON lines.

use polytropon::cli::LogFormat;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `filter` is a level or a tracing filter directive.
///
/// fuser's own unmount at session end is silenced unless asked for by name: our mounts are
/// detached before it runs (so a busy mount never blocks shutdown), which makes its second
/// unmount fail harmlessly with `EINVAL`.
pub fn init(filter: &str, format: LogFormat) {
    let spec = if filter.contains("fuser") { filter.to_string() } else { format!("{filter},fuser::mnt::fuse_pure=off") };
    let filter = EnvFilter::try_new(spec).unwrap_or_else(|_| EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
