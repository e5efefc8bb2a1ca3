//! `ds01 logs [CONTAINER] [--follow] [--json]` (also `ds01-logs`): what ds01
//! wrote about your containers: allocations, refusals with their reasons,
//! releases, reclaims, warnings, and the runtime's log lines.

use std::collections::HashSet;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use ds01::docker::DockerApi;
use ds01::logs::{self, Entry, Filter};
use ds01_core::audit;
use ds01_core::config::Config;
use ds01_core::identity::{Accounts, SystemAccounts};
use ds01_core::text::short;

use crate::style::Style;

#[derive(clap::Args)]
pub struct Args {
    /// A container of yours, by name or id (default: all of yours; an admin may name anyone's)
    container: Option<String>,
    /// Keep printing new entries as they are written
    #[arg(long, short)]
    follow: bool,
    /// Print JSON (one object per line with --follow)
    #[arg(long)]
    json: bool,
    /// Everyone's entries (admins only)
    #[arg(long)]
    all: bool,
}

pub fn run(cfg: &Config, args: Args, docker: &dyn DockerApi) -> anyhow::Result<ExitCode> {
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    let me = SystemAccounts
        .user_name(uid)
        .ok_or_else(|| anyhow::anyhow!("cannot tell who you are (uid {uid} has no name)"))?;
    let admin = uid == 0
        || cfg
            .policy
            .is_admin(&cfg.admin_group, Some(&me), &SystemAccounts);
    if args.all && !admin {
        anyhow::bail!(
            "--all shows everyone's entries, which only members of {} may read",
            cfg.admin_group
        );
    }
    // An admin naming a container sees it whoever owns it.
    let user = (!(args.all || admin && args.container.is_some())).then_some(me.as_str());
    let events = audit::read(&cfg.audit_log)?;
    let names: Vec<(String, String)> = docker
        .containers()
        .map(|cs| cs.into_iter().map(|c| (c.id, c.name)).collect())
        .unwrap_or_default();
    let wanted: Option<HashSet<String>> = match &args.container {
        None => None,
        Some(want) => {
            let mut ids: HashSet<String> = names
                .iter()
                .filter(|(id, name)| name == want || id.starts_with(want.as_str()))
                .map(|(id, _)| id.clone())
                .collect();
            ids.extend(
                events
                    .iter()
                    .filter(|e| e.container_id.starts_with(want.as_str()))
                    .map(|e| e.container_id.clone()),
            );
            let visible = match user {
                Some(u) if !admin => {
                    let mine = logs::containers_of(&events, u);
                    ids.retain(|id| mine.contains(id));
                    ids
                }
                _ => ids,
            };
            if visible.is_empty() {
                anyhow::bail!(
                    "no container {want:?} of yours in ds01's logs; see 'container ls' for your containers"
                );
            }
            Some(visible)
        }
    };
    let name_of = |id: &str| {
        names
            .iter()
            .find(|(i, _)| i == id)
            .map_or_else(|| short(id).to_string(), |(_, n)| n.clone())
    };
    let style = Style::stdout();
    let print = |e: &Entry| {
        let mut out = std::io::stdout().lock();
        let _ = if args.json {
            writeln!(out, "{}", serde_json::to_string(e).unwrap_or_default())
        } else {
            let kind = match e.kind.as_str() {
                "refuse" | "reap" | "warn" | "error" => style.yellow(&e.kind),
                k => k.to_string(),
            };
            writeln!(
                out,
                "{}  {:<8} {:<20} {}",
                e.time,
                kind,
                name_of(&e.container_id),
                e.message
            )
        };
    };
    let read = || {
        let events = audit::read(&cfg.audit_log).unwrap_or_default();
        let log = std::fs::read_to_string(&cfg.log).unwrap_or_default();
        let f = Filter {
            user,
            containers: wanted.as_ref(),
        };
        logs::entries(&events, &log, &f)
    };
    let first = read();
    if args.json && !args.follow {
        println!("{}", serde_json::to_string_pretty(&first)?);
        return Ok(ExitCode::SUCCESS);
    }
    if first.is_empty() && !args.follow {
        println!("no entries for your containers");
    }
    for e in &first {
        print(e);
    }
    if !args.follow {
        return Ok(ExitCode::SUCCESS);
    }
    // Entries already shown are skipped by count: both logs only grow
    // (logrotate's copytruncate starts them over, and so does this).
    let mut shown = first.len();
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let now = read();
        if now.len() < shown {
            shown = 0;
        }
        for e in &now[shown..] {
            print(e);
        }
        shown = now.len();
    }
}
