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
/// parent's limits where they are not yet. `Ok(Some)`: limits the spec
/// lacks, to be written into it (a build's steps, which the build API
/// cannot size, say); more than a limit is refused. `Err`: the one-line
/// reason, audited as a refusal.
pub fn settle(
    ctx: &Ctx,
    id: &str,
    spec: &Value,
    owner: &Owner,
    labelled: bool,
) -> Result<Option<Sizing>, String> {
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
    let mut fill = None;
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
            // Their own name, in a parent the gate would not give them (a
            // slice of another group): a second share.
            Placement::Parent(u)
                if path.and_then(share::parent_part).is_some_and(|p| {
                    p != share::parent_in(&cfg.policy, ctx.accounts, share::driver_of(p), u)
                }) =>
            {
                return Err(outside());
            }
            Placement::Default if shares_on => return Err(outside()),
            _ => {}
        }
        if let Some(u) = user {
            let e = cfg.policy.effective(Some(u), ctx.accounts);
            if e.container_limited() {
                let asked = sizing(spec);
                let given = share::fit(u, &e, asked, true)
                    .map_err(|why| ctx.refuse_text(owner, id, why))?;
                fill = Some(Sizing {
                    memory: given.memory.filter(|_| asked.memory.is_none()),
                    cpus: given.cpus.filter(|_| asked.cpus.is_none()),
                    pids: given.pids.filter(|_| asked.pids.is_none()),
                    shm: given.shm.filter(|_| asked.shm.is_none()),
                })
                .filter(|f| *f != Sizing::default());
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
    Ok(fill)
}

/// Writes the limits `fill` names into a spec.
pub fn apply(spec: &mut Value, fill: &Sizing) {
    use serde_json::json;
    let Some(root) = spec.as_object_mut() else {
        return;
    };
    let res = root
        .entry("linux")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .and_then(|l| {
            l.entry("resources")
                .or_insert_with(|| json!({}))
                .as_object_mut()
        });
    if let Some(res) = res {
        let mut set = |group: &str, key: &str, v: Value| {
            if let Some(o) = res
                .entry(group)
                .or_insert_with(|| json!({}))
                .as_object_mut()
            {
                o.insert(key.into(), v);
            }
        };
        if let Some(m) = fill.memory {
            set("memory", "limit", json!(m));
        }
        if let Some(c) = fill.cpus {
            set("cpu", "period", json!(100_000));
            set("cpu", "quota", json!((c * 100_000.0).round() as i64));
        }
        if let Some(p) = fill.pids {
            set("pids", "limit", json!(p));
        }
    }
    if let Some(size) = fill.shm {
        for m in root
            .get_mut("mounts")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
            .filter(|m| is_shm(m) && m.get("type").and_then(Value::as_str) == Some("tmpfs"))
        {
            if let Some(opts) = m.get_mut("options").and_then(Value::as_array_mut) {
                opts.retain(|o| !o.as_str().is_some_and(|o| o.starts_with("size=")));
                opts.push(json!(format!("size={size}")));
            }
        }
    }
}

/// Whether a mount is at `/dev/shm` (however the path is spelled).
fn is_shm(m: &Value) -> bool {
    m.get("destination")
        .and_then(Value::as_str)
        .is_some_and(|d| {
            crate::fsutil::lexical(std::path::Path::new(d)) == std::path::Path::new("/dev/shm")
        })
}

/// What the spec gives the container. `/dev/shm` is its largest tmpfs
/// there (one with no size has none); a `/dev/shm` that is no tmpfs of the
/// container's own (Docker's `--ipc shareable` binds one it made and
/// sized) counts as within the limit.
pub fn sizing(spec: &Value) -> Sizing {
    let positive = |ptr: &str| {
        oci::at(spec, ptr)
            .and_then(Value::as_i64)
            .filter(|n| *n > 0)
    };
    let period = positive("/linux/resources/cpu/period").unwrap_or(100_000);
    let mut shm = Some(0);
    for m in oci::array(spec, "/mounts").iter().filter(|m| is_shm(m)) {
        if m.get("type").and_then(Value::as_str) != Some("tmpfs") {
            continue;
        }
        let size = oci::array(m, "/options")
            .iter()
            .filter_map(Value::as_str)
            .filter_map(|o| o.strip_prefix("size="))
            .next_back()
            .and_then(|n| share::parse_size(n).ok());
        shm = match (shm, size) {
            (Some(a), Some(b)) => Some(a.max(b)),
            _ => None,
        };
    }
    Sizing {
        memory: positive("/linux/resources/memory/limit").map(|n| n as u64),
        cpus: positive("/linux/resources/cpu/quota").map(|q| q as f64 / period as f64),
        pids: positive("/linux/resources/pids/limit").map(|n| n as u64),
        shm,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_spec_s_sizes_are_read_and_missing_ones_written() {
        let mut spec = json!({
            "linux": {"resources": {"memory": {"limit": 1048576}, "cpu": {"quota": 50000, "period": 100000}}},
            "mounts": [
                {"destination": "/dev/shm", "type": "tmpfs", "options": ["nosuid", "size=67108864"]},
                {"destination": "/dev/shm/", "type": "tmpfs", "options": ["nosuid"]}
            ]
        });
        let s = sizing(&spec);
        assert_eq!((s.memory, s.cpus, s.pids), (Some(1 << 20), Some(0.5), None));
        assert_eq!(s.shm, None, "an unsized tmpfs over /dev/shm has no limit");
        spec["mounts"].as_array_mut().unwrap().pop();
        assert_eq!(sizing(&spec).shm, Some(64 << 20));
        apply(
            &mut spec,
            &Sizing {
                memory: None,
                cpus: None,
                pids: Some(64),
                shm: Some(1 << 20),
            },
        );
        let s = sizing(&spec);
        assert_eq!(
            (s.memory, s.pids, s.shm),
            (Some(1 << 20), Some(64), Some(1 << 20))
        );
        let mut bare = json!({});
        apply(
            &mut bare,
            &Sizing {
                memory: Some(2 << 20),
                cpus: Some(1.5),
                pids: None,
                shm: None,
            },
        );
        assert_eq!(sizing(&bare).cpus, Some(1.5));
        assert_eq!(sizing(&bare).memory, Some(2 << 20));
        assert_eq!(
            sizing(&json!({"mounts": [{"destination": "/dev/shm", "type": "bind"}]})).shm,
            Some(0)
        );
    }
}
