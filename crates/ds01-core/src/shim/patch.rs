//! The second step of a GPU create: the spec made to give the container
//! exactly its reservation (nodes, device variable, poststop hook, driver),
//! then written. Every edit ds01 makes to a create's spec is here.

use std::path::Path;

use serde_json::Value;

use super::reserve::Reservation;
use super::{Ctx, ShimError, rewrite_json, spec_path, who};
use crate::access::NvidiaDevices;
use crate::allocate::Refusal;
use crate::audit::{self, Event};
use crate::driver::{self, Found, Method};
use crate::identity::Owner;
use crate::inventory::Inventory;
use crate::ledger::Note;
use crate::spec::{self, Allocation, Hook};

/// For a container that asks no GPU but carries NVIDIA's hook: the hook
/// is told to give it none.
pub use crate::spec::deny_nvidia_hook as deny_hook;

/// The hook program beside the runtime: it only marks the allocation
/// released ([`crate::ledger::RELEASED_DIR`]), and starts without libc.
pub const POSTSTOP_BIN: &str = "ds01-poststop";

/// Edits `spec` to expose exactly the reserved devices and writes it into
/// the bundle. On an error the reservation is left to be dropped, which
/// releases it for the reason named here.
pub fn patch(
    res: &mut Reservation,
    spec: &mut Value,
    bundle: &Path,
    owner: &Owner,
    inv: &Inventory,
    found: &Found,
) -> Result<(), ShimError> {
    let ctx = res.ctx();
    let record = &res.record;
    let id = &record.container_id;
    let mut nodes = inv.common_nodes.clone();
    nodes.extend(res.nodes.iter().cloned());
    // On a real host (not a simulated inventory) the nodes must exist for
    // runc to bind-mount them into a user namespace, and NVIDIA's hook to find them.
    if ctx.cfg.inventory == crate::config::InventorySource::Nvml {
        match crate::inventory::make_missing_nodes(Path::new("/"), &nodes) {
            Ok(made) if !made.is_empty() => ctx.log(
                "info",
                &format!("made missing device nodes {}", made.join(", ")),
            ),
            Ok(_) => {}
            Err(e) => ctx.log("warn", &format!("container {id}: {e}")),
        }
    }
    let alloc = Allocation {
        uuids: record.devices.clone(),
        nodes,
        hook: poststop_hook(ctx, &record.alloc_id),
        annotation: serde_json::to_string(&Note::of(record)).expect("notes serialise"),
    };
    spec::strip_gpu_routes(spec, &NvidiaDevices::of(inv));
    spec::inject(spec, &alloc);
    let method = match driver::choose(ctx.cfg, inv, &record.devices, found) {
        Ok(m) => m,
        Err(why) => {
            let err = ctx.refuse(
                owner,
                id,
                Refusal(format!(
                    "cannot give the container the NVIDIA driver (driver_injection = \"{}\"): {why}",
                    ctx.cfg.driver_injection.as_str()
                )),
            );
            res.failing("no driver");
            return Err(err);
        }
    };
    if let Method::Nodes(why) = &method {
        ctx.log(
            "warn",
            &format!("container {id}: no driver libraries injected, device nodes only: {why}"),
        );
    }
    driver::apply(spec, &method, &record.devices);
    if let Err(e) = rewrite_json(&spec_path(bundle), spec) {
        res.failing("spec not written");
        return Err(e);
    }
    ctx.log(
        "info",
        &format!(
            "allocated {} ({}) to container {id} of {} ({})",
            record.devices.join(","),
            record.profile,
            who(owner),
            owner.source.as_str()
        ),
    );
    ctx.audit(&Event::of(audit::EventKind::Allocate, record, None));
    Ok(())
}

/// The poststop hook that frees the allocation: `ds01-poststop` beside
/// this binary, as the package installs it; where it is missing, this
/// binary's own `hook poststop`, which frees it under the lock (slower to
/// start, as sure).
fn poststop_hook(ctx: &Ctx, alloc_id: &str) -> Hook {
    let fast = ctx.exe.with_file_name(POSTSTOP_BIN);
    if fast.is_file() {
        let path = fast.display().to_string();
        return Hook {
            args: vec![
                path.clone(),
                "poststop".into(),
                alloc_id.into(),
                ctx.cfg
                    .state_dir
                    .join(crate::ledger::RELEASED_DIR)
                    .display()
                    .to_string(),
            ],
            path,
            env: Vec::new(),
        };
    }
    let path = ctx.exe.display().to_string();
    Hook {
        args: vec![
            path.clone(),
            "hook".into(),
            "poststop".into(),
            alloc_id.into(),
        ],
        path,
        // runc gives a hook only the environment listed here (its own when the list is empty).
        env: ctx
            .cfg
            .path
            .iter()
            .map(|p| format!("{}={}", crate::config::ENV_VAR, p.display()))
            .collect(),
    }
}
