//! `wafer-bench`: benchmarks that run wafer and its peer side by side in one run and report the
//! ratio (these machines are shared and noisy: absolute numbers drift, ratios hold).
//!
//! - `queue`: messages/s through a trivial function with acks, against a plain lapin consumer
//!   that acks without waiting on each ack, same queue setup, same prefetch.
//! - `languages`: per language, build time, component size, deploy time, cold and warm latency.
//! - `hostile`: a healthy function's latency alone and while hostile functions are hammered.
//! - `soak`: minutes of mixed load at 80% of the maximum rate; errors and RSS growth.
//! - `serve`: hello against `wasmtime serve` and a plain axum server (req/s, latency, CPU per
//!   request), cold starts, deploy and restart times, RSS with many functions.
//! - `cluster`: one gateway and workers against `wafer up`: the hop's cost, scaling an I/O-bound
//!   function over workers, what membership costs PostgreSQL.
//! - `versions`: a traffic split against one version, 1,000 kept versions, schedule lag.
//! - `tiers`: deploy -> first 200 with tiered compilation, Cranelift alone and `wasmtime serve`;
//!   latency on each tier, and when the optimized code takes over.

mod cluster;
mod hostile;
mod languages;
mod queue;
mod serve;
mod soak;
mod tiers;
mod versions;
mod wafer;

use clap::Parser;

#[derive(Parser)]
#[command(name = "wafer-bench")]
enum Bench {
    /// Queue trigger throughput against a plain lapin consumer.
    Queue(queue::Queue),
    /// Build time, size, deploy time and latency of each language's example.
    Languages(languages::Languages),
    /// A healthy function's latency alone and next to hostile functions.
    Hostile(hostile::Hostile),
    /// Mixed load at 80% of the maximum rate for minutes: errors and RSS growth.
    Soak(soak::Soak),
    /// wafer against `wasmtime serve` and a plain axum server on the same hello component.
    Serve(serve::Serve),
    /// A gateway and workers against `wafer up` on the same components.
    Cluster(cluster::Cluster),
    /// A 2-way split against one version, 1,000 kept versions, how late scheduled runs start.
    Versions(versions::Versions),
    /// Deploy -> first answer on each compiler tier, against `wasmtime serve`.
    Tiers(tiers::Tiers),
    /// A plain axum hello server (the ceiling `serve` compares against).
    #[command(hide = true)]
    AxumHello(serve::AxumHello),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Bench::parse() {
        Bench::Queue(q) => q.run().await,
        Bench::Languages(l) => l.run().await,
        Bench::Hostile(h) => h.run().await,
        Bench::Soak(s) => s.run().await,
        Bench::Serve(s) => s.run().await,
        Bench::Cluster(c) => c.run().await,
        Bench::Versions(v) => v.run().await,
        Bench::Tiers(t) => t.run().await,
        Bench::AxumHello(a) => a.run().await,
    }
}
