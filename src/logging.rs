//! Logging, set up once: `tracing` to stderr, as text or JSON lines.

use polytropon::cli::LogFormat;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `filter` is a level or a tracing filter directive.
pub fn init(filter: &str, format: LogFormat) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
