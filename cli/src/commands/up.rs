//! `wafer up`: the gateway and a worker in this process, with a local data directory.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use tokio::net::TcpListener;
use wafer_gateway::functions::DeployOptions;
use wafer_gateway::trigger::amqp::config::{DEFAULT_AMQP_URL, check_url};
use wafer_gateway::units::{ByteSize, HumanDuration};
use wafer_gateway::{ConnectionLimits, Gateway, GatewayConfig};
use wafer_worker::{Compiler, EngineConfig, Worker, WorkerConfig};

use crate::project::Project;

#[derive(clap::Args)]
pub struct Up {
    /// Function manifests, or folders holding wafer.toml, to deploy at start (built first when
    /// the manifest has a build command and the component is stale).
    paths: Vec<PathBuf>,
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    /// Data directory: function records, components, compiled code, logs, admin token.
    #[arg(long, default_value = ".wafer")]
    data: PathBuf,
    /// Admin API token [default: $WAFER_TOKEN, else DATA/admin-token, created if missing].
    #[arg(long, env = "WAFER_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Live instances (warm or busy) across all functions.
    #[arg(long, default_value_t = EngineConfig::default().max_instances)]
    max_instances: u32,
    /// Largest component upload accepted by the admin API, e.g. 128MiB.
    #[arg(long, default_value_t = ByteSize(GatewayConfig::default().max_upload), value_parser = ByteSize::parse)]
    max_upload: ByteSize,
    /// How wasm becomes machine code: `tiered` (components of 1 MiB or more serve at once on
    /// Winch's baseline code while Cranelift optimizes them in the background), `cranelift`
    /// (optimized code before the first call) or `winch` (baseline code only, fastest deploys).
    #[arg(long, default_value_t = Compiler::default(), value_parser = Compiler::parse)]
    compiler: Compiler,
    /// Compiled code kept in memory; above it, code of functions idle for --code-idle is dropped
    /// (least recently used first) and loaded back from disk on their next call.
    #[arg(long, default_value_t = ByteSize(WorkerConfig::DEFAULT_CODE_MEMORY), value_parser = ByteSize::parse)]
    code_memory: ByteSize,
    /// How long a function must go uncalled, with no instances, before its code may be dropped.
    #[arg(long, default_value_t = HumanDuration(WorkerConfig::DEFAULT_CODE_IDLE), value_parser = HumanDuration::parse)]
    code_idle: HumanDuration,
    /// Largest request body passed to a function, e.g. 64MiB.
    #[arg(long, default_value_t = ByteSize(GatewayConfig::default().max_request_body), value_parser = ByteSize::parse)]
    max_body: ByteSize,
    /// The broker for queue triggers that name none.
    #[arg(long, env = "WAFER_AMQP_URL", default_value = DEFAULT_AMQP_URL, hide_env_values = true)]
    amqp_url: String,
    /// Connections open at once; more are closed as soon as they are accepted.
    #[arg(long, default_value_t = ConnectionLimits::default().max_connections)]
    max_connections: usize,
    /// Time a client has to send a request's headers.
    #[arg(long, default_value_t = HumanDuration(ConnectionLimits::default().header_timeout), value_parser = HumanDuration::parse)]
    header_timeout: HumanDuration,
    /// Time a request body may stall before the request fails.
    #[arg(long, default_value_t = HumanDuration(ConnectionLimits::default().body_idle_timeout), value_parser = HumanDuration::parse)]
    body_timeout: HumanDuration,
    /// Versions kept per function (older ones are collected unless traffic or a tag points at
    /// them).
    #[arg(long, default_value_t = GatewayConfig::default().keep_versions)]
    keep_versions: usize,
    /// How long in-flight calls may take to finish after SIGTERM or Ctrl-C.
    #[arg(long, default_value = "30s", value_parser = HumanDuration::parse)]
    drain_timeout: HumanDuration,
}

impl Up {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        check_url(&self.amqp_url).map_err(|e| anyhow::anyhow!("--amqp-url: {e}"))?;
        std::fs::create_dir_all(&self.data)
            .with_context(|| format!("failed to create data directory {}", self.data.display()))?;
        // Records hold secrets and the token file lives here: the data is the owner's alone.
        std::fs::set_permissions(&self.data, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("failed to restrict {}", self.data.display()))?;
        check_writable(&self.data)?;
        let token_file = self.data.join("admin-token");
        let token = match self.token.clone() {
            Some(token) if token.trim().is_empty() => bail!("the admin token must not be empty"),
            Some(token) => token,
            None => load_or_create_token(&token_file)?,
        };
        // Where to find the token for the console's sign-in (never the token itself: logs
        // are read by others).
        let token_hint = if self.token.is_some() {
            "the token given with --token or WAFER_TOKEN".to_string()
        } else {
            format!("paste the token from {}", token_file.display())
        };
        // Bind first so that a taken port fails before any build or compile.
        let listener = TcpListener::bind(&self.listen)
            .await
            .with_context(|| format!("failed to bind the gateway listener on {}", self.listen))?;
        let addr = listener.local_addr()?;

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
        let gateway = Gateway::open(
            GatewayConfig {
                data_dir: self.data.clone(),
                admin_token: token,
                max_upload: self.max_upload.0,
                max_request_body: self.max_body.0,
                default_amqp_url: self.amqp_url.clone(),
                connections: ConnectionLimits {
                    max_connections: self.max_connections.max(1),
                    header_timeout: self.header_timeout.0,
                    body_idle_timeout: self.body_timeout.0,
                },
                keep_versions: self.keep_versions,
            },
            Arc::new(worker),
            registry,
        )
        .await
        .context("failed to load deployed functions")?;

        for path in &self.paths {
            let project = Project::load(path)?;
            let name = project.name()?;
            let component = project.component()?;
            // The same folder at every start adds no version, and keeps a split or rollback.
            let options = DeployOptions {
                reuse_unchanged: true,
                ..DeployOptions::default()
            };
            let deployed = gateway
                .functions
                .deploy(&name, project.manifest.clone(), component.into(), options)
                .await
                .with_context(|| format!("failed to deploy {}", path.display()))?;
            eprintln!(
                "deployed {name} v{} at http://{addr}{}",
                deployed.version,
                deployed.record.route()
            );
        }
        for record in gateway.functions.list() {
            tracing::info!(function = %record.name, url = %format!("http://{addr}{}", record.route()), "serving");
        }

        let stop = crate::signals::stop_on_signal();
        let mut stopped = stop.clone();
        let server = wafer_gateway::serve(listener, gateway, async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        });
        // "listening on" comes last: whoever waits for it may stop reading stderr then, and a
        // line printed to a closed pipe would fail.
        eprintln!("console at http://{addr}/_wafer/ ({token_hint})");
        eprintln!("listening on http://{addr}");
        crate::signals::serve_until_drained(server, stop, self.drain_timeout.0)
            .await
            .context("the gateway failed")?;
        Ok(ExitCode::SUCCESS)
    }
}

/// Fails early, with the path, if the data directory cannot be written.
fn check_writable(dir: &Path) -> anyhow::Result<()> {
    let probe = dir.join(".write-probe");
    std::fs::write(&probe, b"")
        .and_then(|()| std::fs::remove_file(&probe))
        .with_context(|| format!("data directory {} is not writable", dir.display()))
}

/// Reads the token file, or creates it (mode 0600) with a fresh random token.
fn load_or_create_token(path: &Path) -> anyhow::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(token) if !token.trim().is_empty() => return Ok(token.trim().to_string()),
        Ok(_) => bail!("{} is empty; delete it to get a new token", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("failed to read {}", path.display())),
    }
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness for a token: {e}"))?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("failed to create {}", path.display()))?;
    file.write_all(token.as_bytes())?;
    file.sync_all()?;
    eprintln!("created admin token in {}", path.display());
    Ok(token)
}
