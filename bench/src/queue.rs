//! Queue throughput: a trivial function behind the queue trigger (every message a CloudEvent
//! through a wasm instance, acked only after it answered 2xx) against a plain lapin consumer that
//! acks each delivery without waiting on the ack before taking the next, same prefetch.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};

use crate::wafer::{Wafer, root, wait_for};

const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

#[derive(clap::Args)]
pub struct Queue {
    /// Messages per run.
    #[arg(long, default_value_t = 50_000)]
    messages: usize,
    /// Prefetch values to compare at (each is one plain run and one wafer run).
    #[arg(long, value_delimiter = ',', default_value = "100,1000")]
    prefetch: Vec<u16>,
    /// The wafer binary (build it with `cargo build --release -p wafer-cli`).
    #[arg(long, default_value = "target/release/wafer")]
    wafer: PathBuf,
    /// The trivial function's component (the test fixture that counts its calls and answers 200).
    #[arg(long, default_value = "target/guests/wasm32-wasip2/release/calls.wasm")]
    component: PathBuf,
}

impl Queue {
    pub async fn run(self) -> anyhow::Result<()> {
        let wafer_bin = root().join(&self.wafer);
        let component = root().join(&self.component);
        let connection = Connection::connect(AMQP_URL, ConnectionProperties::default())
            .await
            .context("RabbitMQ on 127.0.0.1:5672")?;
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        println!("| prefetch | plain lapin (msgs/s) | wafer (msgs/s) | ratio |");
        println!("|---:|---:|---:|---:|");
        for prefetch in &self.prefetch {
            let plain = plain_run(&connection, &channel, self.messages, *prefetch).await?;
            let wafer =
                wafer_run(&wafer_bin, &component, &channel, self.messages, *prefetch).await?;
            println!(
                "| {prefetch} | {plain:.0} | {wafer:.0} | {:.2}x |",
                wafer / plain
            );
        }
        Ok(())
    }
}

fn queue_name(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("bench-{tag}-{nanos}")
}

async fn declare(channel: &Channel, queue: &str) -> anyhow::Result<()> {
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    Ok(())
}

/// Publishes `n` small persistent messages, confirmed, in chunks.
async fn fill(channel: &Channel, queue: &str, n: usize) -> anyhow::Result<()> {
    let body = br#"{"id":"bench","item":"tea","quantity":1}"#;
    for chunk in (0..n).collect::<Vec<_>>().chunks(5000) {
        let mut confirms = Vec::with_capacity(chunk.len());
        for _ in chunk {
            confirms.push(
                channel
                    .basic_publish(
                        "".into(),
                        queue.into(),
                        BasicPublishOptions::default(),
                        body,
                        BasicProperties::default()
                            .with_content_type("application/json".into())
                            .with_delivery_mode(2),
                    )
                    .await?,
            );
        }
        for confirm in confirms {
            confirm.await?;
        }
    }
    Ok(())
}

async fn drop_queues(channel: &Channel, queue: &str) {
    for name in [queue.to_string(), format!("{queue}.dlq")] {
        let _ = channel
            .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
            .await;
    }
}

/// The plain consumer: ack every delivery, never waiting for one ack before the next delivery.
async fn plain_run(
    connection: &Connection,
    setup: &Channel,
    n: usize,
    prefetch: u16,
) -> anyhow::Result<f64> {
    let queue = queue_name("plain");
    declare(setup, &queue).await?;
    fill(setup, &queue, n).await?;
    let channel = connection.create_channel().await?;
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await?;
    let started = Instant::now();
    let mut consumer = channel
        .basic_consume(
            queue.as_str().into(),
            "plain".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let mut acks = FuturesUnordered::new();
    let mut acked = 0;
    while acked < n {
        tokio::select! {
            Some(delivery) = consumer.next() => {
                let delivery = delivery?;
                acks.push(async move { delivery.ack(BasicAckOptions::default()).await });
            }
            Some(result) = acks.next(), if !acks.is_empty() => {
                result?;
                acked += 1;
            }
        }
    }
    let elapsed = started.elapsed();
    let _ = channel.close(200, "done".into()).await;
    drop_queues(setup, &queue).await;
    Ok(n as f64 / elapsed.as_secs_f64())
}

/// wafer: the same messages through a wasm function, each acked after the function answered.
async fn wafer_run(
    binary: &std::path::Path,
    component: &std::path::Path,
    setup: &Channel,
    n: usize,
    prefetch: u16,
) -> anyhow::Result<f64> {
    let queue = queue_name("wafer");
    declare(setup, &queue).await?;
    fill(setup, &queue, n).await?;
    let wafer = Wafer::start(binary, &[])?;
    // Compile first, without the trigger, so that the timed part is only consuming.
    wafer.deploy("sink", component, "").await?;
    let manifest = format!("[[queue]]\nqueue = \"{queue}\"\nprefetch = {prefetch}\n");
    let started = Instant::now();
    wafer.deploy("sink", component, &manifest).await?;
    let sample =
        format!("wafer_queue_messages_succeeded_total{{function=\"sink\",queue=\"{queue}\"}}");
    wait_for(Duration::from_secs(600), || async {
        Ok(wafer.metric(&sample).await? >= n as f64)
    })
    .await?;
    let elapsed = started.elapsed();
    drop(wafer);
    drop_queues(setup, &queue).await;
    Ok(n as f64 / elapsed.as_secs_f64())
}
