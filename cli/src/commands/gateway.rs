//! `wafer gateway`: a cluster's HTTP front door and admin API, with no worker inside: records in
//! PostgreSQL, calls to the cluster's workers.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use tokio::net::TcpListener;
use wafer_cluster::{Members, PgStore, RemoteBackend, RemoteConfig};
use wafer_gateway::trigger::amqp::TriggerSite;
use wafer_gateway::trigger::amqp::config::{DEFAULT_AMQP_URL, check_url};
use wafer_gateway::units::{ByteSize, HumanDuration};
use wafer_gateway::{ConnectionLimits, Gateway as GatewayState, GatewayConfig};

use super::cluster::{DATABASE_PATIENCE, database_url, token};

#[derive(clap::Args)]
pub struct Gateway {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    /// The cluster's PostgreSQL, e.g. postgres://user:password@host/wafer (required).
    #[arg(long, env = "WAFER_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// The broker of queue triggers that name none. Workers run the triggers; a gateway only
    /// checks the URL, so one environment can serve both.
    #[arg(long, env = "WAFER_AMQP_URL", default_value = DEFAULT_AMQP_URL, hide_env_values = true)]
    amqp_url: String,
    /// The cluster's token: the admin API and every worker require it (required).
    #[arg(long, env = "WAFER_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Largest component upload accepted by the admin API, e.g. 128MiB.
    #[arg(long, default_value_t = ByteSize(GatewayConfig::default().max_upload), value_parser = ByteSize::parse)]
    max_upload: ByteSize,
    /// Largest request body passed to a function, e.g. 64MiB.
    #[arg(long, default_value_t = ByteSize(GatewayConfig::default().max_request_body), value_parser = ByteSize::parse)]
    max_body: ByteSize,
    /// Connections open at once; more are closed as soon as they are accepted.
    #[arg(long, default_value_t = ConnectionLimits::default().max_connections)]
    max_connections: usize,
    /// Versions kept per function (older ones are collected unless traffic or a tag points at
    /// them). Every gateway of a cluster should use the same number.
    #[arg(long, default_value_t = GatewayConfig::default().keep_versions)]
    keep_versions: usize,
    /// How long a deploy waits for every live worker to serve the new version.
    #[arg(long, default_value = "2m", value_parser = HumanDuration::parse)]
    deploy_timeout: HumanDuration,
    /// How long in-flight calls may take to finish after SIGTERM or Ctrl-C.
    #[arg(long, default_value = "30s", value_parser = HumanDuration::parse)]
    drain_timeout: HumanDuration,
}

impl Gateway {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let url = database_url(self.database_url)?;
        let token = token(self.token)?;
        check_url(&self.amqp_url).map_err(|e| anyhow::anyhow!("--amqp-url: {e}"))?;
        if self.max_connections == 0 {
            bail!("--max-connections must be at least 1");
        }
        let listener = TcpListener::bind(&self.listen)
            .await
            .with_context(|| format!("failed to bind the gateway listener on {}", self.listen))?;
        let addr = listener.local_addr()?;
        let pool = wafer_cluster::connect(&url, DATABASE_PATIENCE).await?;
        let store = PgStore::open(pool.clone())
            .await
            .context("failed to follow the cluster's functions")?;
        let members = Members::watch(pool)
            .await
            .context("failed to read the cluster's workers")?;
        let backend = RemoteBackend::new(
            store.clone(),
            members,
            RemoteConfig {
                token: token.clone(),
                deploy_timeout: self.deploy_timeout.0,
            },
        )
        .await
        .context("failed to start the gateway's backend")?;
        let config = GatewayConfig {
            admin_token: token,
            max_upload: self.max_upload.0,
            max_request_body: self.max_body.0,
            default_amqp_url: self.amqp_url,
            connections: ConnectionLimits {
                max_connections: self.max_connections,
                ..ConnectionLimits::default()
            },
            keep_versions: self.keep_versions,
            ..GatewayConfig::default()
        };
        let backend = Arc::new(backend);
        let gateway = GatewayState::open_with(
            config,
            store.clone(),
            backend.clone(),
            TriggerSite::Workers(backend),
            store,
            prometheus::Registry::new(),
        )
        .await
        .context("failed to load the cluster's functions")?;
        let stop = crate::signals::stop_on_signal();
        let mut stopped = stop.clone();
        let server = wafer_gateway::serve(listener, gateway, async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        });
        eprintln!("console at http://{addr}/_wafer/ (sign in with the admin token)");
        eprintln!("listening on http://{addr}");
        crate::signals::serve_until_drained(server, stop, self.drain_timeout.0)
            .await
            .context("the gateway failed")?;
        Ok(ExitCode::SUCCESS)
    }
}
