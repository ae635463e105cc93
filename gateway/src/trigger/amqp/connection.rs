//! One AMQP connection per broker for all of a process's queue triggers: each trigger consumes
//! on a channel of its own, and all of them publish retries and dead letters on one shared
//! channel with publisher confirms. When the connection breaks, the first trigger to notice
//! connects again and the others open their channels on the new one.

use lapin::options::ConfirmSelectOptions;
use lapin::types::LongString;
use lapin::{Channel, Connection, ConnectionProperties};

use super::config::redact_url;

/// A broker's connection, shared by the triggers that use it.
pub(crate) struct SharedConnection {
    url: String,
    current: tokio::sync::Mutex<Option<Connection>>,
    /// The channel every trigger publishes on (confirms on), once opened.
    publisher: tokio::sync::Mutex<Option<Channel>>,
}

impl SharedConnection {
    pub(crate) fn new(url: String) -> SharedConnection {
        SharedConnection {
            url,
            current: tokio::sync::Mutex::new(None),
            publisher: tokio::sync::Mutex::new(None),
        }
    }

    /// A new channel on the connection, connecting (again) first if it is not up.
    pub(crate) async fn channel(&self) -> Result<Channel, String> {
        let mut current = self.current.lock().await;
        if let Some(connection) = current.as_ref()
            && connection.status().connected()
        {
            match connection.create_channel().await {
                Ok(channel) => return Ok(channel),
                Err(e) => {
                    tracing::debug!(error = %e, "the shared broker connection failed; reconnecting")
                }
            }
        }
        let name = format!("wafer:{}", std::process::id());
        let connection = Connection::connect(
            &self.url,
            ConnectionProperties::default().with_connection_name(LongString::from(name.as_str())),
        )
        .await
        .map_err(|e| format!("connecting to {}: {e}", redact_url(&self.url)))?;
        let channel = connection
            .create_channel()
            .await
            .map_err(|e| format!("opening a channel: {e}"))?;
        *current = Some(connection);
        Ok(channel)
    }

    /// The shared publishing channel, opened (again) if it is not up.
    pub(crate) async fn publisher(&self) -> Result<Channel, String> {
        let mut publisher = self.publisher.lock().await;
        if let Some(channel) = publisher.as_ref()
            && channel.status().connected()
        {
            return Ok(channel.clone());
        }
        let channel = self.channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| format!("enabling publisher confirms: {e}"))?;
        *publisher = Some(channel.clone());
        Ok(channel)
    }

    /// Closes the connection (when the last trigger using it has stopped).
    pub(crate) async fn close(&self) {
        self.publisher.lock().await.take();
        if let Some(connection) = self.current.lock().await.take() {
            let _ = connection.close(200, "wafer closing".into()).await;
        }
    }
}
