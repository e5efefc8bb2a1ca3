//! `ds01 reap [--dry-run] [--json]`: one pass of the idle and runtime
//! rules over the GPU containers (the package runs it every minute).

use std::path::Path;
use std::process::ExitCode;

use ds01::reap::{self, World};
use ds01_core::activity::Activity;
use ds01_core::config::Config;

use crate::docker::Engine;
use ds01_core::identity::SystemAccounts;

#[derive(clap::Args)]
pub struct Args {
    /// List what it would do and why; warn and stop nothing
    #[arg(long)]
    dry_run: bool,
    /// Print JSON for scripts
    #[arg(long)]
    json: bool,
}

pub fn run(cfg: &Config, args: Args) -> anyhow::Result<ExitCode> {
    let activity: Box<dyn Activity> = ds01::scan::activity(cfg);
    let cpu = |pid: u32| {
        ds01_core::activity::cpu_usec(Path::new("/proc"), Path::new("/sys/fs/cgroup"), pid)
    };
    let world = World {
        docker: &Engine,
        activity: activity.as_ref(),
        groups: &SystemAccounts,
        cpu_usec: &cpu,
        init_pid: &|r| r.live_init(&ds01_core::host::RealHost),
        notify: &ds01::notice::leave,
        now: std::time::SystemTime::now(),
        devices: ds01::scan::load(cfg).map_or(0, |inv| inv.units().len()),
    };
    // The timer's pass keeps the runtime's users-and-groups snapshot fresh,
    // whether or not the pass itself can go on (Docker down, say).
    if !args.dry_run {
        ds01::scan::save_accounts(cfg);
        for f in ds01::scan::keep_shares(cfg) {
            eprintln!("ds01: warning: {f}");
        }
        // Bare-metal grants whose time is past end with this pass.
        if unsafe { libc::geteuid() } == 0 {
            match ds01::bare_metal::expire(
                &cfg.bare_metal_grants,
                &cfg.audit_log,
                &ds01::bare_metal::Gpasswd,
                std::time::SystemTime::now(),
            ) {
                Ok(gone) => {
                    for u in gone {
                        eprintln!("ds01: {u}'s bare-metal grant ended");
                    }
                }
                Err(e) => eprintln!("ds01: warning: bare-metal grants: {e}"),
            }
        }
    }
    let pass = reap::pass(cfg, &world, args.dry_run);
    // The metrics are written after every pass, whatever it did (an
    // unreachable Docker included: ds01's own state is still there), where
    // node-exporter reads them; no such directory, no file.
    if !args.dry_run && cfg.metrics_textfile.parent().is_some_and(|d| d.is_dir()) {
        let written = ds01::metrics::collect(cfg, Some(pass.is_ok()))
            .and_then(|t| ds01::metrics::write_textfile(&cfg.metrics_textfile, &t));
        if let Err(e) = written {
            eprintln!("ds01: warning: metrics: {e}");
        }
    }
    let actions = pass.map_err(anyhow::Error::msg)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&actions)?);
    } else if actions.is_empty() {
        println!("nothing to warn or stop");
    } else {
        let verb = |a: &str| match (a, args.dry_run) {
            ("warn", false) => "warned",
            ("warn", true) => "would warn",
            ("stop", false) => "stopped",
            ("stop", true) => "would stop",
            _ => "left alone",
        };
        for a in &actions {
            let who = a.user.as_deref().unwrap_or("unknown owner");
            let name = if a.name.is_empty() {
                &a.container_id
            } else {
                &a.name
            };
            let when = a
                .stop_at
                .as_deref()
                .map(|t| format!(" (stop at {t})"))
                .unwrap_or_default();
            println!("{} {name} of {who}: {}{when}", verb(a.action), a.why);
        }
    }
    Ok(ExitCode::SUCCESS)
}
