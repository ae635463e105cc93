//! `wafer delete`: remove a function (and its logs).

use std::process::ExitCode;

use reqwest::Method;

use crate::client::{Client, ServerArgs};

#[derive(clap::Args)]
pub struct Delete {
    /// The function to delete.
    name: String,
    #[command(flatten)]
    server: ServerArgs,
}

impl Delete {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let client = Client::new(&self.server)?;
        client
            .send(client.request(
                Method::DELETE,
                &format!("/_wafer/v1/functions/{}", self.name),
            ))
            .await?;
        println!("deleted {}", self.name);
        Ok(ExitCode::SUCCESS)
    }
}
