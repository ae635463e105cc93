//! wafer's gateway: HTTP in, function calls out, and the admin API.
//!
//! On the data path, event -> **gateway -> router** -> worker -> instance pool -> response: a
//! trigger ([`trigger::http`] for HTTP requests) turns an event into a call, the [`router`] picks
//! the function by path, and the call goes to a worker through
//! [`wafer_worker::Backend`], the one interface between the two.
//!
//! Modules:
//! - [`server`]: the axum app and serving it with graceful shutdown;
//! - [`trigger`]: event sources (HTTP requests, RabbitMQ queues);
//! - [`router`]: path -> function, longest prefix, lock-free;
//! - [`functions`]: deployed functions, records on disk, deploys and deletes;
//! - [`manifest`]: `wafer.toml` parsing and validation;
//! - [`admin`]: the admin API (`/_wafer/v1/...`, bearer token) and health/metrics;
//! - [`error`]: errors and their HTTP statuses, in one place.

pub mod admin;
pub mod error;
pub mod functions;
pub mod manifest;
pub mod router;
pub mod server;
pub mod trigger;

use std::path::PathBuf;
use std::sync::Arc;

use wafer_worker::Backend;

pub use error::ApiError;
pub use functions::{Functions, Record};
pub use manifest::Manifest;
pub use server::serve;

/// Gateway settings. `Default` states the defaults.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// Holds `functions/` (the records).
    pub data_dir: PathBuf,
    /// The bearer token the admin API requires.
    pub admin_token: String,
    /// Largest component upload, in bytes; larger ones get 413 before they are read.
    pub max_upload: u64,
    /// Largest request body passed to a function, in bytes.
    pub max_request_body: u64,
    /// The broker for queue triggers that name none.
    pub default_amqp_url: String,
    /// What each client may hold open.
    pub connections: server::ConnectionLimits,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            data_dir: PathBuf::from(".wafer"),
            admin_token: String::new(),
            max_upload: 128 << 20,
            max_request_body: 64 << 20,
            default_amqp_url: trigger::amqp::DEFAULT_AMQP_URL.to_string(),
            connections: server::ConnectionLimits::default(),
        }
    }
}

/// The gateway's shared state.
pub struct Gateway {
    pub functions: Functions,
    pub config: GatewayConfig,
    /// Gathered by `/_wafer/metrics`; the worker registers its series here too.
    pub metrics: prometheus::Registry,
}

impl Gateway {
    /// Loads the recorded functions onto `backend` and returns the gateway, ready to serve.
    pub async fn open(
        config: GatewayConfig,
        backend: Arc<dyn Backend>,
        metrics: prometheus::Registry,
    ) -> Result<Arc<Gateway>, ApiError> {
        let triggers = trigger::amqp::QueueTriggers::new(
            backend.clone(),
            config.default_amqp_url.clone(),
            &metrics,
        )
        .map_err(|e| ApiError::BadRequest(format!("failed to register queue metrics: {e}")))?;
        let functions = Functions::open(&config.data_dir, backend, triggers).await?;
        Ok(Arc::new(Gateway {
            functions,
            config,
            metrics,
        }))
    }

    pub fn backend(&self) -> &Arc<dyn Backend> {
        self.functions.backend()
    }
}
