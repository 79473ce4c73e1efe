//! Connections as a service needs them: a cap on open connections below the
//! process's file limit, an idle timeout for connections with no request in
//! progress (a request's head not sent in time, a keep-alive left open), and,
//! at the cap, the longest-idle connection closed for a new one, so that idle
//! or half-sent connections can neither starve requests nor take the file
//! descriptors the live source needs.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, Request};
use axum::middleware::Next;
use axum::response::Response;
use axum::serve::{IncomingStream, Listener};
use samclipseg::sync::lock;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{debug, info, warn};

/// A connection with no request in progress is closed after this long
/// without a byte either way: the header read timeout and the keep-alive.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// File descriptors kept for the process itself: the live source, the
/// bundle, GStreamer's and ONNX Runtime's own (about 20 when idle).
const RESERVED_FDS: u64 = 64;
/// The most connections, however high the file limit.
const MAX_CONNECTIONS: u64 = 16384;

/// Raises the soft limit on open files to the hard limit (as a service gets
/// 1024 by default) and returns the cap on connections that leaves
/// [`RESERVED_FDS`] for the rest of the process.
pub fn connection_cap() -> Result<usize, String> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write/read the struct passed.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(format!(
            "cannot read the open-file limit: {}",
            io::Error::last_os_error()
        ));
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = lim.rlim_max;
        }
    }
    let files: u64 = lim.rlim_cur;
    if files <= RESERVED_FDS + 8 {
        return Err(format!(
            "the open-file limit is {files}: at least {} needed (ulimit -n)",
            RESERVED_FDS + 8
        ));
    }
    Ok((files - RESERVED_FDS).min(MAX_CONNECTIONS) as usize)
}

/// What the listener and each connection share about one connection.
pub struct Slot {
    /// Milliseconds since `Conns::start` of the last byte read or written.
    last_active: AtomicU64,
    /// Requests being answered (until their body is sent).
    in_flight: AtomicUsize,
    /// Set to close the connection at the next read.
    close: AtomicBool,
    reader: Mutex<Option<Waker>>,
    start: Instant,
}

impl Slot {
    fn now(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn touch(&self) {
        self.last_active.store(self.now(), Ordering::Relaxed);
    }

    fn idle_for(&self) -> Option<Duration> {
        (self.in_flight.load(Ordering::Acquire) == 0).then(|| {
            Duration::from_millis(
                self.now()
                    .saturating_sub(self.last_active.load(Ordering::Relaxed)),
            )
        })
    }

    fn close(&self) {
        self.close.store(true, Ordering::Release);
        if let Some(w) = lock(&self.reader).take() {
            w.wake();
        }
    }
}

/// The listener: accepts within the cap, closing the longest-idle
/// connection when a new one comes at the cap.
pub struct Guarded {
    inner: TcpListener,
    permits: Arc<Semaphore>,
    open: Arc<Mutex<Vec<Weak<Slot>>>>,
    /// When `open` is next cleared of closed connections (their `Weak`s
    /// keep a little memory each): twice what was open after the last time.
    prune_at: usize,
    start: Instant,
}

impl Guarded {
    pub fn new(inner: TcpListener, cap: usize) -> Guarded {
        info!("at most {cap} connections; idle ones close after {IDLE_TIMEOUT:?}");
        Guarded {
            inner,
            permits: Arc::new(Semaphore::new(cap)),
            open: Arc::new(Mutex::new(Vec::new())),
            prune_at: 64,
            start: Instant::now(),
        }
    }

    /// Asks the connection idle the longest (no request in progress) to
    /// close; false when every connection is busy.
    fn close_idlest(&self) -> bool {
        let mut open = lock(&self.open);
        open.retain(|w| w.strong_count() > 0);
        let idlest = open
            .iter()
            .filter_map(Weak::upgrade)
            .filter(|s| !s.close.load(Ordering::Acquire))
            .filter_map(|s| s.idle_for().map(|d| (d, s)))
            .max_by_key(|(d, _)| *d);
        match idlest {
            Some((_, slot)) => {
                slot.close();
                true
            }
            None => false,
        }
    }

    async fn permit(&self) -> Option<OwnedSemaphorePermit> {
        if let Ok(p) = self.permits.clone().try_acquire_owned() {
            return Some(p);
        }
        // At the cap: an idle connection makes room (it closes at once, its
        // task drops its permit); with none idle, the new one is refused.
        for _ in 0..3 {
            if !self.close_idlest() {
                break;
            }
            if let Ok(Ok(p)) = tokio::time::timeout(
                Duration::from_millis(200),
                self.permits.clone().acquire_owned(),
            )
            .await
            {
                return Some(p);
            }
        }
        None
    }
}

impl Listener for Guarded {
    type Io = GuardedIo;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (GuardedIo, SocketAddr) {
        loop {
            let (stream, addr) = match self.inner.accept().await {
                Ok(c) => c,
                Err(e) => {
                    // Out of descriptors, or a connection reset before it
                    // was accepted: wait a little, as axum does.
                    debug!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            };
            let Some(permit) = self.permit().await else {
                warn!("{addr}: refused, every connection is busy");
                drop(stream);
                continue;
            };
            let _ = stream.set_nodelay(true);
            let slot = Arc::new(Slot {
                last_active: AtomicU64::new(self.start.elapsed().as_millis() as u64),
                in_flight: AtomicUsize::new(0),
                close: AtomicBool::new(false),
                reader: Mutex::new(None),
                start: self.start,
            });
            {
                let mut open = lock(&self.open);
                open.push(Arc::downgrade(&slot));
                if open.len() >= self.prune_at {
                    open.retain(|w| w.strong_count() > 0);
                    self.prune_at = (2 * open.len()).max(64);
                }
            }
            let io = GuardedIo {
                stream,
                slot,
                idle: Box::pin(tokio::time::sleep(IDLE_TIMEOUT)),
                _permit: permit,
            };
            return (io, addr);
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// One connection: a TCP stream that fails its reads once idle too long or
/// asked to close.
pub struct GuardedIo {
    stream: TcpStream,
    slot: Arc<Slot>,
    idle: Pin<Box<tokio::time::Sleep>>,
    _permit: OwnedSemaphorePermit,
}

impl AsyncRead for GuardedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.slot.close.load(Ordering::Acquire) {
            return Poll::Ready(Err(io::ErrorKind::ConnectionAborted.into()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    this.slot.touch();
                }
                Poll::Ready(r)
            }
            Poll::Pending => {
                *lock(&this.slot.reader) = Some(cx.waker().clone());
                if this.slot.close.load(Ordering::Acquire) {
                    return Poll::Ready(Err(io::ErrorKind::ConnectionAborted.into()));
                }
                // No request in progress: the idle clock runs from the last
                // byte either way.
                if let Some(idle) = this.slot.idle_for() {
                    if idle >= IDLE_TIMEOUT {
                        return Poll::Ready(Err(io::ErrorKind::TimedOut.into()));
                    }
                    let deadline = tokio::time::Instant::now() + (IDLE_TIMEOUT - idle);
                    this.idle.as_mut().reset(deadline);
                    if this.idle.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Err(io::ErrorKind::TimedOut.into()));
                    }
                }
                Poll::Pending
            }
        }
    }
}

impl AsyncWrite for GuardedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.stream).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.slot.touch();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.slot.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

use std::future::Future;

/// A request's connection, for [`track_requests`].
#[derive(Clone)]
pub struct ConnSlot(Arc<Slot>);

impl Connected<IncomingStream<'_, Guarded>> for ConnSlot {
    fn connect_info(stream: IncomingStream<'_, Guarded>) -> Self {
        ConnSlot(stream.io().slot.clone())
    }
}

/// Counts a request as in progress on its connection until its answer's body
/// is sent or dropped: a connection is idle only between requests.
pub async fn track_requests(req: Request, next: Next) -> Response {
    let Some(ConnectInfo(ConnSlot(slot))) =
        req.extensions().get::<ConnectInfo<ConnSlot>>().cloned()
    else {
        return next.run(req).await;
    };
    slot.in_flight.fetch_add(1, Ordering::AcqRel);
    let busy = Busy(slot);
    let res = next.run(req).await;
    let (parts, body) = res.into_parts();
    Response::from_parts(
        parts,
        Body::new(Tracked {
            inner: body,
            _busy: busy,
        }),
    )
}

struct Busy(Arc<Slot>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// An answer's body, holding its connection busy until it ends.
struct Tracked {
    inner: Body,
    _busy: Busy,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
