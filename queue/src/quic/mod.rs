//! The queue service over QUIC (quinn, mutual TLS with rustls and aws-lc-rs).
//!
//! - [`tls`]: certificates from PEM files; the server requires a client certificate signed by
//!   its CA, the client verifies the server against the same CA.
//! - [`server`]: serves a [`crate::service::QueueService`] to applier processes.
//! - [`client`]: [`client::QuicClient`], the [`crate::client::QueueClient`] of `wharf-applier`.
//! - [`datagrams`]: the UDP sockets under the endpoints, with buffers for a chunk in flight, and
//!   the largest packet size.
//! - [`io_thread`]: the client's packet work on a thread of its own.
//! - [`frames`]: reading and writing [`crate::wire`] frames on QUIC streams, a chunk's rows
//!   without copying them.
//!
//! One connection per applier process. Its first stream says hello (protocol version, name,
//! worker count); each later call is a stream of its own, and each window a stream that carries
//! one `Next` → `Rows` exchange per chunk, so the service never reads ahead of a slow applier.

pub mod client;
mod datagrams;
mod frames;
pub mod identity;
mod io_thread;
pub mod server;
pub mod tls;

pub use client::{ClientSettings, QuicClient};
pub use server::{ServerSettings, serve};
pub use tls::TlsFiles;
