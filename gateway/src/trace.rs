//! Traces of calls for OpenTelemetry: a span per call naming the function, version, route and
//! trigger, whether it started an instance and how long that took, its status and error kind.
//! An HTTP caller's W3C trace context (`traceparent`) is continued, a queue message's is linked
//! to, and the call's own goes on to the guest, whose outbound requests carry it further.
//!
//! Off unless the binary installs an exporter and calls [`enable`] (spans go to the
//! `wafer::call` target for it to pick up); while off, a call pays one relaxed load.

use std::sync::atomic::{AtomicBool, Ordering};

use axum::http::HeaderMap;
use opentelemetry::trace::TraceContextExt;
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use wafer_worker::{CallStart, InvokeError};

/// The `tracing` target of call spans.
pub const TARGET: &str = "wafer::call";

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Starts tracing calls (an exporter and the W3C propagator must be installed).
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The trace context `headers` carry (W3C `traceparent`, `tracestate`), if any.
fn caller(headers: &HeaderMap) -> opentelemetry::Context {
    opentelemetry::global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(headers)))
}

/// What made a call, as OpenTelemetry's `faas.trigger` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    Http,
    Queue,
    Schedule,
}

impl Trigger {
    fn name(self) -> &'static str {
        match self {
            Trigger::Http => "http",
            Trigger::Queue => "pubsub",
            Trigger::Schedule => "timer",
        }
    }

    fn kind(self) -> &'static str {
        match self {
            Trigger::Http => "server",
            Trigger::Queue => "consumer",
            Trigger::Schedule => "internal",
        }
    }
}

/// One call's span, or nothing while tracing is off.
pub struct CallSpan(Option<tracing::Span>);

impl CallSpan {
    /// A span for a call of `version` of `function` at `route`, made by `trigger`, whose
    /// incoming `headers` may carry the caller's trace context.
    pub fn start(
        trigger: Trigger,
        function: &str,
        version: u64,
        route: &str,
        method: &str,
        headers: &HeaderMap,
    ) -> CallSpan {
        if !enabled() {
            return CallSpan(None);
        }
        let span = tracing::info_span!(
            target: TARGET,
            "call",
            otel.name = %format!("{method} {route}"),
            otel.kind = trigger.kind(),
            otel.status_code = Empty,
            faas.trigger = trigger.name(),
            faas.name = function,
            faas.version = %version,
            faas.coldstart = Empty,
            http.route = route,
            http.request.method = method,
            http.response.status_code = Empty,
            error.type = Empty,
            wafer.instantiate_us = Empty,
        );
        let call = CallSpan(Some(span));
        match trigger {
            // A message was sent in one trace and is consumed in another: a link, as the
            // messaging conventions have it.
            Trigger::Queue => call.link(headers),
            Trigger::Http | Trigger::Schedule => {
                let caller = caller(headers);
                if let Some(span) = &call.0
                    && caller.span().span_context().is_valid()
                {
                    let _ = span.set_parent(caller);
                }
            }
        }
        call
    }

    /// Links this call to the trace context in `headers` (each message of a batch).
    pub fn link(&self, headers: &HeaderMap) {
        let Some(span) = &self.0 else {
            return;
        };
        let sender = caller(headers).span().span_context().clone();
        if sender.is_valid() {
            span.add_link(sender);
        }
    }

    /// Puts this call's trace context in the headers the guest receives (replacing the
    /// caller's, as a proxy does), so that its outbound requests carry it on.
    pub fn inject(&self, headers: &mut HeaderMap) {
        let Some(span) = &self.0 else {
            return;
        };
        let context = span.context();
        opentelemetry::global::get_text_map_propagator(|p| {
            p.inject_context(&context, &mut HeaderInjector(headers));
        });
    }

    /// Records the answer: its status, and how the call started. A platform error's kind is in
    /// its `x-wafer-error` header.
    pub fn answered<B>(&self, response: &http::Response<B>) {
        let Some(span) = &self.0 else {
            return;
        };
        let status = response.status();
        span.record("http.response.status_code", status.as_u16());
        if let Some(start) = response.extensions().get::<CallStart>() {
            span.record("faas.coldstart", start.cold);
            if let Some(took) = start.instantiate {
                // OpenTelemetry integers are signed: an i64 stays an integer, a u64 would not.
                span.record(
                    "wafer.instantiate_us",
                    i64::try_from(took.as_micros()).unwrap_or(i64::MAX),
                );
            }
        }
        if let Some(kind) = response
            .headers()
            .get("x-wafer-error")
            .and_then(|v| v.to_str().ok())
        {
            span.record("error.type", kind);
        }
        if status.is_server_error() {
            span.record("otel.status_code", "ERROR");
        }
    }

    /// Records a call that got no answer.
    pub fn failed(&self, error: &InvokeError) {
        let Some(span) = &self.0 else {
            return;
        };
        span.record("error.type", error.kind());
        span.record("otel.status_code", "ERROR");
    }
}
