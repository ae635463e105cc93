//! `wafer list`: the deployed functions, their routes and their instances.

use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

use reqwest::Method;
use serde::Deserialize;

use crate::client::{Client, ServerArgs};

#[derive(clap::Args)]
pub struct List {
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(Deserialize)]
struct Function {
    name: String,
    version: u64,
    route: String,
    status: Option<Status>,
}

#[derive(Deserialize)]
struct Status {
    #[serde(default)]
    interface: String,
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
        if self.json {
            println!("{}", response.text().await?);
            return Ok(ExitCode::SUCCESS);
        }
        let functions: Vec<Function> = response.json().await?;
        println!(
            "{:<24} {:>4} {:<24} {:<16} {:>5} {:>5} {:>6} {:>8} {:>8}  LAST CALL",
            "NAME", "VER", "ROUTE", "INTERFACE", "IDLE", "BUSY", "COLD", "WARM", "CALLS OK"
        );
        for f in functions {
            match f.status {
                Some(s) => println!(
                    "{:<24} {:>4} {:<24} {:<16} {:>5} {:>5} {:>6} {:>8} {:>8}  {}",
                    f.name,
                    f.version,
                    f.route,
                    s.interface,
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
                        .unwrap_or_else(|| "never".into())
                ),
                None => println!(
                    "{:<24} {:>4} {:<24} (not loaded: see the server's log)",
                    f.name, f.version, f.route
                ),
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}
