//! `wafer list`: the deployed functions, their routes, versions, instances and next runs.

use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

use reqwest::Method;
use serde::Deserialize;

use crate::client::{Client, OutputArgs, ServerArgs};

#[derive(clap::Args)]
pub struct List {
    #[command(flatten)]
    output: OutputArgs,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(Deserialize)]
struct Function {
    name: String,
    version: u64,
    route: String,
    #[serde(default)]
    traffic: Vec<Share>,
    #[serde(default)]
    schedules: Vec<Schedule>,
    status: Option<Status>,
}

#[derive(Deserialize)]
struct Share {
    version: u64,
    percent: f64,
}

#[derive(Deserialize)]
struct Schedule {
    next_run: Option<String>,
}

impl Function {
    /// `7`, or a split: `7:90%,8:10%`.
    fn versions(&self) -> String {
        if self.traffic.len() <= 1 {
            return self.version.to_string();
        }
        self.traffic
            .iter()
            .map(|s| format!("{}:{}%", s.version, s.percent.round()))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The soonest next run of its schedules, or `-`.
    fn next_run(&self) -> String {
        self.schedules
            .iter()
            .filter_map(|s| s.next_run.clone())
            .min()
            .unwrap_or_else(|| "-".into())
    }
}

#[derive(Deserialize)]
struct Status {
    #[serde(default)]
    interface: String,
    /// `winch` while the function serves on baseline code (tiered compilation).
    #[serde(default)]
    compiler: Option<String>,
    instances_idle: usize,
    instances_busy: usize,
    cold_starts: u64,
    #[serde(default)]
    warm_starts: u64,
    invocations_ok: u64,
    last_call_ms: Option<u64>,
}

impl List {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let client = Client::new(&self.server)?;
        let response = client
            .send(client.request(Method::GET, "/_wafer/v1/functions"))
            .await?;
        if self.output.json() {
            println!("{}", response.text().await?);
            return Ok(ExitCode::SUCCESS);
        }
        let functions: Vec<Function> = response.json().await?;
        println!(
            "{:<24} {:>7} {:<24} {:<16} {:>5} {:>5} {:>6} {:>8} {:>8}  {:<24}  NEXT RUN",
            "NAME",
            "VERSION",
            "ROUTE",
            "INTERFACE",
            "IDLE",
            "BUSY",
            "COLD",
            "WARM",
            "CALLS OK",
            "LAST CALL"
        );
        for f in functions {
            let (versions, next_run) = (f.versions(), f.next_run());
            match f.status {
                Some(s) => println!(
                    "{:<24} {:>7} {:<24} {:<16} {:>5} {:>5} {:>6} {:>8} {:>8}  {:<24}  {}",
                    f.name,
                    versions,
                    f.route,
                    if s.compiler.as_deref() == Some("winch") {
                        format!("{} (winch)", s.interface)
                    } else {
                        s.interface
                    },
                    s.instances_idle,
                    s.instances_busy,
                    s.cold_starts,
                    s.warm_starts,
                    s.invocations_ok,
                    s.last_call_ms
                        .map(|ms| humantime::format_rfc3339_seconds(
                            UNIX_EPOCH + Duration::from_millis(ms)
                        )
                        .to_string())
                        .unwrap_or_else(|| "never".into()),
                    next_run
                ),
                None => println!(
                    "{:<24} {:>7} {:<24} (not loaded: see the server's log)",
                    f.name, versions, f.route
                ),
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}
