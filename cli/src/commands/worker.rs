//! `wafer worker`: a cluster's worker process. It runs functions for the gateways' calls (and
//! their queue triggers), following the desired state in PostgreSQL.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use tokio::net::TcpListener;
use wafer_cluster::connections::WORKER_HEADER_TIMEOUT;
use wafer_cluster::{Node, NodeConfig, PgStore};
use wafer_gateway::trigger::amqp::config::{DEFAULT_AMQP_URL, check_url};
use wafer_gateway::units::{ByteSize, HumanDuration};
use wafer_gateway::{ConnectionLimits, GatewayConfig};
use wafer_worker::{Compiler, EngineConfig, Worker, WorkerConfig};

use super::cluster::{DATABASE_PATIENCE, database_url, token};

#[derive(clap::Args)]
pub struct WorkerCommand {
    /// Address to listen on for the gateways (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8081")]
    listen: String,
    /// The cluster's PostgreSQL (required).
    #[arg(long, env = "WAFER_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// The broker for queue triggers that name none.
    #[arg(long, env = "WAFER_AMQP_URL", default_value = DEFAULT_AMQP_URL, hide_env_values = true)]
    amqp_url: String,
    /// This worker's cache: components, compiled code, logs. An empty one fills from the
    /// database.
    #[arg(long, default_value = ".wafer-worker")]
    data: PathBuf,
    /// Where gateways reach this worker [default: http://LISTEN-ADDRESS].
    #[arg(long)]
    advertise: Option<String>,
    /// Live instances (warm or busy) across all functions.
    #[arg(long, default_value_t = EngineConfig::default().max_instances)]
    max_instances: u32,
    /// The cluster's token: gateways send it, and nothing else runs functions here (required).
    #[arg(long, env = "WAFER_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// How wasm becomes machine code: tiered, cranelift or winch (see `wafer up --compiler`).
    #[arg(long, default_value_t = Compiler::default(), value_parser = Compiler::parse)]
    compiler: Compiler,
    /// Compiled code kept in memory (see `wafer up --code-memory`).
    #[arg(long, default_value_t = ByteSize(WorkerConfig::DEFAULT_CODE_MEMORY), value_parser = ByteSize::parse)]
    code_memory: ByteSize,
    /// How long a function must go uncalled before its code may be dropped.
    #[arg(long, default_value_t = HumanDuration(WorkerConfig::DEFAULT_CODE_IDLE), value_parser = HumanDuration::parse)]
    code_idle: HumanDuration,
    /// After SIGTERM, how long calls already on their way are still taken, once this worker has
    /// left the cluster (gateways stop routing here within moments).
    #[arg(long, default_value = "1s", value_parser = HumanDuration::parse)]
    drain_grace: HumanDuration,
    /// How long in-flight calls and deliveries may take to finish after SIGTERM.
    #[arg(long, default_value = "30s", value_parser = HumanDuration::parse)]
    drain_timeout: HumanDuration,
}

impl WorkerCommand {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let url = database_url(self.database_url)?;
        let token = token(self.token)?;
        check_url(&self.amqp_url).map_err(|e| anyhow::anyhow!("--amqp-url: {e}"))?;
        let listener = TcpListener::bind(&self.listen)
            .await
            .with_context(|| format!("failed to bind the worker listener on {}", self.listen))?;
        let addr = listener.local_addr()?;
        let advertise = match self.advertise {
            Some(url) => url,
            None if addr.ip().is_unspecified() => bail!(
                "--advertise is needed when listening on {addr}: the URL gateways reach this worker at"
            ),
            None => format!("http://{addr}"),
        };
        std::fs::create_dir_all(&self.data)
            .with_context(|| format!("failed to create data directory {}", self.data.display()))?;
        let pool = wafer_cluster::connect(&url, DATABASE_PATIENCE).await?;
        let store = PgStore::open(pool)
            .await
            .context("failed to follow the cluster's functions")?;
        let registry = prometheus::Registry::new();
        let worker = Worker::new(WorkerConfig {
            engine: EngineConfig {
                max_instances: self.max_instances,
                compiler: self.compiler,
                ..EngineConfig::default()
            },
            code_memory: self.code_memory.0,
            code_idle: self.code_idle.0,
            ..WorkerConfig::new(self.data.clone(), registry.clone())
        })
        .context("failed to start the worker")?;
        let node = Node::start(
            store,
            worker,
            registry,
            NodeConfig {
                advertise,
                token,
                default_amqp_url: self.amqp_url,
                drain_grace: self.drain_grace.0,
                max_upload: GatewayConfig::default().max_upload,
                data_dir: self.data.clone(),
            },
        )
        .await
        .context("failed to join the cluster")?;
        let limits = ConnectionLimits {
            // Gateways keep connections open between calls; see `WORKER_HEADER_TIMEOUT`.
            header_timeout: WORKER_HEADER_TIMEOUT,
            ..ConnectionLimits::default()
        };
        let stop = crate::signals::stop_on_signal();
        let (mut stopped, draining) = (stop.clone(), node.clone());
        let server = wafer_gateway::server::serve_router(
            listener,
            wafer_cluster::node::router(node.clone()),
            limits,
            async move {
                let _ = stopped.wait_for(|stop| *stop).await;
                draining.drain().await;
            },
        );
        tracing::info!(worker = %node.member().id, "serving the cluster");
        eprintln!("listening on http://{addr}");
        crate::signals::serve_until_drained(
            async {
                server.await;
                Ok::<_, std::convert::Infallible>(())
            },
            stop,
            self.drain_timeout.0,
        )
        .await
        .ok();
        node.stop();
        Ok(ExitCode::SUCCESS)
    }
}
