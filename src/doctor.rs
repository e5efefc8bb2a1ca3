//! `ds01 doctor`: what an admin checks after installing, each check ok,
//! warn or fail with its fix. The facts are gathered by the command (NVML,
//! Docker, the filesystem); judging them is here, so it is tested without
//! any of those.

use std::path::PathBuf;

use serde::Serialize;

use ds01_core::inventory::Inventory;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    pub id: &'static str,
    pub status: Status,
    pub detail: String,
    /// What to do, when not ok.
    pub fix: Option<String>,
}

/// What Docker says about itself.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DockerFacts {
    pub version: String,
    pub default_runtime: String,
    /// Runtime names with their paths.
    pub runtimes: Vec<(String, String)>,
    /// Containers whose runtime is neither ds01 nor nvidia: (name, runtime).
    pub outside: Vec<(String, String)>,
    /// Where Docker reads CDI specs; `None` from a Docker too old to say,
    /// empty where its CDI support is off.
    pub cdi_spec_dirs: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum DirProblem {
    /// Not made yet: the runtime makes it on first use.
    Missing,
    /// Not root's, or open to others.
    Unsafe(String),
}

/// Everything the checks look at.
#[derive(Debug, Clone)]
pub struct Facts {
    /// The configured inventory source, in words (`nvml`, or a file).
    pub source: String,
    /// A fresh scan of that source.
    pub scan: Result<Inventory, String>,
    /// The snapshot the runtime reads.
    pub snapshot: Option<Inventory>,
    /// CDI: for each allocatable UUID, the error resolving it (none: covered).
    pub cdi: Result<Vec<(String, Option<String>)>, String>,
    pub hook: Option<PathBuf>,
    pub docker: Result<DockerFacts, String>,
    /// (what, path, problem) of the state directory and log directories.
    pub dirs: Vec<(&'static str, PathBuf, Option<DirProblem>)>,
    /// runc's path and its version line, or why not.
    pub runc: Result<(PathBuf, String), String>,
    /// NVIDIA nodes on the host (`None`: there are none) and those open to
    /// users outside root and ds01-gpu-direct: `(path, mode)`.
    pub host_nodes: Option<Vec<(String, u32)>>,
}

fn check(id: &'static str, status: Status, detail: String, fix: Option<&str>) -> Check {
    Check {
        id,
        status,
        detail,
        fix: fix.map(String::from),
    }
}

pub fn judge(f: &Facts) -> Vec<Check> {
    let mut out = Vec::new();
    match &f.scan {
        Ok(inv) => out.push(check(
            "driver",
            Status::Ok,
            format!("{}: {} GPU(s)", f.source, inv.gpus.len()),
            None,
        )),
        Err(e) => out.push(check(
            "driver",
            Status::Fail,
            format!("{}: {e}", f.source),
            Some(
                "install the NVIDIA driver (nvidia-smi must work), or on a host without GPUs point \
                 `inventory` in /etc/ds01/config.toml at /usr/share/ds01/sim/inventory.toml",
            ),
        )),
    }
    if let Ok(inv) = &f.scan {
        for g in &inv.gpus {
            let detail = if g.mig_enabled {
                format!(
                    "GPU {} {}: MIG on, {} slice(s): {}",
                    g.index,
                    g.name,
                    g.mig.len(),
                    g.mig
                        .iter()
                        .map(|m| m.profile.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            } else {
                format!("GPU {} {}: MIG off, handed out whole", g.index, g.name)
            };
            let empty = g.mig_enabled && g.mig.is_empty();
            out.push(check(
                "mig",
                if empty { Status::Warn } else { Status::Ok },
                detail,
                empty.then_some(
                    "MIG is on but no instances exist: create them (nvidia-smi mig -cgi ... -C), then ds01 gpus refresh",
                ),
            ));
        }
        let same = f.snapshot.as_ref().is_some_and(|s| {
            let strip = |i: &Inventory| Inventory {
                source: String::new(),
                ..i.clone()
            };
            strip(s) == strip(inv)
        });
        out.push(if same {
            check(
                "snapshot",
                Status::Ok,
                "the runtime's snapshot matches the GPUs".into(),
                None,
            )
        } else {
            check(
                "snapshot",
                Status::Warn,
                match &f.snapshot {
                    None => "no inventory snapshot yet".into(),
                    Some(_) => "the runtime's snapshot differs from the GPUs now".into(),
                },
                Some("ds01 gpus refresh"),
            )
        });
    }
    match &f.cdi {
        Ok(units) if units.iter().all(|(_, e)| e.is_none()) && !units.is_empty() => {
            out.push(check(
                "cdi",
                Status::Ok,
                format!("a CDI spec covers all {} device(s)", units.len()),
                None,
            ))
        }
        Ok(units) => {
            let mut errors: Vec<&String> = units.iter().filter_map(|(_, e)| e.as_ref()).collect();
            errors.dedup();
            // One reason for all (no spec at all, say): say it once.
            let missing: Vec<String> = if errors.len() == 1 && units.len() > 1 {
                vec![format!("all {} device(s) ({})", units.len(), errors[0])]
            } else {
                units
                    .iter()
                    .filter_map(|(u, e)| e.as_ref().map(|e| format!("{u} ({e})")))
                    .collect()
            };
            out.push(check(
                "cdi",
                Status::Warn,
                if missing.is_empty() {
                    "no devices to cover".into()
                } else {
                    format!("not covered: {}", missing.join("; "))
                },
                Some("nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml"),
            ));
        }
        Err(e) => out.push(check(
            "cdi",
            Status::Warn,
            e.clone(),
            Some("nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml"),
        )),
    }
    out.push(match &f.hook {
        Some(p) => check("nvidia-hook", Status::Ok, format!("{}", p.display()), None),
        None => check(
            "nvidia-hook",
            Status::Warn,
            "nvidia-container-runtime-hook is not installed: without it Docker refuses --gpus, \
             and without CDI too containers get device nodes but no driver libraries"
                .into(),
            Some("apt-get install nvidia-container-toolkit (NVIDIA's repository)"),
        ),
    });
    match &f.docker {
        Err(e) => out.push(check(
            "docker",
            Status::Fail,
            format!("Docker is not reachable: {e}"),
            Some("start Docker, and run this as root or a member of the docker group"),
        )),
        Ok(d) => {
            let ds01 = d.runtimes.iter().find(|(n, _)| n == "ds01").map(|r| &r.1);
            let nvidia = d.runtimes.iter().find(|(n, _)| n == "nvidia").map(|r| &r.1);
            out.push(if d.default_runtime == "ds01" && ds01.is_some() {
                check(
                    "docker-runtime",
                    Status::Ok,
                    "Docker's default runtime is ds01".into(),
                    None,
                )
            } else {
                check(
                    "docker-runtime",
                    Status::Fail,
                    format!(
                        "Docker's default runtime is {:?}, not ds01",
                        d.default_runtime
                    ),
                    Some("ds01 admin register-docker"),
                )
            });
            out.push(if ds01.is_some() && nvidia == ds01 {
                check("nvidia-name", Status::Ok, "the runtime name \"nvidia\" runs ds01-runtime".into(), None)
            } else {
                check(
                    "nvidia-name",
                    Status::Warn,
                    match nvidia {
                        Some(p) => format!("--runtime=nvidia runs {p}, around ds01"),
                        None => "no runtime is named \"nvidia\": the Dev Containers CLI ignores hostRequirements.gpu".into(),
                    },
                    Some("ds01 admin register-docker"),
                )
            });
            let major: u32 = d
                .version
                .split('.')
                .next()
                .and_then(|m| m.parse().ok())
                .unwrap_or(0);
            let cdi = match &d.cdi_spec_dirs {
                Some(dirs) if !dirs.is_empty() => {
                    format!("resolved by Docker from {}", dirs.join(", "))
                }
                Some(_) => "off in this Docker (its \"cdi\" feature)".to_string(),
                None if major >= 25 => {
                    "resolved by Docker where its \"cdi\" feature is on".to_string()
                }
                None => "not supported: ask with --gpus or NVIDIA_VISIBLE_DEVICES".to_string(),
            };
            out.push(check(
                "docker-version",
                Status::Ok,
                format!(
                    "Docker {}; CDI device names (--device nvidia.com/gpu=...) {cdi}",
                    d.version
                ),
                None,
            ));
            out.push(if d.outside.is_empty() {
                check(
                    "containers",
                    Status::Ok,
                    "every container runs through ds01".into(),
                    None,
                )
            } else {
                check(
                    "containers",
                    Status::Warn,
                    format!(
                        "{} container(s) made with another runtime go around ds01 when started: {}",
                        d.outside.len(),
                        d.outside
                            .iter()
                            .map(|(n, r)| format!("{n} ({r})"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    Some("recreate them (docker rm, then docker run or compose up)"),
                )
            });
        }
    }
    for (what, path, problem) in &f.dirs {
        out.push(match problem {
            None => check(
                "files",
                Status::Ok,
                format!("{what} {}", path.display()),
                None,
            ),
            Some(DirProblem::Missing) => check(
                "files",
                Status::Warn,
                format!("{what} {} does not exist yet", path.display()),
                Some(
                    "nothing: the runtime makes it on first use (the package makes it at install)",
                ),
            ),
            Some(DirProblem::Unsafe(p)) => check(
                "files",
                Status::Fail,
                format!("{what}: {p}"),
                Some(&format!("chown root:root {0:?} && chmod 755 {0:?}", path)),
            ),
        });
    }
    match &f.host_nodes {
        None => {}
        Some(open) if open.is_empty() => out.push(check(
            "host-gpus",
            Status::Ok,
            format!(
                "NVIDIA nodes open only to root and {}",
                crate::host_gpus::GROUP
            ),
            None,
        )),
        Some(open) => {
            let list: Vec<String> = open.iter().map(|(p, m)| format!("{p} ({m:o})")).collect();
            out.push(check(
                "host-gpus",
                Status::Fail,
                format!(
                    "{} NVIDIA node(s) open to users outside containers, who can use any GPU or slice, \
                     another user's included: {}",
                    open.len(),
                    list.join(", ")
                ),
                Some("sudo ds01 admin lock-host-gpus (see docs/limits.md)"),
            ));
        }
    }
    out.push(match &f.runc {
        Ok((p, v)) => check("runc", Status::Ok, format!("{} ({v})", p.display()), None),
        Err(e) => check(
            "runc",
            Status::Fail,
            e.clone(),
            Some("apt-get install runc, or set runc in /etc/ds01/config.toml"),
        ),
    });
    out
}

/// The UUIDs a CDI spec must cover: every allocatable unit.
pub fn units(inv: &Inventory) -> Vec<String> {
    inv.units().iter().map(|u| u.uuid.to_string()).collect()
}

/// 0 all fine (warnings allowed), 1 a check failed.
pub fn exit_code(checks: &[Check]) -> u8 {
    u8::from(checks.iter().any(|c| c.status == Status::Fail))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inv() -> Inventory {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/sim/inventory.toml");
        ds01_core::inventory::sim::parse(&p, &std::fs::read_to_string(&p).unwrap()).unwrap()
    }

    fn healthy() -> Facts {
        let inv = inv();
        Facts {
            source: "nvml".into(),
            scan: Ok(inv.clone()),
            snapshot: Some(inv.clone()),
            cdi: Ok(units(&inv).into_iter().map(|u| (u, None)).collect()),
            hook: Some("/usr/bin/nvidia-container-runtime-hook".into()),
            docker: Ok(DockerFacts {
                version: "28.1.1".into(),
                default_runtime: "ds01".into(),
                runtimes: vec![
                    ("ds01".into(), "/usr/bin/ds01-runtime".into()),
                    ("nvidia".into(), "/usr/bin/ds01-runtime".into()),
                    ("runc".into(), "runc".into()),
                ],
                outside: vec![],
                cdi_spec_dirs: Some(vec!["/etc/cdi".into(), "/var/run/cdi".into()]),
            }),
            dirs: vec![("state directory", "/run/ds01".into(), None)],
            runc: Ok(("/usr/sbin/runc".into(), "runc version 1.1.5".into())),
            host_nodes: Some(Vec::new()),
        }
    }

    fn by_id(checks: &[Check], id: &str) -> Check {
        checks.iter().find(|c| c.id == id).unwrap().clone()
    }

    #[test]
    fn a_healthy_host_is_all_ok_and_names_each_gpu_s_mig_mode() {
        let checks = judge(&healthy());
        assert!(checks.iter().all(|c| c.status == Status::Ok), "{checks:#?}");
        assert_eq!(exit_code(&checks), 0);
        let mig: Vec<&str> = checks
            .iter()
            .filter(|c| c.id == "mig")
            .map(|c| c.detail.as_str())
            .collect();
        assert_eq!(mig.len(), 2);
        assert!(
            mig[0].contains("MIG off") && mig[1].contains("MIG on, 7 slice(s)"),
            "{mig:?}"
        );
    }

    #[test]
    fn each_problem_is_named_with_its_fix() {
        let mut f = healthy();
        f.scan = Err("libloading: libnvidia-ml.so.1 not found".into());
        f.hook = None;
        f.docker = Ok(DockerFacts {
            version: "20.10.24".into(),
            default_runtime: "runc".into(),
            runtimes: vec![("nvidia".into(), "/usr/bin/nvidia-container-runtime".into())],
            outside: vec![("old".into(), "runc".into())],
            cdi_spec_dirs: None,
        });
        f.dirs = vec![(
            "state directory",
            "/run/ds01".into(),
            Some(DirProblem::Unsafe("is writable by others".into())),
        )];
        f.runc = Err("runc \"/usr/bin/runc\" is not installed".into());
        f.host_nodes = Some(vec![("/dev/nvidia0".into(), 0o666)]);
        let checks = judge(&f);
        assert_eq!(by_id(&checks, "host-gpus").status, Status::Fail);
        assert!(
            by_id(&checks, "host-gpus")
                .detail
                .contains("/dev/nvidia0 (666)")
        );
        assert!(
            by_id(&checks, "host-gpus")
                .fix
                .unwrap()
                .contains("lock-host-gpus")
        );
        let by = |id: &str| checks.iter().find(|c| c.id == id).unwrap().clone();
        assert_eq!(by("driver").status, Status::Fail);
        assert!(
            by("driver")
                .fix
                .unwrap()
                .contains("/usr/share/ds01/sim/inventory.toml")
        );
        assert_eq!(by("nvidia-hook").status, Status::Warn);
        assert_eq!(by("docker-runtime").status, Status::Fail);
        assert!(by("nvidia-name").detail.contains("around ds01"));
        assert!(by("docker-version").detail.contains("not supported"));
        assert!(by("containers").detail.contains("old (runc)"));
        assert_eq!(by("files").status, Status::Fail);
        assert_eq!(by("runc").status, Status::Fail);
        assert_eq!(exit_code(&checks), 1);
        // Stale snapshot and uncovered devices warn.
        let mut f = healthy();
        f.snapshot = None;
        f.cdi = Ok(vec![("MIG-x".into(), Some("no device".into()))]);
        let checks = judge(&f);
        assert!(
            checks
                .iter()
                .any(|c| c.id == "snapshot" && c.status == Status::Warn)
        );
        assert!(
            checks
                .iter()
                .any(|c| c.id == "cdi" && c.detail.contains("MIG-x"))
        );
        assert_eq!(exit_code(&checks), 0);
    }
}
