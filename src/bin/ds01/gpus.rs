//! `ds01 gpus [--json]` and `ds01 gpus refresh`: each GPU in a line, then
//! every device and who holds it.

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::Context;
use ds01::views::DockerApi;
use ds01_core::config::Config;
use ds01_core::inventory::{Gpu, Inventory};
use ds01_core::ledger::{Ledger, Record, Records};
use ds01_core::text::short;
use serde_json::json;

use crate::style::{Style, table};

#[derive(clap::Args)]
pub struct Args {
    /// Print JSON for scripts
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    action: Option<Action>,
}

#[derive(clap::Subcommand)]
enum Action {
    /// Rescan the GPUs (NVML or the simulated file) and the CDI specs, and renew the snapshot
    Refresh {
        /// Print nothing (the runtime runs it so)
        #[arg(long, short)]
        quiet: bool,
    },
}

pub fn run(cfg: &Config, args: Args, docker: &dyn DockerApi) -> anyhow::Result<ExitCode> {
    let inv = match args.action {
        Some(Action::Refresh { quiet: true }) => {
            ds01::scan::refresh(cfg)?;
            return Ok(ExitCode::SUCCESS);
        }
        Some(Action::Refresh { quiet: false }) => ds01::scan::refresh(cfg)?,
        None => ds01::scan::load(cfg)?,
    };
    let records = Ledger::new(&cfg.state_dir)
        .read()
        .context("cannot read the allocations")?;
    // Container names are a nicety: without Docker, ids stand in.
    let names: HashMap<String, String> = if records.records.is_empty() {
        HashMap::new()
    } else {
        docker
            .containers()
            .map(|cs| cs.into_iter().map(|c| (c.id, c.name)).collect())
            .unwrap_or_default()
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&to_json(&inv, &records, &names))?
        );
    } else {
        print!("{}", render(&inv, &records, &names, &Style::stdout()));
    }
    Ok(ExitCode::SUCCESS)
}

/// The container's name where Docker told it, else its short id.
fn holder_name<'a>(r: &'a Record, names: &'a HashMap<String, String>) -> &'a str {
    names
        .get(&r.container_id)
        .map_or_else(|| short(&r.container_id), String::as_str)
}

fn user(r: &Record) -> &str {
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
        .map(|r| format!("{} ({})", user(r), holder_name(r, names)))
        .collect();
    holders.dedup();
    let used = units.iter().filter(|u| records.holds(u.uuid)).count();
    (used, units.len(), holders)
}

/// The one line a person reads for a GPU.
fn summary(
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

fn to_json(
    inv: &Inventory,
    records: &Records,
    names: &HashMap<String, String>,
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
                "summary": summary(inv, g, records, names),
            })
        })
        .collect();
    json!({"source": inv.source, "gpus": gpus, "devices": devices})
}

fn render(
    inv: &Inventory,
    records: &Records,
    names: &HashMap<String, String>,
    style: &Style,
) -> String {
    if inv.gpus.is_empty() {
        return format!("no GPUs in the inventory ({})\n", inv.source);
    }
    let mut out = String::new();
    for g in &inv.gpus {
        out.push_str(&format!(
            "{}  {}  {}\n",
            style.bold(&format!("GPU {}", g.index)),
            g.name,
            summary(inv, g, records, names)
        ));
    }
    out.push('\n');
    let now = SystemTime::now();
    let rows: Vec<Vec<String>> = inv
        .units()
        .iter()
        .map(|u| {
            let device = match u.mig {
                Some(m) => format!("MIG {}/{}", m.gpu_instance, m.compute_instance),
                None => "full GPU".to_string(),
            };
            let (owner, holder, since) = match records.holder(u.uuid) {
                Some(r) => (
                    user(r).to_string(),
                    holder_name(r, names).to_string(),
                    ago(r, now),
                ),
                None => ("free".to_string(), String::new(), String::new()),
            };
            vec![
                u.gpu.index.to_string(),
                device,
                u.profile().to_string(),
                u.uuid.to_string(),
                owner,
                holder,
                since,
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "GPU",
            "DEVICE",
            "PROFILE",
            "UUID",
            "USER",
            "CONTAINER",
            "SINCE",
        ],
        &rows,
        style,
        |col, cell| match (col, cell) {
            (4, "free") => style.green(cell),
            (4, _) => style.yellow(cell),
            _ => cell.to_string(),
        },
    ));
    out
}

fn ago(r: &Record, now: SystemTime) -> String {
    let secs = r
        .since_time()
        .and_then(|t| now.duration_since(t).ok())
        .map_or(0, |d| d.as_secs());
    let human = match secs {
        s if s < 60 => format!("{s}s ago"),
        s if s < 3600 => format!("{}m ago", s / 60),
        s if s < 86400 => format!("{}h ago", s / 3600),
        s => format!("{}d ago", s / 86400),
    };
    format!("{} ({human})", r.since)
}
