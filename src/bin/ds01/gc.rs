//! `ds01 gc`: reclaim the devices of containers that are gone.

use std::process::ExitCode;

use ds01::config::Config;
use ds01::host::RealHost;
use ds01::shim;

#[derive(clap::Args)]
pub struct Args {
    /// Print JSON for scripts
    #[arg(long)]
    json: bool,
}

pub fn run(cfg: &Config, args: Args) -> anyhow::Result<ExitCode> {
    let reclaimed = shim::gc(cfg, &RealHost)?;
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
