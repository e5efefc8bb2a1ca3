//! `ds01 gpus [--json]` and `ds01 gpus refresh`: each GPU in a line, then
//! every device and who holds it.

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::Context;

use ds01::docker::DockerApi;
use ds01::views::{self, DeviceProcess};
use ds01_core::config::Config;
use ds01_core::inventory::Inventory;
use ds01_core::ledger::{Ledger, Record, Records};

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
    let processes = views::device_processes(ds01::scan::activity(cfg).as_ref(), &inv, &records);
    if args.json {
        // Each holder's live init: noted, or named by runc's state (a
        // create that became runc notes none).
        let mut records = records;
        for r in &mut records.records {
            r.pid = r.live_init(&ds01_core::host::RealHost);
        }
        println!(
            "{}",
            serde_json::to_string_pretty(&views::gpus_json(&inv, &records, &names, &processes))?
        );
    } else {
        print!(
            "{}",
            render(&inv, &records, &names, &processes, &Style::stdout())
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn render(
    inv: &Inventory,
    records: &Records,
    names: &HashMap<String, String>,
    processes: &HashMap<String, Vec<DeviceProcess>>,
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
            views::gpu_summary(inv, g, records, names)
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
                    views::holder_user(r).to_string(),
                    views::holder_name(r, names).to_string(),
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
                processes.get(u.uuid).map_or(String::new(), |ps| {
                    ps.iter()
                        .map(|p| match (p.outside, &p.user) {
                            (false, _) => p.pid.to_string(),
                            (true, Some(u)) => format!("{} (outside ds01: {u})", p.pid),
                            (true, None) => format!("{} (outside ds01)", p.pid),
                        })
                        .collect::<Vec<_>>()
                        .join(",")
                }),
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
            "PROCESSES",
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
