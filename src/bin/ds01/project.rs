//! `project init NAME [--type=ml|basic] [--workflow=cli|devcontainer|skip]`
//! (also `ds01 project init`): a new project in ~/workspace.

use std::path::Path;
use std::process::{Command, ExitCode};

use anyhow::{Context, bail};
use ds01_core::config::Config;
use ds01_core::policy::valid_name;

use crate::devcontainer::write_quick;
use crate::me::me;
use crate::prompt::{self, Prompter};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Sub,
}

#[derive(clap::Subcommand)]
enum Sub {
    /// Create ~/workspace/NAME: git repository, README, .gitignore (and for ml: data/, notebooks/, src/, requirements.txt)
    Init(InitArgs),
}

#[derive(clap::Args)]
struct InitArgs {
    name: String,
    #[arg(long = "type", value_parser = ["ml", "basic"], default_value = "ml")]
    kind: String,
    /// How containers will be launched (asked on a terminal when not given)
    #[arg(long, value_parser = ["cli", "devcontainer", "skip"])]
    workflow: Option<String>,
}

const WORKFLOWS: [&str; 3] = ["cli", "devcontainer", "skip"];

pub fn run(cfg: &Config, args: Args) -> anyhow::Result<ExitCode> {
    let Sub::Init(a) = args.command;
    if !valid_name(&a.name) {
        bail!(
            "project name {:?}: use letters, digits, '.', '_' and '-'",
            a.name
        );
    }
    let me = me()?;
    // The shell's idea of home, where the user will look for it.
    let home = std::env::var_os("HOME").map_or_else(|| me.home.clone(), std::path::PathBuf::from);
    let dir = home.join("workspace").join(&a.name);
    if dir.exists() {
        bail!("{dir:?} already exists; pick another name");
    }
    // Settle the last question before touching the disk, so a script
    // without a terminal fails cleanly.
    let workflow = match a.workflow {
        Some(w) => w,
        None if prompt::interactive() => {
            let stdin = std::io::stdin();
            let mut p = Prompter::new(stdin.lock(), std::io::stdout(), false);
            let i = p.choose(
                "How will you launch containers for this project?",
                &[
                    "cli  (recommended: container deploy, a long-running GPU container)",
                    "devcontainer  (VS Code Dev Containers)",
                    "skip  (decide later)",
                ],
                0,
            )?;
            WORKFLOWS[i].to_string()
        }
        None => bail!(
            "no terminal to ask on; pass --workflow=cli, --workflow=devcontainer or --workflow=skip"
        ),
    };
    create(&dir, &a.name, &a.kind)?;
    println!("created {}", dir.display());
    match workflow.as_str() {
        "devcontainer" => {
            let framework = if a.kind == "ml" { "pytorch" } else { "minimal" };
            let file = write_quick(cfg, &dir, framework, &me)?;
            println!(
                "wrote {}; open the folder in VS Code and choose \"Reopen in Container\"",
                file.display()
            );
        }
        "cli" => {
            let line = format!("container deploy {} {}", a.name, dir.display());
            let now = prompt::interactive() && {
                let stdin = std::io::stdin();
                let mut p = Prompter::new(stdin.lock(), std::io::stdout(), false);
                p.confirm("Deploy a GPU container for it now?", true)?
            };
            if now {
                let exe = std::env::current_exe().context("cannot find this program")?;
                let status = std::process::Command::new(exe)
                    .args(["container", "deploy", &a.name])
                    .arg(&dir)
                    .status()
                    .context("cannot run container deploy")?;
                return Ok(ExitCode::from(status.code().unwrap_or(2) as u8));
            }
            println!("start a GPU container for it with:");
            println!("  {line}");
        }
        _ => println!(
            "when you know how you will work: devcontainer init {}",
            dir.display()
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// The project's files; removed again if any step fails.
fn create(dir: &Path, name: &str, kind: &str) -> anyhow::Result<()> {
    let result = (|| {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {dir:?}"))?;
        let ml = kind == "ml";
        let readme = if ml {
            format!(
                "# {name}\n\n- `data/`: datasets (not committed)\n- `notebooks/`: exploration\n- `src/`: the code\n\n\
                 Dependencies are in `requirements.txt`.\n"
            )
        } else {
            format!("# {name}\n")
        };
        std::fs::write(dir.join("README.md"), readme)?;
        let mut ignore = String::from(
            "# Python\n__pycache__/\n*.py[cod]\n.venv/\n.ipynb_checkpoints/\n\n# Editors\n.vscode/*\n!.vscode/extensions.json\n",
        );
        if ml {
            ignore.push_str("\n# Data and models stay out of git\ndata/*\n!data/.gitkeep\n*.pt\n*.pth\n*.ckpt\n*.safetensors\nwandb/\nruns/\n");
        }
        std::fs::write(dir.join(".gitignore"), ignore)?;
        if ml {
            for sub in ["data", "notebooks", "src"] {
                std::fs::create_dir_all(dir.join(sub))?;
                std::fs::write(dir.join(sub).join(".gitkeep"), "")?;
            }
            std::fs::write(
                dir.join("requirements.txt"),
                "numpy\npandas\nmatplotlib\njupyterlab\n",
            )?;
        }
        let git = Command::new("git").arg("init").arg("-q").arg(dir).status();
        match git {
            Ok(s) if s.success() => Ok(()),
            Ok(s) => bail!("git init failed ({s})"),
            Err(e) => bail!("cannot run git ({e}); install git and retry"),
        }
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(dir);
    }
    result
}
