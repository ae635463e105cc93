//! Traces over OTLP: `wafer up` started with the standard `OTEL_` variables exports a span per
//! call to a receiver in the test, which decodes what arrives (OTLP/HTTP protobuf, as a
//! collector would), and the trace context reaches a guest's outbound request.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::{any, post};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::{Span, span, status};
use prost::Message as _;

use crate::support::queues::{Broker, unique_queue};
use crate::support::{Wafer, eventually, guest, http};

/// Spans that reached the receiver (with their resource's `service.name`), and the headers of
/// every request to its `/downstream`.
#[derive(Clone, Default)]
struct Seen {
    spans: Arc<Mutex<Vec<(String, Span)>>>,
    downstream: Arc<Mutex<Vec<HeaderMap>>>,
}

impl Seen {
    fn span(&self, pick: impl Fn(&Span) -> bool) -> Option<(String, Span)> {
        self.spans
            .lock()
            .unwrap()
            .iter()
            .find(|(_, s)| pick(s))
            .cloned()
    }
}

async fn export(State(seen): State<Seen>, body: Bytes) -> Vec<u8> {
    let request = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf export");
    for resource_spans in request.resource_spans {
        let service = resource_spans
            .resource
            .as_ref()
            .and_then(|r| r.attributes.iter().find(|a| a.key == "service.name"))
            .map(|a| text(a.value.as_ref().and_then(|v| v.value.as_ref())))
            .unwrap_or_default();
        for scope in resource_spans.scope_spans {
            for span in scope.spans {
                seen.spans.lock().unwrap().push((service.clone(), span));
            }
        }
    }
    ExportTraceServiceResponse::default().encode_to_vec()
}

async fn downstream(State(seen): State<Seen>, headers: HeaderMap) -> &'static str {
    seen.downstream.lock().unwrap().push(headers);
    "ok"
}

/// A receiver for OTLP exports (`/v1/traces`) and for guests' outbound calls (`/downstream`).
async fn receiver() -> (Seen, String) {
    let seen = Seen::default();
    let app = Router::new()
        .route("/v1/traces", post(export))
        .route("/downstream", any(downstream))
        // Where the `collect` guest reports.
        .route("/record", any(downstream))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (seen, url)
}

fn text(value: Option<&Value>) -> String {
    match value {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(n)) => n.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        _ => String::new(),
    }
}

/// A span attribute as text ("" when absent).
fn attr(span: &Span, key: &str) -> String {
    span.attributes
        .iter()
        .find(|a| a.key == key)
        .map(|a| text(a.value.as_ref().and_then(|v| v.value.as_ref())))
        .unwrap_or_default()
}

fn is_call_of(span: &Span, function: &str) -> bool {
    attr(span, "faas.name") == function
}

/// `wafer up` exporting to `otlp` quickly (a 100 ms batch delay instead of 5 s).
fn traced_wafer(otlp: &str) -> Wafer {
    Wafer::start_with_env(
        &[],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("OTEL_SERVICE_NAME", "wafer-under-test"),
        ],
    )
}

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER: &str = "00f067aa0ba902b7";

#[tokio::test]
async fn an_http_call_continues_the_callers_trace_and_carries_it_to_outbound_requests() {
    let (seen, url) = receiver().await;
    let wafer = traced_wafer(&url);
    wafer
        .deploy_ok(
            "fetch",
            &guest("fetch"),
            "route = \"/fetch\"\nallowed_outbound_hosts = [\"http://127.0.0.1:*\"]\n",
        )
        .await;
    wafer
        .deploy_ok("trap", &guest("trap"), "route = \"/trap\"\n")
        .await;

    let answer = http()
        .get(wafer.url(&format!("/fetch?url={url}/downstream")))
        .header("traceparent", format!("00-{TRACE}-{CALLER}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.text().await.unwrap(), "status 200: ok");

    eventually(Duration::from_secs(30), "the call's span", || async {
        seen.span(|s| is_call_of(s, "fetch")).is_some()
    })
    .await;
    let (service, call) = seen.span(|s| is_call_of(s, "fetch")).unwrap();
    assert_eq!(service, "wafer-under-test");
    assert_eq!(hex(&call.trace_id), TRACE, "the caller's trace goes on");
    assert_eq!(hex(&call.parent_span_id), CALLER, "under the caller's span");
    assert_eq!(call.kind, span::SpanKind::Server as i32);
    assert_eq!(call.name, "GET /fetch");
    assert_eq!(attr(&call, "faas.trigger"), "http");
    assert_eq!(attr(&call, "faas.version"), "1");
    assert_eq!(attr(&call, "http.route"), "/fetch");
    assert_eq!(attr(&call, "http.request.method"), "GET");
    assert_eq!(attr(&call, "http.response.status_code"), "200");
    assert_eq!(
        attr(&call, "faas.coldstart"),
        "true",
        "the first call starts an instance"
    );
    let instantiate: u64 = attr(&call, "wafer.instantiate_us").parse().unwrap();
    assert!(instantiate > 0);
    assert!(call.end_time_unix_nano >= call.start_time_unix_nano);

    // The guest's outbound request carried the call's context: same trace, the call as parent.
    let downstream = seen.downstream.lock().unwrap().clone();
    assert_eq!(downstream.len(), 1);
    assert_eq!(
        downstream[0]["traceparent"].to_str().unwrap(),
        format!("00-{TRACE}-{}-01", hex(&call.span_id))
    );

    // A call without a caller's context starts a trace of its own; this one is warm.
    let answer = http()
        .get(wafer.url(&format!("/fetch?url={url}/downstream")))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    eventually(
        Duration::from_secs(30),
        "the second call's span",
        || async {
            seen.span(|s| is_call_of(s, "fetch") && hex(&s.trace_id) != TRACE)
                .is_some()
        },
    )
    .await;
    let (_, second) = seen
        .span(|s| is_call_of(s, "fetch") && hex(&s.trace_id) != TRACE)
        .unwrap();
    assert!(second.parent_span_id.is_empty());
    assert_eq!(attr(&second, "faas.coldstart"), "false");

    // A failed call says why.
    let answer = http().get(wafer.url("/trap")).send().await.unwrap();
    assert_eq!(answer.status(), 500);
    eventually(Duration::from_secs(30), "the trap's span", || async {
        seen.span(|s| is_call_of(s, "trap")).is_some()
    })
    .await;
    let (_, trap) = seen.span(|s| is_call_of(s, "trap")).unwrap();
    assert_eq!(attr(&trap, "error.type"), "trap");
    assert_eq!(attr(&trap, "http.response.status_code"), "500");
    assert_eq!(
        trap.status.as_ref().map(|s| s.code),
        Some(status::StatusCode::Error as i32)
    );
}

#[tokio::test]
async fn a_queue_delivery_links_to_the_trace_that_sent_the_message() {
    let (seen, url) = receiver().await;
    let broker = Broker::connect().await;
    let queue = unique_queue("traced");
    broker.declare(&queue).await;
    let wafer = traced_wafer(&url);
    wafer
        .deploy_ok(
            "traced",
            &guest("collect"),
            &format!(
                "allowed_outbound_hosts = [\"http://127.0.0.1:*\"]\n[env]\nCOLLECTOR = \"{url}\"\n[[queue]]\nqueue = \"{queue}\"\nurl = \"amqp://guest:guest@127.0.0.1:5672/%2f\""
            ),
        )
        .await;
    let sender = "b7ad6b7169203331";
    broker
        .publish_with_headers(
            &queue,
            b"hello",
            &[("traceparent", &format!("00-{TRACE}-{sender}-01"))],
        )
        .await;
    eventually(Duration::from_secs(60), "the delivery's span", || async {
        seen.span(|s| is_call_of(s, "traced")).is_some()
    })
    .await;
    let (_, delivery) = seen.span(|s| is_call_of(s, "traced")).unwrap();
    assert_eq!(delivery.kind, span::SpanKind::Consumer as i32);
    assert_eq!(attr(&delivery, "faas.trigger"), "pubsub");
    assert_ne!(hex(&delivery.trace_id), TRACE, "a trace of its own");
    assert_eq!(delivery.links.len(), 1, "{:?}", delivery.links);
    assert_eq!(hex(&delivery.links[0].trace_id), TRACE);
    assert_eq!(hex(&delivery.links[0].span_id), sender);
    // The function's report to the collector carried the delivery's context.
    assert_eq!(attr(&delivery, "http.response.status_code"), "200");
    let reports = seen.downstream.lock().unwrap().clone();
    assert_eq!(reports.len(), 1, "one report, before the call answered");
    assert_eq!(
        reports[0]["traceparent"].to_str().unwrap(),
        format!(
            "00-{}-{}-01",
            hex(&delivery.trace_id),
            hex(&delivery.span_id)
        )
    );
    broker.cleanup().await;
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
