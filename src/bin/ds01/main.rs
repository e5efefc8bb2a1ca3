//! `ds01`: the user and admin command line.
//!
//! Exit codes: 0 ok, 1 problems found, 2 error.

mod gc;
mod gpus;
mod style;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ds01::config::Config;

#[derive(Parser)]
#[command(
    name = "ds01",
    version,
    about = "Fair sharing of this host's GPUs among Docker containers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the GPUs and MIG slices and who holds each
    Gpus(gpus::Args),
    /// Free the devices of containers that are gone (crashed, killed, rebooted)
    Gc(gc::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = Config::load()
        .map_err(anyhow::Error::from)
        .and_then(|cfg| match cli.command {
            Command::Gpus(args) => gpus::run(&cfg, args),
            Command::Gc(args) => gc::run(&cfg, args),
        });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ds01: {e:#}");
            ExitCode::from(2)
        }
    }
}
