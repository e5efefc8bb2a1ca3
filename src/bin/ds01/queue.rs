//! `ds01 queue [--json]`: the creates waiting for a GPU, in the order they
//! will be served.

use std::process::ExitCode;

use ds01_core::config::Config;
use ds01_core::host::RealHost;
use ds01_core::idle::{from_ms, text};
use ds01_core::ledger::Ledger;
use ds01_core::queue;
use ds01_core::text::short;

use crate::style::{Style, table};

#[derive(clap::Args)]
pub struct Args {
    /// Print JSON for scripts
    #[arg(long)]
    json: bool,
}

pub fn run(cfg: &Config, args: Args) -> anyhow::Result<ExitCode> {
    let held = Ledger::new(&cfg.state_dir).read()?;
    let waiters = queue::order(queue::live(&cfg.state_dir, &RealHost), &held);
    let now = std::time::SystemTime::now();
    if args.json {
        let out: Vec<_> = waiters
            .iter()
            .enumerate()
            .map(|(i, w)| {
                serde_json::json!({
                    "position": i + 1,
                    "container_id": w.container_id,
                    "user": w.user,
                    "since": ds01_core::time::timestamp(from_ms(w.since_ms)),
                    "wants": w.wants(),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    if waiters.is_empty() {
        println!("nobody is waiting for a GPU");
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = waiters
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let waited = now.duration_since(from_ms(w.since_ms)).unwrap_or_default();
            vec![
                (i + 1).to_string(),
                w.user.clone().unwrap_or_else(|| "unknown".into()),
                short(&w.container_id).to_string(),
                w.wants(),
                format!("{} ago", text(waited)),
            ]
        })
        .collect();
    let style = Style::stdout();
    print!(
        "{}",
        table(
            &["#", "USER", "CONTAINER", "WANTS", "SINCE"],
            &rows,
            &style,
            |_, c| c.to_string()
        )
    );
    Ok(ExitCode::SUCCESS)
}
