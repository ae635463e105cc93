//! `wafer queue`: talk to RabbitMQ directly, to feed a queue-triggered function and to see what
//! ended in a queue (a dead-letter queue, with wafer's `x-wafer-error-*` headers).

use std::io::Read;
use std::process::ExitCode;

use anyhow::{Context, bail};
use lapin::options::{
    BasicGetOptions, BasicNackOptions, BasicPublishOptions, ConfirmSelectOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Confirmation, Connection, ConnectionProperties};
use wafer_gateway::trigger::amqp::config::{DEFAULT_AMQP_URL, redact_url};

#[derive(clap::Subcommand)]
pub enum Queue {
    /// Publish messages (persistent, with publisher confirms) to a queue.
    Send(Send),
    /// Show messages in a queue without removing them.
    Peek(Peek),
}

impl Queue {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        match self {
            Queue::Send(c) => c.run().await,
            Queue::Peek(c) => c.run().await,
        }
    }
}

#[derive(clap::Args)]
struct Broker {
    /// RabbitMQ URL.
    #[arg(long = "amqp-url", env = "WAFER_AMQP_URL", default_value = DEFAULT_AMQP_URL, hide_env_values = true)]
    url: String,
}

impl Broker {
    async fn connect(&self) -> anyhow::Result<Connection> {
        Connection::connect(&self.url, ConnectionProperties::default())
            .await
            .with_context(|| format!("failed to connect to {}", redact_url(&self.url)))
    }
}

#[derive(clap::Args)]
pub struct Send {
    /// The queue (published through the default exchange).
    queue: String,
    /// The message body: TEXT, @FILE, or - for stdin.
    data: String,
    /// Content type of the body.
    #[arg(long, default_value = "application/json")]
    content_type: String,
    /// AMQP `type` property (becomes the event's `ce-type`).
    #[arg(long = "type")]
    kind: Option<String>,
    /// AMQP message id (becomes `ce-id`).
    #[arg(long)]
    id: Option<String>,
    /// A message header (repeatable): becomes a `ce-` extension when its name allows.
    #[arg(long = "header", short = 'H', value_name = "NAME=VALUE")]
    headers: Vec<String>,
    /// Send the message this many times.
    #[arg(long, default_value_t = 1)]
    count: u32,
    #[command(flatten)]
    broker: Broker,
}

impl Send {
    async fn run(self) -> anyhow::Result<ExitCode> {
        let body = match self.data.as_str() {
            "-" => {
                let mut buf = Vec::new();
                std::io::stdin()
                    .read_to_end(&mut buf)
                    .context("failed to read stdin")?;
                buf
            }
            data => match data.strip_prefix('@') {
                Some(file) => {
                    std::fs::read(file).with_context(|| format!("failed to read {file}"))?
                }
                None => data.as_bytes().to_vec(),
            },
        };
        let mut headers = FieldTable::default();
        for header in &self.headers {
            let Some((name, value)) = header.split_once('=') else {
                bail!("--header expects NAME=VALUE, got `{header}`");
            };
            headers.insert(
                ShortString::from(name),
                AMQPValue::LongString(LongString::from(value)),
            );
        }
        let mut properties = BasicProperties::default()
            .with_content_type(self.content_type.as_str().into())
            .with_delivery_mode(2)
            .with_headers(headers);
        if let Some(kind) = &self.kind {
            properties = properties.with_type(kind.as_str().into());
        }
        if let Some(id) = &self.id {
            properties = properties.with_message_id(id.as_str().into());
        }
        let connection = self.broker.connect().await?;
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let mut confirms = Vec::with_capacity(self.count as usize);
        for _ in 0..self.count {
            confirms.push(
                channel
                    .basic_publish(
                        "".into(),
                        self.queue.as_str().into(),
                        BasicPublishOptions {
                            mandatory: true,
                            ..BasicPublishOptions::default()
                        },
                        &body,
                        properties.clone(),
                    )
                    .await?,
            );
        }
        for confirm in confirms {
            match confirm.await? {
                Confirmation::Ack(None) => {}
                Confirmation::Ack(Some(_)) => bail!("queue `{}` does not exist", self.queue),
                _ => bail!("the broker refused the message"),
            }
        }
        let _ = connection.close(200, "bye".into()).await;
        println!("sent {} message(s) to {}", self.count, self.queue);
        Ok(ExitCode::SUCCESS)
    }
}

#[derive(clap::Args)]
pub struct Peek {
    /// The queue to look at.
    queue: String,
    /// Messages to show at most.
    #[arg(long, default_value_t = 10)]
    count: u32,
    #[command(flatten)]
    broker: Broker,
}

impl Peek {
    async fn run(self) -> anyhow::Result<ExitCode> {
        let connection = self.broker.connect().await?;
        let channel = connection.create_channel().await?;
        let mut taken = Vec::new();
        for _ in 0..self.count {
            let Some(message) = channel
                .basic_get(
                    self.queue.as_str().into(),
                    BasicGetOptions { no_ack: false },
                )
                .await
                .with_context(|| format!("failed to read queue `{}`", self.queue))?
            else {
                break;
            };
            let delivery = &message.delivery;
            println!("--- message {}", taken.len() + 1);
            if let Some(headers) = delivery.properties.headers() {
                for (name, value) in headers.inner() {
                    println!("{name}: {}", show(value));
                }
            }
            println!("{}", String::from_utf8_lossy(&delivery.data));
            taken.push(message);
        }
        // Put everything back where it was: peeking consumes nothing.
        for message in taken.iter().rev() {
            message
                .delivery
                .nack(BasicNackOptions {
                    requeue: true,
                    ..BasicNackOptions::default()
                })
                .await?;
        }
        if taken.is_empty() {
            println!("queue {} is empty", self.queue);
        }
        let _ = connection.close(200, "bye".into()).await;
        Ok(ExitCode::SUCCESS)
    }
}

fn show(value: &AMQPValue) -> String {
    match value {
        AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        AMQPValue::ShortString(s) => s.to_string(),
        other => format!("{other:?}"),
    }
}
