//! `ds01 limits` (also `check-limits`): the caller's limits, where each
//! comes from, and what they use now. Reads the config and the ledger, so
//! it works for every user.

use std::process::ExitCode;

use anyhow::Context;
use ds01_core::allocate;
use ds01_core::config::Config;
use ds01_core::identity::{Accounts, SystemAccounts};
use ds01_core::ledger::Ledger;
use ds01_core::policy::Value;
use ds01_core::share;
use ds01_core::text::{describe, gpueq_text, short};
use serde_json::json;

/// What the user's parent uses now: memory, CPUs (over a short sample)
/// and processes; `None` where no parent was made or it cannot be read.
struct HostUse {
    memory: Option<u64>,
    cpus: Option<f64>,
    pids: Option<u64>,
}

fn host_use(cfg: &Config, user: &str) -> HostUse {
    let Some((_, parent)) = share::stamps(&cfg.state_dir)
        .into_iter()
        .find(|(u, _)| u == user)
    else {
        return HostUse {
            memory: None,
            cpus: None,
            pids: None,
        };
    };
    let rel = share::Tree::rel(&parent);
    let sampled = cfg
        .cgroups
        .sample(&[&rel], std::time::Duration::from_millis(200));
    let (now, cpus) = sampled[0];
    HostUse {
        memory: now.memory,
        cpus,
        pids: now.pids,
    }
}

#[derive(clap::Args)]
pub struct Args {
    /// Another user's limits (default: yours)
    #[arg(long, value_name = "NAME")]
    user: Option<String>,
    /// Print JSON for scripts
    #[arg(long)]
    json: bool,
}

pub fn run(cfg: &Config, args: Args) -> anyhow::Result<ExitCode> {
    let user = match args.user {
        Some(u) => u,
        None => {
            // SAFETY: getuid cannot fail.
            let uid = unsafe { libc::getuid() };
            SystemAccounts
                .user_name(uid)
                .with_context(|| format!("uid {uid} has no user name; name one with --user"))?
        }
    };
    let limits = cfg.policy.effective(Some(&user), &SystemAccounts);
    let groups: Vec<&str> = cfg
        .policy
        .groups_of(Some(&user), &SystemAccounts)
        .iter()
        .map(|g| g.name.as_str())
        .collect();
    let host = host_use(cfg, &user);
    let records = Ledger::new(&cfg.state_dir).read()?;
    let used = allocate::usage(&records, Some(&user));
    let inv = ds01::scan::load(cfg).ok();
    let devices = inv.as_ref().map_or(0, |i| i.units().len());
    let demand = ds01::reap::high_demand(cfg, &records, devices);
    let kinds: Vec<_> = cfg
        .policy
        .kinds
        .iter()
        .map(|(k, _)| {
            let e = cfg
                .policy
                .effective_for(Some(&user), &SystemAccounts, Some(*k));
            (k.as_str(), e.idle_timeout, e.max_runtime)
        })
        .collect();
    let held = |r: &ds01_core::ledger::Record| {
        inv.as_ref()
            .map_or_else(|| r.devices.join(","), |i| describe(i, r))
    };
    if args.json {
        let out = json!({
            "user": user,
            "groups": groups,
            "limits": limits,
            "usage": {
                "containers": used.records.len(),
                "devices": used.devices,
                "gpu_equivalents": used.gpueq,
                "memory_bytes": host.memory,
                "cpus": host.cpus,
                "pids": host.pids,
            },
            "kinds": kinds.iter().map(|(k, idle, max)| json!({
                "kind": k, "idle_timeout": idle, "max_runtime": max,
            })).collect::<Vec<_>>(),
            "high_demand": cfg.high_demand_above.map(|above| json!({
                "on": demand.is_some(),
                "above": above,
                "factor": cfg.high_demand_factor.unwrap_or(0.5),
            })),
            "containers": used.records.iter().map(|r| json!({
                "container_id": r.container_id, "devices": r.devices, "held": held(r),
                "gpueq": r.gpueq, "since": r.since,
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    let of = |v: &Value<Option<f64>>| {
        v.value.map_or("(no limit)".to_string(), |m| {
            format!("of {}", gpueq_text(m))
        })
    };
    let count = |v: &Value<Option<u32>>| {
        v.value
            .map_or("(no limit)".to_string(), |m| format!("of {m}"))
    };
    let span = |v: &Option<ds01_core::policy::Span>| {
        v.map_or("never".to_string(), |s| ds01_core::idle::text(s.0))
    };
    let groups_text = if groups.is_empty() {
        "none".to_string()
    } else {
        groups.join(", ")
    };
    println!("Limits for {user} (config groups: {groups_text})");
    let lines = [
        (
            "GPU-equivalents",
            format!(
                "{} used {}",
                gpueq_text(used.gpueq),
                of(&limits.max_gpu_equivalents)
            ),
            &limits.max_gpu_equivalents.from,
        ),
        (
            "GPU containers",
            format!(
                "{} running {}",
                used.records.len(),
                count(&limits.max_gpu_containers)
            ),
            &limits.max_gpu_containers.from,
        ),
        (
            "devices per container",
            limits
                .max_devices_per_container
                .value
                .map_or("no limit".to_string(), |m| format!("at most {m}")),
            &limits.max_devices_per_container.from,
        ),
        (
            "full GPUs",
            if limits.allow_full_gpu.value {
                "allowed"
            } else {
                "not allowed"
            }
            .to_string(),
            &limits.allow_full_gpu.from,
        ),
        (
            "idle timeout",
            span(&limits.idle_timeout.value),
            &limits.idle_timeout.from,
        ),
        (
            "maximum runtime",
            span(&limits.max_runtime.value),
            &limits.max_runtime.from,
        ),
        (
            "keep-alive label",
            if limits.allow_keep_alive.value {
                "honoured"
            } else {
                "ignored"
            }
            .to_string(),
            &limits.allow_keep_alive.from,
        ),
    ];
    let size = |v: Option<u64>| v.map_or("no limit".to_string(), share::size_text);
    let used_of = |now: Option<String>, limit: String| match now {
        Some(n) => format!("{n} used of {limit}"),
        None => limit,
    };
    let host_lines = [
        (
            "memory (all containers)",
            used_of(
                host.memory.map(share::size_approx),
                size(limits.memory_max.value),
            ),
            &limits.memory_max.from,
        ),
        (
            "CPUs (all containers)",
            used_of(
                host.cpus.map(share::cpus_text),
                limits
                    .cpus
                    .value
                    .map_or("no limit".into(), share::cpus_text),
            ),
            &limits.cpus.from,
        ),
        (
            "processes (all)",
            used_of(
                host.pids.map(|n| n.to_string()),
                limits
                    .pids_max
                    .value
                    .map_or("no limit".into(), |n| n.to_string()),
            ),
            &limits.pids_max.from,
        ),
        (
            "memory per container",
            size(limits.container_memory.value),
            &limits.container_memory.from,
        ),
        (
            "CPUs per container",
            limits
                .container_cpus
                .value
                .map_or("no limit".into(), share::cpus_text),
            &limits.container_cpus.from,
        ),
        (
            "processes per container",
            limits
                .container_pids
                .value
                .map_or("no limit".into(), |n| n.to_string()),
            &limits.container_pids.from,
        ),
        (
            "/dev/shm per container",
            size(limits.container_shm.value),
            &limits.container_shm.from,
        ),
    ];
    for (name, value, from) in lines.into_iter().chain(host_lines) {
        println!("  {name:<24} {value:<24} from {from}");
    }
    for (k, idle, max) in &kinds {
        println!(
            "  {:<24} {:<24} from {}",
            format!("idle timeout ({k})"),
            span(&idle.value),
            idle.from
        );
        println!(
            "  {:<24} {:<24} from {}",
            format!("maximum runtime ({k})"),
            span(&max.value),
            max.from
        );
    }
    if let Some(above) = cfg.high_demand_above {
        let factor = cfg.high_demand_factor.unwrap_or(0.5);
        match demand {
            Some(d) => println!(
                "High demand is on: {} of {} devices allocated (above {:.0}%), so idle timeouts are {}x.",
                d.allocated,
                d.devices,
                above * 100.0,
                factor
            ),
            None => println!(
                "High demand is off (idle timeouts become {}x above {:.0}% of devices allocated).",
                factor,
                above * 100.0
            ),
        }
    }
    if used.records.is_empty() {
        println!("No GPU containers running.");
    } else {
        println!("GPU containers:");
        for r in &used.records {
            println!(
                "  {}  {}  since {}",
                short(&r.container_id),
                held(r),
                r.since
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
