//! `container attach|stop|start|retire NAME`: on the user's own containers
//! (`USER/NAME` for an admin), through the Docker socket the user reaches.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;
use bollard::query_parameters::{RemoveContainerOptions, StopContainerOptions};
use ds01::deploy;
use ds01::docker::{DockerApi, DockerContainer};
use ds01_core::config::Config;
use ds01_core::identity::SystemAccounts;
use ds01_core::ledger::Ledger;

use crate::docker::{Engine, with_docker_for};
use crate::me::me;
use crate::prompt::{self, Prompter};

#[derive(clap::Args)]
pub struct NameArgs {
    /// Your container's name (USER/NAME: another user's, for admins)
    name: String,
}

#[derive(clap::Args)]
pub struct AttachArgs {
    /// Your container's name (USER/NAME: another user's, for admins)
    name: String,
    /// A command to run instead of a shell
    #[arg(last = true)]
    cmd: Vec<String>,
}

#[derive(clap::Args)]
pub struct RetireArgs {
    /// Your container's name (USER/NAME: another user's, for admins)
    name: String,
    /// Do not ask first
    #[arg(long, short)]
    force: bool,
}

/// The container `arg` names, if it is the user's (or they are an admin);
/// the inner error is a refusal (exit 1), the outer one an error (exit 2).
fn find(cfg: &Config, arg: &str) -> anyhow::Result<Result<DockerContainer, String>> {
    let me = me()?;
    // SAFETY: geteuid cannot fail.
    let admin = unsafe { libc::geteuid() } == 0
        || cfg
            .policy
            .is_admin(&cfg.admin_group, Some(&me.name), &SystemAccounts);
    let all = Engine.containers().map_err(anyhow::Error::msg)?;
    Ok(deploy::resolve(&all, &me.name, admin, arg).cloned())
}

/// Says why, and exits 1.
fn refused(why: &str) -> anyhow::Result<ExitCode> {
    eprintln!("container: {why}");
    Ok(ExitCode::from(1))
}

/// What a container holds, in words: `MIG 1g.10gb on GPU 1`, or `no GPU`.
pub fn device_of(cfg: &Config, id: &str) -> String {
    let Ok(records) = Ledger::new(&cfg.state_dir).read() else {
        return "a GPU ds01 could not name (the ledger cannot be read)".into();
    };
    match records.records.iter().find(|r| r.container_id == id) {
        Some(r) => match ds01::scan::load(cfg) {
            Ok(inv) => ds01_core::text::describe(&inv, r),
            Err(_) => r.devices.join(", "),
        },
        None => "no GPU".into(),
    }
}

/// The name the user chose, for messages.
fn shown(c: &DockerContainer) -> String {
    c.labels
        .get(deploy::NAME_LABEL)
        .cloned()
        .unwrap_or_else(|| c.name.clone())
}

pub fn attach(cfg: &Config, args: AttachArgs) -> anyhow::Result<ExitCode> {
    let c = match find(cfg, &args.name)? {
        Ok(c) => c,
        Err(why) => return refused(&why),
    };
    if c.state != "running" {
        bail!(
            "{} is {}; start it first: container start {}",
            shown(&c),
            c.state,
            args.name
        );
    }
    // The docker client gives a real terminal (tmux, resizing); it honours
    // DOCKER_HOST as this command does.
    let mut argv: Vec<OsString> = vec!["exec".into()];
    argv.push(if prompt::interactive() { "-it" } else { "-i" }.into());
    argv.push(c.id.clone().into());
    if args.cmd.is_empty() {
        argv.extend(
            [
                "sh",
                "-c",
                "if command -v bash >/dev/null 2>&1; then exec bash -l; else exec sh -l; fi",
            ]
            .map(OsString::from),
        );
    } else {
        argv.extend(args.cmd.iter().map(OsString::from));
    }
    let err = std::process::Command::new("docker").args(&argv).exec();
    bail!("cannot run the docker client (docker.io): {err}")
}

pub fn stop(cfg: &Config, args: NameArgs) -> anyhow::Result<ExitCode> {
    let c = match find(cfg, &args.name)? {
        Ok(c) => c,
        Err(why) => return refused(&why),
    };
    let held = device_of(cfg, &c.id);
    let id = c.id.clone();
    with_docker_for(Duration::from_secs(90), |docker| async move {
        docker
            .stop_container(&id, None::<StopContainerOptions>)
            .await
            .map_err(|e| e.to_string())
    })
    .map_err(anyhow::Error::msg)?;
    println!("stopped {}", shown(&c));
    if held != "no GPU" {
        println!(
            "its GPU ({held}) is back in the pool; 'container start {}' gets a fresh one",
            args.name
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn start(cfg: &Config, args: NameArgs) -> anyhow::Result<ExitCode> {
    let c = match find(cfg, &args.name)? {
        Ok(c) => c,
        Err(why) => return refused(&why),
    };
    if c.state == "running" {
        println!(
            "{} is already running with {}",
            shown(&c),
            device_of(cfg, &c.id)
        );
        return Ok(ExitCode::SUCCESS);
    }
    let id = c.id.clone();
    // A container that waits in the GPU queue makes start wait with it.
    let started = with_docker_for(Duration::from_secs(24 * 3600), |docker| async move {
        docker
            .start_container(&id, None)
            .await
            .map_err(|e| e.to_string())
    });
    if let Err(e) = started {
        return match deploy::ds01_reason(&e) {
            Some(reason) => {
                eprintln!("{reason}");
                Ok(ExitCode::from(1))
            }
            None => bail!("cannot start {}: {e}", shown(&c)),
        };
    }
    println!("{} is running with {}", shown(&c), device_of(cfg, &c.id));
    Ok(ExitCode::SUCCESS)
}

pub fn retire(cfg: &Config, args: RetireArgs) -> anyhow::Result<ExitCode> {
    let c = match find(cfg, &args.name)? {
        Ok(c) => c,
        Err(why) => return refused(&why),
    };
    if !args.force {
        if !prompt::interactive() {
            bail!(
                "retire removes {} for good; without a terminal to ask on, add --force",
                shown(&c)
            );
        }
        let stdin = std::io::stdin();
        let mut p = Prompter::new(stdin.lock(), std::io::stdout(), false);
        let question = format!(
            "Stop and remove {} for good? Files outside your home and project folder are lost",
            shown(&c)
        );
        if !p.confirm(&question, false)? {
            println!("kept {}", shown(&c));
            return Ok(ExitCode::SUCCESS);
        }
    }
    let held = device_of(cfg, &c.id);
    let id = c.id.clone();
    with_docker_for(Duration::from_secs(90), |docker| async move {
        // A normal stop first, so the release runs as for any stop; one
        // already stopped answers an error the removal makes moot.
        let _ = docker
            .stop_container(&id, None::<StopContainerOptions>)
            .await;
        docker
            .remove_container(
                &id,
                Some(RemoveContainerOptions {
                    force: true,
                    ..Default::default()
                }),
            )
            .await
            .map_err(|e| e.to_string())
    })
    .map_err(anyhow::Error::msg)?;
    println!("retired {}", shown(&c));
    if held != "no GPU" {
        println!("its GPU ({held}) is back in the pool");
    }
    Ok(ExitCode::SUCCESS)
}
