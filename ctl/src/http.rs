//! A small HTTP client for sending changefeed requests, retrying as CockroachDB does.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

#[derive(Clone)]
pub struct Sender {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    base: String,
    /// `Authorization` header value, as `webhook_auth_header` sends it.
    authorization: Option<String>,
    /// How long one body is retried before [`Sender::post`] gives up.
    retry_for: Duration,
    /// `Content-Encoding` of the bodies (already encoded by the caller), as `compression` sends it.
    content_encoding: Option<&'static str>,
}

type ClientIdentity = (Vec<rustls::pki_types::CertificateDer<'static>>, rustls::pki_types::PrivateKeyDer<'static>);

/// Statuses a retry cannot change: the body, the token or the URL is wrong.
const FINAL_STATUSES: [u16; 5] = [400, 401, 403, 404, 413];

impl Sender {
    /// `base` is `http://host:port/db/schema` (an `https://` base needs [`Sender::with_ca`]).
    pub fn new(base: String) -> Sender {
        Self::build(base, rustls::RootCertStore::empty(), None).expect("no client certificate to refuse")
    }

    /// Like [`Sender::new`], trusting the CA certificates in the PEM file `ca` for `https://`.
    pub fn with_ca(base: String, ca: &Path) -> anyhow::Result<Sender> {
        Self::with_tls(base, Some(ca), None)
    }

    /// Like [`Sender::with_ca`], also presenting the client certificate and key `client` (files).
    pub fn with_tls(base: String, ca: Option<&Path>, client: Option<(&Path, &Path)>) -> anyhow::Result<Sender> {
        let mut roots = rustls::RootCertStore::empty();
        if let Some(ca) = ca {
            for cert in wharf_base::pem::read_chain(ca, "CA certificate")? {
                roots.add(cert).with_context(|| format!("{} holds a certificate rustls refuses", ca.display()))?;
            }
        }
        let client = match client {
            Some((cert, key)) => {
                Some((wharf_base::pem::read_chain(cert, "client certificate")?, wharf_base::pem::read_key(key)?))
            }
            None => None,
        };
        Self::build(base, roots, client)
    }

    fn build(base: String, roots: rustls::RootCertStore, client: Option<ClientIdentity>) -> anyhow::Result<Sender> {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.enforce_http(false);
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("aws-lc-rs supports the default protocol versions")
            .with_root_certificates(roots);
        let tls = match client {
            Some((chain, key)) => tls.with_client_auth_cert(chain, key).context("the client certificate and key")?,
            None => tls.with_no_client_auth(),
        };
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new()).pool_max_idle_per_host(256).build(connector);
        Ok(Sender { client, base, authorization: None, retry_for: Duration::from_secs(120), content_encoding: None })
    }

    /// Gives up on a body that got no 2xx for this long (default 2 min).
    pub fn with_retry_for(mut self, retry_for: Duration) -> Sender {
        self.retry_for = retry_for;
        self
    }

    /// Sends `Authorization: Bearer <token>` with every request.
    pub fn with_token(mut self, token: &str) -> Sender {
        self.authorization = Some(format!("Bearer {token}"));
        self
    }

    /// Sends `Content-Encoding: <encoding>` with every request (the bodies given are encoded).
    pub fn with_content_encoding(mut self, encoding: &'static str) -> Sender {
        self.content_encoding = Some(encoding);
        self
    }

    /// One attempt; returns the status and body text.
    pub async fn post_once(&self, path_suffix: &str, body: Bytes) -> anyhow::Result<(u16, String)> {
        let mut request =
            Request::post(format!("{}{path_suffix}", self.base)).header("content-type", "application/json");
        if let Some(authorization) = &self.authorization {
            request = request.header("authorization", authorization);
        }
        if let Some(encoding) = self.content_encoding {
            request = request.header("content-encoding", encoding);
        }
        let request = request.body(Full::new(body))?;
        let response = self.client.request(request).await?;
        let status = response.status().as_u16();
        let text = response.into_body().collect().await?.to_bytes();
        Ok((status, String::from_utf8_lossy(&text).into_owned()))
    }

    /// Sends until a 2xx, backing off from 50 ms to 2 s, for at most the retry time. 400, 401,
    /// 403, 404 and 413 end it at once: sending the same body again cannot change them. The first
    /// failure of a body is reported on stderr, so a wrong URL or CA does not retry in silence.
    pub async fn post(&self, body: Bytes) -> anyhow::Result<()> {
        let started = std::time::Instant::now();
        let mut backoff = wharf_base::backoff::Backoff::new(Duration::from_millis(50), Duration::from_secs(2));
        let mut reported = false;
        loop {
            let last = match self.post_once("", body.clone()).await {
                Ok((200..=299, _)) => return Ok(()),
                Ok((status, text)) if FINAL_STATUSES.contains(&status) => {
                    anyhow::bail!("{} answered {status}: {}", self.base, text.trim())
                }
                Ok((status, text)) => format!("{status}: {}", text.trim()),
                Err(error) => format!("{error:#}"),
            };
            if started.elapsed() >= self.retry_for {
                anyhow::bail!("no 2xx from {} in {:?}; last answer: {last}", self.base, self.retry_for);
            }
            if !reported {
                eprintln!("retrying {} (for up to {:?}): {last}", self.base, self.retry_for);
                reported = true;
            }
            tokio::time::sleep(backoff.next_pause()).await;
        }
    }
}

impl Sender {
    /// A GET of `path` on the same host; returns the status.
    pub async fn get(&self, path: &str) -> anyhow::Result<u16> {
        Ok(self.get_text(path).await?.0)
    }

    /// A GET of `path` on the same host; returns the status and body text.
    pub async fn get_text(&self, path: &str) -> anyhow::Result<(u16, String)> {
        let authority = self.base.split('/').take(3).collect::<Vec<_>>().join("/");
        let request = Request::get(format!("{authority}{path}")).body(Full::new(Bytes::new()))?;
        let response = self.client.request(request).await?;
        let status = response.status().as_u16();
        let text = response.into_body().collect().await?.to_bytes();
        Ok((status, String::from_utf8_lossy(&text).into_owned()))
    }
}
