//! `ds01 events [--since DURATION] [--user NAME] [--json]`: the audit log.

use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use ds01_core::audit;
use ds01_core::config::Config;
use ds01_core::text::{gpueq_text, short};

use crate::style::{Style, table};

#[derive(clap::Args)]
pub struct Args {
    /// Only events this recent, such as 30m, 2h or 7d
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    since: Option<Duration>,
    /// Only this user's events
    #[arg(long, value_name = "NAME")]
    user: Option<String>,
    /// Print JSON for scripts
    #[arg(long)]
    json: bool,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|_| format!("expected a duration such as 30m, 2h or 7d, got {s:?}"))
}

pub fn run(cfg: &Config, args: Args) -> anyhow::Result<ExitCode> {
    let cutoff = args.since.map(|d| SystemTime::now() - d);
    let events: Vec<audit::Event> = audit::read(&cfg.audit_log)?
        .into_iter()
        .filter(|e| cutoff.is_none_or(|c| e.time().is_some_and(|t| t >= c)))
        .filter(|e| args.user.is_none() || e.user == args.user)
        .collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&events)?);
        return Ok(ExitCode::SUCCESS);
    }
    if events.is_empty() {
        println!("no events");
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            vec![
                e.time.clone(),
                e.event.as_str().to_string(),
                e.user.clone().unwrap_or_else(|| "-".into()),
                short(&e.container_id).to_string(),
                e.devices.join(","),
                gpueq_text(e.gpueq),
                e.reason.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let style = Style::stdout();
    print!(
        "{}",
        table(
            &[
                "TIME",
                "EVENT",
                "USER",
                "CONTAINER",
                "DEVICES",
                "GPUEQ",
                "REASON"
            ],
            &rows,
            &style,
            |col, cell| match (col, cell) {
                (1, "refuse") => style.yellow(cell),
                _ => cell.to_string(),
            },
        )
    );
    Ok(ExitCode::SUCCESS)
}
