//! `wafer-bench`: benchmarks that run wafer and its peer side by side in one run and report the
//! ratio (these machines are shared and noisy: absolute numbers drift, ratios hold).
//!
//! - `queue`: messages/s through a trivial function with acks, against a plain lapin consumer
//!   that acks without waiting on each ack, same queue setup, same prefetch.
//! - `languages`: per language, build time, component size, deploy time, cold and warm latency.

mod languages;
mod queue;
mod wafer;

use clap::Parser;

#[derive(Parser)]
#[command(name = "wafer-bench")]
enum Bench {
    /// Queue trigger throughput against a plain lapin consumer.
    Queue(queue::Queue),
    /// Build time, size, deploy time and latency of each language's example.
    Languages(languages::Languages),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Bench::parse() {
        Bench::Queue(q) => q.run().await,
        Bench::Languages(l) => l.run().await,
    }
}
