//! `ds01 gc`: reclaim the devices of containers that are gone.

use std::process::ExitCode;

use ds01_core::audit;
use ds01_core::config::Config;
use ds01_core::ledger::Ledger;

#[derive(clap::Args)]
pub struct Args {
    /// Print JSON for scripts
    #[arg(long)]
    json: bool,
    /// Rebuild the ledger from the running containers (their specs carry
    /// their allocations) and the creates in flight; the old file is kept
    /// aside as ledger.json.old-<time>
    #[arg(long)]
    rebuild: bool,
}

pub fn run(cfg: &Config, args: Args) -> anyhow::Result<ExitCode> {
    if args.rebuild {
        let records = Ledger::of(cfg).rebuild_now()?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&records)?);
        } else {
            println!(
                "rebuilt the ledger: {} allocation(s) of running containers",
                records.records.len()
            );
            for r in &records.records {
                println!(
                    "  {} held by container {}",
                    r.devices.join(","),
                    r.container_id
                );
            }
        }
    }
    let reclaimed = Ledger::of(cfg).gc()?;
    audit::note_reclaimed(&cfg.log, &cfg.audit_log, &reclaimed);
    if args.json {
        let out: Vec<_> = reclaimed
            .iter()
            .map(|(r, why)| {
                serde_json::json!({"container_id": r.container_id, "devices": r.devices, "reason": why})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else if reclaimed.is_empty() {
        println!("nothing to reclaim");
    } else {
        for (r, why) in &reclaimed {
            println!(
                "reclaimed {} from container {}: {why}",
                r.devices.join(","),
                r.container_id
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
