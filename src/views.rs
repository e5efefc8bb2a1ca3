//! Who holds what, joining Docker's container list with the ledger: the
//! facts behind `container ls` and `ds01 gpus`. Docker sits behind
//! [`crate::docker::DockerApi`], so this is tested without a daemon.

use std::collections::HashMap;
use std::path::Path;

use serde::Serialize;

use ds01_core::identity::{self, DEVCONTAINER_LABEL};

use ds01_core::inventory::{Gpu, Inventory};
use ds01_core::ledger::{Record, Records};
use ds01_core::names::{KEEP_ALIVE_LABEL, NAME_LABEL};
use ds01_core::text::{describe, short};
use serde_json::json;

use crate::docker::DockerContainer;

pub use ds01_core::names::Kind as ContainerKind;

/// One line of `container ls`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    pub id: String,
    pub name: String,
    pub owner: Option<String>,
    /// `Running (Up 5 minutes)`, `Exited (0) 2 hours ago`; `unknown` without Docker.
    pub status: String,
    pub running: bool,
    pub image: String,
    pub kind: ContainerKind,
    /// `MIG 1g.10gb on GPU 1`, `full GPU 0`, or `none`.
    pub gpu: String,
    pub allocated_since: Option<String>,
    pub uuids: Vec<String>,
    pub gpueq: f64,
    pub mounts: Vec<String>,
    pub project: Option<String>,
    /// Docker's name for it (`name` is the project folder's for a dev
    /// container, whose Docker name is random).
    pub docker_name: String,
    /// Why ds01 refused it a GPU, for a container that never started.
    pub refused: Option<String>,
    /// Its `ds01.keep-alive=true` label.
    pub keep_alive: bool,
    /// How long it has been idle, as `ds01 reap` last saw it (seconds).
    pub idle_secs: Option<u64>,
    /// How long until `ds01 reap` stops it (seconds), if ever.
    pub time_left_secs: Option<u64>,
    /// Memory it uses now and CPUs over a short sample, from its cgroup
    /// (`container ls --detailed`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
}

/// The rows, and what could not be learnt (Docker unreachable, say).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Listing {
    pub rows: Vec<Row>,
    pub warnings: Vec<String>,
}

use ds01_core::names::COMPOSE_DIR_LABEL;

/// The owner Docker's labels name, for containers without an allocation.
pub fn label_owner(labels: &HashMap<String, String>) -> Option<String> {
    identity::from_labels(|k| labels.get(k).map(String::as_str)).map(|(user, _)| user)
}

fn kind(labels: &HashMap<String, String>) -> ContainerKind {
    ContainerKind::of(|k| labels.contains_key(k))
}

fn status_text(c: &DockerContainer) -> String {
    match c.state.as_str() {
        "running" => format!("Running ({})", c.status),
        _ if !c.status.is_empty() => c.status.clone(),
        other => other.to_string(),
    }
}

/// The last refusal of each container, from the audit log: shown for
/// containers that never started.
pub fn refusals(events: &[ds01_core::audit::Event]) -> HashMap<String, String> {
    events
        .iter()
        .filter(|e| e.event == ds01_core::audit::EventKind::Refuse)
        .filter_map(|e| Some((e.container_id.clone(), e.reason.clone()?)))
        .collect()
}

/// Fills in why ds01 refused each container that Docker holds as created
/// (never started) and that holds no GPU.
pub fn add_refusals(listing: &mut Listing, refusals: &HashMap<String, String>) {
    for row in listing.rows.iter_mut() {
        if !row.running && row.uuids.is_empty() && row.status.starts_with("Created") {
            row.refused = refusals.get(&row.id).cloned();
        }
    }
}

/// Joins Docker's list with the ledger. `me`: only that owner's
/// containers (`None`: everyone's).
pub fn list(
    docker: Result<Vec<DockerContainer>, String>,
    records: &Records,
    inv: Option<&Inventory>,
    me: Option<&str>,
) -> Listing {
    let by_id: HashMap<&str, &Record> = records
        .records
        .iter()
        .map(|r| (r.container_id.as_str(), r))
        .collect();
    let gpu_of = |r: Option<&Record>| match (r, inv) {
        (Some(r), Some(inv)) => describe(inv, r),
        (Some(r), None) => r.devices.join(", "),
        (None, _) => "none".to_string(),
    };
    let mut warnings = Vec::new();
    let mut rows = Vec::new();
    let mut seen = std::collections::HashSet::new();
    match docker {
        Ok(containers) => {
            for c in &containers {
                let rec = by_id.get(c.id.as_str()).copied();
                seen.insert(c.id.as_str().to_string());
                let owner = rec.and_then(|r| r.user.clone()).or_else(|| label_owner(&c.labels));
                let mut mounts: Vec<String> = c.mounts.iter().map(|(s, d)| format!("{s} -> {d}")).collect();
                mounts.sort();
                let folder_name = c
                    .labels
                    .get(DEVCONTAINER_LABEL)
                    .and_then(|f| std::path::Path::new(f).file_name())
                    .map(|n| n.to_string_lossy().into_owned());
                // The name the user chose at `container deploy`, else the
                // dev container's folder, else Docker's.
                let chosen = c.labels.get(NAME_LABEL).cloned();
                rows.push(Row {
                    id: c.id.clone(),
                    name: chosen.or(folder_name).unwrap_or_else(|| c.name.clone()),
                    docker_name: c.name.clone(),
                    refused: None,
                    owner,
                    status: status_text(c),
                    running: c.state == "running",
                    image: c.image.clone(),
                    kind: kind(&c.labels),
                    gpu: gpu_of(rec),
                    allocated_since: rec.map(|r| r.since.clone()),
                    uuids: rec.map(|r| r.devices.clone()).unwrap_or_default(),
                    gpueq: rec.map_or(0.0, |r| r.gpueq),
                    mounts,
                    project: c
                        .labels
                        .get(DEVCONTAINER_LABEL)
                        .or_else(|| c.labels.get(COMPOSE_DIR_LABEL))
                        .cloned(),
                    keep_alive: c.labels.get(KEEP_ALIVE_LABEL).is_some_and(|v| v == "true"),
                    memory_bytes: None,
                    cpus: None,
                    idle_secs: None,
                    time_left_secs: None,
                });
            }
        }
        Err(e) => warnings.push(format!(
            "Docker is not reachable ({e}); showing ds01's allocations only, without names, images or stopped containers"
        )),
    }
    // Allocations Docker did not list: Docker unreachable, or a container
    // started with runc directly.
    for r in &records.records {
        if seen.contains(&r.container_id) {
            continue;
        }
        rows.push(Row {
            id: r.container_id.clone(),
            name: short(&r.container_id).to_string(),
            docker_name: String::new(),
            refused: None,
            owner: r.user.clone(),
            status: if warnings.is_empty() {
                "not a Docker container".into()
            } else {
                "unknown".into()
            },
            running: true,
            image: String::new(),
            kind: ContainerKind::Docker,
            gpu: gpu_of(Some(r)),
            allocated_since: Some(r.since.clone()),
            uuids: r.devices.clone(),
            gpueq: r.gpueq,
            mounts: Vec::new(),
            project: None,
            keep_alive: false,
            memory_bytes: None,
            cpus: None,
            idle_secs: None,
            time_left_secs: None,
        });
    }
    if let Some(me) = me {
        rows.retain(|r| r.owner.as_deref() == Some(me));
    }
    rows.sort_by(|a, b| (!a.running, &a.owner, &a.name).cmp(&(!b.running, &b.owner, &b.name)));
    Listing { rows, warnings }
}

/// The container's name where Docker told it, else its short id.
pub fn holder_name<'a>(r: &'a Record, names: &'a HashMap<String, String>) -> &'a str {
    names
        .get(&r.container_id)
        .map_or_else(|| short(&r.container_id), String::as_str)
}

/// Who holds a record, for people.
pub fn holder_user(r: &Record) -> &str {
    r.user.as_deref().unwrap_or("unknown")
}

/// (devices held, devices in all, holders as `user (name)`) for one GPU.
fn gpu_use(
    inv: &Inventory,
    gpu: &Gpu,
    records: &Records,
    names: &HashMap<String, String>,
) -> (usize, usize, Vec<String>) {
    let units: Vec<_> = inv
        .units()
        .into_iter()
        .filter(|u| u.gpu.index == gpu.index)
        .collect();
    let mut holders: Vec<String> = units
        .iter()
        .filter_map(|u| records.holder(u.uuid))
        .map(|r| format!("{} ({})", holder_user(r), holder_name(r, names)))
        .collect();
    holders.dedup();
    let used = units.iter().filter(|u| records.holds(u.uuid)).count();
    (used, units.len(), holders)
}

/// The one line a person reads for a GPU (`ds01 gpus`).
pub fn gpu_summary(
    inv: &Inventory,
    gpu: &Gpu,
    records: &Records,
    names: &HashMap<String, String>,
) -> String {
    let (used, total, holders) = gpu_use(inv, gpu, records, names);
    let who = holders.join(", ");
    match (gpu.mig_enabled, used) {
        (false, 0) => "full GPU, free".to_string(),
        (false, _) => format!("full GPU, in use by {who}"),
        (true, 0) => format!("MIG, {total} slices, all free"),
        (true, _) => format!(
            "MIG, {used} of {total} slices in use by {who}, {} free",
            total - used
        ),
    }
}

/// A compute process on a device, the container it runs in, and whether
/// it is outside ds01: in no container that holds the device (a process on
/// the host, or in a container ds01 never gave it).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeviceProcess {
    pub pid: u32,
    pub container_id: Option<String>,
    /// The process's user, where `/proc` says.
    pub user: Option<String>,
    pub outside: bool,
}

/// The compute processes on each device (NVML, or the simulated file),
/// the container each runs in, by its cgroup, and whether that container
/// holds the device. A device that cannot be asked has no entry; one with
/// none running, an empty list.
pub fn device_processes(
    activity: &dyn ds01_core::activity::Activity,
    inv: &Inventory,
    records: &Records,
) -> HashMap<String, Vec<DeviceProcess>> {
    use ds01_core::identity::Accounts;
    use std::os::unix::fs::MetadataExt;
    let proc_root = Path::new("/proc");
    inv.units()
        .iter()
        .filter_map(|u| {
            let pids = activity.processes(u.uuid).ok()?;
            let holder = records.holder(u.uuid).map(|r| r.container_id.as_str());
            let procs = pids
                .into_iter()
                .map(|pid| {
                    let container_id = ds01_core::activity::container_of(proc_root, pid);
                    let user = std::fs::metadata(proc_root.join(pid.to_string()))
                        .ok()
                        .and_then(|m| ds01_core::identity::SystemAccounts.user_name(m.uid()));
                    DeviceProcess {
                        pid,
                        outside: holder.is_none() || container_id.as_deref() != holder,
                        container_id,
                        user,
                    }
                })
                .collect::<Vec<_>>();
            Some((u.uuid.to_string(), procs))
        })
        .collect()
}

/// `ds01 gpus --json`: each GPU, and each device with who holds it and
/// the compute processes on it.
pub fn gpus_json(
    inv: &Inventory,
    records: &Records,
    names: &HashMap<String, String>,
    processes: &HashMap<String, Vec<DeviceProcess>>,
) -> serde_json::Value {
    let devices: Vec<_> = inv
        .units()
        .iter()
        .map(|u| {
            let held_by = records.holder(u.uuid).map(|r| {
                json!({
                    "container_id": r.container_id,
                    "name": holder_name(r, names),
                    "user": r.user,
                    "identity_source": r.identity_source,
                    "since": r.since,
                    "pid": r.pid,
                    "bundle": r.bundle,
                })
            });
            json!({
                "uuid": u.uuid,
                "gpu": u.gpu.index,
                "kind": u.kind,
                "profile": u.profile(),
                "gpu_instance": u.mig.map(|m| m.gpu_instance),
                "compute_instance": u.mig.map(|m| m.compute_instance),
                "memory_mib": u.mig.map_or(u.gpu.memory_mib, |m| m.memory_mib),
                "gpueq": u.gpueq(),
                "nodes": u.nodes().iter().map(|n| &n.path).collect::<Vec<_>>(),
                "held_by": held_by,
                "processes": processes.get(u.uuid).cloned().unwrap_or_default(),
            })
        })
        .collect();
    let gpus: Vec<_> = inv
        .gpus
        .iter()
        .map(|g| {
            let (used, total, holders) = gpu_use(inv, g, records, names);
            json!({
                "index": g.index, "uuid": g.uuid, "name": g.name, "memory_mib": g.memory_mib,
                "minor": g.minor, "mig_enabled": g.mig_enabled,
                "devices_in_use": used, "devices": total, "holders": holders,
                "summary": gpu_summary(inv, g, records, names),
            })
        })
        .collect();
    json!({"source": inv.source, "gpus": gpus, "devices": devices})
}

#[cfg(test)]
mod tests {
    use super::*;
    use ds01_core::testing::{FakeHost, record};

    fn container(id: &str, name: &str, state: &str, labels: &[(&str, &str)]) -> DockerContainer {
        DockerContainer {
            id: id.into(),
            name: name.into(),
            image: "busybox:local".into(),
            state: state.into(),
            status: if state == "running" {
                "Up 2 minutes".into()
            } else {
                "Exited (0) 1 hour ago".into()
            },
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            mounts: vec![("/home/alice/thesis".into(), "/workspace".into())],
        }
    }

    fn inv() -> Inventory {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/sim/inventory.toml");
        ds01_core::inventory::sim::parse(&p, &std::fs::read_to_string(&p).unwrap()).unwrap()
    }

    fn ledger(inv: &Inventory) -> Records {
        let host = FakeHost::default();
        let mut a = record("aaa", &[inv.units()[1].uuid], &host);
        a.user = Some("alice".into());
        let mut orphan = record("runc-only", &[inv.units()[2].uuid], &host);
        orphan.user = Some("bob".into());
        Records {
            records: vec![a, orphan],
        }
    }

    fn docker() -> Vec<DockerContainer> {
        vec![
            container("aaa", "my-thesis", "running", &[]),
            container(
                "bbb",
                "llm-finetuning",
                "running",
                &[("devcontainer.local_folder", "/home/alice/llm")],
            ),
            container("ccc", "old", "exited", &[("ds01.user", "alice")]),
            container(
                "ddd",
                "web",
                "running",
                &[("ds01.user", "bob"), ("com.docker.compose.project", "site")],
            ),
            container("eee", "anon", "running", &[]),
        ]
    }

    #[test]
    fn a_container_ds01_refused_shows_why() {
        let inv = inv();
        let mut created = container("fff", "late", "created", &[("ds01.user", "alice")]);
        created.status = "Created".into();
        let mut l = list(Ok(vec![created]), &ledger(&inv), Some(&inv), Some("alice"));
        let why: HashMap<String, String> = [(
            "fff".to_string(),
            "no MIG slice free (7 of 7 in use)".to_string(),
        )]
        .into();
        add_refusals(&mut l, &why);
        let late = l.rows.iter().find(|r| r.id == "fff").unwrap();
        assert_eq!(
            late.refused.as_deref(),
            Some("no MIG slice free (7 of 7 in use)")
        );
        assert!(
            l.rows
                .iter()
                .filter(|r| r.id != "fff")
                .all(|r| r.refused.is_none())
        );
    }

    #[test]
    fn a_users_view_joins_docker_and_the_ledger() {
        let inv = inv();
        let l = list(Ok(docker()), &ledger(&inv), Some(&inv), Some("alice"));
        let names: Vec<&str> = l.rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            ["llm", "my-thesis", "old"],
            "running first, then by name; a dev container by its folder"
        );
        assert_eq!(l.rows[0].docker_name, "llm-finetuning");
        let thesis = &l.rows[1];
        assert_eq!(thesis.gpu, "MIG 1g.10gb on GPU 1");
        assert_eq!(thesis.status, "Running (Up 2 minutes)");
        assert_eq!(thesis.kind, ContainerKind::Docker);
        assert_eq!(l.rows[0].kind, ContainerKind::Devcontainer);
        assert_eq!(l.rows[0].project.as_deref(), Some("/home/alice/llm"));
        assert_eq!(l.rows[0].gpu, "none");
        assert_eq!(l.rows[2].status, "Exited (0) 1 hour ago");
        assert_eq!(l.rows[2].gpu, "none", "a stopped container holds no GPU");
        assert!(l.warnings.is_empty());
    }

    #[test]
    fn everyone_sees_owners_and_allocations_docker_did_not_list() {
        let inv = inv();
        let l = list(Ok(docker()), &ledger(&inv), Some(&inv), None);
        assert_eq!(l.rows.len(), 6);
        let web = l.rows.iter().find(|r| r.name == "web").unwrap();
        assert_eq!(
            (web.owner.as_deref(), web.kind),
            (Some("bob"), ContainerKind::Compose)
        );
        let anon = l.rows.iter().find(|r| r.name == "anon").unwrap();
        assert_eq!(anon.owner, None);
        let orphan = l.rows.iter().find(|r| r.id == "runc-only").unwrap();
        assert_eq!(orphan.status, "not a Docker container");
        assert_eq!(orphan.gpu, "MIG 1g.10gb on GPU 1");
    }

    #[test]
    fn without_docker_the_ledger_is_still_listed_with_a_warning() {
        let inv = inv();
        let l = list(
            Err("permission denied".into()),
            &ledger(&inv),
            Some(&inv),
            Some("alice"),
        );
        assert_eq!(l.rows.len(), 1);
        assert_eq!(l.rows[0].status, "unknown");
        assert_eq!(l.rows[0].gpu, "MIG 1g.10gb on GPU 1");
        assert!(l.warnings[0].contains("Docker is not reachable (permission denied)"));
    }
}
