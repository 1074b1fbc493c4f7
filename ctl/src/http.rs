//! A small HTTP client for sending changefeed requests, retrying as CockroachDB does.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

#[derive(Clone)]
pub struct Sender {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
    /// `Authorization` header value, as `webhook_auth_header` sends it.
    authorization: Option<String>,
}

impl Sender {
    /// `base` is `http://host:port/db/schema`.
    pub fn new(base: String) -> Sender {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new()).pool_max_idle_per_host(256).build(connector);
        Sender { client, base, authorization: None }
    }

    /// Sends `Authorization: Bearer <token>` with every request.
    pub fn with_token(mut self, token: &str) -> Sender {
        self.authorization = Some(format!("Bearer {token}"));
        self
    }

    /// One attempt; returns the status and body text.
    pub async fn post_once(&self, path_suffix: &str, body: Bytes) -> anyhow::Result<(u16, String)> {
        let mut request =
            Request::post(format!("{}{path_suffix}", self.base)).header("content-type", "application/json");
        if let Some(authorization) = &self.authorization {
            request = request.header("authorization", authorization);
        }
        let request = request.body(Full::new(body))?;
        let response = self.client.request(request).await?;
        let status = response.status().as_u16();
        let text = response.into_body().collect().await?.to_bytes();
        Ok((status, String::from_utf8_lossy(&text).into_owned()))
    }

    /// Sends until a 2xx, backing off from 50 ms to 2 s; a 400 is returned at once, since
    /// retrying a body that can never be accepted only stalls the feed.
    pub async fn post(&self, body: Bytes) -> anyhow::Result<()> {
        let mut backoff = Duration::from_millis(50);
        loop {
            match self.post_once("", body.clone()).await {
                Ok((200..=299, _)) => return Ok(()),
                Ok((400, text)) => anyhow::bail!("rejected with 400: {}", text.trim()),
                Ok(_) | Err(_) => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
    }
}

impl Sender {
    /// A GET of `path` on the same host; returns the status.
    pub async fn get(&self, path: &str) -> anyhow::Result<u16> {
        let authority = self.base.split('/').take(3).collect::<Vec<_>>().join("/");
        let request = Request::get(format!("{authority}{path}")).body(Full::new(Bytes::new()))?;
        Ok(self.client.request(request).await?.status().as_u16())
    }
}
