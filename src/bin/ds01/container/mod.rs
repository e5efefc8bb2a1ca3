//! `container ...` (also `ds01 container ...`): list your containers, and
//! the command-line workflow: deploy one, attach to it, stop and start it,
//! retire it.

use std::process::ExitCode;

use ds01::docker::DockerApi;
use ds01_core::config::Config;

mod deploy;
mod ls;
mod manage;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// List containers with their status, image and GPU
    #[command(alias = "list")]
    Ls(ls::Args),
    /// Start a long-running container for a project, with a GPU
    Deploy(deploy::Args),
    /// An interactive shell in one of your containers (or run a command there)
    Attach(manage::AttachArgs),
    /// Stop one of your containers; its GPU goes back to the pool
    Stop(manage::NameArgs),
    /// Start one of your stopped containers again, with a fresh GPU
    Start(manage::NameArgs),
    /// Stop and remove one of your containers for good
    Retire(manage::RetireArgs),
}

pub fn run(cfg: &Config, args: Args, docker: &dyn DockerApi) -> anyhow::Result<ExitCode> {
    match args.command {
        Command::Ls(a) => ls::run(cfg, a, docker),
        Command::Deploy(a) => deploy::run(cfg, a),
        Command::Attach(a) => manage::attach(cfg, a),
        Command::Stop(a) => manage::stop(cfg, a),
        Command::Start(a) => manage::start(cfg, a),
        Command::Retire(a) => manage::retire(cfg, a),
    }
}
