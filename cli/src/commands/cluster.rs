//! What `wafer gateway` and `wafer worker` share: the database URL and the token, required.

use std::time::Duration;

/// How long a cluster process waits for PostgreSQL at start.
pub const DATABASE_PATIENCE: Duration = Duration::from_secs(30);

pub fn database_url(flag: Option<String>) -> anyhow::Result<String> {
    match flag {
        Some(url) if !url.trim().is_empty() => Ok(url),
        _ => anyhow::bail!(
            "--database-url (or WAFER_DATABASE_URL) is required: the cluster's PostgreSQL, e.g. postgres://postgres@127.0.0.1/wafer"
        ),
    }
}

pub fn token(flag: Option<String>) -> anyhow::Result<String> {
    match flag {
        Some(token) if !token.trim().is_empty() => Ok(token.trim().to_string()),
        _ => anyhow::bail!(
            "--token (or WAFER_TOKEN) is required: the cluster's token, the same on every gateway and worker"
        ),
    }
}
