//! `ds01 admin register-docker` / `unregister-docker`: the package's
//! postinst and prerm call these. Both reload a running dockerd, so Docker
//! never keeps pointing at a runtime that is gone, however dockerd was started.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use ds01::docker_config::{self, Outcome, Paths};
use serde_json::{Map, Value};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(clap::Subcommand)]
enum Action {
    /// Make ds01-runtime Docker's default runtime (and the runtime named
    /// "nvidia") in daemon.json, keeping every other key, and reload dockerd
    RegisterDocker {
        /// The runtime binary Docker is to run
        #[arg(long, default_value = "/usr/bin/ds01-runtime")]
        runtime: PathBuf,
        #[command(flatten)]
        files: Files,
    },
    /// Remove ds01-runtime from daemon.json, restore the previous default
    /// runtime, and reload dockerd
    UnregisterDocker {
        #[command(flatten)]
        files: Files,
    },
    /// Put ds01-gate in front of Docker (systemd): dockerd on a root-only
    /// socket, the gate on the default one, users in docker-users
    EnableGate,
    /// Take ds01-gate away: dockerd back on the default socket
    DisableGate,
    /// Close the host's NVIDIA device nodes to all but root and the
    /// ds01-gpu-direct group: no GPU outside a container
    LockHostGpus {
        /// The root the files are under (tests: a scratch folder)
        #[arg(long, default_value = "/", hide = true)]
        root: PathBuf,
    },
    /// Undo lock-host-gpus: the modprobe file and every node's mode as they were
    UnlockHostGpus {
        #[arg(long, default_value = "/", hide = true)]
        root: PathBuf,
    },
    /// Let a user use GPUs outside containers for a while (ds01-gpu-direct)
    #[command(subcommand)]
    BareMetal(BareMetal),
}

#[derive(clap::Subcommand)]
pub enum BareMetal {
    /// Put USER in ds01-gpu-direct for DURATION ("2h", "3d"); the reaper's
    /// pass takes them out when it is over
    Grant { user: String, duration: String },
    /// Take USER out of ds01-gpu-direct now
    Revoke { user: String },
    /// The grants and when each ends
    List,
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
    match args.action {
        // The only admin command that reads the config: the others must
        // work whatever state it is in.
        Action::BareMetal(b) => {
            let cfg = ds01_core::config::Config::load()?;
            return crate::host_gpus::bare_metal(&cfg, b);
        }
        Action::LockHostGpus { root } => {
            let gid = crate::host_gpus::group()?;
            let done = ds01::host_gpus::lock(&root, gid).map_err(anyhow::Error::msg)?;
            return Ok(crate::host_gpus::say(&done));
        }
        Action::UnlockHostGpus { root } => {
            let done = ds01::host_gpus::unlock(&root).map_err(anyhow::Error::msg)?;
            for l in &done.lines {
                println!("ds01: {l}");
            }
            if done.reload_needed {
                println!(
                    "ds01: the loaded driver keeps its locked modes for nodes it makes until it is reloaded"
                );
            }
        }
        Action::EnableGate | Action::DisableGate => {
            use ds01::gate_setup::{self, Paths, RealServices};
            let enable = matches!(args.action, Action::EnableGate);
            let done = if enable {
                gate_setup::enable(&RealServices, &Paths::default())
            } else {
                gate_setup::disable(&RealServices, &Paths::default())
            }
            .map_err(anyhow::Error::msg)?;
            for line in done {
                println!("{line}");
            }
            if enable {
                println!(
                    "next: add users to {} (usermod -aG {0} NAME) and take them out of the docker group",
                    gate_setup::GROUP
                );
            }
        }
        Action::RegisterDocker { runtime, files } => {
            let paths = files.paths();
            let outcome = docker_config::register(&paths, &runtime)?;
            // Registering must not fail over a reload: Docker is left valid
            // either way, and a restart applies it.
            let outcome = match outcome {
                Outcome::Changed(m) => match reload(&read(&paths)) {
                    Some(Ok(did)) | Some(Err(did)) => Outcome::Changed(
                        m.replace(&format!("; {}", docker_config::RESTART_HINT), "")
                            + &format!("; {did}"),
                    ),
                    None => Outcome::Changed(m),
                },
                o => o,
            };
            println!("ds01: {}", outcome.message());
            let outside: Vec<_> = docker_config::containers(&docker_config::data_root(&paths))
                .into_iter()
                .filter(|c| c.2 != docker_config::RUNTIME_NAME && c.2 != docker_config::NVIDIA_NAME)
                .collect();
            if !outside.is_empty() {
                println!(
                    "ds01: {} container(s) were created with another runtime and go around ds01 when started again; \
                     recreate them (docker rm, then docker run or compose up) to put them under ds01:",
                    outside.len()
                );
                for (id, name, runtime, _) in outside {
                    println!("  {name} ({}) runtime {runtime}", &id[..id.len().min(12)]);
                }
            }
        }
        Action::UnregisterDocker { files } => {
            let paths = files.paths();
            let stopped: Vec<_> = docker_config::containers(&docker_config::data_root(&paths))
                .into_iter()
                .filter(|c| {
                    !c.3 && (c.2 == docker_config::RUNTIME_NAME
                        || c.2 == docker_config::NVIDIA_NAME)
                })
                .collect();
            let outcome = docker_config::unregister_live(&paths, reload)?;
            println!("ds01: {}", outcome.message());
            if !stopped.is_empty() {
                println!(
                    "ds01: {} stopped container(s) use runtime ds01; once ds01 is gone, starting them fails with \
                     'Unknown runtime specified ds01': remove and recreate them:",
                    stopped.len()
                );
                for (id, name, runtime, _) in stopped {
                    println!("  {name} ({}) runtime {runtime}", &id[..id.len().min(12)]);
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn read(paths: &Paths) -> Map<String, Value> {
    std::fs::read(&paths.daemon_json)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Sends SIGHUP to the dockerd that reads this config, then waits until
/// its default runtime is the one the config names. `None` when no dockerd
/// runs; an error when one runs that could not be made to take the config
/// (not found by its pidfile, or still on the old default).
fn reload(cfg: &Map<String, Value>) -> Option<Result<String, String>> {
    let want = cfg
        .get("default-runtime")
        .and_then(Value::as_str)
        .unwrap_or("runc")
        .to_string();
    let socket = cfg
        .get("hosts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .find_map(|h| h.strip_prefix("unix://"))
        .unwrap_or("/var/run/docker.sock")
        .to_string();
    let Some(pid) = docker_config::running_dockerd(cfg) else {
        // A dockerd ds01 cannot find by its pidfile may still answer.
        return match default_runtime(&socket) {
            Some(now) if now != want => Some(Err(format!(
                "a dockerd whose pid is not in the daemon.json's pidfile answers on {socket} with default runtime {now}; {}, then retry",
                docker_config::RESTART_HINT
            ))),
            _ => None,
        };
    };
    // SAFETY: kill with a pid read from dockerd's own pidfile.
    if unsafe { libc::kill(pid, libc::SIGHUP) } != 0 {
        return Some(Err(format!(
            "could not signal dockerd (pid {pid}): {}; {}, then retry",
            std::io::Error::last_os_error(),
            docker_config::RESTART_HINT
        )));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = default_runtime(&socket);
        if now.as_deref() == Some(want.as_str()) {
            return Some(Ok(format!(
                "dockerd (pid {pid}) reloaded daemon.json: its default runtime is {want} now"
            )));
        }
        if Instant::now() > deadline {
            return Some(Err(format!(
                "dockerd (pid {pid}) was asked to reload daemon.json, but its default runtime is still {}; {}, then retry",
                now.unwrap_or_else(|| "unknown".into()),
                docker_config::RESTART_HINT
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The default runtime `docker info` reports on this socket.
fn default_runtime(socket: &str) -> Option<String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    rt.block_on(async {
        let docker =
            bollard::Docker::connect_with_unix(socket, 5, bollard::API_DEFAULT_VERSION).ok()?;
        let docker = docker.negotiate_version().await.ok()?;
        docker.info().await.ok()?.default_runtime
    })
}
