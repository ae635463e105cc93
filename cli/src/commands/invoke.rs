//! `wafer invoke`: call a function through the admin API (no route needed) and print its body.

use std::io::{Read, Write};
use std::process::ExitCode;

use anyhow::{Context, bail};
use futures::StreamExt;
use reqwest::Method;

use crate::client::{Client, ServerArgs};

#[derive(clap::Args)]
pub struct Invoke {
    /// The function to call.
    name: String,
    /// HTTP method [default: POST with --data, else GET].
    #[arg(long, short = 'X')]
    method: Option<String>,
    /// Path and query the function sees [default: its route].
    #[arg(long)]
    path: Option<String>,
    /// Request body: TEXT, @FILE, or - for stdin.
    #[arg(long, short = 'd')]
    data: Option<String>,
    /// Request header (repeatable).
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// Print the status line and headers before the body.
    #[arg(long, short = 'i')]
    include: bool,
    #[command(flatten)]
    server: ServerArgs,
}

impl Invoke {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let client = Client::new(&self.server)?;
        let body = match self.data.as_deref() {
            None => None,
            Some("-") => {
                let mut buf = Vec::new();
                std::io::stdin()
                    .read_to_end(&mut buf)
                    .context("failed to read stdin")?;
                Some(buf)
            }
            Some(data) => match data.strip_prefix('@') {
                Some(file) => {
                    Some(std::fs::read(file).with_context(|| format!("failed to read {file}"))?)
                }
                None => Some(data.as_bytes().to_vec()),
            },
        };
        let method = match &self.method {
            Some(m) => Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                .with_context(|| format!("invalid method `{m}`"))?,
            None if body.is_some() => Method::POST,
            None => Method::GET,
        };
        let mut request = client.request(
            method,
            &format!("/_wafer/v1/functions/{}/invoke", self.name),
        );
        if let Some(path) = &self.path {
            request = request.header("x-wafer-path", path);
        }
        for header in &self.headers {
            let Some((name, value)) = header.split_once(':') else {
                bail!("--header expects `NAME: VALUE`, got `{header}`");
            };
            request = request.header(name.trim(), value.trim());
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("failed to reach wafer at {}", client.base()))?;
        let status = response.status();
        let platform_error = response.headers().contains_key("x-wafer-error");
        if self.include {
            println!("{:?} {}", response.version(), status);
            for (name, value) in response.headers() {
                println!("{name}: {}", value.to_str().unwrap_or("<binary>"));
            }
            println!();
        }
        let mut stdout = std::io::stdout().lock();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            stdout.write_all(&chunk.context("the response body broke off")?)?;
        }
        stdout.flush()?;
        if !status.is_success() {
            let source = if platform_error {
                "wafer"
            } else {
                "the function"
            };
            eprintln!("\n{source} answered HTTP {status}");
            return Ok(ExitCode::FAILURE);
        }
        Ok(ExitCode::SUCCESS)
    }
}
