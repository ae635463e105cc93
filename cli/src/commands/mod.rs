//! The subcommands, one file each (a function's history, `versions`, `traffic`, `rollback` and
//! `tag`, in `versions`).

mod build;
mod cluster;
mod completions;
mod delete;
mod deploy;
mod gateway;
mod invoke;
mod list;
mod logs;
mod new;
mod queue;
mod up;
mod versions;
mod worker;

use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Run the gateway and a worker in this process, deploying the given functions first.
    Up(up::Up),
    /// Run a cluster's gateway (HTTP in, admin API) on its PostgreSQL, without a worker.
    Gateway(gateway::Gateway),
    /// Run a cluster's worker: it serves the gateways' calls and follows PostgreSQL.
    Worker(worker::WorkerCommand),
    /// Create a new function folder (Rust, JavaScript or Python) that builds and deploys as is.
    New(new::New),
    /// Run a function's build command from its manifest.
    Build(build::Build),
    /// Deploy (create or replace) a function from a manifest or from flags.
    Deploy(Box<deploy::Deploy>),
    /// List deployed functions and their state.
    List(list::List),
    /// Call a function and print its response body.
    Invoke(invoke::Invoke),
    /// Print a function's stdout and stderr.
    Logs(logs::Logs),
    /// Delete a function.
    Delete(delete::Delete),
    /// List a function's kept versions: digest, time, message, tags, traffic share.
    Versions(versions::Versions),
    /// Split a function's calls between versions by weight (`7=90 8=10`), or send all to one.
    Traffic(versions::Traffic),
    /// Send all of a function's traffic back, at once: from a split to its oldest version, else
    /// to the previous version (or --to V).
    Rollback(versions::Rollback),
    /// Name a version (`wafer tag NAME 8 canary`): calls pin it with `x-wafer-version`.
    Tag(versions::Tag),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(completions::Completions),
    /// Send messages to a RabbitMQ queue, or look at one (for trying queue triggers).
    #[command(subcommand)]
    Queue(queue::Queue),
}

impl Command {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        match self {
            Command::Up(c) => c.run().await,
            Command::Gateway(c) => c.run().await,
            Command::Worker(c) => c.run().await,
            Command::New(c) => c.run().await,
            Command::Build(c) => c.run().await,
            Command::Deploy(c) => c.run().await,
            Command::List(c) => c.run().await,
            Command::Invoke(c) => c.run().await,
            Command::Logs(c) => c.run().await,
            Command::Delete(c) => c.run().await,
            Command::Versions(c) => c.run().await,
            Command::Traffic(c) => c.run().await,
            Command::Rollback(c) => c.run().await,
            Command::Tag(c) => c.run().await,
            Command::Queue(c) => c.run().await,
            Command::Completions(c) => c.run().await,
        }
    }
}
