//! The admin API's OpenAPI 3.1 document: the handlers' annotations, plus what they cannot say
//! one by one (the bearer token, and the error shape and kinds every endpoint shares); and
//! serving it at `/_wafer/v1/openapi.json`.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::header::Header;
use utoipa::openapi::path::Operation;
use utoipa::openapi::response::{Response as ApiResponse, ResponseBuilder};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi as Document, Ref, RefOr};
use utoipa::{IntoParams, OpenApi, ToSchema};
use wafer_worker::InvokeError;

use crate::error::{ApiError, ErrorBody};

/// The name of the security scheme every `/_wafer/v1` route requires.
const SCHEME: &str = "admin_token";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "wafer admin API",
        description = "Deploy, inspect, split traffic between and call wafer functions. Every \
            route under `/_wafer/v1` needs `Authorization: Bearer <admin token>` (printed by \
            `wafer up`, set with `--admin-token` or `WAFER_ADMIN_TOKEN`). Errors answer \
            `{\"error\": \"...\"}` with an `x-wafer-error` header naming the kind, so a client \
            can tell wafer's errors from a function's own.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    tags(
        (name = "functions", description = "Deploying, inspecting and calling functions"),
        (name = "versions", description = "Kept versions, traffic splits, rollback and tags"),
        (name = "platform", description = "Health, metrics and this document; no token needed"),
    ),
    components(schemas(ErrorBody))
)]
struct Base;

/// The document's frame, which the routes add their paths to.
pub(super) fn base() -> Document {
    let mut doc = Base::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    doc
}

/// A function's name in a path.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // Only describes the parameter; handlers take `Path<String>`.
pub(super) struct Name {
    /// The function's name: lowercase letters, digits and `-`, starting with a letter.
    name: String,
}

/// A tag's name in a path.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // Only describes the parameter.
pub(super) struct Tag {
    /// The tag: lowercase letters, digits and `-`, not a number and not `latest`.
    tag: String,
}

/// The whole document, as served.
pub fn document() -> Document {
    let mut doc = super::open().merge(super::protected(0)).into_openapi();
    shared(&mut doc);
    doc
}

/// Every `x-wafer-error` kind there is.
fn kinds() -> Vec<&'static str> {
    let mut kinds: Vec<&str> = ApiError::KINDS
        .iter()
        .chain(InvokeError::KINDS)
        .copied()
        .collect();
    kinds.sort_unstable();
    kinds.dedup();
    kinds
}

/// What every operation has in common: the token where it is needed (operations that set
/// their own security, `security(())`, are open), the `x-wafer-error` header on every error
/// answer, and a `default` answer in the error shape for the statuses not listed.
fn shared(doc: &mut Document) {
    let components = doc.components.get_or_insert_with(Default::default);
    components.security_schemes.insert(
        SCHEME.to_string(),
        RefOr::T(SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some("The admin token"))
                .build(),
        )),
    );
    let kind_header = Header::new(
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(kinds())),
    );
    let error = ResponseBuilder::new()
        .description("A platform error (the kind is in `x-wafer-error`)")
        .header("x-wafer-error", kind_header.clone())
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name(ErrorBody::name())))
                .build(),
        )
        .build();
    components
        .responses
        .insert("Error".to_string(), RefOr::T(error));
    let unauthorized = RefOr::Ref(Ref::from_response_name("Error"));
    let needs_token = vec![SecurityRequirement::new(SCHEME, Vec::<String>::new())];
    let mut ids = std::collections::HashSet::new();
    for item in doc.paths.paths.values_mut() {
        let operations = [
            ("get", &mut item.get),
            ("put", &mut item.put),
            ("post", &mut item.post),
            ("delete", &mut item.delete),
            ("options", &mut item.options),
            ("head", &mut item.head),
            ("patch", &mut item.patch),
        ];
        for (method, operation) in operations {
            let Some(operation) = operation else {
                continue;
            };
            // One handler on several methods (`invoke`) would repeat its id; ids must be unique.
            if let Some(id) = &mut operation.operation_id
                && !ids.insert(id.clone())
            {
                *id = format!("{id}_{method}");
                ids.insert(id.clone());
            }
            if operation.security.is_none() {
                operation.security = Some(needs_token.clone());
                operation
                    .responses
                    .responses
                    .entry("401".to_string())
                    .or_insert_with(|| unauthorized.clone());
            }
            mark_errors(operation, &kind_header);
            operation
                .responses
                .responses
                .entry("default".to_string())
                .or_insert_with(|| RefOr::Ref(Ref::from_response_name("Error")));
        }
    }
}

/// Adds the `x-wafer-error` header to an operation's own 4xx and 5xx answers.
fn mark_errors(operation: &mut Operation, kind_header: &Header) {
    for (status, response) in operation.responses.responses.iter_mut() {
        let is_error = status.starts_with('4') || status.starts_with('5');
        if let (true, RefOr::T(ApiResponse { headers, .. })) = (is_error, response) {
            headers
                .entry("x-wafer-error".to_string())
                .or_insert_with(|| RefOr::T(kind_header.clone()));
        }
    }
}

/// This document (OpenAPI 3.1).
#[utoipa::path(get, path = "/_wafer/v1/openapi.json", tag = "platform", security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document of the admin API",
        content_type = "application/json")))]
pub(super) async fn serve() -> Response {
    static JSON: OnceLock<String> = OnceLock::new();
    let json = JSON.get_or_init(|| {
        document()
            .to_pretty_json()
            .unwrap_or_else(|e| format!("{{\"error\": \"the document did not serialize: {e}\"}}"))
    });
    ([(header::CONTENT_TYPE, "application/json")], json.clone()).into_response()
}
