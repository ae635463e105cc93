//! A function's history: `wafer versions` (what is kept), `wafer traffic` (how calls split),
//! `wafer rollback` and `wafer tag`. Each change prints the split before and after.

use std::process::ExitCode;

use anyhow::{Context, bail};
use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

use crate::client::{Client, OutputArgs, ServerArgs};

#[derive(clap::Args)]
pub struct Versions {
    name: String,
    #[command(flatten)]
    output: OutputArgs,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(clap::Args)]
pub struct Traffic {
    name: String,
    /// `VERSION=WEIGHT` pairs (a number, a tag or `latest`), e.g. `7=90 8=10`; or one version
    /// alone (`latest`, `7`) for all traffic.
    #[arg(required = true, value_name = "VERSION=WEIGHT")]
    split: Vec<String>,
    /// Keep each caller on one version by a hash of this request header (a user id, a cookie).
    #[arg(long, value_name = "HEADER", conflicts_with = "no_sticky")]
    sticky_header: Option<String>,
    /// Stop keeping callers on one version.
    #[arg(long)]
    no_sticky: bool,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(clap::Args)]
pub struct Rollback {
    name: String,
    /// The version to send all traffic to [default: while a split runs, its oldest version;
    /// else the one before the current].
    #[arg(long, value_name = "VERSION")]
    to: Option<String>,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(clap::Args)]
pub struct Tag {
    name: String,
    /// The version to tag (a number, a tag or `latest`).
    #[arg(required_unless_present = "remove")]
    version: Option<String>,
    /// The tag: calls with `x-wafer-version: TAG` go to its version.
    #[arg(required_unless_present = "remove")]
    tag: Option<String>,
    /// Remove this tag instead.
    #[arg(long, value_name = "TAG", conflicts_with_all = ["version", "tag"])]
    remove: Option<String>,
    #[command(flatten)]
    server: ServerArgs,
}

#[derive(Deserialize)]
struct Share {
    version: u64,
    percent: f64,
}

#[derive(Deserialize)]
struct Changed {
    name: String,
    traffic: Vec<Share>,
    previous_traffic: Vec<Share>,
    changed_version: u64,
    #[serde(default)]
    sticky_header: Option<String>,
    #[serde(default)]
    slow_workers: Vec<String>,
}

#[derive(Deserialize)]
struct Listing {
    versions: Vec<VersionRow>,
    sticky_header: Option<String>,
}

#[derive(Deserialize)]
struct VersionRow {
    version: u64,
    digest: String,
    deployed_at: String,
    message: Option<String>,
    tags: Vec<String>,
    traffic: f64,
}

fn split_text(shares: &[Share]) -> String {
    shares
        .iter()
        .map(|s| format!("v{} {}%", s.version, percent(s.percent)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn percent(p: f64) -> String {
    if (p - p.round()).abs() < 0.05 {
        format!("{}", p.round())
    } else {
        format!("{p:.1}")
    }
}

/// Prints what a change did.
async fn report(
    response: reqwest::Response,
    what: impl FnOnce(u64) -> String,
) -> anyhow::Result<ExitCode> {
    let changed: Changed = response.json().await?;
    println!(
        "{}: {}; traffic {} (was {})",
        changed.name,
        what(changed.changed_version),
        split_text(&changed.traffic),
        split_text(&changed.previous_traffic)
    );
    if let Some(header) = &changed.sticky_header {
        println!("callers stay on one version by their `{header}` header");
    }
    if !changed.slow_workers.is_empty() {
        eprintln!(
            "warning: still installing on {} (calls go to the workers that are ready): {}",
            changed.slow_workers.len(),
            changed.slow_workers.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

impl Versions {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let client = Client::new(&self.server)?;
        let name = &self.name;
        let response = client
            .send(client.request(
                Method::GET,
                &format!("/_wafer/v1/functions/{name}/versions"),
            ))
            .await
            .with_context(|| format!("failed to list the versions of `{name}`"))?;
        if self.output.json() {
            println!("{}", response.text().await?);
            return Ok(ExitCode::SUCCESS);
        }
        let listing: Listing = response.json().await?;
        println!(
            "{:>7} {:<14} {:<26} {:>7} {:<16} MESSAGE",
            "VERSION", "DIGEST", "DEPLOYED", "TRAFFIC", "TAGS"
        );
        for v in listing.versions {
            let traffic = if v.traffic > 0.0 {
                format!("{}%", percent(v.traffic))
            } else {
                "-".into()
            };
            println!(
                "{:>7} {:<14} {:<26} {:>7} {:<16} {}",
                v.version,
                &v.digest[..v.digest.len().min(12)],
                v.deployed_at,
                traffic,
                if v.tags.is_empty() {
                    "-".to_string()
                } else {
                    v.tags.join(",")
                },
                v.message.unwrap_or_default()
            );
        }
        if let Some(header) = listing.sticky_header {
            println!("sticky by header `{header}`");
        }
        Ok(ExitCode::SUCCESS)
    }
}

impl Traffic {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let mut split = Vec::new();
        for entry in &self.split {
            let (version, weight) = match entry.split_once('=') {
                Some((version, weight)) => {
                    let weight: u32 = weight.trim().parse().with_context(|| {
                        format!("`{entry}`: the weight after '=' must be a whole number")
                    })?;
                    (version.trim(), weight)
                }
                None if self.split.len() == 1 => (entry.trim(), 1),
                None => bail!("`{entry}`: give VERSION=WEIGHT for each version of a split"),
            };
            if version.is_empty() {
                bail!("`{entry}`: no version before '='");
            }
            split.push(json!({ "version": version, "weight": weight }));
        }
        let mut body = json!({ "split": split });
        if let Some(header) = &self.sticky_header {
            body["sticky_header"] = header.clone().into();
        } else if self.no_sticky {
            body["sticky_header"] = "".into();
        }
        let client = Client::new(&self.server)?;
        let name = &self.name;
        let response = client
            .send(
                client
                    .request(Method::PUT, &format!("/_wafer/v1/functions/{name}/traffic"))
                    .json(&body),
            )
            .await
            .with_context(|| format!("failed to split the traffic of `{name}`"))?;
        report(response, |_| "split".into()).await
    }
}

impl Rollback {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let client = Client::new(&self.server)?;
        let name = &self.name;
        let body = match &self.to {
            Some(to) => json!({ "to": to }),
            None => json!({}),
        };
        let response = client
            .send(
                client
                    .request(
                        Method::POST,
                        &format!("/_wafer/v1/functions/{name}/rollback"),
                    )
                    .json(&body),
            )
            .await
            .with_context(|| format!("failed to roll back `{name}`"))?;
        report(response, |v| format!("rolled back to v{v}")).await
    }
}

impl Tag {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let client = Client::new(&self.server)?;
        let name = &self.name;
        let (request, tagged) = match (&self.remove, &self.version, &self.tag) {
            (Some(tag), _, _) => (
                client.request(
                    Method::DELETE,
                    &format!("/_wafer/v1/functions/{name}/tags/{tag}"),
                ),
                None,
            ),
            (None, Some(version), Some(tag)) => (
                client
                    .request(
                        Method::PUT,
                        &format!("/_wafer/v1/functions/{name}/tags/{tag}"),
                    )
                    .json(&json!({ "version": version })),
                Some(tag.clone()),
            ),
            _ => bail!("give VERSION and TAG, or --remove TAG"),
        };
        let response = client
            .send(request)
            .await
            .with_context(|| format!("failed to tag `{name}`"))?;
        let removed = self.remove.clone().unwrap_or_default();
        report(response, move |v| match tagged {
            Some(tag) => {
                format!("`{tag}` is v{v} (pin a call to it with `x-wafer-version: {tag}`)")
            }
            None => format!("tag `{removed}` removed"),
        })
        .await
    }
}
