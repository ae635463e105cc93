//! A deployed function version and how one call runs on it: admit, check out or start an
//! instance, run the handler under the timeout (inline, and in a task of its own only if it is
//! still writing its body when it answers), stream the response back, and return or discard the
//! instance.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Instant, SystemTime};

use http_body_util::BodyExt;
use tokio::sync::oneshot;
use wasmtime::Trap;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p3::bindings::ServicePre;

use crate::error::{DeployError, InvokeError};
use crate::host::{AllowedHosts, Host};
use crate::instance::Instance;
use crate::limits::Limits;
use crate::logs::{LogSink, Stream};
use crate::metrics::FunctionMetrics;
use crate::pool::Pool;
use crate::service::{Failure, Service};
use crate::{BoxError, Request, Response, Shared};

/// Everything about a function that is not its code.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FunctionConfig {
    /// The guest's entire environment.
    pub env: Vec<(String, String)>,
    /// Hosts outbound HTTP may reach; empty denies all.
    pub allowed_outbound_hosts: AllowedHosts,
    pub limits: Limits,
    /// The route prefix the function is served under: CGI modules see it as `SCRIPT_NAME`
    /// and the rest of the path as `PATH_INFO`.
    pub route: String,
}

/// A function's code, pre-linked.
#[derive(Clone)]
pub(crate) enum Code {
    /// A component exporting `wasi:http/incoming-handler`: pooled, reusable instances.
    Http(ProxyPre<Host>),
    /// A component exporting `wasi:http/handler` 0.3: instances that take several calls at once
    /// (see `service`).
    Service(ServicePre<Host>),
    /// A WASI 0.1 command, run once per request (see `cgi`).
    Cgi(wasmtime::InstancePre<crate::cgi::CgiHost>),
}

impl Code {
    /// What the code exports, as `wafer list` shows it.
    pub(crate) fn interface(&self) -> &'static str {
        match self {
            Code::Http(_) => "wasi:http 0.2",
            Code::Service(_) => "wasi:http 0.3",
            Code::Cgi(_) => "wasi 0.1 command",
        }
    }
}

pub(crate) struct Function {
    pub(crate) name: Arc<str>,
    pub(crate) version: u64,
    pub(crate) digest: String,
    /// The pre-linked code; `None` once evicted after a long idle (see
    /// `Shared::evict_idle_code`), until the next call loads it back from its on-disk artifact.
    pub(crate) code: Mutex<Option<Code>>,
    /// What the code exports (known also while it is evicted).
    pub(crate) interface: &'static str,
    /// Bytes of the code image while loaded.
    pub(crate) code_bytes: usize,
    /// Held while the code is being loaded back, so that concurrent calls load it once.
    pub(crate) loading: tokio::sync::Mutex<()>,
    /// Milliseconds since the Unix epoch when this version was installed.
    pub(crate) installed_ms: u64,
    pub(crate) config: FunctionConfig,
    pub(crate) logs: Arc<LogSink>,
    pub(crate) pool: Pool,
    pub(crate) metrics: FunctionMetrics,
    /// Milliseconds since the Unix epoch of the last call's start (0: never called).
    pub(crate) last_call_ms: std::sync::atomic::AtomicU64,
}

/// How one attempt at a call ended, as seen by the task that ran it.
enum Outcome {
    Ok,
    Failed {
        error: InvokeError,
        /// The request's head, kept when the failure may be replayed on a fresh instance.
        replay: Option<Box<http::request::Parts>>,
    },
}

impl Function {
    /// Runs one call. Resolves when the guest has set its response head; the body streams on
    /// while the guest writes it.
    pub(crate) async fn invoke(
        self: &Arc<Self>,
        shared: &Arc<Shared>,
        request: Request,
    ) -> Result<Response, InvokeError> {
        self.last_call_ms
            .store(now_ms(), std::sync::atomic::Ordering::Relaxed);
        let code = match self.loaded_code() {
            Some(code) => code,
            None => match self.load_code(shared).await {
                Ok(code) => code,
                Err(e) => {
                    self.metrics.failed(&e);
                    return Err(e);
                }
            },
        };
        let pre = match &code {
            Code::Http(pre) => pre,
            Code::Service(pre) => return self.invoke_service(shared, pre, request).await,
            Code::Cgi(pre) => return crate::cgi::invoke(self, shared, pre, request).await,
        };
        let mut request = request;
        loop {
            let lease = match self.pool.acquire(&self.name).await {
                Ok(lease) => lease,
                Err(e) => {
                    self.metrics.failed(&e);
                    return Err(e);
                }
            };
            let (respond, mut response) = oneshot::channel();
            let (finished, done) = oneshot::channel();
            let mut call = Call::new(run(
                self.clone(),
                pre.clone(),
                shared.clone(),
                lease,
                request,
                respond,
                finished,
            ));
            // The call runs right here until it answers. Most calls finish within that poll,
            // body and all, and need no task of their own; one still writing its body when the
            // head arrives goes on in a task.
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
            match answer {
                Ok(Ok(response)) => {
                    return Ok(response.map(|body| Completed::new(body, done).boxed_unsync()));
                }
                Ok(Err(code)) => {
                    return Err(InvokeError::Guest {
                        function: self.name.to_string(),
                        reason: format!("{code:?}"),
                    });
                }
                // No response: the call's outcome says why.
                Err(Ok(Outcome::Ok)) => {
                    // Unreachable in practice: a call that ends well has responded.
                    return Err(InvokeError::NoResponse {
                        function: self.name.to_string(),
                    });
                }
                Err(Ok(Outcome::Failed {
                    replay: Some(parts),
                    ..
                })) => {
                    request = Request::from_parts(*parts, crate::empty_body());
                }
                Err(Ok(Outcome::Failed { error, .. })) => return Err(error),
                Err(Err(_panic)) => {
                    return Err(InvokeError::Trap {
                        function: self.name.to_string(),
                        reason: "the call failed inside wafer (a bug: see the server log)"
                            .to_string(),
                    });
                }
            }
        }
    }
}

/// What happened first to a call running inline: it finished, or it answered.
enum First {
    Finished(std::thread::Result<Outcome>),
    Answered(Result<crate::instance::GuestResponse, oneshot::error::RecvError>),
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
    shared: Arc<Shared>,
    mut lease: crate::pool::Lease,
    request: Request,
    respond: oneshot::Sender<crate::instance::GuestResponse>,
    finished: oneshot::Sender<bool>,
) -> Outcome {
    let started = Instant::now();
    let warm = lease.instance.take();
    // A pre-warmed instance is warm but has not served a call yet.
    let reused = warm.as_ref().is_some_and(|i| i.calls > 0);
    // A request that failed on a reused instance may be replayed on a fresh one, but only while
    // reuse is unproven and only if the guest cannot have consumed a body.
    let replay = (reused
        && function.pool.reuse_unproven()
        && http_body::Body::size_hint(request.body()).exact() == Some(0))
    .then(|| Box::new(clone_head(&request)));
    let limits = &function.config.limits;

    let attempt = async {
        let mut instance = match warm {
            Some(instance) => instance,
            None => start_instance(&function, &pre, &shared).await?,
        };
        let result = instance
            .handle(request, respond, limits.log_bytes_per_call)
            .await;
        Ok::<_, InvokeError>((instance, result))
    };
    let error = match tokio::time::timeout(limits.timeout, attempt).await {
        Ok(Ok((instance, Ok(())))) if instance.responded() => {
            function.metrics.ok.inc();
            function
                .metrics
                .duration
                .observe(started.elapsed().as_secs_f64());
            let mut instance = instance;
            instance.idle_since = Instant::now();
            function.pool.release(instance, reused);
            drop(lease);
            function.top_up(&shared);
            let _ = finished.send(true);
            return Outcome::Ok;
        }
        Ok(Ok((_instance, Ok(())))) => InvokeError::NoResponse {
            function: function.name.to_string(),
        },
        Ok(Ok((instance, Err(trap)))) => classify_trap(&function, &instance, trap),
        Ok(Err(start_error)) => start_error,
        Err(_elapsed) => InvokeError::Timeout {
            function: function.name.to_string(),
            timeout: limits.timeout,
        },
    };
    let error = function.failed(error, started);
    let replay_allowed = matches!(
        error,
        InvokeError::Trap { .. } | InvokeError::NoResponse { .. } | InvokeError::Guest { .. }
    );
    let switched = function.pool.discard(reused && replay_allowed);
    if switched {
        let note = format!(
            "a reused instance of `{}` failed where fresh ones succeed; serving every call from a fresh instance from now on (set reuse = 1 to make this explicit)",
            function.name
        );
        tracing::warn!(function = %function.name, "{note}");
        function.logs.push(Stream::Wafer, note);
    }
    drop(lease);
    function.top_up(&shared);
    let _ = finished.send(false);
    Outcome::Failed {
        error,
        replay: replay.filter(|_| switched),
    }
}

impl Function {
    /// The code, if it is in memory.
    pub(crate) fn loaded_code(&self) -> Option<Code> {
        self.code.lock().unwrap().clone()
    }

    /// Loads evicted code back: the on-disk artifact is mapped and linked again (milliseconds,
    /// no compilation).
    async fn load_code(self: &Arc<Self>, shared: &Arc<Shared>) -> Result<Code, InvokeError> {
        let _loading = self.loading.lock().await;
        if let Some(code) = self.loaded_code() {
            return Ok(code);
        }
        let (from, digest) = (shared.clone(), self.digest.clone());
        let loaded = tokio::task::spawn_blocking(move || from.load_code(&digest))
            .await
            .unwrap_or_else(|e| Err(DeployError::Internal(e.to_string())));
        let code = loaded.map_err(|e| InvokeError::Instantiate {
            function: self.name.to_string(),
            reason: format!("loading its compiled code back failed: {e}"),
        })?;
        *self.code.lock().unwrap() = Some(code.clone());
        shared.metrics.code_bytes.add(self.code_bytes as i64);
        self.metrics.code_reloaded.inc();
        tracing::debug!(function = %self.name, "compiled code loaded back");
        Ok(code)
    }

    /// Drops the code from memory; returns whether it was loaded.
    pub(crate) fn evict_code(&self) -> bool {
        self.code.lock().unwrap().take().is_some()
    }

    /// When the function was last called, or installed if it never was (ms since the epoch).
    pub(crate) fn last_used_ms(&self) -> u64 {
        self.last_call_ms
            .load(std::sync::atomic::Ordering::Relaxed)
            .max(self.installed_ms)
    }

    /// Tops the pool up to `min_instances` in the background, if it is short and no top-up is
    /// running. Pre-warming takes only free slots of the worker's budget: it never evicts.
    pub(crate) fn top_up(self: &Arc<Self>, shared: &Arc<Shared>) {
        let code = match self.loaded_code() {
            Some(Code::Cgi(_)) | None => return,
            Some(code) => code,
        };
        let short = self.pool.start_top_up();
        if short == 0 {
            return;
        }
        let running = shared.ticker.demand().running();
        let (function, shared) = (self.clone(), Arc::downgrade(shared));
        tokio::spawn(async move {
            let _running = running;
            for _ in 0..short {
                let Some(shared) = shared.upgrade() else {
                    break;
                };
                let Some(slot) = shared.slots.try_take() else {
                    tracing::debug!(function = %function.name, "instance budget full; min_instances not reached");
                    break;
                };
                let started = Instant::now();
                let clock = shared.lanes.clock();
                let warmed = match &code {
                    Code::Http(pre) => match Instance::start(&function, pre, slot, clock).await {
                        Ok(instance) => {
                            function
                                .metrics
                                .instantiate
                                .observe(started.elapsed().as_secs_f64());
                            function.pool.add_prewarmed(instance);
                            Ok(())
                        }
                        Err(e) => Err(trap_reason(&e)),
                    },
                    Code::Service(pre) => {
                        let service = Service::spawn(&function, pre, slot, clock);
                        match service.started().await {
                            Ok(()) => {
                                function.pool.add_service(service, false);
                                Ok(())
                            }
                            Err(failure) => Err(function.error_for(failure).to_string()),
                        }
                    }
                    Code::Cgi(_) => break,
                };
                match warmed {
                    Ok(()) => {}
                    Err(reason) => {
                        let note = format!("pre-warming an instance failed: {reason}");
                        function.logs.push(Stream::Wafer, note);
                        break;
                    }
                }
            }
            function.pool.topped_up();
        });
    }

    /// Runs one call on a wasi:http 0.3 instance: the most recently used one with room for
    /// another call, or a fresh one. Resolves when the guest has returned its response head; the
    /// call (and its hold on the instance) ends with the response body.
    async fn invoke_service(
        self: &Arc<Self>,
        shared: &Arc<Shared>,
        pre: &ServicePre<Host>,
        request: Request,
    ) -> Result<Response, InvokeError> {
        let admission = match self.pool.admit(&self.name).await {
            Ok(admission) => admission,
            Err(e) => {
                self.metrics.failed(&e);
                return Err(e);
            }
        };
        let started = Instant::now();
        let limits = &self.config.limits;
        let deadline = tokio::time::Instant::now() + limits.timeout;
        let service = match self.pool.checkout_service() {
            Some(service) => service,
            None => {
                // Registered before it has started, so that the calls arriving meanwhile
                // queue on it instead of starting instances of their own.
                let slot = match shared.take_slot(&self.name) {
                    Ok(slot) => slot,
                    Err(e) => return Err(self.failed(e, started)),
                };
                let service = Service::spawn(self, pre, slot, shared.lanes.clock());
                self.metrics.cold_starts.inc();
                self.pool.add_service(service.clone(), true);
                service
            }
        };
        let call = ServiceCall {
            function: self.clone(),
            shared: shared.clone(),
            service,
            started,
            ended: None,
            _admission: admission,
        };
        let answer = tokio::time::timeout_at(
            deadline,
            call.service.call(request, limits.log_bytes_per_call),
        )
        .await;
        match answer {
            Ok(Ok(response)) => Ok(response.map(|body| {
                ServiceBody {
                    inner: body,
                    call: Some(call),
                    deadline: Box::pin(tokio::time::sleep_until(deadline)),
                }
                .boxed_unsync()
            })),
            Ok(Err(failure)) => Err(call.fail(self.error_for(failure))),
            Err(_elapsed) => Err(call.fail(self.timed_out())),
        }
    }

    fn timed_out(&self) -> InvokeError {
        InvokeError::Timeout {
            function: self.name.to_string(),
            timeout: self.config.limits.timeout,
        }
    }

    fn error_for(&self, failure: Failure) -> InvokeError {
        let function = self.name.to_string();
        match failure {
            Failure::Guest(reason) => InvokeError::Guest { function, reason },
            Failure::Trap(reason) => InvokeError::Trap { function, reason },
            Failure::MemoryLimit => InvokeError::MemoryLimit {
                function,
                limit: self.config.limits.memory,
            },
            Failure::Instantiate(reason) => InvokeError::Instantiate { function, reason },
            Failure::Stopped => InvokeError::Trap {
                function,
                reason: "the instance stopped (another call on it failed or timed out)".to_string(),
            },
        }
    }

    /// Records a failed call in the metrics and the function's log.
    fn failed(&self, error: InvokeError, started: Instant) -> InvokeError {
        self.metrics
            .duration
            .observe(started.elapsed().as_secs_f64());
        self.metrics.failed(&error);
        self.logs.push(Stream::Wafer, error.to_string());
        tracing::debug!(function = %self.name, error = %error, "call failed");
        error
    }
}

/// One call on a wasi:http 0.3 instance, from admission to the end of its response body.
/// Dropping it ends the call: the instance takes another, or leaves the pool if the call failed.
struct ServiceCall {
    function: Arc<Function>,
    shared: Arc<Shared>,
    service: Arc<Service>,
    started: Instant,
    /// How the call ended: `Some(true)` done, `Some(false)` failed; `None`: the client went away.
    ended: Option<bool>,
    _admission: crate::pool::Admission,
}

impl ServiceCall {
    fn fail(mut self, error: InvokeError) -> InvokeError {
        self.ended = Some(false);
        self.function.failed(error, self.started)
    }
}

impl Drop for ServiceCall {
    fn drop(&mut self) {
        if self.ended == Some(true) {
            self.function.metrics.ok.inc();
            self.function
                .metrics
                .duration
                .observe(self.started.elapsed().as_secs_f64());
        }
        // A guest error code leaves the instance fine; anything else may have poisoned it.
        self.function
            .pool
            .finish_service_call(&self.service, self.ended == Some(false));
        self.function.top_up(&self.shared);
    }
}

/// A wasi:http 0.3 response body: streams from the instance, and ends the call when it ends. It
/// stops with an error at the function's timeout, as a 0.2 call's body does.
struct ServiceBody {
    inner: wasmtime_wasi_http::WasiBody,
    call: Option<ServiceCall>,
    deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl http_body::Body for ServiceBody {
    type Data = bytes::Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, BoxError>>> {
        use std::task::Poll;
        let this = &mut *self;
        let Some(call) = this.call.as_mut() else {
            return Poll::Ready(None);
        };
        match std::pin::Pin::new(&mut this.inner).poll_frame(cx) {
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

/// Takes a slot of the worker's instance budget and starts an instance in it, counting a cold
/// start.
async fn cold_start<T, F>(
    function: &Function,
    shared: &Shared,
    start: impl FnOnce(crate::pool::Slot, crate::limits::CallClock) -> F,
) -> Result<T, InvokeError>
where
    F: std::future::Future<Output = wasmtime::Result<T>>,
{
    let slot = shared.take_slot(&function.name)?;
    let started = Instant::now();
    let instance =
        start(slot, shared.lanes.clock())
            .await
            .map_err(|e| InvokeError::Instantiate {
                function: function.name.to_string(),
                reason: trap_reason(&e),
            })?;
    function.metrics.cold_starts.inc();
    function
        .metrics
        .instantiate
        .observe(started.elapsed().as_secs_f64());
    Ok(instance)
}

/// Instantiates a fresh wasi:http 0.2 instance, making room in the worker's instance budget if
/// needed.
async fn start_instance(
    function: &Function,
    pre: &ProxyPre<Host>,
    shared: &Shared,
) -> Result<Instance, InvokeError> {
    cold_start(function, shared, |slot, clock| {
        Instance::start(function, pre, slot, clock)
    })
    .await
}

fn classify_trap(function: &Function, instance: &Instance, error: wasmtime::Error) -> InvokeError {
    if instance.hit_memory_limit() {
        return InvokeError::MemoryLimit {
            function: function.name.to_string(),
            limit: function.config.limits.memory,
        };
    }
    tracing::debug!(function = %function.name, error = ?error, "guest trapped");
    InvokeError::Trap {
        function: function.name.to_string(),
        reason: trap_reason(&error),
    }
}

/// One line saying why a guest stopped: the trap itself if there is one (its backtrace stays out
/// of error responses), else the error's chain.
pub(crate) fn trap_reason(error: &wasmtime::Error) -> String {
    if let Some(trap) = error.downcast_ref::<Trap>() {
        let reason = match trap {
            Trap::StackOverflow => "stack overflow (call stack exhausted)".to_string(),
            Trap::UnreachableCodeReached => {
                "wasm `unreachable` executed (a Rust guest panicked or aborted; see `wafer logs`)"
                    .to_string()
            }
            other => other.to_string(),
        };
        return reason;
    }
    let text = format!("{error:#}");
    text.lines().next().unwrap_or("").to_string()
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

fn clone_head(request: &Request) -> http::request::Parts {
    let (mut parts, ()) = http::Request::new(()).into_parts();
    parts.method = request.method().clone();
    parts.uri = request.uri().clone();
    parts.version = request.version();
    parts.headers = request.headers().clone();
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
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, BoxError>>> {
        use std::task::Poll;
        let this = &mut *self;
        match std::pin::Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(None) => {}
            Poll::Ready(Some(frame)) => return Poll::Ready(Some(frame.map_err(Into::into))),
            Poll::Pending => return Poll::Pending,
        }
        let Some(done) = this.done.as_mut() else {
            return Poll::Ready(None);
        };
        let completed = match std::pin::Pin::new(done).poll(cx) {
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
