//! A wasi:http 0.3 call: join the most recently used instance with room for another call, or
//! start one; hand it the request; stream its response back. The call, and its hold on the
//! instance, ends with the response body.

use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Instant;

use http_body_util::BodyExt;
use wasmtime_wasi_http::p3::bindings::ServicePre;

use super::Function;
use crate::backend::{BoxError, CallStart, Request, Response};
use crate::error::InvokeError;
use crate::host::Host;
use crate::instance::P3Instance;
use crate::pool::Admission;

/// Runs one call. Resolves when the guest has returned its response head.
pub(super) async fn invoke(
    function: &Arc<Function>,
    pre: &ServicePre<Host>,
    request: Request,
) -> Result<Response, InvokeError> {
    let admission = function
        .pool
        .admit(&function.name)
        .await
        .map_err(|e| function.refused(e))?;
    let started = Instant::now();
    let traced = CallStart::wanted(&request);
    let limits = &function.config.limits;
    let deadline = tokio::time::Instant::now() + limits.timeout;
    let (instance, cold) = match checkout(function, pre) {
        Ok(checked_out) => checked_out,
        Err(e) => return Err(function.failed(e, started)),
    };
    let call = P3Call {
        function: function.clone(),
        instance,
        started,
        ended: None,
        _admission: admission,
    };
    let answer = tokio::time::timeout_at(
        deadline,
        call.instance.call(request, limits.log_bytes_per_call),
    )
    .await;
    match answer {
        Ok(Ok(mut response)) => {
            // The instance starts in its own task; its time is in the metrics, not here.
            let start = CallStart {
                cold,
                instantiate: None,
            };
            start.tell(traced, &mut response);
            Ok(response.map(|body| {
                P3Body {
                    inner: body,
                    call: Some(call),
                    deadline: Box::pin(tokio::time::sleep_until(deadline)),
                }
                .boxed_unsync()
            }))
        }
        Ok(Err(failure)) => {
            let error = failure.into_error(&function.name, limits.memory);
            Err(call.fail(error))
        }
        Err(_elapsed) => Err(call.fail(function.timed_out())),
    }
}

/// The instance this call runs on, and whether it was started for it: one with room, else a
/// new one. A new one is registered in the pool before it has started, so that calls arriving
/// meanwhile queue on it instead of starting instances of their own.
fn checkout(
    function: &Arc<Function>,
    pre: &ServicePre<Host>,
) -> Result<(Arc<P3Instance>, bool), InvokeError> {
    if let Some(instance) = function.pool.checkout_p3() {
        return Ok((instance, false));
    }
    // The slot is taken outside the pool's lock: making room may evict from any pool, this
    // one included.
    let slot = function.capacity.take_slot(&function.name)?;
    let (instance, started) = function.pool.checkout_or_start_p3(|| {
        // The calls of a 0.3 store share its clock, which cannot tell one call's CPU from
        // many's: it marks no one's standing.
        let clock = function.capacity.clock(None);
        let store = function.store(pre.engine(), &clock);
        P3Instance::spawn(pre, store, clock, slot, &function.metrics)
    });
    if started {
        function.metrics.cold_start();
    }
    Ok((instance, started))
}

/// One call on a wasi:http 0.3 instance, from admission to the end of its response body.
/// Dropping it ends the call: the instance takes another, or leaves the pool if the call failed.
struct P3Call {
    function: Arc<Function>,
    instance: Arc<P3Instance>,
    started: Instant,
    /// How the call ended: `Some(true)` done, `Some(false)` failed; `None`: the client went away.
    ended: Option<bool>,
    _admission: Admission,
}

impl P3Call {
    fn fail(mut self, error: InvokeError) -> InvokeError {
        self.ended = Some(false);
        self.function.failed(error, self.started)
    }
}

impl Drop for P3Call {
    fn drop(&mut self) {
        if self.ended == Some(true) {
            // The calls of an instance share its store's CPU clock, so a 0.3 call's own CPU
            // time is not known: only how it failed counts towards the function's standing.
            self.function.succeeded(self.started, false);
        }
        // A guest error code leaves the instance fine; anything else may have poisoned it.
        self.function
            .pool
            .finish_p3_call(&self.instance, self.ended == Some(false));
        self.function.top_up();
    }
}

/// A wasi:http 0.3 response body: streams from the instance, and ends the call when it ends. It
/// stops with an error at the function's timeout, as a 0.2 call's body does.
struct P3Body {
    inner: wasmtime_wasi_http::WasiBody,
    call: Option<P3Call>,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl http_body::Body for P3Body {
    type Data = bytes::Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, BoxError>>> {
        let this = &mut *self;
        let Some(call) = this.call.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => return Poll::Ready(Some(Ok(frame))),
            Poll::Ready(None) => {
                call.ended = Some(true);
                this.call = None;
                return Poll::Ready(None);
            }
            Poll::Ready(Some(Err(e))) => {
                let error = InvokeError::Guest {
                    function: call.function.name.to_string(),
                    reason: format!("response body failed: {e}"),
                };
                let error = this.call.take().map(|c| c.fail(error));
                return Poll::Ready(error.map(|e| Err(e.to_string().into())));
            }
            Poll::Pending => {}
        }
        if this.deadline.as_mut().poll(cx).is_ready() {
            let error = call.function.timed_out();
            let error = this.call.take().map(|c| c.fail(error));
            return Poll::Ready(error.map(|e| Err(e.to_string().into())));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.call.is_none()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
