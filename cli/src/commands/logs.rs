//! `wafer logs`: a function's stdout, stderr and platform notes (traps, timeouts).

use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::Context;
use futures::StreamExt;
use reqwest::Method;
use serde::Deserialize;

use crate::client::{Client, ServerArgs};

#[derive(clap::Args)]
pub struct Logs {
    /// The function whose logs to print.
    name: String,
    /// Keep printing new lines as they come.
    #[arg(long, short = 'f')]
    follow: bool,
    /// How many recent lines to print first.
    #[arg(long, default_value_t = 100)]
    tail: usize,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(Deserialize)]
struct Line {
    time_ms: Option<u64>,
    stream: String,
    text: String,
    /// The worker that wrote it, through a cluster's gateway.
    worker: Option<String>,
}

impl Logs {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let client = Client::new(&self.server)?;
        let path = format!(
            "/_wafer/v1/functions/{}/logs?tail={}&follow={}",
            self.name, self.tail, self.follow
        );
        let response = client.send(client.request(Method::GET, &path)).await?;
        let mut stream = response.bytes_stream();
        let mut pending = Vec::new();
        while let Some(chunk) = stream.next().await {
            pending.extend_from_slice(&chunk.context("the log stream broke off")?);
            while let Some(end) = pending.iter().position(|&b| b == b'\n') {
                let raw: Vec<u8> = pending.drain(..=end).collect();
                match serde_json::from_slice::<Line>(&raw) {
                    Ok(line) => print_line(&line),
                    Err(_) => print!("{}", String::from_utf8_lossy(&raw)),
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}

fn print_line(line: &Line) {
    let time = line
        .time_ms
        .map(|ms| {
            humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
        })
        .unwrap_or_default();
    match &line.worker {
        Some(worker) => println!("{time} {worker} {:<6} {}", line.stream, line.text),
        None => println!("{time} {:<6} {}", line.stream, line.text),
    }
}
