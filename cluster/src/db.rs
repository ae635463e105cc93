//! The cluster's PostgreSQL: connecting (with retries while it starts), the schema (migrations,
//! run at start under sqlx's advisory lock, so many processes starting together migrate once),
//! and the notification channels every process listens on.

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

/// A function was deployed or deleted; the payload is its name.
pub const FUNCTIONS_CHANNEL: &str = "wafer_functions";
/// A worker joined or left.
pub const WORKERS_CHANNEL: &str = "wafer_workers";
/// A worker finished installing a function version (or failed to); the payload is its name.
pub const READY_CHANNEL: &str = "wafer_ready";

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Why the database could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("could not reach PostgreSQL at {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("could not migrate the database schema: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Query(#[from] sqlx::Error),
}

/// Connects to `url` (retrying for up to `patience` while the server starts) and migrates the
/// schema to this build's.
pub async fn connect(url: &str, patience: Duration) -> Result<PgPool, DbError> {
    let deadline = tokio::time::Instant::now() + patience;
    let pool = loop {
        let attempt = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await;
        match attempt {
            Ok(pool) => break pool,
            Err(source) if tokio::time::Instant::now() >= deadline => {
                return Err(DbError::Connect {
                    url: redact(url),
                    source,
                });
            }
            Err(e) => {
                tracing::debug!(error = %e, "PostgreSQL not ready; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };
    MIGRATOR.run(&pool).await?;
    Ok(pool)
}

/// The URL without its password, for errors and logs.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((userinfo, host)) if userinfo.contains(':') => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{host}{path}")
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_stay_out_of_messages() {
        assert_eq!(
            super::redact("postgres://wafer:hunter2@db:5432/wafer"),
            "postgres://wafer:***@db:5432/wafer"
        );
        assert_eq!(
            super::redact("postgres://postgres@127.0.0.1/x"),
            "postgres://postgres@127.0.0.1/x"
        );
    }
}
