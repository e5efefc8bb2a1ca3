//! `ds01 admin register-docker` / `unregister-docker`: the package's
//! postinst and prerm call these.

use std::path::PathBuf;
use std::process::ExitCode;

use ds01::docker_config::{self, Outcome, Paths};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(clap::Subcommand)]
enum Action {
    /// Make ds01-runtime Docker's default runtime in daemon.json (keeps every other key)
    RegisterDocker {
        /// The runtime binary Docker is to run
        #[arg(long, default_value = "/usr/bin/ds01-runtime")]
        runtime: PathBuf,
        #[command(flatten)]
        files: Files,
    },
    /// Remove ds01-runtime from daemon.json and restore the previous default runtime
    UnregisterDocker {
        #[command(flatten)]
        files: Files,
    },
}

#[derive(clap::Args)]
struct Files {
    /// Docker's daemon configuration
    #[arg(long, default_value = docker_config::DAEMON_JSON)]
    daemon_json: PathBuf,
    /// Where the previous default runtime is remembered
    #[arg(long, default_value = docker_config::STATE_FILE)]
    state: PathBuf,
}

impl Files {
    fn paths(self) -> Paths {
        Paths {
            daemon_json: self.daemon_json,
            state: self.state,
        }
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let outcome = match args.action {
        Action::RegisterDocker { runtime, files } => {
            docker_config::register(&files.paths(), &runtime)?
        }
        Action::UnregisterDocker { files } => docker_config::unregister(&files.paths())?,
    };
    match outcome {
        Outcome::Changed(m) | Outcome::Unchanged(m) => println!("ds01: {m}"),
    }
    Ok(ExitCode::SUCCESS)
}
