//! The admin API client the subcommands share: where the server is, the token, and turning the
//! server's `{"error": ...}` answers into errors.

use std::path::Path;

use anyhow::{Context, bail};

/// Flags every client subcommand takes.
#[derive(clap::Args, Debug)]
pub struct ServerArgs {
    /// URL of the wafer server.
    #[arg(long, env = "WAFER_SERVER", default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// Admin token [default: $WAFER_TOKEN, else the contents of .wafer/admin-token].
    #[arg(long, env = "WAFER_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// How a listing command prints: a table for people, or the API's JSON for scripts.
#[derive(clap::Args, Debug)]
pub struct OutputArgs {
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Table)]
    output: Output,
    /// The same as `--output json`.
    #[arg(long, hide = true)]
    json: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Table,
    Json,
}

impl OutputArgs {
    pub fn json(&self) -> bool {
        self.json || self.output == Output::Json
    }
}

pub struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    pub fn new(args: &ServerArgs) -> anyhow::Result<Client> {
        let token = match &args.token {
            Some(token) => token.clone(),
            None => {
                let path = Path::new(".wafer/admin-token");
                std::fs::read_to_string(path)
                    .map(|t| t.trim().to_string())
                    .with_context(|| {
                        format!(
                            "no admin token: pass --token, set WAFER_TOKEN, or run where `wafer up` keeps its data ({} not readable)",
                            path.display()
                        )
                    })?
            }
        };
        Ok(Client {
            http: reqwest::Client::new(),
            base: args.server.trim_end_matches('/').to_string(),
            token,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// A request to an admin API path (starting with `/_wafer/`).
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
    }

    /// Sends `request`; a non-2xx answer becomes an error carrying the server's message.
    pub async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> anyhow::Result<reqwest::Response> {
        let response = request
            .send()
            .await
            .with_context(|| format!("failed to reach wafer at {}", self.base))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
            .unwrap_or(text);
        bail!("{message} (HTTP {status})")
    }
}
