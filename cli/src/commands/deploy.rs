//! `wafer deploy`: upload a component and its manifest to a running wafer.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use reqwest::Method;
use reqwest::multipart::{Form, Part};
use serde::Deserialize;
use wafer_gateway::Manifest;
use wafer_gateway::trigger::amqp::config::QueueSection;
use wafer_gateway::trigger::schedule::config::ScheduleSection;
use wafer_gateway::units::{ByteSize, HumanDuration};

use crate::client::{Client, ServerArgs};
use crate::progress::Step;
use crate::project::Project;

#[derive(clap::Args)]
pub struct Deploy {
    /// A manifest, or a folder holding wafer.toml [default: the current folder, unless --wasm].
    path: Option<PathBuf>,
    /// Function name (overrides the manifest's).
    #[arg(long)]
    name: Option<String>,
    /// Deploy this component file without a manifest (needs --name).
    #[arg(long, value_name = "FILE")]
    wasm: Option<PathBuf>,
    /// Route prefix [default: /NAME].
    #[arg(long)]
    route: Option<String>,
    /// Environment variable for the guest (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Secret environment variable: the API never shows its value (repeatable).
    #[arg(long = "secret", value_name = "KEY=VALUE")]
    secrets: Vec<String>,
    /// Memory limit per instance, e.g. 64MiB.
    #[arg(long)]
    memory: Option<String>,
    /// Wall-clock limit per call, e.g. 10s.
    #[arg(long)]
    timeout: Option<String>,
    /// Calls that may run at once.
    #[arg(long)]
    concurrency: Option<u32>,
    /// Instances kept live and ready even when idle (pre-warmed).
    #[arg(long)]
    min_instances: Option<u32>,
    /// Most live instances [default: as many as --concurrency needs].
    #[arg(long)]
    max_instances: Option<u32>,
    /// Calls one wasi:http 0.3 instance takes at once (0.2 instances take one).
    #[arg(long)]
    instance_concurrency: Option<u32>,
    /// Calls per instance; 1 = a fresh instance per call.
    #[arg(long)]
    reuse: Option<u32>,
    /// Idle time after which warm instances above the minimum are dropped, e.g. 60s.
    #[arg(long)]
    idle_timeout: Option<String>,
    /// Also trigger the function from this RabbitMQ queue.
    #[arg(long, value_name = "QUEUE")]
    queue: Option<String>,
    /// Broker for --queue [default: $WAFER_AMQP_URL, else the server's default].
    #[arg(
        long,
        env = "WAFER_AMQP_URL",
        hide_env_values = true,
        requires = "queue"
    )]
    amqp_url: Option<String>,
    /// Messages per call for --queue (above 1: a CloudEvents batch).
    #[arg(long, requires = "queue")]
    batch_size: Option<u32>,
    /// Deliveries before a failing message is dead-lettered, for --queue.
    #[arg(long, requires = "queue")]
    max_attempts: Option<u32>,
    /// Dead-letter queue for --queue [default: QUEUE.dlq].
    #[arg(long, value_name = "QUEUE", requires = "queue")]
    dead_letter: Option<String>,
    /// Also call the function on this cron schedule (5 fields, or 6 with seconds), repeatable.
    #[arg(long, value_name = "CRON")]
    schedule: Vec<String>,
    /// IANA time zone of every --schedule, e.g. Europe/Berlin [default: UTC].
    #[arg(long, value_name = "TZ", requires = "schedule")]
    timezone: Option<String>,
    /// Deploy a new version that takes no traffic yet (try it with `wafer tag` and
    /// `x-wafer-version`, then `wafer traffic`).
    #[arg(long)]
    no_traffic: bool,
    /// A note kept with the version (shown by `wafer versions`).
    #[arg(long, short = 'm')]
    message: Option<String>,
    /// Tag the new version, e.g. `canary`: calls with `x-wafer-version: canary` reach it.
    #[arg(long)]
    tag: Option<String>,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(Deserialize)]
struct Deployed {
    name: String,
    /// The primary version (the one taking the most traffic).
    version: u64,
    deployed_version: u64,
    route: String,
    /// Cluster workers still installing it when the deploy answered.
    #[serde(default)]
    slow_workers: Vec<String>,
}

impl Deploy {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let (mut manifest, component) = match (&self.wasm, &self.path) {
            (Some(_), Some(_)) => bail!("give either a manifest PATH or --wasm, not both"),
            (Some(wasm), None) => {
                let bytes = std::fs::read(wasm)
                    .with_context(|| format!("failed to read component {}", wasm.display()))?;
                (Manifest::default(), bytes)
            }
            (None, path) => {
                let project = Project::load(path.as_deref().unwrap_or(".".as_ref()))?;
                let bytes = project.component()?;
                (project.manifest, bytes)
            }
        };
        if let Some(name) = &self.name {
            manifest.name = Some(name.clone());
        }
        let Some(name) = manifest.name.clone() else {
            bail!("no function name: pass --name or set `name` in the manifest");
        };
        self.apply_overrides(&mut manifest)?;
        // Catch mistakes before uploading; the server checks again.
        manifest.validate(&name)?;

        let client = Client::new(&self.server)?;
        // The upload shows as bytes; then the server compiles before it answers (seconds for a
        // big component, and on a cluster every worker installs it first): a spinner with the
        // time so far.
        let size = component.len() as u64;
        let step = std::sync::Arc::new(std::sync::Mutex::new(Some(Step::bytes(
            format!("uploading {name} to {}", client.base()),
            size,
        ))));
        let chunks: Vec<bytes::Bytes> = bytes::Bytes::from(component)
            .chunks(64 << 10)
            .map(bytes::Bytes::copy_from_slice)
            .collect();
        let (last, progress) = (chunks.len(), step.clone());
        let label = name.clone();
        let body = futures::stream::iter(chunks.into_iter().enumerate().map(move |(i, chunk)| {
            let mut step = progress.lock().unwrap();
            if let Some(s) = step.as_ref() {
                s.advance(chunk.len() as u64);
            }
            if i + 1 == last
                && let Some(s) = step.take()
            {
                *step = Some(s.next(format!("compiling and installing {label} on the server")));
            }
            Ok::<_, std::io::Error>(chunk)
        }));
        let form = Form::new()
            .part(
                "manifest",
                Part::text(serde_json::to_string(&manifest.server_side())?)
                    .mime_str("application/json")?,
            )
            .part(
                "component",
                Part::stream_with_length(reqwest::Body::wrap_stream(body), size)
                    .file_name(format!("{name}.wasm"))
                    .mime_str("application/wasm")?,
            );
        let mut query: Vec<(&str, String)> = Vec::new();
        if self.no_traffic {
            query.push(("traffic", "false".into()));
        }
        if let Some(message) = &self.message {
            query.push(("message", message.clone()));
        }
        if let Some(tag) = &self.tag {
            query.push(("tag", tag.clone()));
        }
        let response = client
            .send(
                client
                    .request(Method::PUT, &format!("/_wafer/v1/functions/{name}"))
                    .query(&query)
                    .multipart(form),
            )
            .await;
        if let Some(step) = step.lock().unwrap().take() {
            step.done();
        }
        let response = response.with_context(|| format!("failed to deploy `{name}`"))?;
        let deployed: Deployed = response.json().await?;
        if deployed.deployed_version == deployed.version {
            println!(
                "deployed {} v{} at {}{}",
                deployed.name,
                deployed.deployed_version,
                client.base(),
                deployed.route
            );
        } else {
            let pin = match &self.tag {
                Some(tag) => format!("pin a call to it with `x-wafer-version: {tag}`"),
                None => format!(
                    "tag it to try it (`wafer tag {} {} canary`)",
                    deployed.name, deployed.deployed_version
                ),
            };
            println!(
                "deployed {} v{} taking no traffic (v{} serves {}{}); {pin}",
                deployed.name,
                deployed.deployed_version,
                deployed.version,
                client.base(),
                deployed.route,
            );
        }
        if !deployed.slow_workers.is_empty() {
            eprintln!(
                "warning: still installing on {} (they take it over as soon as they are ready): {}",
                if deployed.slow_workers.len() == 1 {
                    "one worker"
                } else {
                    "some workers"
                },
                deployed.slow_workers.join(", ")
            );
        }
        Ok(ExitCode::SUCCESS)
    }

    fn apply_overrides(&self, manifest: &mut Manifest) -> anyhow::Result<()> {
        if let Some(route) = &self.route {
            manifest.route = Some(route.clone());
        }
        for pair in &self.env {
            let Some((key, value)) = pair.split_once('=') else {
                bail!("--env expects KEY=VALUE, got `{pair}`");
            };
            manifest.env.insert(key.to_string(), value.to_string());
        }
        for pair in &self.secrets {
            let Some((key, value)) = pair.split_once('=') else {
                bail!("--secret expects KEY=VALUE, got `{pair}`");
            };
            manifest.secrets.insert(key.to_string(), value.to_string());
        }
        if let Some(memory) = &self.memory {
            manifest.limits.memory =
                Some(ByteSize::parse(memory).map_err(|e| anyhow::anyhow!("--memory: {e}"))?);
        }
        if let Some(timeout) = &self.timeout {
            manifest.limits.timeout =
                Some(HumanDuration::parse(timeout).map_err(|e| anyhow::anyhow!("--timeout: {e}"))?);
        }
        if let Some(concurrency) = self.concurrency {
            manifest.limits.concurrency = Some(concurrency);
        }
        if let Some(min) = self.min_instances {
            manifest.scaling.min_instances = Some(min);
        }
        if let Some(max) = self.max_instances {
            manifest.scaling.max_instances = Some(max);
        }
        if let Some(n) = self.instance_concurrency {
            manifest.scaling.instance_concurrency = Some(n);
        }
        if let Some(reuse) = self.reuse {
            manifest.scaling.reuse = Some(reuse);
        }
        if let Some(idle) = &self.idle_timeout {
            manifest.scaling.idle_timeout = Some(
                HumanDuration::parse(idle).map_err(|e| anyhow::anyhow!("--idle-timeout: {e}"))?,
            );
        }
        for cron in &self.schedule {
            manifest.schedule.retain(|s| &s.cron != cron);
            let taken = manifest.schedule.len();
            manifest.schedule.push(ScheduleSection {
                // Named apart from the manifest's own schedule-N.
                name: Some(format!("cli-{}", taken + 1)),
                cron: cron.clone(),
                timezone: self.timezone.clone(),
                ..ScheduleSection::default()
            });
        }
        if let Some(queue) = &self.queue {
            manifest.queue.retain(|q| &q.queue != queue);
            manifest.queue.push(QueueSection {
                queue: queue.clone(),
                url: self.amqp_url.clone(),
                batch_size: self.batch_size,
                max_attempts: self.max_attempts,
                dead_letter: self.dead_letter.clone(),
                ..QueueSection::default()
            });
        }
        Ok(())
    }
}
