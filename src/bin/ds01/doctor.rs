//! `ds01 doctor`: gathers the facts (NVML or the simulated inventory, the
//! snapshot, CDI specs, NVIDIA's hook, Docker, the state and log
//! directories, runc) and prints the core's verdict on each.

use std::process::ExitCode;

use ds01::doctor::{self, DirProblem, DockerFacts, Facts, Status};
use ds01::{cdi_read, docker_config};
use ds01_core::config::Config;
use ds01_core::inventory::snapshot;
use ds01_core::{cdi, driver, fsutil};

use crate::style::Style;

#[derive(clap::Args)]
pub struct Args {
    /// Print JSON for scripts
    #[arg(long)]
    json: bool,
    /// The root whose /dev is checked for open NVIDIA nodes (tests)
    #[arg(long, default_value = "/", hide = true)]
    host_root: std::path::PathBuf,
}

pub fn run(cfg: &Config, args: Args) -> anyhow::Result<ExitCode> {
    let scan = ds01::scan::source(cfg).scan().map_err(|e| e.to_string());
    let cdi = match &scan {
        Ok(inv) => {
            let catalog = cdi_read::read(&cfg.cdi_spec_dirs);
            Ok(doctor::units(inv)
                .into_iter()
                .map(|u| {
                    let err =
                        cdi::resolve(&catalog, &cfg.cdi_spec_dirs, inv, std::slice::from_ref(&u))
                            .err()
                            .map(|e| e.to_string());
                    (u, err)
                })
                .collect())
        }
        Err(_) => Err("no GPUs to cover (the driver does not answer)".into()),
    };
    let mut dirs = vec![("state directory", cfg.state_dir.clone())];
    for (what, log) in [
        ("runtime log in", &cfg.log),
        ("audit log in", &cfg.audit_log),
    ] {
        if let Some(d) = log.parent() {
            dirs.push((what, d.to_path_buf()));
        }
    }
    let facts = Facts {
        source: cfg.inventory.describe(),
        scan,
        snapshot: snapshot::read(&cfg.state_dir),
        cdi,
        hook: driver::find_hook(),
        docker: docker_facts(),
        dirs: dirs
            .into_iter()
            .map(|(what, d)| {
                let problem = match fsutil::check_dir(&d) {
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(DirProblem::Missing),
                    Err(e) => Some(DirProblem::Unsafe(e.to_string())),
                    Ok(()) => None,
                };
                (what, d, problem)
            })
            .collect(),
        runc: runc_version(cfg),
        host_nodes: {
            let gid = ds01_core::identity::group_id(ds01::host_gpus::GROUP);
            let all = ds01::host_gpus::nodes(&args.host_root);
            (!all.is_empty()).then(|| ds01::host_gpus::open_to_users(&args.host_root, gid))
        },
    };
    let checks = doctor::judge(&facts);
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "ok": doctor::exit_code(&checks) == 0,
                "checks": checks,
            }))?
        );
    } else {
        let style = Style::stdout();
        for c in &checks {
            let status = match c.status {
                Status::Ok => style.green("ok  "),
                Status::Warn => style.yellow("warn"),
                Status::Fail => style.bold("FAIL"),
            };
            println!("{status}  {:<15} {}", c.id, c.detail);
            if let Some(fix) = &c.fix {
                println!("      {:<15} fix: {fix}", "");
            }
        }
    }
    Ok(ExitCode::from(doctor::exit_code(&checks)))
}

fn runc_version(cfg: &Config) -> Result<(std::path::PathBuf, String), String> {
    let out = std::process::Command::new(&cfg.runc)
        .arg("--version")
        .output()
        .map_err(|e| format!("runc {:?}: {e}", cfg.runc))?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok((
        cfg.runc.clone(),
        text.lines().next().unwrap_or("").to_string(),
    ))
}

fn docker_facts() -> Result<DockerFacts, String> {
    let info = crate::docker::with_docker(|docker| async move {
        docker.info().await.map_err(|e| e.to_string())
    })?;
    let runtimes = info
        .runtimes
        .unwrap_or_default()
        .into_iter()
        .map(|(name, r)| (name, r.path.unwrap_or_default()))
        .collect();
    let data_root = info
        .docker_root_dir
        .clone()
        .unwrap_or_else(|| "/var/lib/docker".into());
    let outside = docker_config::containers(std::path::Path::new(&data_root))
        .into_iter()
        .filter(|c| c.2 != docker_config::RUNTIME_NAME && c.2 != docker_config::NVIDIA_NAME)
        .map(|c| (c.1, c.2))
        .collect();
    Ok(DockerFacts {
        cdi_spec_dirs: info.cdi_spec_dirs,
        version: info.server_version.unwrap_or_default(),
        default_runtime: info.default_runtime.unwrap_or_default(),
        runtimes,
        outside,
    })
}
