//! `wafer-bench`: benchmarks that run wafer and its peer side by side in one run and report the
//! ratio (these machines are shared and noisy: absolute numbers drift, ratios hold).
//!
//! - `queue`: messages/s through a trivial function with acks, against a plain lapin consumer
//!   that acks without waiting on each ack, same queue setup, same prefetch.

mod queue;
mod wafer;

use clap::Parser;

#[derive(Parser)]
#[command(name = "wafer-bench")]
enum Bench {
    /// Queue trigger throughput against a plain lapin consumer.
    Queue(queue::Queue),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Bench::parse() {
        Bench::Queue(q) => q.run().await,
    }
}
