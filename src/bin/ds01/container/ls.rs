//! `container ls [--all] [--detailed] [--json]` (also `ds01 container ls`):
//! your containers, what each runs and which GPU it holds.

use std::process::ExitCode;

use ds01::docker::DockerApi;
use ds01::views::{self, ContainerKind, Listing};
use ds01_core::config::Config;
use ds01_core::identity::{Accounts, SystemAccounts};
use ds01_core::ledger::Ledger;
use ds01_core::text::gpueq_text;

use crate::style::Style;

#[derive(clap::Args)]
pub struct Args {
    /// Everyone's containers, with their owners
    #[arg(long, short)]
    all: bool,
    /// Also allocation time, UUIDs, GPU-equivalents, mounts and project folder
    #[arg(long, short)]
    detailed: bool,
    /// Print JSON for scripts
    #[arg(long)]
    json: bool,
}

const RULE: &str = "━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━";

pub fn run(cfg: &Config, args: Args, docker: &dyn DockerApi) -> anyhow::Result<ExitCode> {
    // SAFETY: getuid cannot fail.
    let me = SystemAccounts.user_name(unsafe { libc::getuid() });
    let records = Ledger::new(&cfg.state_dir).read()?;
    let inv = ds01::scan::load(cfg).ok();
    let filter = if args.all {
        None
    } else {
        me.as_deref().or(Some(""))
    };
    let mut listing = views::list(docker.containers(), &records, inv.as_ref(), filter);
    let events = ds01_core::audit::read(&cfg.audit_log).unwrap_or_default();
    views::add_refusals(&mut listing, &views::refusals(&events));
    let tracks = ds01::reap::tracks(&cfg.state_dir);
    let now = std::time::SystemTime::now();
    let devices = inv.as_ref().map_or(0, |i| i.units().len());
    let demand = ds01::reap::high_demand(cfg, &records, devices);
    for row in listing.rows.iter_mut().filter(|r| r.running) {
        if let Some(rec) = records.records.iter().find(|r| r.container_id == row.id) {
            let of = ds01::reap::Of {
                user: rec.user.as_deref(),
                kind: row.kind,
                keep_alive_label: row.keep_alive,
                demand,
            };
            let (idle, left) = ds01::reap::timing(cfg, &SystemAccounts, &tracks, rec, &of, now);
            row.idle_secs = idle.map(|d| d.as_secs());
            row.time_left_secs = left.map(|d| d.as_secs());
        }
    }
    if args.detailed {
        use_of_each(cfg, &mut listing);
    }
    if args.json {
        let out = serde_json::json!({
            "user": me,
            "all": args.all,
            "containers": listing.rows,
            "warnings": listing.warnings,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print!(
            "{}",
            render(&listing, args.all, args.detailed, &Style::stdout())
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Each running container's memory now and CPUs over one short sample
/// (all containers at once), from its cgroup.
fn use_of_each(cfg: &Config, listing: &mut Listing) {
    let tree = &cfg.cgroups;
    let places: Vec<(usize, std::path::PathBuf)> = listing
        .rows
        .iter()
        .enumerate()
        .filter(|(_, r)| r.running)
        .filter_map(|(i, r)| Some((i, tree.container(&r.id)?)))
        .collect();
    let rels: Vec<&std::path::Path> = places.iter().map(|(_, p)| p.as_path()).collect();
    let sampled = tree.sample(&rels, std::time::Duration::from_millis(200));
    for ((i, _), (now, cpus)) in places.iter().zip(sampled) {
        listing.rows[*i].memory_bytes = now.memory;
        listing.rows[*i].cpus = cpus;
    }
}

fn render(listing: &Listing, all: bool, detailed: bool, style: &Style) -> String {
    let mut out = String::new();
    let title = if all {
        "All Containers"
    } else {
        "Your Containers"
    };
    out.push_str(&format!("{RULE}\n    {}\n{RULE}\n", style.bold(title)));
    for w in &listing.warnings {
        out.push_str(&format!("\n{} {w}\n", style.yellow("Note:")));
    }
    if listing.rows.is_empty() {
        out.push_str("\nNo containers.\n");
    }
    for (i, r) in listing.rows.iter().enumerate() {
        let kind = match r.kind {
            ContainerKind::Devcontainer => " (dev container)",
            ContainerKind::Compose => " (compose)",
            ContainerKind::Deploy | ContainerKind::Docker => "",
        };
        out.push_str(&format!("\n{}. {}{kind}\n", i + 1, style.bold(&r.name)));
        if all {
            out.push_str(&format!(
                "   Owner:  {}\n",
                r.owner.as_deref().unwrap_or("unknown")
            ));
        }
        let status = if r.running {
            r.status.clone()
        } else {
            style.yellow(&r.status)
        };
        out.push_str(&format!("   Status: {status}\n"));
        if let Some(why) = &r.refused {
            out.push_str(&format!("   {} {why}\n", style.yellow("Refused:")));
        }
        if !r.image.is_empty() {
            out.push_str(&format!("   Image:  {}\n", r.image));
        }
        let gpu = if r.gpu == "none" {
            r.gpu.clone()
        } else {
            style.green(&r.gpu)
        };
        out.push_str(&format!("   GPU:    {gpu}\n"));
        if r.idle_secs.is_some() || r.time_left_secs.is_some() {
            let secs = |s: u64| ds01_core::idle::text(std::time::Duration::from_secs(s));
            let idle = r
                .idle_secs
                .map_or("active".to_string(), |s| format!("idle {}", secs(s)));
            let left = r.time_left_secs.map_or("no time limit".to_string(), |s| {
                style.yellow(&format!("stopped in {}", secs(s)))
            });
            out.push_str(&format!("   Use:    {idle}, {left}\n"));
        }
        if detailed {
            if r.memory_bytes.is_some() || r.cpus.is_some() {
                out.push_str(&format!(
                    "   Uses:   {} memory, {} CPUs\n",
                    r.memory_bytes
                        .map_or("?".into(), ds01_core::share::size_approx),
                    r.cpus.map_or("?".into(), ds01_core::share::cpus_text),
                ));
            }
            if let Some(since) = &r.allocated_since {
                out.push_str(&format!("   Since:  {since}\n"));
                out.push_str(&format!("   UUIDs:  {}\n", r.uuids.join(", ")));
                out.push_str(&format!("   GPU-eq: {}\n", gpueq_text(r.gpueq)));
            }
            if let Some(p) = &r.project {
                out.push_str(&format!("   Project: {p}\n"));
            }
            for (j, m) in r.mounts.iter().enumerate() {
                let label = if j == 0 { "Mounts:" } else { "       " };
                out.push_str(&format!("   {label} {m}\n"));
            }
        }
    }
    out.push_str(&format!(
        "\n{RULE}\nTotal: {} container(s)\n",
        listing.rows.len()
    ));
    out
}
