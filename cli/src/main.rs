//! `wafer`: run wafer locally (`up`) or as a cluster's processes (`gateway`, `worker`), and
//! deploy, list, call, read and delete functions on a running wafer through its admin API.
//!
//! Modules:
//! - `commands`: one file per subcommand, each a clap struct with a `run` method;
//! - `project`: a function's folder on disk: its manifest, building it, its component;
//! - `client`: the admin API over HTTP, as the commands use it;
//! - `progress`: progress of long steps (upload, compiling on the server), on terminals only;
//! - `signals`: stopping a server process on SIGTERM or Ctrl-C, draining first;
//! - `telemetry`: server logs, and OpenTelemetry traces over OTLP when asked for.

mod client;
mod commands;
mod progress;
mod project;
mod signals;
mod telemetry;

use std::process::ExitCode;

use clap::Parser;

use telemetry::LogFormat;

#[derive(Parser)]
#[command(
    name = "wafer",
    version,
    about = "WebAssembly functions: deploy a component, call it over HTTP"
)]
struct Cli {
    /// How server logs are written: `text` for people, `json` (one object a line) for machines.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "WAFER_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: commands::Command,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // lapin reports at warn what wafer already handles and reports itself (returned messages,
    // closed channels).
    let server = matches!(
        cli.command,
        commands::Command::Up(_) | commands::Command::Gateway(_) | commands::Command::Worker(_)
    );
    let default_level = if server {
        "info,lapin=error,sqlx=warn"
    } else {
        "warn,lapin=error"
    };
    // Dropped last, after the runtime: sends the traces still buffered.
    let _telemetry = match telemetry::init(cli.log_format, default_level, server) {
        Ok(telemetry) => telemetry,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };

    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: failed to start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli.command.run()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}
