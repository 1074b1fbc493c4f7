//! JWT authorization with keys in the target's staging schema, as MOLT Replicator does:
//! `jwt_public_keys (id, public_key, active)` and `jwt_revoked_ids (id)`, re-read every
//! `--jwtRefresh` and at once on SIGHUP.
//!
//! No token, an invalid or revoked one → 401 (the body does not say which: a thief learns nothing
//! about a stolen token; the reason is in the log); a valid token for another schema → 403. Token
//! text never appears in a log line, an error body or a metric. A key row that does not parse is
//! skipped with an error naming its id, so one bad row neither blocks refreshes nor startup.

pub mod jwt;
pub mod sign;
pub mod token;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use thiserror::Error;
use wharf_targetdb::{connect, quote_ident, staging};

use jwt::{Grant, PublicKey, TokenError};

/// Verified tokens kept to skip signature checks on later requests (revocation and expiry are
/// checked every time); cleared on every key refresh.
const TOKEN_CACHE: usize = 4096;

#[derive(Debug, Error)]
pub enum AuthError {
    #[error("cannot read JWT keys from the target: {}", wharf_targetdb::describe_pg(.0))]
    Target(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Connect(#[from] wharf_targetdb::ConnectError),
}

/// Why a request was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Denied {
    /// 401: no token, or one that is not valid.
    Unauthenticated(Option<TokenError>),
    /// 403: a valid token that does not grant this schema.
    Forbidden,
}

struct KeySet {
    keys: Vec<PublicKey>,
    revoked: HashSet<String>,
    /// Active key rows that did not parse (each logged with its id when loaded).
    malformed: usize,
}

pub struct Authenticator {
    target_conn: String,
    staging_schema: String,
    leeway: u64,
    keys: RwLock<Arc<KeySet>>,
    cache: Mutex<HashMap<String, Grant>>,
    pub refresh_failures: AtomicU64,
    /// Active key rows skipped because they do not parse, at the last load.
    pub malformed_keys: AtomicU64,
    /// When keys were last loaded, in Unix seconds.
    pub last_refresh: AtomicU64,
}

impl Authenticator {
    /// Creates the key tables if needed and loads the keys (a malformed key is skipped and logged).
    pub async fn start(target_conn: &str, staging_schema: &str, leeway: u64) -> Result<Authenticator, AuthError> {
        let client = connect(target_conn).await?;
        staging::create_jwt_tables(&client, staging_schema).await?;
        let keys = load(&client, staging_schema).await?;
        tracing::info!(keys = keys.keys.len(), revoked = keys.revoked.len(), "JWT keys loaded");
        if keys.keys.is_empty() {
            tracing::warn!(
                "authentication is on and {staging_schema}.jwt_public_keys holds no active key: every request gets 401 until one is added (wharfctl keys add, then SIGHUP)"
            );
        }
        let malformed = keys.malformed;
        Ok(Authenticator {
            target_conn: target_conn.to_owned(),
            staging_schema: staging_schema.to_owned(),
            leeway,
            keys: RwLock::new(Arc::new(keys)),
            cache: Mutex::new(HashMap::new()),
            refresh_failures: AtomicU64::new(0),
            malformed_keys: AtomicU64::new(malformed as u64),
            last_refresh: AtomicU64::new(unix_now()),
        })
    }

    /// Re-reads keys and revocations; on failure keeps the previous ones and logs a warning.
    pub async fn refresh(&self) {
        let loaded = async { load(&connect(&self.target_conn).await?, &self.staging_schema).await }.await;
        match loaded {
            Ok(keys) => {
                tracing::info!(keys = keys.keys.len(), revoked = keys.revoked.len(), "JWT keys refreshed");
                self.malformed_keys.store(keys.malformed as u64, Ordering::Relaxed);
                *self.keys.write().expect("keys lock") = Arc::new(keys);
                self.last_refresh.store(unix_now(), Ordering::Relaxed);
                self.cache.lock().expect("token cache lock").clear();
            }
            Err(error) => {
                self.refresh_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%error, "JWT key refresh failed; keeping the previous keys");
            }
        }
    }

    /// Decides whether `token` may write to `database.schema`.
    pub fn check(&self, token: Option<&str>, database: &str, schema: &str) -> Result<(), Denied> {
        let token = token.ok_or(Denied::Unauthenticated(None))?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let keys = self.keys.read().expect("keys lock").clone();
        let cached = self.cache.lock().expect("token cache lock").get(token).cloned();
        let grant = match cached {
            Some(grant) if grant.exp.is_none_or(|exp| now < exp.saturating_add(self.leeway)) => grant,
            _ => {
                let grant = jwt::verify(token, &keys.keys, &keys.revoked, now, self.leeway)
                    .map_err(|e| Denied::Unauthenticated(Some(e)))?;
                let mut cache = self.cache.lock().expect("token cache lock");
                if cache.len() >= TOKEN_CACHE {
                    cache.clear();
                }
                cache.insert(token.to_owned(), grant.clone());
                grant
            }
        };
        if keys.revoked.contains(&grant.jti) {
            return Err(Denied::Unauthenticated(Some(TokenError::Revoked)));
        }
        if grant.allows(database, schema) { Ok(()) } else { Err(Denied::Forbidden) }
    }
}

async fn load(client: &tokio_postgres::Client, staging_schema: &str) -> Result<KeySet, AuthError> {
    let schema = quote_ident(staging_schema);
    let rows = client
        .query(&format!("SELECT id::text, public_key FROM {schema}.jwt_public_keys WHERE active ORDER BY id"), &[])
        .await?;
    let mut keys = Vec::with_capacity(rows.len());
    let mut malformed = 0;
    for row in &rows {
        match PublicKey::from_pem(row.get(0), row.get(1)) {
            Ok(key) => keys.push(key),
            Err(error) => {
                malformed += 1;
                tracing::error!(%error, "skipped a malformed JWT key; tokens it signed get 401 until the row is fixed or deactivated (wharfctl keys deactivate)");
            }
        }
    }
    let revoked = client
        .query(&format!("SELECT id FROM {schema}.jwt_revoked_ids"), &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    Ok(KeySet { keys, revoked, malformed })
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
