//! `container deploy NAME [PATH]`: a long-running container for the project
//! at PATH, built from its Dockerfile or from the catalog's image for its
//! framework, asking ds01 for a GPU.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use ds01::deploy::{self, Deployed, GpuChoice, Spec};
use ds01::devcontainer::catalog;
use ds01::docker::DockerApi;
use ds01_core::config::Config;

use crate::docker::Engine;
use crate::me::me;

#[derive(clap::Args)]
pub struct Args {
    /// The container's name (yours: another user may use the same one)
    name: String,
    /// The project directory (default: this one)
    path: Option<PathBuf>,
    /// An image instead of the project's Dockerfile or the catalog's choice
    #[arg(long)]
    image: Option<String>,
    /// A MIG slice (the default)
    #[arg(long, conflicts_with_all = ["full_gpu", "no_gpu"])]
    gpu: bool,
    /// A whole GPU (where your limits allow one)
    #[arg(long, conflicts_with = "no_gpu")]
    full_gpu: bool,
    /// No GPU
    #[arg(long)]
    no_gpu: bool,
    /// Wait this long in the GPU queue when none is free (such as 30m)
    #[arg(long, value_name = "DURATION")]
    wait: Option<String>,
    /// Shared memory for data loaders (default 8g)
    #[arg(long, value_name = "SIZE", default_value = "8g")]
    shm_size: String,
    /// An environment variable, NAME=VALUE (repeatable)
    #[arg(long = "env", short = 'e', value_name = "NAME=VALUE")]
    env: Vec<String>,
    /// A port to publish, PORT or HOST:CONTAINER (repeatable)
    #[arg(long = "port", short = 'p', value_name = "PORT")]
    ports: Vec<String>,
    /// The command to run (default: stay up for `container attach`)
    #[arg(last = true)]
    cmd: Vec<String>,
}

pub fn run(cfg: &Config, args: Args) -> anyhow::Result<ExitCode> {
    let me = me()?;
    deploy::check_name(&args.name).map_err(anyhow::Error::msg)?;
    if let Some(w) = &args.wait {
        humantime::parse_duration(w)
            .map_err(|_| anyhow::anyhow!("--wait {w:?}: write a duration such as 30m or 2h"))?;
    }
    for e in &args.env {
        if !e.contains('=') {
            bail!("--env {e:?}: write NAME=VALUE");
        }
    }
    let ports = args
        .ports
        .iter()
        .map(|p| deploy::parse_port(p))
        .collect::<Result<Vec<_>, _>>()
        .map_err(anyhow::Error::msg)?;
    let shm = parse_size(&args.shm_size)?;
    let project = args
        .path
        .clone()
        .unwrap_or_else(|| PathBuf::from("."))
        .canonicalize()
        .with_context(|| "the project directory".to_string())?;
    if !project.is_dir() {
        bail!("{project:?} is not a directory");
    }
    let docker_name = deploy::docker_name(&me.name, &args.name);
    let image = match (&args.image, deploy::dockerfile(&project)) {
        (Some(i), _) => i.clone(),
        (None, Some(dockerfile)) => build(
            &project,
            &dockerfile,
            &deploy::build_tag(&me.name, &args.name),
        )?,
        (None, None) => {
            let (cat, note) =
                catalog::load_or_built_in(&cfg.image_catalog).map_err(anyhow::Error::msg)?;
            if let Some(n) = note {
                println!("note: {n}");
            }
            let framework = deploy::framework_of(&project);
            let archs = ds01::scan::load(cfg)
                .map(|i| i.cuda_archs())
                .unwrap_or_default();
            let row = cat.pick(framework, &archs).ok_or_else(|| {
                anyhow::anyhow!("the image catalog has no {framework} image for these GPUs; name one with --image")
            })?;
            println!("image: {} (the catalog's {framework} image)", row.image);
            row.image.clone()
        }
    };
    let spec = Spec {
        user: me.name.clone(),
        name: args.name.clone(),
        image,
        project: project.clone(),
        home: me.home.clone(),
        gpu: if args.no_gpu {
            GpuChoice::None
        } else if args.full_gpu {
            GpuChoice::Full
        } else {
            GpuChoice::Slice
        },
        wait: args.wait.clone(),
        shm_size: Some(args.shm_size.clone()),
        env: args.env.clone(),
        ports: args.ports.clone(),
        cmd: args.cmd.clone(),
    };
    // Long enough for a wait in the GPU queue.
    let wait_secs = args
        .wait
        .as_deref()
        .and_then(|w| humantime::parse_duration(w).ok())
        .map_or(0, |d| d.as_secs());
    let create = spec.create(&docker_name, shm, &ports);
    let timeout = std::time::Duration::from_secs(60 + wait_secs);
    let id = match deploy::start(&Engine, &create, timeout).map_err(anyhow::Error::msg)? {
        Deployed::Started(id) => id,
        Deployed::Refused(reason) => {
            eprintln!("{reason}");
            return Ok(ExitCode::from(1));
        }
    };
    println!(
        "{} is running with {}",
        args.name,
        super::manage::device_of(cfg, &id)
    );
    println!("attach with: container attach {}", args.name);
    Ok(ExitCode::SUCCESS)
}

/// Builds the project's image through the Docker API, showing the build's
/// output, and tags it.
fn build(project: &Path, dockerfile: &Path, tag: &str) -> anyhow::Result<String> {
    println!("building {tag} from {}", dockerfile.display());
    let mut tar = tar::Builder::new(Vec::new());
    tar.follow_symlinks(false);
    tar.append_dir_all(".", project)
        .with_context(|| format!("cannot read the project {project:?} to build it"))?;
    let context = tar.into_inner().context("cannot pack the build context")?;
    let rel = dockerfile
        .strip_prefix(project)
        .unwrap_or(dockerfile)
        .display()
        .to_string();
    Engine
        .build(context, &rel, tag, &mut |line| print!("{line}"))
        .map_err(anyhow::Error::msg)?;
    Ok(tag.to_string())
}

/// `8g`, `512m`, `1024k` or bytes.
fn parse_size(s: &str) -> anyhow::Result<i64> {
    let t = s.trim().to_ascii_lowercase();
    let (num, mult) = match t.chars().last() {
        Some('g') => (&t[..t.len() - 1], 1i64 << 30),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('k') => (&t[..t.len() - 1], 1 << 10),
        Some('b') => (&t[..t.len() - 1], 1),
        _ => (t.as_str(), 1),
    };
    num.parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .map(|n| n * mult)
        .ok_or_else(|| anyhow::anyhow!("--shm-size {s:?}: write a size such as 8g or 512m"))
}
