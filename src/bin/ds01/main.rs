//! `ds01`: the user and admin command line. Also answers to the names
//! `container`, `devcontainer` and `project` (argv[0]) as `ds01 container
//! ...` and so on.
//!
//! Exit codes: 0 ok, 1 problems found, 2 error.

mod admin;
mod container;
mod devcontainer;
mod docker;
mod doctor;
mod events;
mod gc;
mod generate;
mod gpus;
mod host_gpus;
mod limits;
mod logs;
mod me;
mod metrics;
mod project;
mod prompt;
mod queue;
mod reap;
mod report;
mod style;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ds01_core::config::Config;

#[derive(Parser)]
#[command(
    name = "ds01",
    version,
    about = "Fair sharing of this host's GPUs among Docker containers"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the GPUs and MIG slices and who holds each
    Gpus(gpus::Args),
    /// Free the devices of containers that are gone (crashed, killed, rebooted)
    Gc(gc::Args),
    /// Your GPU limits, where each comes from, and what you use now
    #[command(alias = "check-limits")]
    Limits(limits::Args),
    /// The audit log: allocations, refusals, releases, reclaims
    Events(events::Args),
    /// What ds01 wrote about your containers: allocations, refusals and why, releases (also `ds01-logs`)
    Logs(logs::Args),
    /// Your containers and the GPU each holds (`container ls`)
    Container(container::Args),
    /// Projects in ~/workspace (`project init NAME`)
    Project(project::Args),
    /// Dev Containers: commands ds01 does not know go to the official CLI
    Devcontainer(devcontainer::Args),
    /// Administration: register ds01-runtime with Docker, and undo it
    Admin(admin::Args),
    /// Check this host: driver, MIG, snapshot, CDI, NVIDIA's hook, Docker, files, runc
    Doctor(doctor::Args),
    /// Warn, then stop, idle and over-time GPU containers (one pass; run every minute)
    Reap(reap::Args),
    /// The creates waiting for a GPU, in the order they will be served
    Queue(queue::Args),
    /// Prometheus metrics (`--write`: to node-exporter's textfile directory)
    Metrics(metrics::Args),
    /// GPU-equivalent-hours per user or group from the audit log
    Report(report::Args),
    #[command(hide = true)]
    GenerateAssets(generate::Args),
}

/// `devcontainer up` is `ds01 devcontainer up`: the name chooses the group.
fn args_by_name() -> Vec<OsString> {
    let mut args: Vec<OsString> = std::env::args_os().collect();
    let name = args
        .first()
        .and_then(|a| std::path::Path::new(a).file_name())
        .map(|n| n.to_string_lossy().into_owned());
    if let Some(group @ ("devcontainer" | "container" | "project")) = name.as_deref() {
        args[0] = "ds01".into();
        args.insert(1, group.into());
    } else if name.as_deref() == Some("ds01-logs") {
        args[0] = "ds01".into();
        args.insert(1, "logs".into());
    }
    args
}

/// Runs `f` with the config in effect.
/// A bad identity order is a config error here too, as in the runtime.
fn with_config(f: impl FnOnce(&Config) -> anyhow::Result<ExitCode>) -> anyhow::Result<ExitCode> {
    let cfg = Config::load()?;
    ds01_core::identity::order(&cfg)?;
    f(&cfg)
}

fn main() -> ExitCode {
    let args = args_by_name();
    // `devcontainer` shares its name with the official CLI: flags ds01 does
    // not own (`--version`, ...) go there, and `--help` shows both.
    if args.get(1).is_some_and(|a| a == "devcontainer") {
        match args
            .get(2)
            .map(|a| a.to_string_lossy().into_owned())
            .as_deref()
        {
            Some("--help" | "-h") | None => {
                let mut cmd = <Cli as clap::CommandFactory>::command();
                let ours = cmd
                    .find_subcommand_mut("devcontainer")
                    .map(|c| c.render_help().to_string())
                    .unwrap_or_default();
                return devcontainer::help(&ours);
            }
            Some(flag) if flag.starts_with('-') => {
                return match devcontainer::pass_on(args[2..].to_vec()) {
                    Ok(code) => code,
                    Err(e) => {
                        eprintln!("devcontainer: {e:#}");
                        ExitCode::from(2)
                    }
                };
            }
            _ => {}
        }
    }
    let cli = Cli::parse_from(args);
    let result = match cli.command {
        Command::Gpus(args) => with_config(|c| gpus::run(c, args, &docker::Engine)),
        Command::Gc(args) => with_config(|c| gc::run(c, args)),
        Command::Doctor(args) => with_config(|c| doctor::run(c, args)),
        Command::Reap(args) => with_config(|c| reap::run(c, args)),
        Command::Queue(args) => with_config(|c| queue::run(c, args)),
        Command::Metrics(args) => with_config(|c| metrics::run(c, args)),
        Command::Report(args) => with_config(|c| report::run(c, args)),
        Command::Limits(args) => with_config(|c| limits::run(c, args)),
        Command::Events(args) => with_config(|c| events::run(c, args)),
        Command::Logs(args) => with_config(|c| logs::run(c, args, &docker::Engine)),
        Command::Container(args) => with_config(|c| container::run(c, args, &docker::Engine)),
        Command::Project(args) => with_config(|c| project::run(c, args)),
        Command::Devcontainer(args) => devcontainer::run(args),
        Command::Admin(args) => admin::run(args),
        Command::GenerateAssets(args) => generate::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ds01: {e:#}");
            ExitCode::from(2)
        }
    }
}
