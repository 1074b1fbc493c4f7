//! A thread of its own for a QUIC client's packet work (decryption, acknowledgements, loss
//! recovery, timers). A chunk arrives as a burst of packets; worked on the caller's runtime, the
//! burst held up the tasks that wait on the target's replies, and the target sat idle meanwhile.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use tokio::runtime::Handle;

/// A current-thread runtime on a thread named `wharf-quic`, stopped when the last clone of it is
/// dropped. As a [`quinn::Runtime`] it runs everything quinn spawns for an endpoint there.
#[derive(Clone)]
pub(super) struct IoThread {
    handle: Handle,
    _stop: Arc<tokio::sync::oneshot::Sender<()>>,
}

impl IoThread {
    pub(super) fn start() -> std::io::Result<IoThread> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new().name("wharf-quic".into()).spawn(move || {
            let _ = runtime.block_on(stopped);
        })?;
        Ok(IoThread { handle, _stop: Arc::new(stop) })
    }
}

impl fmt::Debug for IoThread {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IoThread")
    }
}

impl quinn::Runtime for IoThread {
    fn new_timer(&self, at: Instant) -> Pin<Box<dyn quinn::AsyncTimer>> {
        let _runtime = self.handle.enter();
        quinn::TokioRuntime.new_timer(at)
    }

    fn spawn(&self, future: Pin<Box<dyn Future<Output = ()> + Send>>) {
        self.handle.spawn(future);
    }

    fn wrap_udp_socket(&self, socket: std::net::UdpSocket) -> std::io::Result<Arc<dyn quinn::AsyncUdpSocket>> {
        let _runtime = self.handle.enter();
        quinn::TokioRuntime.wrap_udp_socket(socket)
    }

    fn now(&self) -> Instant {
        quinn::TokioRuntime.now()
    }
}
