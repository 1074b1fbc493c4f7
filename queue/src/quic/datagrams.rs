//! The UDP sockets under the queue service's QUIC endpoints, with room for a chunk in flight.
//!
//! A datagram that arrives when its socket's receive buffer is full is dropped by the kernel;
//! QUIC then resends it after a loss timeout and halves its congestion window. With Linux's
//! default buffers (208 KiB) a chunk of several MiB overran them: in one bench run the service
//! lost 6,843 of 144,580 datagrams to the applier (`UdpRcvbufErrors` counted 1,279,367 drops on
//! this machine over earlier runs). With 8 MiB buffers the same runs lost none.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;

use socket2::{Domain, Protocol, SockRef, Socket, Type};

/// Socket buffer size asked for, each way.
const SOCKET_BUFFER: usize = 8 << 20;

/// The largest UDP payload an endpoint accepts and path MTU discovery may try. Ethernet paths
/// stay at their 1,500-byte MTU; loopback and jumbo-frame networks get here, with a quarter of the
/// packets (and of the per-packet work) of Ethernet's. quinn hands the kernel up to 10 packets in
/// one segmented (GSO) send, which must fit in one 64 KiB IP datagram: with larger packets the
/// kernel refuses every full batch, quinn counts it as loss and falls back to 1,200 bytes.
pub(super) const MAX_UDP_PAYLOAD: u16 = 6_500;

/// A QUIC endpoint on `socket`, its buffers sized first, driven by `runtime`.
pub(super) fn endpoint(
    socket: UdpSocket,
    server: Option<quinn::ServerConfig>,
    runtime: Arc<dyn quinn::Runtime>,
) -> std::io::Result<quinn::Endpoint> {
    size_buffers(&socket);
    let mut config = quinn::EndpointConfig::default();
    config.max_udp_payload_size(MAX_UDP_PAYLOAD).expect("within QUIC's bounds");
    quinn::Endpoint::new(config, server, socket, runtime)
}

/// A client socket: dual-stack where the host has IPv6, IPv4 otherwise.
pub(super) fn client_socket() -> std::io::Result<UdpSocket> {
    let any6: SocketAddr = "[::]:0".parse().expect("address");
    dual_stack(any6).or_else(|_| UdpSocket::bind("0.0.0.0:0"))
}

fn dual_stack(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let socket = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_only_v6(false)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// Asks for [`SOCKET_BUFFER`] each way. The kernel grants at most `net.core.rmem_max` and
/// `net.core.wmem_max` (and reports twice what it grants); under half the size asked for is worth
/// a warning.
fn size_buffers(socket: &UdpSocket) {
    let socket = SockRef::from(socket);
    let recv = socket.set_recv_buffer_size(SOCKET_BUFFER).and_then(|()| socket.recv_buffer_size());
    let send = socket.set_send_buffer_size(SOCKET_BUFFER).and_then(|()| socket.send_buffer_size());
    let short = |size: &std::io::Result<usize>| size.as_ref().map_or(true, |s| *s < SOCKET_BUFFER / 2);
    if short(&recv) || short(&send) {
        tracing::warn!(
            wanted = SOCKET_BUFFER,
            recv = ?recv,
            send = ?send,
            "queue service: the kernel granted small UDP socket buffers, so datagrams may be dropped and resent under load; raise net.core.rmem_max and net.core.wmem_max to at least {}",
            SOCKET_BUFFER
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sysctl(name: &str) -> usize {
        std::fs::read_to_string(format!("/proc/sys/net/core/{name}")).unwrap().trim().parse().unwrap()
    }

    #[test]
    fn buffers_are_as_large_as_the_kernel_allows() {
        let socket = client_socket().unwrap();
        size_buffers(&socket);
        let socket = SockRef::from(&socket);
        // Linux grants min(asked, limit) and reports twice that (it counts its bookkeeping).
        assert_eq!(socket.recv_buffer_size().unwrap(), 2 * SOCKET_BUFFER.min(sysctl("rmem_max")));
        assert_eq!(socket.send_buffer_size().unwrap(), 2 * SOCKET_BUFFER.min(sysctl("wmem_max")));
    }

    fn tokio() -> Arc<dyn quinn::Runtime> {
        Arc::new(quinn::TokioRuntime)
    }

    fn tls_files(dir: &std::path::Path) -> super::super::TlsFiles {
        use wharf_testkit::tlspg::{issue, new_ca, write};
        let ca = new_ca("test CA");
        let (cert, key) = issue(&ca, &["localhost"], "localhost");
        super::super::TlsFiles {
            ca: write(dir, "ca.crt", &ca.pem()).unwrap(),
            certificate: write(dir, "node.crt", &cert).unwrap(),
            private_key: write(dir, "node.key", &key).unwrap(),
        }
    }

    /// Path MTU discovery on loopback reaches [`MAX_UDP_PAYLOAD`] while a few MiB go through in
    /// full segmented batches, without a black hole (a refused batch would be one).
    #[tokio::test]
    async fn loopback_packets_grow_to_the_largest_payload() {
        let dir = tempfile::tempdir().unwrap();
        let files = tls_files(dir.path());
        let server_config = super::super::tls::server_config(&files, None, std::time::Duration::from_secs(10)).unwrap();
        let server = endpoint(UdpSocket::bind("127.0.0.1:0").unwrap(), Some(server_config), tokio()).unwrap();
        let addr = server.local_addr().unwrap();
        let mut client = endpoint(client_socket().unwrap(), None, tokio()).unwrap();
        client.set_default_client_config(super::super::tls::client_config(&files).unwrap());
        let receiving = tokio::spawn(async move {
            let connection = client.connect(addr, "localhost").unwrap().await.unwrap();
            let mut stream = connection.accept_uni().await.unwrap();
            let received = stream.read_to_end(64 << 20).await.unwrap().len();
            (connection, received)
        });
        let connection = server.accept().await.unwrap().await.unwrap();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
        let mut stream = connection.open_uni().await.unwrap();
        let mut sent = 0;
        while connection.stats().path.current_mtu < MAX_UDP_PAYLOAD {
            assert!(tokio::time::Instant::now() < deadline, "MTU stuck at {}", connection.stats().path.current_mtu);
            stream.write_all(&[7; 1 << 20]).await.unwrap();
            sent += 1 << 20;
        }
        stream.write_all(&[7; 4 << 20]).await.unwrap();
        stream.finish().unwrap();
        let (_client, received) = receiving.await.unwrap();
        assert_eq!(received, sent + (4 << 20));
        let path = connection.stats().path;
        assert_eq!((path.current_mtu, path.black_holes_detected), (MAX_UDP_PAYLOAD, 0));
    }
}
