//! One trigger's consumer: open its channels on the process's shared connection to the broker,
//! declare, consume, batch, hand deliveries to `delivery`; on any connection or channel failure,
//! back off and do it all again, until stopped.

use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use lapin::message::Delivery;
use lapin::options::{
    BasicCancelOptions, BasicConsumeOptions, BasicQosOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Consumer};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use super::{Context, delivery, redact_url};

const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long a stopping consumer waits for the broker to confirm its cancel (and hand over
/// what it had prefetched); whatever is left then goes back when the channel closes.
const DRAIN_WAIT: Duration = Duration::from_secs(5);

/// Runs until `stop` turns true; never gives up on the broker before that.
pub(super) async fn run(ctx: Arc<Context>, mut stop: watch::Receiver<bool>) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        if *stop.borrow() {
            break;
        }
        match session(&ctx, &mut stop, &mut backoff).await {
            Ok(()) => break,
            Err(error) => {
                // Never log the URL with its password.
                let error = error.replace(&ctx.url, &redact_url(&ctx.url));
                tracing::warn!(
                    function = %ctx.function,
                    queue = %ctx.trigger.queue,
                    %error,
                    retry_in = ?backoff,
                    "queue consumer disconnected; reconnecting"
                );
                ctx.state.disconnected(&ctx.metrics.connected, error);
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => break,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
    ctx.metrics.connected.set(0);
}

/// One consuming channel's life. Returns Ok when stopped gracefully, Err when the broker went
/// away.
async fn session(
    ctx: &Arc<Context>,
    stop: &mut watch::Receiver<bool>,
    backoff: &mut Duration,
) -> Result<(), String> {
    let channel = ctx.connection.channel().await?;
    let result = match ctx.connection.publisher().await {
        Ok(publish) => consume(ctx, &channel, &publish, stop, backoff).await,
        Err(e) => Err(e),
    };
    // Closing the consuming channel returns its unsettled deliveries to the queue.
    let _ = channel.close(200, "wafer consumer closing".into()).await;
    result
}

async fn consume(
    ctx: &Arc<Context>,
    channel: &Channel,
    publish: &Channel,
    stop: &mut watch::Receiver<bool>,
    backoff: &mut Duration,
) -> Result<(), String> {
    declare(ctx).await?;
    channel
        .basic_qos(ctx.trigger.prefetch, BasicQosOptions::default())
        .await
        .map_err(|e| format!("setting prefetch: {e}"))?;
    let tag = format!("wafer-{}-{}", ctx.function, std::process::id());
    let mut consumer = channel
        .basic_consume(
            ctx.trigger.queue.as_str().into(),
            tag.as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| format!("consuming {}: {e}", ctx.trigger.queue))?;
    ctx.state.connected(&ctx.metrics.connected);
    *backoff = FIRST_BACKOFF;
    tracing::info!(function = %ctx.function, queue = %ctx.trigger.queue, prefetch = ctx.trigger.prefetch, "consuming");

    let publish = Arc::new(publish.clone());
    let turns = Arc::new(Semaphore::new(ctx.trigger.max_concurrency as usize));
    let mut in_flight = JoinSet::new();
    let outcome = loop {
        tokio::select! {
            _ = stop.changed() => break Ok(()),
            Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
            next = consumer.next() => match next {
                Some(Ok(first)) => {
                    let batch = collect_batch(first, &mut consumer, ctx).await;
                    let (ctx, publish, turns) = (ctx.clone(), publish.clone(), turns.clone());
                    in_flight.spawn(async move {
                        // Wait for a turn here, holding the deliveries, rather than be refused.
                        let Ok(_turn) = turns.acquire_owned().await else { return };
                        delivery::process(ctx, publish, batch).await;
                    });
                }
                Some(Err(e)) => break Err(format!("consumer failed: {e}")),
                None => break Err("the broker ended the consumer (queue deleted or channel closed)".to_string()),
            },
        }
    };
    match outcome {
        Ok(()) => {
            // Take no more deliveries; give back those prefetched and not started (as they
            // came, so none is charged a delivery); settle those in flight.
            let _ = channel
                .basic_cancel(tag.as_str().into(), BasicCancelOptions::default())
                .await;
            let mut unstarted = Vec::new();
            while let Ok(Some(Ok(delivery))) =
                tokio::time::timeout(DRAIN_WAIT, consumer.next()).await
            {
                unstarted.push(delivery);
            }
            let returns = unstarted
                .iter()
                .map(|d| delivery::give_back(ctx, &publish, d));
            futures::future::join_all(returns).await;
            while in_flight.join_next().await.is_some() {}
            Ok(())
        }
        Err(e) => {
            // Their acks will fail on the dead channel and the broker will redeliver them.
            in_flight.detach_all();
            Err(e)
        }
    }
}

/// Takes more deliveries after `first` until the batch is full or its window has passed (with a
/// zero window: only those already here).
async fn collect_batch(first: Delivery, consumer: &mut Consumer, ctx: &Context) -> Vec<Delivery> {
    let size = ctx.trigger.batch_size as usize;
    let mut batch = vec![first];
    if size == 1 {
        return batch;
    }
    let deadline = tokio::time::Instant::now() + ctx.trigger.batch_window;
    while batch.len() < size {
        let next = if ctx.trigger.batch_window.is_zero() {
            match consumer.next().now_or_never() {
                Some(next) => next,
                None => break,
            }
        } else {
            match tokio::time::timeout_at(deadline, consumer.next()).await {
                Ok(next) => next,
                Err(_) => break,
            }
        };
        match next {
            Some(Ok(delivery)) => batch.push(delivery),
            // The error resurfaces on the next read of the consumer.
            _ => break,
        }
    }
    batch
}

/// Declares the source queue (if wafer owns it), its retry queues and its dead-letter queue,
/// on a channel of their own (a refused declare closes the channel it was made on). Each queue
/// a message can be returned from has a dead-letter target, so that no broker-side limit (a
/// quorum queue's delivery limit, 20 by default since RabbitMQ 4.0) drops one: the source's
/// is its dead-letter queue, a retry queue's the source.
async fn declare(ctx: &Context) -> Result<(), String> {
    let trigger = &ctx.trigger;
    let mut queues = Vec::new();
    if trigger.declare {
        let mut args = dead_letter_to(&trigger.dead_letter);
        if trigger.quorum {
            args.insert(
                "x-queue-type".into(),
                AMQPValue::LongString("quorum".into()),
            );
        }
        queues.push((trigger.queue.clone(), args));
    }
    for delay in trigger.retry_delays() {
        let mut args = dead_letter_to(&trigger.queue);
        args.insert(
            "x-message-ttl".into(),
            AMQPValue::LongLongInt(delay.as_millis() as i64),
        );
        queues.push((delivery::retry_queue(&trigger.queue, delay), args));
    }
    queues.push((trigger.dead_letter.clone(), FieldTable::default()));
    let mut channel = ctx.connection.channel().await?;
    for (queue, args) in queues {
        let durable = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        match channel
            .queue_declare(queue.as_str().into(), durable, args)
            .await
        {
            Ok(_) => {}
            Err(e) if precondition_failed(&e) => {
                // It exists with other arguments (declared by someone else, or by an older
                // wafer): use it as it is, since changing it means deleting it.
                channel = ctx.connection.channel().await?;
                let passive = QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                };
                channel
                    .queue_declare(queue.as_str().into(), passive, FieldTable::default())
                    .await
                    .map_err(|e| format!("declaring queue {queue}: {e}"))?;
                tracing::warn!(function = %ctx.function, %queue, error = %e, "the queue exists with other arguments than wafer declares; using it as it is");
            }
            Err(e) => return Err(format!("declaring queue {queue}: {e}")),
        }
    }
    let _ = channel.close(200, "declared".into()).await;
    Ok(())
}

/// Queue arguments that dead-letter to `queue` through the default exchange.
fn dead_letter_to(queue: &str) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString("".into()),
    );
    args.insert(
        "x-dead-letter-routing-key".into(),
        AMQPValue::LongString(queue.into()),
    );
    args
}

fn precondition_failed(error: &lapin::Error) -> bool {
    matches!(error.kind(), lapin::ErrorKind::ProtocolError(e) if e.get_id() == 406)
}
