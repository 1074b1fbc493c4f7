//! `wharfctl changefeed --check`: one request as the changefeed would send it (same URL, CA,
//! client certificate and token) that journals nothing: an empty payload to a webhook path, an
//! empty data file to a cloud-storage path.

use std::time::Duration;

use anyhow::bail;
use bytes::Bytes;

use super::{ChangefeedArgs, Feed};
use crate::http::Sender;

/// Sends the request; the URL and the status on success, a reason to act on otherwise.
pub async fn check(args: &ChangefeedArgs, feed: &Feed<'_>) -> anyhow::Result<(String, String)> {
    let (path, body) = if args.cloud_storage {
        let table = args.tables.first().map_or("check", |t| t.rsplit('.').next().unwrap_or(t));
        let file = format!("{}-0000000000000000-0-0-00000000-{table}-1.ndjson", "0".repeat(33));
        (format!("{}/{file}", feed.path), Bytes::new())
    } else {
        (feed.path.clone(), Bytes::from_static(br#"{"payload":[],"length":0}"#))
    };
    let url = format!("{}{path}", feed.base);
    let client = args.client_cert.as_deref().zip(args.client_key.as_deref());
    let mut sender = Sender::with_tls(url.clone(), args.ca_cert.as_deref(), client)?;
    if let Some(token) = &feed.token {
        sender = sender.with_token(token);
    }
    let answer = match tokio::time::timeout(Duration::from_secs(10), sender.post_once("", body)).await {
        Ok(answer) => answer,
        Err(_) => bail!("{url}: no answer within 10 s"),
    };
    let (status, text) = match answer {
        Ok(answer) => answer,
        Err(error) => bail!("could not reach {url}: {error:#} (check the host, the port and --caCert)"),
    };
    let text = text.trim();
    let hint = match status {
        200..=299 => return Ok((url, format!("{status} {text}"))),
        401 => {
            "the token is missing, expired or revoked, or signed by a key the ingest does not hold (wharfctl keys list)"
        }
        403 => "the token does not grant this database and schema (wharfctl make-jwt -a db.schema)",
        404 => "the path names a database other than the target's, or a schema it lacks",
        _ => "see the ingest's log",
    };
    bail!("{url} answered {status} ({text}): {hint}")
}
