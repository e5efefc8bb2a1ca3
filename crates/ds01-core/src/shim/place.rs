//! A container's place on the host: inside its owner's cgroup parent,
//! which carries the owner's share ([`crate::share`]) and is written before
//! the first container in it starts, and within the per-container limits.
//! The gate places and sizes what it creates; this judges what runs,
//! whatever route it came by.

use serde_json::Value;

use super::Ctx;
use crate::identity::Owner;
use crate::oci;
use crate::share::{self, Placement, Share, Sizing};

/// Judges where the container runs and how it is sized, for its owner
/// (`labelled`: Docker's record names one, valid or not), and writes the
/// parent's limits where they are not yet. `Err`: the one-line reason,
/// audited as a refusal.
pub fn settle(
    ctx: &Ctx,
    id: &str,
    spec: &Value,
    owner: &Owner,
    labelled: bool,
) -> Result<(), String> {
    let cfg = ctx.cfg;
    let path = oci::at(spec, "/linux/cgroupsPath").and_then(Value::as_str);
    let placement = share::placement(path);
    let shares_on = cfg.policy.shares_host();
    if shares_on && !share::marker(&cfg.state_dir).exists() {
        // Best effort: without it, the cheap look sends fewer creates here.
        let _ = share::mark(&cfg.state_dir, true);
    }
    let user = owner.user.as_deref();
    let judged = match user {
        Some("root") => false,
        Some(u) => !cfg.policy.is_admin(&cfg.admin_group, Some(u), ctx.accounts),
        // A container with no owner at all is the host's own; one whose
        // label names no valid user is no one's to run unjudged.
        None => labelled && shares_on,
    };
    if judged {
        let who = user.unwrap_or("an unknown owner");
        let outside = || {
            ctx.refuse_text(
                owner,
                id,
                format!(
                    "this container runs outside {who}'s share of the host (cgroup {:?}); \
                     create it through the Docker socket ds01-gate serves, which places it in {who}'s parent",
                    path.unwrap_or("")
                ),
            )
        };
        match &placement {
            Placement::Parent(u) if Some(u.as_str()) != user => return Err(outside()),
            Placement::Default if shares_on => return Err(outside()),
            _ => {}
        }
        if let Some(u) = user {
            let e = cfg.policy.effective(Some(u), ctx.accounts);
            if e.container_limited() {
                share::fit(u, &e, sizing(spec), false)
                    .map_err(|why| ctx.refuse_text(owner, id, why))?;
            }
        }
    }
    if let Placement::Parent(u) = &placement
        && let Some(parent) = path.and_then(share::parent_part)
        && !share::stamped(&cfg.state_dir, u, parent)
    {
        let e = cfg.policy.effective(Some(u), ctx.accounts);
        let written = ctx
            .cfg
            .cgroups
            .apply(parent, &Share::of(&e))
            .map_err(|e| e.to_string())
            .and_then(|changed| {
                if changed {
                    share::reload_units()
                } else {
                    Ok(())
                }
            })
            .and_then(|()| share::stamp(&cfg.state_dir, u, parent).map_err(|e| e.to_string()));
        match written {
            Ok(()) => ctx.log("info", &format!("set {u}'s share of the host on {parent}")),
            Err(e) if shares_on => {
                return Err(ctx.refuse_text(
                    owner,
                    id,
                    format!("ds01 cannot set {u}'s share of the host on {parent}: {e}"),
                ));
            }
            Err(e) => ctx.log("warn", &format!("cannot make {u}'s parent {parent}: {e}")),
        }
    }
    Ok(())
}

/// What the spec gives the container. A `/dev/shm` that is not the
/// container's own tmpfs (Docker's `--ipc shareable` binds one it made)
/// has no size here: it counts as within the limit, the gate sized it.
pub fn sizing(spec: &Value) -> Sizing {
    let positive = |ptr: &str| {
        oci::at(spec, ptr)
            .and_then(Value::as_i64)
            .filter(|n| *n > 0)
    };
    let period = positive("/linux/resources/cpu/period").unwrap_or(100_000);
    let shm = oci::array(spec, "/mounts")
        .iter()
        .find(|m| m.get("destination").and_then(Value::as_str) == Some("/dev/shm"))
        .map(|m| {
            if m.get("type").and_then(Value::as_str) != Some("tmpfs") {
                return Some(0);
            }
            oci::array(m, "/options")
                .iter()
                .filter_map(Value::as_str)
                .find_map(|o| o.strip_prefix("size="))
                .and_then(|n| share::parse_size(n).ok())
        })
        .unwrap_or(Some(0));
    Sizing {
        memory: positive("/linux/resources/memory/limit").map(|n| n as u64),
        cpus: positive("/linux/resources/cpu/quota").map(|q| q as f64 / period as f64),
        pids: positive("/linux/resources/pids/limit").map(|n| n as u64),
        shm,
    }
}
