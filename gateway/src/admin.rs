//! The admin API under `/_wafer/v1/` (bearer token required), plus `/_wafer/healthz` and
//! `/_wafer/metrics` (open, like most exporters; they carry no secrets).
//!
//! | method | path | what |
//! |---|---|---|
//! | GET | `/_wafer/v1/functions` | list functions |
//! | PUT | `/_wafer/v1/functions/{name}` | deploy a version: multipart `manifest` (JSON or TOML) + `component`; `?traffic=false` (takes none yet), `&message=...`, `&tag=canary` |
//! | GET | `/_wafer/v1/functions/{name}` | one function |
//! | GET | `/_wafer/v1/functions/{name}/versions` | its kept versions, newest first |
//! | PUT | `/_wafer/v1/functions/{name}/traffic` | split calls: `{"split": [{"version": "7", "weight": 90}, ...], "sticky_header": "x-user"}` |
//! | POST | `/_wafer/v1/functions/{name}/rollback` | all traffic to the version before (or `{"to": "7"}`) |
//! | PUT, DELETE | `/_wafer/v1/functions/{name}/tags/{tag}` | name a version (`{"version": "8"}`), or stop |
//! | DELETE | `/_wafer/v1/functions/{name}` | delete it |
//! | any | `/_wafer/v1/functions/{name}/invoke` | call it, bypassing routes; `x-wafer-path` sets the path it sees |
//! | GET | `/_wafer/v1/functions/{name}/logs?tail=N&follow=true` | its output, as JSON lines |

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::multipart::MultipartError;
use axum::extract::{DefaultBodyLimit, Multipart, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post, put};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use wafer_worker::{FunctionStatus, LogEvent, LogQuery};

use crate::error::ApiError;
use crate::functions::{Changed, DeployOptions, Record, Version};
use crate::manifest::{Manifest, validate_name};
use crate::state::Gateway;
use crate::trigger;
use crate::trigger::amqp::config::redact_url;

pub(crate) fn routes(gateway: Arc<Gateway>) -> Router<Arc<Gateway>> {
    let max_upload = usize::try_from(gateway.config.max_upload).unwrap_or(usize::MAX);
    let v1 = Router::new()
        .route("/_wafer/v1/functions", get(list))
        .route(
            "/_wafer/v1/functions/{name}",
            get(show)
                .put(deploy)
                .delete(delete)
                .layer(DefaultBodyLimit::max(max_upload)),
        )
        .route("/_wafer/v1/functions/{name}/versions", get(versions))
        .route("/_wafer/v1/functions/{name}/traffic", put(traffic))
        .route("/_wafer/v1/functions/{name}/rollback", post(rollback))
        .route(
            "/_wafer/v1/functions/{name}/tags/{tag}",
            put(tag).delete(untag),
        )
        .route("/_wafer/v1/functions/{name}/invoke", any(invoke))
        .route("/_wafer/v1/functions/{name}/logs", get(logs))
        .route("/_wafer/v1/{*rest}", any(unknown))
        .route_layer(middleware::from_fn_with_state(gateway, require_token));
    Router::new()
        .route("/_wafer/healthz", get(healthz))
        .route("/_wafer/metrics", get(metrics))
        .merge(v1)
}

/// Rejects requests without `Authorization: Bearer <the admin token>`. The comparison takes the
/// same time whatever the guess.
async fn require_token(
    State(gateway): State<Arc<Gateway>>,
    request: Request,
    next: Next,
) -> Response {
    let expected = gateway.config.admin_token.as_bytes();
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or("");
    if expected.is_empty() || !bool::from(given.as_bytes().ct_eq(expected)) {
        return ApiError::Unauthorized.into_response();
    }
    next.run(request).await
}

async fn unknown(uri: Uri) -> ApiError {
    ApiError::NotFound(format!("no wafer API at {}", uri.path()))
}

async fn healthz(State(gateway): State<Arc<Gateway>>) -> Response {
    let worker = gateway.backend().health().await;
    let status = if worker.shutting_down {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    let triggers = gateway
        .functions
        .triggers
        .as_ref()
        .map(|t| t.status())
        .unwrap_or_default();
    let body = serde_json::json!({
        "status": if worker.shutting_down { "stopping" } else { "ok" },
        "functions": gateway.functions.len(),
        "worker": worker,
        "queue_triggers": triggers,
    });
    (status, Json(body)).into_response()
}

async fn metrics(State(gateway): State<Arc<Gateway>>) -> Response {
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&gateway.metrics.gather())
        .unwrap_or_else(|e| format!("# failed to encode metrics: {e}\n"));
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// A function as the API shows it: its primary version (the one carrying the most traffic),
/// how calls split, and the worker's view.
#[derive(Serialize)]
pub struct FunctionInfo {
    pub name: String,
    /// The primary version.
    pub version: u64,
    /// The newest version (above `version` after a rollback or a `--no-traffic` deploy).
    pub latest: u64,
    pub digest: String,
    pub route: String,
    /// RFC 3339, of the primary version.
    pub deployed_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub manifest: Manifest,
    pub traffic: Vec<Share>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sticky_header: Option<String>,
    pub tags: std::collections::BTreeMap<String, u64>,
    /// Versions kept.
    pub versions_kept: usize,
    /// The primary version's schedules, with their next runs.
    pub schedules: Vec<ScheduleInfo>,
    /// The worker's view; absent if the function is recorded but could not be loaded.
    pub status: Option<FunctionStatus>,
}

/// One schedule and when it runs next.
#[derive(Serialize)]
pub struct ScheduleInfo {
    pub name: String,
    pub cron: String,
    pub timezone: String,
    /// RFC 3339 (UTC); absent if the pattern has no slot left.
    pub next_run: Option<String>,
}

fn schedules(record: &Record) -> Vec<ScheduleInfo> {
    let Ok(spec) = record.primary().manifest.validate(&record.name) else {
        return Vec::new();
    };
    let now = chrono::Utc::now();
    spec.schedules
        .iter()
        .map(|s| ScheduleInfo {
            name: s.name.clone(),
            cron: s.pattern.clone(),
            timezone: s.timezone.name().to_string(),
            next_run: s
                .next_after(now)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        })
        .collect()
}

/// One version's part of the split.
#[derive(Serialize)]
pub struct Share {
    pub version: u64,
    pub weight: u32,
    pub percent: f64,
}

/// One kept version.
#[derive(Serialize)]
pub struct VersionInfo {
    pub version: u64,
    pub digest: String,
    pub route: String,
    /// RFC 3339.
    pub deployed_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub tags: Vec<String>,
    /// Percent of calls it takes.
    pub traffic: f64,
}

fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

fn shares(record: &Record) -> Vec<Share> {
    record
        .traffic
        .split
        .iter()
        .map(|&(version, weight)| Share {
            version,
            weight,
            percent: record.share(version),
        })
        .collect()
}

/// A manifest as shown: secret values and broker passwords stay on the server.
fn redacted(version: &Version) -> Manifest {
    let mut manifest = version.manifest.clone();
    for value in manifest.secrets.values_mut() {
        *value = "***".to_string();
    }
    for queue in &mut manifest.queue {
        if let Some(url) = &queue.url {
            queue.url = Some(redact_url(url));
        }
    }
    manifest
}

async fn info(gateway: &Gateway, record: Record) -> FunctionInfo {
    let primary = record.primary();
    FunctionInfo {
        status: gateway.backend().status(&record.name).await,
        version: primary.number,
        latest: record.latest().number,
        digest: primary.digest.clone(),
        route: primary.route.clone(),
        deployed_at: rfc3339(primary.deployed_at_ms),
        message: primary.message.clone(),
        manifest: redacted(primary),
        traffic: shares(&record),
        sticky_header: record.traffic.sticky_header.clone(),
        tags: record.tags.clone(),
        versions_kept: record.versions.len(),
        schedules: schedules(&record),
        name: record.name,
    }
}

async fn list(State(gateway): State<Arc<Gateway>>) -> Json<Vec<FunctionInfo>> {
    let records = gateway.functions.list();
    Json(futures::future::join_all(records.into_iter().map(|r| info(&gateway, r))).await)
}

fn known(gateway: &Gateway, name: &str) -> Result<Record, ApiError> {
    gateway
        .functions
        .get(name)
        .ok_or_else(|| ApiError::NotFound(format!("no function named `{name}`")))
}

async fn show(
    State(gateway): State<Arc<Gateway>>,
    Path(name): Path<String>,
) -> Result<Json<FunctionInfo>, ApiError> {
    let record = known(&gateway, &name)?;
    Ok(Json(info(&gateway, record).await))
}

#[derive(Deserialize)]
struct DeployQuery {
    /// `false`: the new version takes no traffic yet.
    traffic: Option<bool>,
    message: Option<String>,
    /// A tag for the new version.
    tag: Option<String>,
}

async fn deploy(
    State(gateway): State<Arc<Gateway>>,
    Path(name): Path<String>,
    Query(query): Query<DeployQuery>,
    headers: HeaderMap,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<Response, ApiError> {
    validate_name(&name)?;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(n) = declared
        && n > gateway.config.max_upload
    {
        return Err(ApiError::PayloadTooLarge(format!(
            "upload of {n} bytes is over the limit of {} bytes",
            gateway.config.max_upload
        )));
    }
    let mut multipart = multipart.map_err(|e| {
        ApiError::BadRequest(format!(
            "expected a multipart/form-data upload with fields `manifest` and `component`: {}",
            e.body_text()
        ))
    })?;
    let mut manifest = None;
    let mut component = None;
    while let Some(field) = multipart.next_field().await.map_err(upload_error)? {
        let field_name = field.name().unwrap_or("").to_string();
        let is_toml = field.content_type().is_some_and(|t| t.contains("toml"))
            || field.file_name().is_some_and(|f| f.ends_with(".toml"));
        let bytes: Bytes = field.bytes().await.map_err(upload_error)?;
        match field_name.as_str() {
            "manifest" if is_toml => {
                let text = std::str::from_utf8(&bytes)
                    .map_err(|_| ApiError::BadRequest("manifest: not UTF-8".into()))?;
                manifest = Some(Manifest::from_toml(text)?);
            }
            "manifest" => manifest = Some(Manifest::from_json(&bytes)?),
            "component" => component = Some(bytes),
            other => {
                return Err(ApiError::BadRequest(format!(
                    "unexpected multipart field `{other}` (expected `manifest` and `component`)"
                )));
            }
        }
    }
    let component = component
        .ok_or_else(|| ApiError::BadRequest("missing multipart field `component`".into()))?;
    if query.message.as_ref().is_some_and(|m| m.len() > 1000) {
        return Err(ApiError::BadRequest("message: at most 1000 bytes".into()));
    }
    let options = DeployOptions {
        takes_traffic: query.traffic.unwrap_or(true),
        message: query.message,
        tag: query.tag,
        reuse_unchanged: false,
    };
    let deployed = gateway
        .functions
        .deploy(&name, manifest.unwrap_or_default(), component, options)
        .await?;
    let status = if deployed.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut body = serde_json::to_value(info(&gateway, deployed.record).await).unwrap_or_default();
    body["deployed_version"] = deployed.version.into();
    if !deployed.slow_workers.is_empty() {
        body["slow_workers"] = deployed.slow_workers.into();
    }
    Ok((status, Json(body)).into_response())
}

async fn versions(
    State(gateway): State<Arc<Gateway>>,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let record = known(&gateway, &name)?;
    let versions: Vec<VersionInfo> = record
        .versions
        .iter()
        .rev()
        .map(|v| VersionInfo {
            version: v.number,
            digest: v.digest.clone(),
            route: v.route.clone(),
            deployed_at: rfc3339(v.deployed_at_ms),
            message: v.message.clone(),
            tags: record.tags_of(v.number),
            traffic: record.share(v.number),
        })
        .collect();
    Ok(Json(serde_json::json!({
        "function": name,
        "sticky_header": record.traffic.sticky_header,
        "versions": versions,
    })))
}

/// The answer to a change: the function as it is now, and the split it had before.
async fn changed(gateway: &Gateway, before: Record, changed: Changed) -> Json<serde_json::Value> {
    let mut body = serde_json::to_value(info(gateway, changed.record).await).unwrap_or_default();
    body["previous_traffic"] = serde_json::to_value(shares(&before)).unwrap_or_default();
    body["changed_version"] = changed.version.into();
    if !changed.slow_workers.is_empty() {
        body["slow_workers"] = changed.slow_workers.into();
    }
    Json(body)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TrafficBody {
    split: Vec<SplitEntry>,
    /// A header name keeps callers on one version; `""` stops that; absent leaves it as is.
    sticky_header: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SplitEntry {
    /// A number, a tag or `latest` (a JSON number works too).
    version: serde_json::Value,
    weight: u32,
}

/// A selector as sent: `"7"`, `7`, `"canary"`, `"latest"`.
fn selector(value: &serde_json::Value) -> Result<String, ApiError> {
    match value {
        serde_json::Value::String(s) => Ok(s.clone()),
        serde_json::Value::Number(n) => Ok(n.to_string()),
        other => Err(ApiError::BadRequest(format!(
            "a version is a number, a tag or `latest`, not {other}"
        ))),
    }
}

fn json_body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let bytes = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        bytes
    };
    serde_json::from_slice(bytes).map_err(|e| ApiError::BadRequest(format!("body: {e}")))
}

async fn traffic(
    State(gateway): State<Arc<Gateway>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let body: TrafficBody = json_body(&body)?;
    let split = body
        .split
        .iter()
        .map(|e| Ok((selector(&e.version)?, e.weight)))
        .collect::<Result<Vec<_>, ApiError>>()?;
    let sticky = body
        .sticky_header
        .map(|h| Some(h).filter(|h| !h.is_empty()));
    let before = known(&gateway, &name)?;
    let done = gateway
        .functions
        .change(&name, |record| {
            record.set_traffic(&split, sticky)?;
            Ok(record.primary().number)
        })
        .await?;
    tracing::info!(function = %name, split = ?done.record.traffic.split, "traffic split");
    Ok(changed(&gateway, before, done).await)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RollbackBody {
    to: Option<serde_json::Value>,
}

async fn rollback(
    State(gateway): State<Arc<Gateway>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let body: RollbackBody = json_body(&body)?;
    let to = body.to.as_ref().map(selector).transpose()?;
    let before = known(&gateway, &name)?;
    let done = gateway
        .functions
        .change(&name, |record| record.rollback(to.as_deref()))
        .await?;
    tracing::info!(function = %name, version = done.version, "rolled back");
    Ok(changed(&gateway, before, done).await)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TagBody {
    version: serde_json::Value,
}

async fn tag(
    State(gateway): State<Arc<Gateway>>,
    Path((name, tag)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let body: TagBody = json_body(&body)?;
    let version = selector(&body.version)?;
    let before = known(&gateway, &name)?;
    let done = gateway
        .functions
        .change(&name, |record| {
            Ok(record.tag(&tag, Some(&version))?.unwrap_or_default())
        })
        .await?;
    Ok(changed(&gateway, before, done).await)
}

async fn untag(
    State(gateway): State<Arc<Gateway>>,
    Path((name, tag)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let before = known(&gateway, &name)?;
    let done = gateway
        .functions
        .change(&name, |record| {
            record.tag(&tag, None)?;
            Ok(record.primary().number)
        })
        .await?;
    Ok(changed(&gateway, before, done).await)
}

fn upload_error(e: MultipartError) -> ApiError {
    // The underlying cause (a stalled or cut-off body) says more than "failed to read stream".
    let mut reason = e.body_text();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        reason = format!("{reason}: {cause}");
        source = cause.source();
    }
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge(format!("upload is over the size limit: {reason}"))
    } else {
        ApiError::BadRequest(format!("malformed upload: {reason}"))
    }
}

async fn delete(
    State(gateway): State<Arc<Gateway>>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    if gateway.functions.delete(&name).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("no function named `{name}`")))
    }
}

async fn invoke(
    State(gateway): State<Arc<Gateway>>,
    Path(name): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    let record = known(&gateway, &name)?;
    let (mut parts, body) = request.into_parts();
    let path = parts
        .headers
        .remove("x-wafer-path")
        .and_then(|v| v.to_str().ok().map(str::to_string))
        .unwrap_or_else(|| record.route().to_string());
    if !path.starts_with('/') {
        return Err(ApiError::BadRequest(format!(
            "x-wafer-path: `{path}` must start with '/'"
        )));
    }
    parts.uri = path
        .parse()
        .map_err(|e| ApiError::BadRequest(format!("x-wafer-path: `{path}` is not a path: {e}")))?;
    // The admin token is for wafer, never for the function.
    parts.headers.remove(header::AUTHORIZATION);
    let request = Request::from_parts(parts, body);
    let backend = gateway.backend().as_ref();
    let target = record.target();
    let max_body = gateway.config.max_request_body;
    Ok(trigger::http::call(backend, max_body, &name, &target, request).await)
}

#[derive(Deserialize)]
struct LogsQuery {
    tail: Option<usize>,
    #[serde(default)]
    follow: bool,
}

async fn logs(
    State(gateway): State<Arc<Gateway>>,
    Path(name): Path<String>,
    Query(query): Query<LogsQuery>,
) -> Result<Response, ApiError> {
    known(&gateway, &name)?;
    let query = LogQuery {
        tail: query.tail.unwrap_or(100),
        follow: query.follow,
    };
    let lines = gateway
        .backend()
        .logs(&name, query)
        .await
        .ok_or_else(|| ApiError::NotFound(format!("no logs for `{name}`")))?;
    let body =
        Body::from_stream(lines.map(|event| Ok::<_, std::convert::Infallible>(json_line(&event))));
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response())
}

/// One line of the `logs` answer: a log line, or a note that a follower skipped some.
fn json_line(event: &LogEvent) -> String {
    let mut text = match event {
        LogEvent::Line(line) => serde_json::to_string(line).unwrap_or_default(),
        LogEvent::Skipped(n) => serde_json::json!({
            "stream": "wafer",
            "text": format!("{n} lines skipped: the reader fell behind"),
        })
        .to_string(),
    };
    text.push('\n');
    text
}
