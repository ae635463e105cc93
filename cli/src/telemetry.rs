//! Server logs (text or JSON lines, on stderr) and, when the standard OpenTelemetry variables
//! ask for them, traces of calls exported over OTLP (http/protobuf).
//!
//! Traces are on when `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT` is
//! set, unless `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`. The exporter reads the
//! rest of the standard variables itself (headers, timeout, `OTEL_SERVICE_NAME`,
//! `OTEL_RESOURCE_ATTRIBUTES`).

use std::time::Duration;

use anyhow::{Context as _, bail};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::filter::{EnvFilter, Targets};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{Layer as _, Registry};

/// How server logs are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// How long an export may take before it is given up (the SDK retries on its next batch).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// Keeps the exporter running; dropping it sends what is buffered.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(e) = provider.shutdown()
        {
            eprintln!("warning: not every trace was exported: {e}");
        }
    }
}

/// Whether the environment asks for traces.
fn traces_wanted() -> bool {
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
    let is = |name: &str, value: &str| {
        std::env::var(name).is_ok_and(|v| v.trim().eq_ignore_ascii_case(value))
    };
    (set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") || set("OTEL_EXPORTER_OTLP_ENDPOINT"))
        && !is("OTEL_SDK_DISABLED", "true")
        && !is("OTEL_TRACES_EXPORTER", "none")
}

/// Installs the logger (at `default_level` unless `RUST_LOG` says otherwise) and, for a
/// server process that is asked to, the trace exporter.
pub fn init(format: LogFormat, default_level: &str, server: bool) -> anyhow::Result<Telemetry> {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let logs = match format {
        LogFormat::Text => logs.boxed(),
        LogFormat::Json => logs.json().flatten_event(true).boxed(),
    };
    let provider = if server && traces_wanted() {
        Some(provider()?)
    } else {
        None
    };
    // Only call spans go to OpenTelemetry, whatever the log level.
    let traces = provider.as_ref().map(|provider| {
        // The call's own attributes only: no source locations, threads or busy/idle times.
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("wafer"))
            .with_location(false)
            .with_threads(false)
            .with_target(false)
            .with_level(false)
            .with_tracked_inactivity(false)
            .with_filter(
                Targets::new().with_target(wafer_gateway::trace::TARGET, tracing::Level::INFO),
            )
    });
    Registry::default()
        .with(logs.with_filter(filter))
        .with(traces)
        .try_init()
        .context("failed to install the logger")?;
    if provider.is_some() {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        wafer_gateway::trace::enable();
        tracing::info!("exporting traces over OTLP (http/protobuf)");
    }
    Ok(Telemetry { provider })
}

fn provider() -> anyhow::Result<SdkTracerProvider> {
    if let Ok(protocol) = std::env::var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .or_else(|_| std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL"))
        && protocol.trim() != "http/protobuf"
    {
        bail!(
            "OTEL_EXPORTER_OTLP_PROTOCOL={protocol}: wafer exports traces over http/protobuf only \
             (a collector's port 4318); unset it or set it to http/protobuf"
        );
    }
    let client = reqwest::blocking::Client::builder()
        .timeout(EXPORT_TIMEOUT)
        .build()
        .context("failed to make the trace exporter's HTTP client")?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_timeout(EXPORT_TIMEOUT)
        .with_http_client(Blocking(client))
        .build()
        .context("failed to set up the OTLP trace exporter (check OTEL_EXPORTER_OTLP_ENDPOINT)")?;
    let mut resource = Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name("wafer");
    }
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build())
}

/// The exporter's HTTP client: reqwest's blocking client, which wafer has already, called from
/// the SDK's own batch thread (which runs no async runtime).
#[derive(Debug)]
struct Blocking(reqwest::blocking::Client);

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for Blocking {
    async fn send_bytes(
        &self,
        request: http::Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, opentelemetry_http::HttpError> {
        let request = reqwest::blocking::Request::try_from(request)?;
        let response = self.0.execute(request)?;
        let mut answer = http::Response::builder().status(response.status());
        if let Some(headers) = answer.headers_mut() {
            *headers = response.headers().clone();
        }
        Ok(answer.body(response.bytes()?)?)
    }
}
