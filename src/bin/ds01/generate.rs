//! `ds01 generate-assets DIR` (hidden): man pages and shell completions,
//! made from the clap definitions at package build time.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Arg, Command, CommandFactory};

#[derive(clap::Args)]
pub struct Args {
    /// Where to write man/ and completions/
    dir: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let man = args.dir.join("man");
    let completions = args.dir.join("completions");
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&completions)?;
    write_man(&crate::Cli::command(), &man)?;
    write_man(&runtime_command(), &man)?;
    for name in ["ds01", "container", "devcontainer", "project"] {
        let mut cmd = crate::Cli::command().name(name).bin_name(name);
        let mut out = Vec::new();
        clap_complete::generate(clap_complete::Shell::Bash, &mut cmd, name, &mut out);
        std::fs::write(completions.join(name), out)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn write_man(cmd: &Command, dir: &Path) -> anyhow::Result<()> {
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut out)?;
    std::fs::write(dir.join(format!("{}.1", cmd.get_name())), out)?;
    Ok(())
}

/// ds01-runtime reads its argv by hand (it must hand it to runc untouched),
/// so this definition exists only for its manual.
fn runtime_command() -> Command {
    Command::new("ds01-runtime")
        .version(env!("CARGO_PKG_VERSION"))
        // Every flag belongs to runc: ds01-runtime has none of its own.
        .disable_help_flag(true)
        .disable_version_flag(true)
        .about("OCI runtime that gives GPU containers exactly their allocated GPU or MIG slice, then runs runc")
        .long_about(
            "ds01-runtime is registered as Docker's default OCI runtime. It takes runc's command line \
             and hands it to the real runc (the `runc` key of /etc/ds01/config.toml) byte for byte. \
             On create and run, a container whose environment asks for a GPU (NVIDIA_VISIBLE_DEVICES) \
             is given a device from the ledger in /run/ds01, its config.json is rewritten to expose \
             exactly that device, and a poststop hook is added that frees it. Containers that ask for \
             no GPU go to runc untouched. Errors reach Docker through runc's --log file; nothing is \
             printed on the container's streams. See /usr/share/doc/ds01.",
        )
        .arg(Arg::new("runc-args").value_name("RUNC ARGUMENTS").num_args(0..).trailing_var_arg(true).help(
            "Exactly runc's command line: global options (--root, --log, --log-format, ...), a command \
             (create, run, start, kill, delete, exec, ...) and its arguments",
        ))
        .subcommand(
            Command::new("hook")
                .about("Run as an OCI hook; `hook poststop [ALLOC]` releases an allocation, reading the OCI state on stdin")
                .arg(Arg::new("stage").required(true).value_parser(["poststop"]))
                .arg(Arg::new("alloc").help("The allocation id written into the hook by create")),
        )
        .after_help(
            "ENVIRONMENT:\n  DS01_CONFIG  another config file than /etc/ds01/config.toml\n\n\
             In the container's environment:\n  NVIDIA_VISIBLE_DEVICES  all: one device; a list: that many; none/void/empty: no GPU\n  \
             DS01_GPU_PROFILE        full, or a MIG profile such as 1g.10gb",
        )
}
