//! A wasi:http 0.2 call: lease a warm instance or start one, run the handler under the timeout
//! (inline in the caller's task, and in a task of its own only if it is still writing its body
//! when it answers), stream the response back, and return or discard the instance. A call that
//! failed on a reused instance of a function whose reuse is unproven is replayed once on a fresh
//! instance: such calls keep their request (body up to [`REPLAY_BODY`]) until then.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::Poll;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use http_body::Frame;
use http_body_util::{BodyExt, BodyStream, StreamBody};
use tokio::sync::oneshot;
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use super::Function;
use crate::backend::{BoxError, CallStart, Request, Response};
use crate::error::InvokeError;
use crate::host::Host;
use crate::instance::{GuestResponse, P2Instance};
use crate::logs::Stream;
use crate::pool::{Discarded, Lease};

/// The largest request body kept so that a call on a reused instance can be replayed; a call
/// with a larger body streams it, and is not replayed.
pub(crate) const REPLAY_BODY: usize = 1 << 20;

/// Runs one call, replaying it on a fresh instance if its first attempt may be replayed.
pub(super) async fn invoke(
    function: &Arc<Function>,
    pre: &ProxyPre<Host>,
    mut request: Request,
) -> Result<Response, InvokeError> {
    let mut kept: Option<Kept> = None;
    loop {
        let lease = function
            .pool
            .lease(&function.name)
            .await
            .map_err(|e| function.refused(e))?;
        // A pre-warmed instance is warm but has not served a call yet.
        let reused = lease.instance.as_ref().is_some_and(|i| i.calls > 0);
        if reused && kept.is_none() && function.pool.reuse_unproven() {
            (request, kept) = keep(request).await;
        }
        match attempt(function, pre, lease, request, kept.is_some()).await {
            Ok(response) => return Ok(response),
            Err(Retry::Replay) => match kept.take() {
                Some(again) => request = again.request(),
                None => unreachable!("only a kept request is replayed"),
            },
            Err(Retry::No(error)) => return Err(error),
        }
    }
}

/// A request kept whole, to be sent again.
struct Kept {
    head: http::request::Parts,
    body: Bytes,
    trailers: Option<http::HeaderMap>,
}

impl Kept {
    fn request(&self) -> Request {
        let head = clone_head(&self.head);
        let data = Frame::data(self.body.clone());
        let frames = std::iter::once(data).chain(self.trailers.clone().map(Frame::trailers));
        let body = StreamBody::new(futures::stream::iter(frames.map(Ok::<_, BoxError>)));
        Request::from_parts(head, body.boxed_unsync())
    }
}

/// Reads the request's body, if it is at most [`REPLAY_BODY`] bytes, and keeps it; a larger
/// one (or one that breaks off) goes on as it came, with what was read put back in front.
async fn keep(request: Request) -> (Request, Option<Kept>) {
    let (head, mut body) = request.into_parts();
    if http_body::Body::size_hint(&body).lower() > REPLAY_BODY as u64 {
        return (Request::from_parts(head, body), None);
    }
    let mut data = BytesMut::new();
    let mut trailers = None;
    let end = loop {
        match body.frame().await {
            None => break BodyEnd::Whole,
            Some(Ok(frame)) => match frame.into_data() {
                Ok(bytes) => {
                    data.extend_from_slice(&bytes);
                    if data.len() > REPLAY_BODY {
                        break BodyEnd::TooLarge;
                    }
                }
                Err(frame) => trailers = frame.into_trailers().ok(),
            },
            Some(Err(e)) => break BodyEnd::Broke(e),
        }
    };
    let data = data.freeze();
    let rest: Pin<Box<dyn futures::Stream<Item = Result<Frame<Bytes>, BoxError>> + Send>> =
        match end {
            BodyEnd::Whole => {
                let kept = Kept {
                    head,
                    body: data,
                    trailers,
                };
                return (kept.request(), Some(kept));
            }
            BodyEnd::TooLarge => Box::pin(BodyStream::new(body)),
            BodyEnd::Broke(e) => Box::pin(futures::stream::once(std::future::ready(Err(e)))),
        };
    let read = futures::stream::once(std::future::ready(Ok(Frame::data(data))));
    let body = StreamBody::new(read.chain(rest)).boxed_unsync();
    (Request::from_parts(head, body), None)
}

/// How reading a body to keep it ended.
enum BodyEnd {
    Whole,
    /// Past [`REPLAY_BODY`]: the rest streams.
    TooLarge,
    /// The client's body failed: the call sees the same failure.
    Broke(BoxError),
}

/// Whether a failed attempt is replayed.
enum Retry {
    /// On a fresh instance, with the kept request.
    Replay,
    No(InvokeError),
}

/// How one attempt ended, as seen by the task that ran it.
enum Outcome {
    Ok,
    Failed {
        error: InvokeError,
        /// Whether the request is to be replayed on a fresh instance.
        replay: bool,
    },
}

/// One attempt, polled right here until it answers. Most calls finish within that poll, body
/// and all, and need no task of their own; one still writing its body when the head arrives
/// goes on in a task.
async fn attempt(
    function: &Arc<Function>,
    pre: &ProxyPre<Host>,
    lease: Lease,
    request: Request,
    replayable: bool,
) -> Result<Response, Retry> {
    let (respond, mut response) = oneshot::channel();
    let (finished, done) = oneshot::channel();
    let cold = lease.instance.is_none();
    let traced = CallStart::wanted(&request);
    let instantiate = Arc::new(OnceLock::new());
    let mut call = Call::new(run(
        function.clone(),
        pre.clone(),
        lease,
        (request, replayable),
        respond,
        finished,
        instantiate.clone(),
    ));
    let first = std::future::poll_fn(|cx| {
        if let Poll::Ready(outcome) = Pin::new(&mut call).poll(cx) {
            return Poll::Ready(First::Finished(outcome));
        }
        Pin::new(&mut response).poll(cx).map(First::Answered)
    })
    .await;
    let answer = match first {
        First::Finished(outcome) => response.try_recv().map_err(|_| outcome),
        First::Answered(Ok(answer)) => {
            call.detach();
            Ok(answer)
        }
        First::Answered(Err(_)) => Err(call.await),
    };
    let function_name = || function.name.to_string();
    match answer {
        Ok(Ok(mut response)) => {
            // A cold start has finished instantiating by the time the guest answers.
            let start = CallStart {
                cold,
                instantiate: instantiate.get().copied(),
            };
            start.tell(traced, &mut response);
            Ok(response.map(|body| Completed::new(body, done).boxed_unsync()))
        }
        Ok(Err(code)) => Err(Retry::No(InvokeError::Guest {
            function: function_name(),
            reason: format!("{code:?}"),
        })),
        // No response: the call's outcome says why. (A call that ended well has responded.)
        Err(Ok(Outcome::Ok)) => Err(Retry::No(InvokeError::NoResponse {
            function: function_name(),
        })),
        Err(Ok(Outcome::Failed { replay: true, .. })) => Err(Retry::Replay),
        Err(Ok(Outcome::Failed { error, .. })) => Err(Retry::No(error)),
        Err(Err(_panic)) => Err(Retry::No(InvokeError::inside_wafer(&function.name))),
    }
}

/// What happened first to a call running inline: it finished, or it answered.
enum First {
    Finished(std::thread::Result<Outcome>),
    Answered(Result<GuestResponse, oneshot::error::RecvError>),
}

/// One call attempt, polled inline by the caller. Detached (spawned to run to completion) when
/// the caller stops polling it before it finished: once it has answered, or when the caller
/// goes away (a client that hangs up does not cut a call short, as on Lambda). A panic inside it
/// is caught and reported instead of taking the connection down.
struct Call(Option<Pin<Box<dyn Future<Output = std::thread::Result<Outcome>> + Send>>>);

impl Call {
    fn new(call: impl Future<Output = Outcome> + Send + 'static) -> Call {
        use futures::FutureExt;
        Call(Some(Box::pin(
            std::panic::AssertUnwindSafe(call).catch_unwind(),
        )))
    }

    fn detach(mut self) {
        if let Some(call) = self.0.take() {
            tokio::spawn(call);
        }
    }
}

impl Future for Call {
    type Output = std::thread::Result<Outcome>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        let Some(call) = self.0.as_mut() else {
            return Poll::Pending;
        };
        let outcome = std::task::ready!(call.as_mut().poll(cx));
        self.0 = None;
        Poll::Ready(outcome)
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        if let Some(call) = self.0.take() {
            tokio::spawn(call);
        }
    }
}

/// One call attempt. Owns the instance for the call's whole life, including the part of the body
/// the guest writes after setting the response head.
async fn run(
    function: Arc<Function>,
    pre: ProxyPre<Host>,
    mut lease: Lease,
    (request, replayable): (Request, bool),
    respond: oneshot::Sender<GuestResponse>,
    finished: oneshot::Sender<bool>,
    instantiate: Arc<OnceLock<std::time::Duration>>,
) -> Outcome {
    let started = Instant::now();
    let warm = lease.instance.take();
    // A pre-warmed instance is warm but has not served a call yet.
    let reused = warm.as_ref().is_some_and(|i| i.calls > 0);
    let limits = &function.config.limits;

    let attempt = async {
        let mut instance = match warm {
            Some(instance) => instance,
            None => cold_start(&function, &pre, &instantiate).await?,
        };
        let result = instance
            .handle(request, respond, limits.log_bytes_per_call)
            .await;
        Ok::<_, InvokeError>((instance, result))
    };
    let error = match tokio::time::timeout(limits.timeout, attempt).await {
        Ok(Ok((mut instance, Ok(())))) if instance.responded() => {
            function.succeeded(started, instance.ran_long());
            instance.idle_since = Instant::now();
            function.pool.release(instance, reused);
            drop(lease);
            function.top_up();
            let _ = finished.send(true);
            return Outcome::Ok;
        }
        Ok(Ok((_instance, Ok(())))) => InvokeError::NoResponse {
            function: function.name.to_string(),
        },
        Ok(Ok((instance, Err(trap)))) => InvokeError::from_trap(
            &function.name,
            limits.memory,
            instance.hit_memory_limit(),
            &trap,
        ),
        Ok(Err(start_error)) => start_error,
        Err(_elapsed) => function.timed_out(),
    };
    let error = function.failed(error, started);
    let replay_allowed = matches!(
        error,
        InvokeError::Trap { .. } | InvokeError::NoResponse { .. } | InvokeError::Guest { .. }
    );
    let discarded = function.pool.discard(reused && replay_allowed);
    if discarded == (Discarded::ReuseBroke { switched: true }) {
        let note = format!(
            "a reused instance of `{}` failed where fresh ones succeed; serving every call from a fresh instance from now on (set reuse = 1 to make this explicit)",
            function.name
        );
        tracing::warn!(function = %function.name, "{note}");
        function.logs.push(Stream::Wafer, note);
    }
    drop(lease);
    function.top_up();
    let _ = finished.send(false);
    Outcome::Failed {
        error,
        replay: replayable && matches!(discarded, Discarded::ReuseBroke { .. }),
    }
}

/// Takes a slot of the worker's instance budget and instantiates a fresh instance in it,
/// counting a cold start.
async fn cold_start(
    function: &Function,
    pre: &ProxyPre<Host>,
    took: &OnceLock<std::time::Duration>,
) -> Result<P2Instance, InvokeError> {
    let slot = function.capacity.take_slot(&function.name)?;
    let started = Instant::now();
    let clock = function.capacity.clock(Some(function.standing.clone()));
    let store = function.store(pre.engine(), &clock);
    let instance = P2Instance::start(pre, store, clock, slot, &function.metrics)
        .await
        .map_err(|e| InvokeError::instantiate(&function.name, &e))?;
    function.metrics.cold_start();
    let elapsed = started.elapsed();
    function.metrics.instantiated(elapsed);
    let _ = took.set(elapsed);
    Ok(instance)
}

/// A copy of a request head (without its extensions, which do not clone).
fn clone_head(head: &http::request::Parts) -> http::request::Parts {
    let (mut parts, ()) = http::Request::new(()).into_parts();
    parts.method = head.method.clone();
    parts.uri = head.uri.clone();
    parts.version = head.version;
    parts.headers = head.headers.clone();
    parts
}

/// A response body that ends cleanly only if the call that writes it completed. A guest stopped
/// mid-body (timeout, trap) drops its store, which ends wasi:http's body stream as if it were
/// complete; this turns that end into an error, so that the client sees a broken response
/// instead of a short one.
struct Completed {
    inner: wasmtime_wasi_http::p2::body::HyperOutgoingBody,
    done: Option<oneshot::Receiver<bool>>,
}

impl Completed {
    fn new(
        inner: wasmtime_wasi_http::p2::body::HyperOutgoingBody,
        done: oneshot::Receiver<bool>,
    ) -> Completed {
        Completed {
            inner,
            done: Some(done),
        }
    }
}

impl http_body::Body for Completed {
    type Data = bytes::Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(None) => break,
                // Empty writes cost the guest nothing; passed on, each would be an HTTP/2 DATA
                // frame queued without flow control (wasmtime 48.0.9's GHSA-f8mm-ggr3-89wh).
                Poll::Ready(Some(Ok(frame))) if frame.data_ref().is_some_and(|d| d.is_empty()) => {}
                Poll::Ready(Some(frame)) => return Poll::Ready(Some(frame.map_err(Into::into))),
                Poll::Pending => return Poll::Pending,
            }
        }
        let Some(done) = this.done.as_mut() else {
            return Poll::Ready(None);
        };
        let completed = match Pin::new(done).poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(result) => result.unwrap_or(false),
        };
        this.done = None;
        if completed {
            Poll::Ready(None)
        } else {
            Poll::Ready(Some(Err(
                "the function stopped before finishing its response body".into(),
            )))
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
