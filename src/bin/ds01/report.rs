//! `ds01 report [--since 30d | --month 2026-11] [--by user|group]
//! [--csv|--json]`: GPU-equivalent-hours from the audit log. Admins (and
//! root) see everyone; anyone else sees their own line.

use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use ds01::report::{self, IdleNow, Window};
use ds01_core::config::Config;
use ds01_core::identity::{Accounts, SystemAccounts};
use ds01_core::ledger::Ledger;

use crate::style::{Style, table};

#[derive(clap::Args)]
pub struct Args {
    /// The time before now to report, such as 30d or 12h (default 30d)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, conflicts_with = "month")]
    since: Option<Duration>,
    /// A calendar month (UTC), such as 2026-11
    #[arg(long, value_name = "YYYY-MM")]
    month: Option<String>,
    /// One line per user or per group (each user's first policy group)
    #[arg(long, value_enum, default_value = "user")]
    by: By,
    /// Print CSV
    #[arg(long, conflicts_with = "json")]
    csv: bool,
    /// Print JSON for scripts
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum By {
    User,
    Group,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|_| format!("expected a duration such as 30d or 12h, got {s:?}"))
}

pub fn run(cfg: &Config, args: Args) -> anyhow::Result<ExitCode> {
    let now = SystemTime::now();
    let window = match &args.month {
        Some(m) => Window::month(m).map_err(anyhow::Error::msg)?,
        None => Window::since(now, args.since.unwrap_or(Duration::from_secs(30 * 86_400))),
    };
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    let me = SystemAccounts.user_name(uid);
    let everyone = uid == 0
        || cfg
            .policy
            .is_admin(&cfg.admin_group, me.as_deref(), &SystemAccounts);
    let mine = |user: Option<&str>| everyone || (user.is_some() && user == me.as_deref());
    // The log and its rotated files: a month's or a year's report needs them.
    let events: Vec<_> = ds01_core::audit::read_all(&cfg.audit_log)?
        .into_iter()
        .filter(|e| mine(e.user.as_deref()))
        .collect();
    // Idle spells going on now, as the reaper last saw them.
    let tracks = ds01::reap::tracks(&cfg.state_dir);
    let records = Ledger::new(&cfg.state_dir).read().unwrap_or_default();
    let idle_now: Vec<IdleNow> = records
        .records
        .iter()
        .filter(|r| mine(r.user.as_deref()))
        .filter_map(|r| {
            let since = ds01::reap::track_of(&tracks, r)?.idle_since_ms?;
            Some(IdleNow {
                user: r.user.clone(),
                gpueq: r.gpueq,
                since: ds01_core::idle::from_ms(since),
            })
        })
        .collect();
    let key = |user: Option<&str>| -> String {
        let Some(u) = user else {
            return "(unknown)".to_string();
        };
        match args.by {
            By::User => u.to_string(),
            By::Group => cfg
                .policy
                .groups_of(Some(u), &SystemAccounts)
                .first()
                .map_or_else(
                    || ds01_core::share::NO_GROUP.to_string(),
                    |g| g.name.clone(),
                ),
        }
    };
    let held: std::collections::HashSet<String> = records
        .records
        .iter()
        .map(|r| r.container_id.clone())
        .collect();
    let lines = report::report(&events, window, now, &idle_now, &held, &key);
    let by = match args.by {
        By::User => "user",
        By::Group => "group",
    };
    if args.json {
        let out = serde_json::json!({
            "from": ds01_core::time::timestamp(window.from),
            "to": ds01_core::time::timestamp(window.to),
            "by": by,
            "lines": lines,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else if args.csv {
        print!("{}", report::csv(by, &lines));
    } else if lines.is_empty() {
        println!("nothing in this window");
    } else {
        let rows: Vec<Vec<String>> = lines
            .iter()
            .map(|l| {
                vec![
                    l.name.clone(),
                    format!("{:.2}", l.gpu_hours),
                    format!("{:.2}", l.idle_hours),
                    l.containers.to_string(),
                    l.refusals.to_string(),
                    format!("{:.2}", l.queue_wait_hours),
                ]
            })
            .collect();
        println!(
            "GPU-equivalent-hours from {} to {}",
            ds01_core::time::timestamp(window.from),
            ds01_core::time::timestamp(window.to)
        );
        let style = Style::stdout();
        print!(
            "{}",
            table(
                &[
                    &by.to_uppercase(),
                    "GPU-HOURS",
                    "IDLE-HOURS",
                    "CONTAINERS",
                    "REFUSALS",
                    "QUEUE-HOURS"
                ],
                &rows,
                &style,
                |_, cell| cell.to_string(),
            )
        );
    }
    Ok(ExitCode::SUCCESS)
}
