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

/// The install that puts the official CLI where ds01 looks, clear of
/// ds01's own `/usr/bin/devcontainer` (a plain `npm install -g` with npm's
/// prefix at /usr fails there with EEXIST).
pub const INSTALL_HINT: &str =
    "sudo npm install -g --prefix /usr/local/lib/devcontainers-cli @devcontainers/cli";

/// Runs the official CLI with `argv`, in place of this process.
pub fn pass_on(argv: Vec<OsString>) -> anyhow::Result<ExitCode> {
    match find_official() {
        Some(cli) => Err(std::process::Command::new(&cli).args(&argv).exec())
            .map_err(|e| anyhow::anyhow!("cannot run {cli:?}: {e}")),
        None => {
            let sub = argv
                .first()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            anyhow::bail!(
                "devcontainer {sub}: this is a Dev Containers CLI command, and the Dev Containers CLI \
                 is not installed; install it with: {INSTALL_HINT}"
            )
        }
    }
}

/// Where the official CLI is: the config's `devcontainer_cli`, else the
/// first `devcontainer` on PATH that is not this program.
pub fn find_official() -> Option<PathBuf> {
    let configured = Config::load().map_or_else(
        |_| Config::default().devcontainer_cli,
        |c| c.devcontainer_cli,
    );
    if is_executable(&configured) {
        return Some(configured);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let me = std::env::current_exe()
        .ok()
        .and_then(|p| p.canonicalize().ok());
    official_cli(&path, me.as_deref())
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// `devcontainer --help`: ds01's commands, then the official CLI's.
pub fn help(ours: &str) -> ExitCode {
    print!("{ours}");
    match find_official() {
        Some(cli) => {
            println!(
                "\nThe Dev Containers CLI ({}) answers the other commands:\n",
                cli.display()
            );
            let _ = std::io::Write::flush(&mut std::io::stdout());
            let _ = std::process::Command::new(&cli).arg("--help").status();
        }
        None => println!(
            "\nOther commands (up, build, exec, read-configuration, ...) go to the Dev Containers CLI, \
             which is not installed; install it with: {INSTALL_HINT}"
        ),
    }
    ExitCode::SUCCESS
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
