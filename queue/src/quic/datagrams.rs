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

/// A QUIC endpoint on `socket`, its buffers sized first.
pub(super) fn endpoint(socket: UdpSocket, server: Option<quinn::ServerConfig>) -> std::io::Result<quinn::Endpoint> {
    size_buffers(&socket);
    quinn::Endpoint::new(quinn::EndpointConfig::default(), server, socket, Arc::new(quinn::TokioRuntime))
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
}
