//! How the three binaries write their logs: to stderr, as text (colour only on a terminal) or as
//! one JSON object per line (`--logFormat json`), filtered by `RUST_LOG`.

use std::io::IsTerminal;

/// `--logFormat`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("{other:?} is not a log format: text or json")),
        }
    }
}

/// Installs the global subscriber; `default_level` applies when `RUST_LOG` is not set, except that
/// PostgreSQL's NOTICE messages (`CREATE … IF NOT EXISTS` on every start) show only at debug.
pub fn init(format: LogFormat, default_level: &str) {
    let default_filter = format!("{default_level},tokio_postgres::connection=warn");
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default_filter.into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().with_current_span(false).with_span_list(false).init(),
    }
}
