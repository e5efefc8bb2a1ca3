//! `devcontainer ...` (and `ds01 devcontainer ...`): `init` and `check` are
//! ds01's own; other subcommands go to the official Dev Containers CLI.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use ds01_core::config::Config;

mod check;
mod init;

pub use init::write_quick;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Write a .devcontainer/devcontainer.json fit for this server (a wizard on a terminal)
    Init(init::Args),
    /// Check a devcontainer.json against this server's rules; --fix repairs what it safely can
    Check(check::Args),
    /// Any Dev Containers CLI command (up, build, exec, ...), passed to it unchanged
    #[command(external_subcommand)]
    External(Vec<OsString>),
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Command::Init(a) => init::run(&Config::load()?, a),
        Command::Check(a) => Ok(check::run(a)),
        Command::External(argv) => pass_on(argv),
    }
}

fn pass_on(argv: Vec<OsString>) -> anyhow::Result<ExitCode> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let me = std::env::current_exe()
        .ok()
        .and_then(|p| p.canonicalize().ok());
    match official_cli(&path, me.as_deref()) {
        Some(cli) => Err(std::process::Command::new(&cli).args(&argv).exec())
            .map_err(|e| anyhow::anyhow!("cannot run {cli:?}: {e}")),
        None => {
            let sub = argv
                .first()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            anyhow::bail!(
                "devcontainer {sub}: this is a Dev Containers CLI command, and no Dev Containers CLI \
                 is installed on PATH; install it with: npm install -g @devcontainers/cli"
            )
        }
    }
}

/// The first `devcontainer` on PATH that is not this program.
fn official_cli(path: &std::ffi::OsStr, me: Option<&Path>) -> Option<PathBuf> {
    std::env::split_paths(path)
        .map(|dir| dir.join("devcontainer"))
        .filter(|p| p.is_file())
        .find(|p| p.canonicalize().ok().as_deref() != me)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn skips_itself_and_finds_the_official_cli() {
        let dir = tempfile::tempdir().unwrap();
        let ours = dir.path().join("ours");
        let theirs = dir.path().join("theirs");
        std::fs::create_dir_all(&ours).unwrap();
        std::fs::create_dir_all(&theirs).unwrap();
        let me = dir.path().join("ds01");
        std::fs::write(&me, "").unwrap();
        symlink(&me, ours.join("devcontainer")).unwrap();
        let path = std::env::join_paths([&ours, &theirs]).unwrap();
        let me = me.canonicalize().unwrap();
        assert_eq!(official_cli(&path, Some(&me)), None);
        std::fs::write(theirs.join("devcontainer"), "").unwrap();
        assert_eq!(
            official_cli(&path, Some(&me)),
            Some(theirs.join("devcontainer"))
        );
    }
}
