//! The runtime's second layer: what a non-admin's container may not run,
//! whatever route its spec came by (see [`crate::shape`]).

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::Ctx;
use crate::identity::{self, Owner};
use crate::shape::{self, Ask};

/// The config's view of the host for [`shape::asks`].
pub fn host<'a>(ctx: &'a Ctx, nvidia_major: &'a dyn Fn(i64) -> bool) -> shape::Host<'a> {
    shape::Host {
        docker_root: &ctx.cfg.docker_data_root,
        cap_add: &ctx.cfg.gate_cap_add,
        host_namespaces: &ctx.cfg.gate_host_namespaces,
        nvidia_major,
    }
}

/// The binds a non-admin's container may have, to be pinned by what is
/// opened ([`Verdict::binds`] under [`Verdict::roots`]).
#[derive(Debug, Default, PartialEq)]
pub struct Verdict {
    pub user: String,
    pub binds: Vec<PathBuf>,
    /// The real paths of the owner's home and the shared paths.
    pub roots: Vec<PathBuf>,
}

/// Whether the owner may run with whatever they ask beyond Docker's
/// defaults: admins and root may; a container with no owner at all (no
/// `ds01.user` label: the host's own, made on dockerd's root-only socket,
/// as every container made through the gate carries its caller's name) may.
/// `Ok(Some)` for a non-admin whose binds must be pinned; `Err` is the
/// one-line reason, audited as a refusal.
pub fn judge(
    ctx: &Ctx,
    id: &str,
    asks: &[Ask],
    owner: &Owner,
    labels: Option<&Value>,
) -> Result<Option<Verdict>, String> {
    if asks.is_empty() {
        return Ok(None);
    }
    let Some(user) = owner.user.as_deref() else {
        let labelled = labels
            .and_then(|l| l.get(crate::names::USER_LABEL))
            .is_some();
        return if labelled {
            Err(ctx.refuse_text(
                owner,
                id,
                format!(
                    "this container's ds01.user label names no valid user, and it asks for {}",
                    asks[0]
                ),
            ))
        } else {
            Ok(None)
        };
    };
    if user == "root"
        || ctx
            .cfg
            .policy
            .is_admin(&ctx.cfg.admin_group, Some(user), ctx.accounts)
    {
        return Ok(None);
    }
    // The helper's exec, only where a bind is to be judged.
    let home = asks
        .iter()
        .any(|a| matches!(a, Ask::Bind(_)))
        .then(|| ctx.accounts.home_of(user))
        .flatten();
    let docker_root = ctx.cfg.docker_data_root.clone();
    let owns_pid = |pid: u32| {
        crate::activity::container_of(Path::new("/proc"), pid)
            .and_then(|c| identity::docker_labels(&docker_root, &c))
            .and_then(|l| {
                identity::from_labels(|k| l.get(k).and_then(Value::as_str)).map(|(u, _)| u)
            })
            .is_some_and(|u| u == user)
    };
    let view = shape::Owner {
        name: user,
        home: home.as_deref(),
        shared: &ctx.cfg.gate_shared_paths,
        owns_pid: &owns_pid,
    };
    if let Some(why) = view.refuses(asks) {
        return Err(ctx.refuse_text(owner, id, why));
    }
    let roots = home
        .iter()
        .chain(&ctx.cfg.gate_shared_paths)
        .filter_map(|p| std::fs::canonicalize(p).ok())
        .collect();
    let binds = asks
        .iter()
        .filter_map(|a| match a {
            Ask::Bind(p) => Some(p.clone()),
            _ => None,
        })
        .collect();
    Ok(Some(Verdict {
        user: user.to_string(),
        binds,
        roots,
    }))
}

/// The owner of container `id` and Docker's labels for it.
pub fn owner_of(ctx: &Ctx, id: &str, spec: &Value) -> Result<(Owner, Option<Value>), String> {
    let labels = identity::docker_labels(&ctx.cfg.docker_data_root, id);
    super::owner(ctx.cfg, ctx.accounts, labels.as_ref(), spec)
        .map(|o| (o, labels))
        .map_err(|e| super::ShimError::from(e).to_string())
}

/// An exec's process (`runc exec --process F`): no capability beyond the
/// container's defaults for a non-admin's container (`exec --privileged`).
pub fn judge_exec(ctx: &Ctx, id: &str, process: &Path) -> Result<(), String> {
    let bytes = std::fs::read(process).map_err(|e| format!("ds01: {}: {e}", process.display()))?;
    let proc = crate::oci::read_process(&bytes)
        .map_err(|e| format!("ds01: the exec's process {}: {e}", process.display()))?;
    let nvidia = |_| false;
    let mut asks = Vec::new();
    shape::capabilities(&proc, &host(ctx, &nvidia), &mut asks);
    shape::rlimits(&proc, &mut asks);
    if proc.get("apparmorProfile").and_then(Value::as_str) == Some("unconfined") {
        asks.push(Ask::Unconfined);
    }
    if asks.is_empty() {
        return Ok(());
    }
    let (owner, labels) = owner_of(ctx, id, &Value::Null)?;
    judge(ctx, id, &asks, &owner, labels.as_ref()).map(drop)
}
