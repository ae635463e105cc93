//! The gateway's shared state, which every handler gets: its settings, the deployed functions
//! (and through them the backend and the queue triggers), and the metrics registry.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use wafer_worker::Backend;

use crate::error::{ApiError, OpenError};
use crate::functions::Functions;
use crate::store::{DiskStore, Store};
use crate::trigger::amqp::config::DEFAULT_AMQP_URL;
use crate::trigger::amqp::{DeliveryLedger, QueueReports, QueueTriggers, TriggerSite};
use crate::trigger::schedule::{DiskLedger, Ledger, Schedules};

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
    pub connections: ConnectionLimits,
    /// Versions kept per function (older ones are collected unless traffic or a tag points at
    /// them).
    pub keep_versions: usize,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            data_dir: PathBuf::from(".wafer"),
            admin_token: String::new(),
            max_upload: 128 << 20,
            max_request_body: 64 << 20,
            default_amqp_url: DEFAULT_AMQP_URL.to_string(),
            connections: ConnectionLimits::default(),
            keep_versions: crate::record::DEFAULT_KEEP_VERSIONS,
        }
    }
}

/// Limits on what clients may hold open. `Default` states the defaults.
#[derive(Clone, Debug)]
pub struct ConnectionLimits {
    /// Connections open at once; further ones are closed as soon as they are accepted.
    pub max_connections: usize,
    /// Time a client has to send a request's headers (slow-loris protection).
    pub header_timeout: Duration,
    /// Time a request body may go without sending anything before the request fails.
    pub body_idle_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: 10_000,
            header_timeout: Duration::from_secs(10),
            body_idle_timeout: Duration::from_secs(30),
        }
    }
}

/// The gateway's shared state.
pub struct Gateway {
    pub functions: Functions,
    pub config: GatewayConfig,
    /// Gathered by `/_wafer/metrics`; the worker registers its series here too.
    pub metrics: prometheus::Registry,
    /// Where the console learns how queue triggers run elsewhere (a cluster's workers); `None`
    /// when they run here, in `functions.triggers`.
    pub queue_reports: Option<Arc<dyn QueueReports>>,
}

impl Gateway {
    /// The gateway of `wafer up`: records in the data directory, queue triggers in this
    /// process. Loads the recorded functions onto `backend`; ready to serve.
    pub async fn open(
        config: GatewayConfig,
        backend: Arc<dyn Backend>,
        metrics: prometheus::Registry,
    ) -> Result<Arc<Gateway>, OpenError> {
        let store = Arc::new(DiskStore::open(&config.data_dir).map_err(OpenError::Store)?);
        let triggers = QueueTriggers::new(
            backend.clone(),
            config.default_amqp_url.clone(),
            DeliveryLedger::open(config.data_dir.join("deliveries")),
            &metrics,
        )?;
        let ledger = DiskLedger::open(&config.data_dir).map_err(|e| {
            OpenError::Store(ApiError::storage("failed to open the schedules' ledger")(e))
        })?;
        Gateway::open_with(
            config,
            store,
            backend,
            TriggerSite::Here(triggers),
            Arc::new(ledger),
            metrics,
        )
        .await
    }

    /// A gateway over any store and backend, with queue triggers here or on workers,
    /// and its schedules claiming their slots in `ledger`.
    /// When the store can change under it (another gateway deploys), the records and routes
    /// follow within moments.
    pub async fn open_with(
        config: GatewayConfig,
        store: Arc<dyn Store>,
        backend: Arc<dyn Backend>,
        triggers: TriggerSite,
        ledger: Arc<dyn Ledger>,
        metrics: prometheus::Registry,
    ) -> Result<Arc<Gateway>, OpenError> {
        let (triggers, queue_reports) = match triggers {
            TriggerSite::Here(triggers) => (Some(triggers), None),
            TriggerSite::Workers(reports) => (None, Some(reports)),
        };
        let schedules = Schedules::new(backend.clone(), ledger, &metrics)?;
        let functions =
            Functions::open(store, backend, triggers, schedules, config.keep_versions).await?;
        let gateway = Arc::new(Gateway {
            functions,
            config,
            metrics,
            queue_reports,
        });
        tokio::spawn(follow_changes(Arc::downgrade(&gateway)));
        Ok(gateway)
    }

    pub fn backend(&self) -> &Arc<dyn Backend> {
        self.functions.backend()
    }
}

/// Reloads the records whenever the store says they changed, until the gateway is gone.
async fn follow_changes(gateway: std::sync::Weak<Gateway>) {
    let Some(mut changes) = gateway.upgrade().map(|g| g.functions.changes()) else {
        return;
    };
    while changes.changed().await.is_ok() {
        let Some(gateway) = gateway.upgrade() else {
            return;
        };
        if let Err(e) = gateway.functions.refresh().await {
            tracing::warn!(error = %e, "could not reload the function records");
        }
    }
}
