//! `ds01 gpus [--json]` and `ds01 gpus refresh`.

use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::Context;
use ds01::config::Config;
use ds01::inventory::{Inventory, snapshot};
use ds01::ledger::{Ledger, Record, Records};
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
    /// Rescan the GPUs (NVML or the simulated file) and renew the snapshot
    Refresh,
}

pub fn run(cfg: &Config, args: Args) -> anyhow::Result<ExitCode> {
    let inv = match args.action {
        Some(Action::Refresh) => snapshot::refresh(cfg)?,
        None => snapshot::load(cfg)?,
    };
    let records = Ledger::new(&cfg.state_dir)
        .read()
        .context("cannot read the allocations")?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&to_json(&inv, &records))?
        );
    } else {
        print!("{}", render(&inv, &records, &Style::stdout()));
    }
    Ok(ExitCode::SUCCESS)
}

fn holder_json(r: &Record) -> serde_json::Value {
    json!({
        "container_id": r.container_id,
        "since": r.since,
        "pid": r.pid,
        "bundle": r.bundle,
    })
}

pub fn to_json(inv: &Inventory, records: &Records) -> serde_json::Value {
    let devices: Vec<_> = inv
        .units()
        .iter()
        .map(|u| {
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
                "held_by": records.holder(u.uuid).map(holder_json),
            })
        })
        .collect();
    json!({
        "source": inv.source,
        "gpus": inv.gpus.iter().map(|g| json!({
            "index": g.index, "uuid": g.uuid, "name": g.name, "memory_mib": g.memory_mib,
            "minor": g.minor, "mig_enabled": g.mig_enabled,
        })).collect::<Vec<_>>(),
        "devices": devices,
    })
}

fn render(inv: &Inventory, records: &Records, style: &Style) -> String {
    if inv.gpus.is_empty() {
        return format!("no GPUs in the inventory ({})\n", inv.source);
    }
    let now = SystemTime::now();
    let rows: Vec<Vec<String>> = inv
        .units()
        .iter()
        .map(|u| {
            let device = match u.mig {
                Some(m) => format!("MIG {}/{}", m.gpu_instance, m.compute_instance),
                None => "full GPU".to_string(),
            };
            let (held, since) = match records.holder(u.uuid) {
                Some(r) => (short_id(&r.container_id), ago(r, now)),
                None => ("free".to_string(), String::new()),
            };
            vec![
                u.gpu.index.to_string(),
                device,
                u.profile().to_string(),
                u.uuid.to_string(),
                held,
                since,
            ]
        })
        .collect();
    table(
        &["GPU", "DEVICE", "PROFILE", "UUID", "HELD BY", "SINCE"],
        &rows,
        style,
        |col, cell| match (col, cell) {
            (4, "free") => style.green(cell),
            (4, _) => style.yellow(cell),
            _ => cell.to_string(),
        },
    )
}

/// Docker's 12-character short id.
fn short_id(id: &str) -> String {
    id.chars().take(12).collect()
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
