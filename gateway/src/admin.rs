//! The admin API under `/_wafer/v1/` (bearer token required), plus `/_wafer/healthz`,
//! `/_wafer/metrics` and `/_wafer/v1/openapi.json` (open, like most exporters; they carry no
//! secrets). The routes and their OpenAPI document come from one list (`open` and
//! `protected`), so the document cannot leave a route out; `openapi` adds what the handlers
//! cannot say themselves.
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
//! | GET | `/_wafer/v1/functions/{name}/stats` | its last hour of calls in 10 s buckets |
//! | GET | `/_wafer/v1/functions/{name}/queues` | its queue triggers and their queues' depths |

mod openapi;

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
use axum::routing::any;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use wafer_worker::logs::LogLine;
use wafer_worker::stats::{BUCKET_MS, StatsBucket, WINDOW_BUCKETS};
use wafer_worker::{FunctionStatus, LogEvent, LogQuery, WorkerHealth};

use crate::error::{ApiError, ErrorBody};
use crate::functions::{Changed, DeployOptions, Record, Version};
use crate::manifest::{Manifest, validate_name};
use crate::state::Gateway;
use crate::trigger;
use crate::trigger::amqp::config::redact_url;
use crate::trigger::amqp::{QueueInfo, TriggerStatus};

pub use openapi::document;

pub(crate) fn routes(gateway: Arc<Gateway>) -> Router<Arc<Gateway>> {
    let max_upload = usize::try_from(gateway.config.max_upload).unwrap_or(usize::MAX);
    let token = middleware::from_fn_with_state(gateway, require_token);
    let (router, _) = open()
        .merge(protected(max_upload).route_layer(token.clone()))
        .split_for_parts();
    // Unknown API paths answer 404 in the API's own error shape, after the token check.
    let unknown = Router::new()
        .route("/_wafer/v1/{*rest}", any(unknown))
        .route_layer(token);
    router.merge(unknown)
}

/// The routes anyone may call, each with its part of the OpenAPI document.
fn open() -> OpenApiRouter<Arc<Gateway>> {
    OpenApiRouter::with_openapi(openapi::base())
        .routes(routes!(healthz))
        .routes(routes!(metrics))
        .routes(routes!(openapi::serve))
}

/// The routes that need the admin token, each with its part of the OpenAPI document.
fn protected(max_upload: usize) -> OpenApiRouter<Arc<Gateway>> {
    let (schemas, paths, one) = routes!(show, deploy, delete);
    let one = one.layer(DefaultBodyLimit::max(max_upload));
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes((schemas, paths, one))
        .routes(routes!(versions))
        .routes(routes!(traffic))
        .routes(routes!(rollback))
        .routes(routes!(tag, untag))
        .routes(routes!(invoke))
        .routes(routes!(logs))
        .routes(routes!(stats))
        .routes(routes!(queues))
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

/// The gateway's health, for load balancers and probes.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok`, or `stopping` while it shuts down (then with status 503).
    pub status: &'static str,
    pub functions: usize,
    pub worker: WorkerHealth,
    pub queue_triggers: Vec<TriggerStatus>,
}

/// Health: 200 while serving, 503 once shutting down.
#[utoipa::path(get, path = "/_wafer/healthz", tag = "platform", security(()),
    responses(
        (status = 200, description = "Serving", body = Health),
        (status = 503, description = "Shutting down", body = Health),
    ))]
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
    let body = Health {
        status: if worker.shutting_down {
            "stopping"
        } else {
            "ok"
        },
        functions: gateway.functions.len(),
        worker,
        queue_triggers: triggers,
    };
    (status, Json(body)).into_response()
}

/// Prometheus metrics, in the text exposition format.
#[utoipa::path(get, path = "/_wafer/metrics", tag = "platform", security(()),
    responses((status = 200, description = "Every series", body = String,
        content_type = "text/plain; version=0.0.4")))]
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
#[derive(Serialize, ToSchema)]
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
    /// The primary version's manifest; secret values and broker passwords are redacted.
    pub manifest: Manifest,
    pub traffic: Vec<Share>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sticky_header: Option<String>,
    /// Tag -> version.
    pub tags: std::collections::BTreeMap<String, u64>,
    /// Versions kept.
    pub versions_kept: usize,
    /// The primary version's schedules, with their next runs.
    pub schedules: Vec<ScheduleInfo>,
    /// The worker's view; null if the function is recorded but could not be loaded.
    pub status: Option<FunctionStatus>,
}

/// One schedule and when it runs next.
#[derive(Serialize, ToSchema)]
pub struct ScheduleInfo {
    pub name: String,
    pub cron: String,
    pub timezone: String,
    /// RFC 3339 (UTC); null if the pattern has no slot left.
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
#[derive(Serialize, ToSchema)]
pub struct Share {
    pub version: u64,
    pub weight: u32,
    pub percent: f64,
}

/// One kept version.
#[derive(Serialize, ToSchema)]
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

/// A function's kept versions, newest first.
#[derive(Serialize, ToSchema)]
pub struct Versions {
    pub function: String,
    pub sticky_header: Option<String>,
    pub versions: Vec<VersionInfo>,
}

/// The answer to a deploy: the function as it is now, and the version the deploy made.
#[derive(Serialize, ToSchema)]
pub struct Deployed {
    #[serde(flatten)]
    pub function: FunctionInfo,
    pub deployed_version: u64,
    /// Workers that had not installed the version when the deploy stopped waiting (a cluster).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub slow_workers: Vec<String>,
}

/// The answer to a change of traffic or tags: the function as it is now, and the split it had
/// before.
#[derive(Serialize, ToSchema)]
pub struct ChangeInfo {
    #[serde(flatten)]
    pub function: FunctionInfo,
    pub previous_traffic: Vec<Share>,
    /// The version the change was about (rolled back to, tagged, or the primary).
    pub changed_version: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub slow_workers: Vec<String>,
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

/// Every deployed function.
#[utoipa::path(get, path = "/_wafer/v1/functions", tag = "functions",
    responses((status = 200, description = "Every function, by name", body = Vec<FunctionInfo>)))]
async fn list(State(gateway): State<Arc<Gateway>>) -> Json<Vec<FunctionInfo>> {
    let records = gateway.functions.list();
    Json(futures::future::join_all(records.into_iter().map(|r| info(&gateway, r))).await)
}

/// The answer for a function name that is not deployed (in every route under `{name}`).
#[derive(utoipa::IntoResponses)]
#[response(status = 404, description = "No such function")]
#[allow(dead_code)] // Only describes the answer; `ApiError::NotFound` makes it.
struct NoSuchFunction(ErrorBody);

fn known(gateway: &Gateway, name: &str) -> Result<Record, ApiError> {
    gateway
        .functions
        .get(name)
        .ok_or_else(|| ApiError::NotFound(format!("no function named `{name}`")))
}

/// One function.
#[utoipa::path(get, path = "/_wafer/v1/functions/{name}", tag = "functions",
    params(openapi::Name),
    responses(
        (status = 200, description = "The function", body = FunctionInfo),
        NoSuchFunction,
    ))]
async fn show(
    State(gateway): State<Arc<Gateway>>,
    Path(name): Path<String>,
) -> Result<Json<FunctionInfo>, ApiError> {
    let record = known(&gateway, &name)?;
    Ok(Json(info(&gateway, record).await))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct DeployQuery {
    /// `false`: the new version takes no traffic yet (try it with `x-wafer-version`).
    traffic: Option<bool>,
    /// Why this version exists (at most 1,000 bytes), shown in its history.
    message: Option<String>,
    /// A tag for the new version.
    tag: Option<String>,
}

/// The multipart form a deploy sends.
#[derive(ToSchema)]
#[allow(dead_code)] // Only describes the form; the handler reads it field by field.
struct DeployForm {
    /// `wafer.toml` (a `.toml` file name or a TOML content type) or the same as JSON; may be
    /// left out for all defaults.
    manifest: Option<String>,
    /// The WebAssembly component or WASI 0.1 module.
    #[schema(value_type = String, format = Binary, content_media_type = "application/wasm")]
    component: Vec<u8>,
}

/// Deploys a new version: validated and compiled before anything refers to it; it takes all
/// traffic unless `traffic=false`.
#[utoipa::path(put, path = "/_wafer/v1/functions/{name}", tag = "functions",
    params(openapi::Name, DeployQuery),
    request_body(content = DeployForm, content_type = "multipart/form-data"),
    responses(
        (status = 201, description = "The function was new", body = Deployed),
        (status = 200, description = "A new version of a function that existed", body = Deployed),
        (status = 400, description = "A bad manifest, component or form", body = ErrorBody),
        (status = 409, description = "Another change was committed first, or the route is taken", body = ErrorBody),
        (status = 413, description = "The upload is over the limit", body = ErrorBody),
        (status = 507, description = "The data directory is full or read-only: nothing was stored", body = ErrorBody),
    ))]
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
    let body = Deployed {
        function: info(&gateway, deployed.record).await,
        deployed_version: deployed.version,
        slow_workers: deployed.slow_workers,
    };
    Ok((status, Json(body)).into_response())
}

/// The function's kept versions, newest first, with their tags and shares of traffic.
#[utoipa::path(get, path = "/_wafer/v1/functions/{name}/versions", tag = "versions",
    params(openapi::Name),
    responses(
        (status = 200, description = "Its versions", body = Versions),
        NoSuchFunction,
    ))]
async fn versions(
    State(gateway): State<Arc<Gateway>>,
    Path(name): Path<String>,
) -> Result<Json<Versions>, ApiError> {
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
    Ok(Json(Versions {
        function: name,
        sticky_header: record.traffic.sticky_header.clone(),
        versions,
    }))
}

/// The answer to a change: the function as it is now, and the split it had before.
async fn changed(gateway: &Gateway, before: Record, changed: Changed) -> Json<ChangeInfo> {
    Json(ChangeInfo {
        function: info(gateway, changed.record).await,
        previous_traffic: shares(&before),
        changed_version: changed.version,
        slow_workers: changed.slow_workers,
    })
}

/// A version as a request names it: a number, a tag, or `latest`.
#[derive(Deserialize, ToSchema)]
#[serde(untagged, expecting = "a version: a number, a tag or `latest`")]
enum Selector {
    Number(u64),
    Name(String),
}

impl Selector {
    fn text(&self) -> String {
        match self {
            Selector::Number(n) => n.to_string(),
            Selector::Name(name) => name.clone(),
        }
    }
}

/// How calls split between versions.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct TrafficBody {
    /// At most 16 versions; weights are relative (they need not add up to 100).
    split: Vec<SplitEntry>,
    /// A header name keeps callers on one version; `""` stops that; absent leaves it as is.
    sticky_header: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct SplitEntry {
    version: Selector,
    weight: u32,
}

fn json_body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let bytes = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        bytes
    };
    serde_json::from_slice(bytes).map_err(|e| ApiError::BadRequest(format!("body: {e}")))
}

/// Splits calls between versions (each must be kept); the change reaches calls at once.
#[utoipa::path(put, path = "/_wafer/v1/functions/{name}/traffic", tag = "versions",
    params(openapi::Name),
    request_body(content = TrafficBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The new split (and the one before)", body = ChangeInfo),
        (status = 400, description = "A version that is not kept, a bad weight or body", body = ErrorBody),
        NoSuchFunction,
        (status = 409, description = "Another change was committed first", body = ErrorBody),
    ))]
async fn traffic(
    State(gateway): State<Arc<Gateway>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<ChangeInfo>, ApiError> {
    let body: TrafficBody = json_body(&body)?;
    let split: Vec<(String, u32)> = body
        .split
        .iter()
        .map(|e| (e.version.text(), e.weight))
        .collect();
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

#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
struct RollbackBody {
    /// The version to send all traffic to [default: the newest kept version older than the
    /// primary; during a split, its oldest version].
    to: Option<Selector>,
}

/// Sends all traffic back to an earlier version at once (no compiling: its code is stored).
#[utoipa::path(post, path = "/_wafer/v1/functions/{name}/rollback", tag = "versions",
    params(openapi::Name),
    request_body(content = Option<RollbackBody>, content_type = "application/json"),
    responses(
        (status = 200, description = "All traffic on the version rolled back to", body = ChangeInfo),
        (status = 400, description = "Nothing to roll back to, or a bad body", body = ErrorBody),
        NoSuchFunction,
        (status = 409, description = "Another change was committed first", body = ErrorBody),
    ))]
async fn rollback(
    State(gateway): State<Arc<Gateway>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<ChangeInfo>, ApiError> {
    let body: RollbackBody = json_body(&body)?;
    let to = body.to.as_ref().map(Selector::text);
    let before = known(&gateway, &name)?;
    let done = gateway
        .functions
        .change(&name, |record| record.rollback(to.as_deref()))
        .await?;
    tracing::info!(function = %name, version = done.version, "rolled back");
    Ok(changed(&gateway, before, done).await)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct TagBody {
    version: Selector,
}

/// Names a version (a tagged version is served, so calls can pin it).
#[utoipa::path(put, path = "/_wafer/v1/functions/{name}/tags/{tag}", tag = "versions",
    params(openapi::Name, openapi::Tag),
    request_body(content = TagBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The function with the tag", body = ChangeInfo),
        (status = 400, description = "A bad tag, a version not kept, or a bad body", body = ErrorBody),
        NoSuchFunction,
        (status = 409, description = "Another change was committed first", body = ErrorBody),
    ))]
async fn tag(
    State(gateway): State<Arc<Gateway>>,
    Path((name, tag)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<ChangeInfo>, ApiError> {
    let body: TagBody = json_body(&body)?;
    let version = body.version.text();
    let before = known(&gateway, &name)?;
    let done = gateway
        .functions
        .change(&name, |record| {
            Ok(record.tag(&tag, Some(&version))?.unwrap_or_default())
        })
        .await?;
    Ok(changed(&gateway, before, done).await)
}

/// Removes a tag.
#[utoipa::path(delete, path = "/_wafer/v1/functions/{name}/tags/{tag}", tag = "versions",
    params(openapi::Name, openapi::Tag),
    responses(
        (status = 200, description = "The function without the tag", body = ChangeInfo),
        NoSuchFunction,
        (status = 409, description = "Another change was committed first", body = ErrorBody),
    ))]
async fn untag(
    State(gateway): State<Arc<Gateway>>,
    Path((name, tag)): Path<(String, String)>,
) -> Result<Json<ChangeInfo>, ApiError> {
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

/// Deletes the function: its versions, triggers, schedules and logs.
#[utoipa::path(delete, path = "/_wafer/v1/functions/{name}", tag = "functions",
    params(openapi::Name),
    responses(
        (status = 204, description = "Deleted"),
        NoSuchFunction,
    ))]
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

/// Calls the function with this request, whatever its route; `x-wafer-path` sets the path it
/// sees, `x-wafer-version` pins a version. The answer is the function's own.
#[utoipa::path(method(get, post, put, delete, patch, head, options),
    path = "/_wafer/v1/functions/{name}/invoke", tag = "functions",
    params(openapi::Name,
        ("x-wafer-path" = Option<String>, Header, description = "The path the function sees [default: its route]"),
        ("x-wafer-version" = Option<String>, Header, description = "A version number or tag to call")),
    request_body(content = String, content_type = "*/*", description = "Passed to the function as it is"),
    responses(
        (status = "default", description = "The function's answer, or a platform error with `x-wafer-error` set"),
    ))]
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
    let call = trigger::http::Call {
        function: &name,
        route: record.route(),
        target: &target,
    };
    Ok(call
        .run(backend, gateway.config.max_request_body, request)
        .await)
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct LogsQuery {
    /// The most recent lines to start with [default: 100].
    tail: Option<usize>,
    /// Go on with new lines as they come, until the client hangs up.
    #[serde(default)]
    follow: bool,
}

/// The function's output (stdout, stderr, and wafer's notes about its calls), one JSON object
/// per line, oldest first.
#[utoipa::path(get, path = "/_wafer/v1/functions/{name}/logs", tag = "functions",
    params(openapi::Name, LogsQuery),
    responses(
        (status = 200, description = "Its lines; with `follow`, the stream stays open", body = LogLine,
            content_type = "application/x-ndjson"),
        NoSuchFunction,
    ))]
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

/// A function's last hour of calls.
#[derive(Serialize, ToSchema)]
pub struct Stats {
    pub function: String,
    pub bucket_seconds: u64,
    pub window_seconds: u64,
    /// The server's clock when it answered (ms since the Unix epoch).
    pub now_ms: u64,
    pub totals: StatsTotals,
    /// One point per bucket, oldest first; the last is the current, partial bucket.
    pub points: Vec<StatsPoint>,
}

/// Calls over the whole window.
#[derive(Serialize, ToSchema, Default)]
pub struct StatsTotals {
    pub calls: u64,
    pub errors: u64,
    pub cold: u64,
    pub warm: u64,
}

/// One bucket of calls.
#[derive(Serialize, ToSchema)]
pub struct StatsPoint {
    /// The bucket's start (ms since the Unix epoch).
    pub t_ms: u64,
    /// Calls that finished in it, and how many of them failed.
    pub calls: u64,
    pub errors: u64,
    /// Calls that started an instance, and calls a live instance took.
    pub cold: u64,
    pub warm: u64,
    /// Call durations (the worker's part: admission to the end of the handler), estimated from
    /// half-octave bins, so within about 19%; null without calls.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// Mean time to start an instance; null if none started.
    pub instantiate_ms: Option<f64>,
}

impl From<&StatsBucket> for StatsPoint {
    fn from(b: &StatsBucket) -> StatsPoint {
        StatsPoint {
            t_ms: b.start_ms,
            calls: b.calls,
            errors: b.errors,
            cold: b.cold,
            warm: b.warm,
            p50_ms: b.percentile_ms(0.5),
            p99_ms: b.percentile_ms(0.99),
            instantiate_ms: b.instantiate_ms(),
        }
    }
}

/// The function's last hour of calls in 10-second buckets (every worker's, added up): calls,
/// errors, cold and warm starts, p50/p99 latency and instantiation time. Kept in memory, so it
/// starts empty when the server does.
#[utoipa::path(get, path = "/_wafer/v1/functions/{name}/stats", tag = "functions",
    params(openapi::Name),
    responses(
        (status = 200, description = "One point per bucket", body = Stats),
        NoSuchFunction,
    ))]
async fn stats(
    State(gateway): State<Arc<Gateway>>,
    Path(name): Path<String>,
) -> Result<Json<Stats>, ApiError> {
    known(&gateway, &name)?;
    let now_ms = wafer_worker::time::now_ms();
    let window = gateway
        .backend()
        .stats(&name)
        .await
        .unwrap_or_default()
        .window(now_ms);
    let totals = window.iter().fold(StatsTotals::default(), |mut t, b| {
        t.calls += b.calls;
        t.errors += b.errors;
        t.cold += b.cold;
        t.warm += b.warm;
        t
    });
    Ok(Json(Stats {
        function: name,
        bucket_seconds: BUCKET_MS / 1000,
        window_seconds: BUCKET_MS * WINDOW_BUCKETS / 1000,
        now_ms,
        totals,
        points: window.iter().map(StatsPoint::from).collect(),
    }))
}

/// The function's queue triggers, their connection state, and how many messages wait in each
/// queue and its dead-letter queue. On a cluster, one entry per worker and queue, since each
/// worker holds a consumer of its own.
#[utoipa::path(get, path = "/_wafer/v1/functions/{name}/queues", tag = "functions",
    params(openapi::Name),
    responses(
        (status = 200, description = "Its triggers", body = Vec<QueueInfo>),
        NoSuchFunction,
    ))]
async fn queues(
    State(gateway): State<Arc<Gateway>>,
    Path(name): Path<String>,
) -> Result<Json<Vec<QueueInfo>>, ApiError> {
    known(&gateway, &name)?;
    let queues = match (&gateway.functions.triggers, &gateway.queue_reports) {
        (Some(triggers), _) => triggers.queues(&name).await,
        (None, Some(reports)) => reports.queues(&name).await,
        (None, None) => Vec::new(),
    };
    Ok(Json(queues))
}
