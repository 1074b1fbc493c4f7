//! `wharfctl changefeed`: the `CREATE CHANGEFEED` statement for a running `wharf-ingest`, with
//! the options users otherwise get wrong, and `--check` that the ingest would accept its path and
//! token (a request that journals nothing).

mod check;

use std::path::PathBuf;

use anyhow::{Context, bail, ensure};
use base64::Engine;
use clap::{Args, ValueEnum};

#[derive(Args, Debug)]
pub struct ChangefeedArgs {
    /// The ingest as CockroachDB reaches it: https://host:port
    #[arg(long = "ingestUrl")]
    pub ingest_url: String,
    /// The target database: the path's first part.
    #[arg(long)]
    pub db: String,
    /// The target schema: the path's second part.
    #[arg(long)]
    pub schema: String,
    /// The source tables: `db.schema.table`, or a table name taken as in --db and --schema.
    /// With --query, at most one: the table the query feed writes (else the query's FROM).
    pub tables: Vec<String>,
    /// A CDC query on one table (`SELECT … FROM table …`): a query feed, posting to
    /// /db/schema/table with envelope='wrapped' and diff.
    #[arg(long)]
    pub query: Option<String>,
    /// The CA that signed the ingest's certificate (PEM); goes into the sink URL as ca_cert.
    #[arg(long = "caCert")]
    pub ca_cert: Option<PathBuf>,
    /// A token from `wharfctl make-jwt`, for webhook_auth_header (access_token in the URL of a
    /// cloud-storage sink, which sends no headers).
    #[arg(long = "tokenFile")]
    pub token_file: Option<PathBuf>,
    /// A client certificate for mutual TLS (PEM); goes into the sink URL as client_cert.
    #[arg(long = "clientCert", requires = "client_key")]
    pub client_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM); goes into the sink URL as client_key.
    #[arg(long = "clientKey", requires = "client_cert")]
    pub client_key: Option<PathBuf>,
    /// Compress what the changefeed sends (CockroachDB 25.2+ for webhook sinks).
    #[arg(long, value_enum)]
    pub compression: Option<Compression>,
    /// A cloud-storage sink (ndjson files over HTTPS) instead of a webhook.
    #[arg(long = "cloudStorage")]
    pub cloud_storage: bool,
    /// How often resolved timestamps come: how far behind the target may lag.
    #[arg(long, default_value = "1s", value_parser = duration)]
    pub resolved: String,
    /// min_checkpoint_frequency: resolved timestamps never come more often (CockroachDB's default is 30s).
    #[arg(long = "minCheckpointFrequency", default_value = "1s", value_parser = duration)]
    pub min_checkpoint_frequency: String,
    /// webhook_client_timeout: set explicitly (older releases wait forever when it is unset).
    #[arg(long = "clientTimeout", default_value = "10s", value_parser = duration)]
    pub client_timeout: String,
    /// webhook_sink_config Flush.Bytes: batch rows into requests of about this size.
    #[arg(long = "flushBytes", default_value_t = 1 << 20)]
    pub flush_bytes: u64,
    /// webhook_sink_config Flush.Frequency: send a batch at least this often.
    #[arg(long = "flushFrequency", default_value = "1s", value_parser = duration)]
    pub flush_frequency: String,
    /// Start after this HLC timestamp (`cursor`), e.g. the checkpoint `wharfctl recover` prints.
    #[arg(long)]
    pub cursor: Option<String>,
    /// Ask the ingest whether it would accept the path and token (journals nothing); exit 1 if not.
    #[arg(long)]
    pub check: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Compression {
    Gzip,
    Zstd,
}

impl Compression {
    fn name(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }
}

fn duration(text: &str) -> Result<String, String> {
    humantime::parse_duration(text).map_err(|e| format!("{text:?}: {e}"))?;
    Ok(text.to_owned())
}

pub async fn run(args: ChangefeedArgs) -> anyhow::Result<()> {
    let feed = Feed::of(&args)?;
    print!("{}", feed.statements()?);
    if args.check {
        let (url, answer) = check::check(&args, &feed).await?;
        println!("-- check: {url} accepts this changefeed's path and token ({answer})");
    }
    Ok(())
}

/// What the statement is built from, checked.
pub struct Feed<'a> {
    args: &'a ChangefeedArgs,
    /// `https://host:port`, without a trailing slash.
    pub base: String,
    /// `/db/schema` or `/db/schema/table`.
    pub path: String,
    /// The tables as CockroachDB names them (quoted where needed).
    tables: Vec<String>,
    pub token: Option<String>,
}

impl<'a> Feed<'a> {
    pub fn of(args: &'a ChangefeedArgs) -> anyhow::Result<Feed<'a>> {
        let base = args.ingest_url.trim_end_matches('/').to_owned();
        let rest =
            base.strip_prefix("https://").or_else(|| base.strip_prefix("http://").filter(|_| args.cloud_storage));
        let Some(authority) = rest else {
            bail!("--ingestUrl must be https://host:port (CockroachDB's webhook sink speaks only HTTPS)");
        };
        ensure!(!authority.is_empty() && !authority.contains('/'), "--ingestUrl is https://host:port, without a path");
        ensure!(
            !(args.cloud_storage && args.client_cert.is_some()),
            "a cloud-storage sink presents no client certificate; drop --clientCert or use the webhook sink"
        );
        let (tables, path_table) = match &args.query {
            None => {
                ensure!(!args.tables.is_empty(), "name the tables to replicate (or give --query for a query feed)");
                (args.tables.iter().map(|t| source_name(args, t)).collect(), None)
            }
            Some(query) => {
                let table = match args.tables.as_slice() {
                    [] => table_of_query(query).context("no table after FROM in --query; name it as an argument")?,
                    [one] => one.rsplit('.').next().unwrap_or(one).to_owned(),
                    _ => bail!("a query feed reads one table; name at most one"),
                };
                (Vec::new(), Some(table))
            }
        };
        let mut path = format!("/{}/{}", path_segment(&args.db), path_segment(&args.schema));
        if let Some(table) = &path_table {
            path = format!("{path}/{}", path_segment(table));
        }
        if let Some(ca) = &args.ca_cert {
            wharf_base::pem::read_chain(ca, "CA certificate")?;
        }
        if let (Some(cert), Some(key)) = (&args.client_cert, &args.client_key) {
            wharf_base::pem::read_chain(cert, "client certificate")?;
            wharf_base::pem::read_key(key)?;
        }
        let token = match &args.token_file {
            Some(file) => Some(read_token(file)?),
            None => None,
        };
        Ok(Feed { args, base, path, tables, token })
    }

    /// The statements to run in CockroachDB.
    pub fn statements(&self) -> anyhow::Result<String> {
        let mut out = String::new();
        if self.args.cloud_storage
            && let Some(ca) = &self.args.ca_cert
        {
            let pem = std::fs::read_to_string(ca).with_context(|| format!("reading {}", ca.display()))?;
            out.push_str("-- A cloud-storage sink trusts a custom CA through a cluster setting:\n");
            out.push_str(&format!("SET CLUSTER SETTING cloudstorage.http.custom_ca = {};\n", sql_string(&pem)));
        }
        let target = match &self.args.query {
            None => format!("FOR TABLE {}\n  ", self.tables.join(", ")),
            Some(_) => String::new(),
        };
        out.push_str(&format!(
            "CREATE CHANGEFEED {target}INTO {}\n  WITH {}",
            sql_string(&self.sink_url()?),
            self.options()
        ));
        if let Some(query) = &self.args.query {
            out.push_str(&format!("\n  AS {}", query.trim().trim_end_matches(';')));
        }
        out.push_str(";\n");
        if self.token.is_none() {
            out.push_str("-- No --tokenFile: the ingest refuses every request (401) unless it runs with --disableAuthentication.\n");
        }
        if self.args.ca_cert.is_none() {
            out.push_str("-- No --caCert: CockroachDB must trust the ingest's certificate through its system roots.\n");
        }
        Ok(out)
    }

    /// The sink URL: `webhook-https://…` with the TLS material, or `https://…` for cloud storage
    /// with the token as access_token.
    fn sink_url(&self) -> anyhow::Result<String> {
        let mut query: Vec<(&str, String)> = Vec::new();
        if self.args.cloud_storage {
            if let Some(token) = &self.token {
                query.push(("access_token", token.clone()));
            }
            return Ok(with_query(format!("{}{}", self.base, self.path), &query));
        }
        for (name, file) in [
            ("ca_cert", &self.args.ca_cert),
            ("client_cert", &self.args.client_cert),
            ("client_key", &self.args.client_key),
        ] {
            if let Some(file) = file {
                let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
                query.push((name, base64::engine::general_purpose::STANDARD.encode(bytes)));
            }
        }
        Ok(with_query(format!("webhook-{}{}", self.base, self.path), &query))
    }

    fn options(&self) -> String {
        let a = self.args;
        let mut options = Vec::new();
        if a.query.is_some() {
            options.extend(["envelope = 'wrapped'".to_owned(), "format = 'json'".to_owned(), "diff".to_owned()]);
        }
        options.push("updated".to_owned());
        options.push(format!("resolved = {}", sql_string(&a.resolved)));
        options.push(format!("min_checkpoint_frequency = {}", sql_string(&a.min_checkpoint_frequency)));
        if let Some(compression) = a.compression {
            options.push(format!("compression = '{}'", compression.name()));
        }
        if let Some(cursor) = &a.cursor {
            options.push(format!("cursor = {}", sql_string(cursor)));
        }
        if !a.cloud_storage {
            options.push(format!("webhook_client_timeout = {}", sql_string(&a.client_timeout)));
            let flush = format!(r#"{{"Flush":{{"Bytes":{},"Frequency":"{}"}}}}"#, a.flush_bytes, a.flush_frequency);
            options.push(format!("webhook_sink_config = {}", sql_string(&flush)));
            if let Some(token) = &self.token {
                options.push(format!("webhook_auth_header = {}", sql_string(&format!("Bearer {token}"))));
            }
        }
        options.join(",\n       ")
    }
}

fn read_token(file: &std::path::Path) -> anyhow::Result<String> {
    let token = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let token = token.trim().to_owned();
    ensure!(
        token.split('.').count() == 3 && token.bytes().all(|b| b.is_ascii_graphic()),
        "{} does not hold a JWT (three dot-separated parts), as `wharfctl make-jwt -o` writes",
        file.display()
    );
    Ok(token)
}

/// A source table as CockroachDB names it: `db.schema.table` as given, or the table in --db and
/// --schema; each part quoted where it is not a plain lower-case name.
fn source_name(args: &ChangefeedArgs, table: &str) -> String {
    let parts: Vec<&str> = table.split('.').collect();
    let parts = match parts.as_slice() {
        [t] => vec![args.db.as_str(), args.schema.as_str(), t],
        _ => parts,
    };
    parts.iter().map(|p| ident(p)).collect::<Vec<_>>().join(".")
}

fn ident(name: &str) -> String {
    let plain = name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain { name.to_owned() } else { format!("\"{}\"", name.replace('"', "\"\"")) }
}

/// The table after the query's first FROM, without its database and schema or quotes.
pub fn table_of_query(query: &str) -> Option<String> {
    let lower = query.to_ascii_lowercase();
    let at = lower.split_whitespace().position(|w| w == "from")?;
    let name = query.split_whitespace().nth(at + 1)?;
    let name = name.trim_end_matches([';', ')', ',']);
    let last = name.rsplit('.').next()?;
    let last = last.strip_prefix('"').and_then(|l| l.strip_suffix('"')).unwrap_or(last);
    (!last.is_empty()).then(|| last.to_owned())
}

/// A SQL string literal.
fn sql_string(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn with_query(url: String, query: &[(&str, String)]) -> String {
    if query.is_empty() {
        return url;
    }
    let pairs: Vec<String> = query.iter().map(|(k, v)| format!("{k}={}", percent_encode(v))).collect();
    format!("{url}?{}", pairs.join("&"))
}

fn path_segment(text: &str) -> String {
    percent_encode(text)
}

/// Percent-encodes everything but RFC 3986's unreserved characters (so base64's `+`, `/` and
/// `=` are escaped, as CockroachDB's docs ask).
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_quoted_only_where_needed_and_queries_name_their_table() {
        assert_eq!(ident("orders"), "orders");
        assert_eq!(ident("Orders"), "\"Orders\"");
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(table_of_query("SELECT id, status FROM vehicles WHERE x").as_deref(), Some("vehicles"));
        assert_eq!(table_of_query("select * from app.public.\"Kv\";").as_deref(), Some("Kv"));
        assert_eq!(table_of_query("SELECT 1"), None);
        assert_eq!(percent_encode("a+b/c=="), "a%2Bb%2Fc%3D%3D");
        assert_eq!(sql_string("it's"), "'it''s'");
    }
}
