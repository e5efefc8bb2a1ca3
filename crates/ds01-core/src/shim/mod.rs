//! The runtime shim's work, between reading runc's argv and running runc:
//! allocate and patch on `create`, note the init pid, release on failure,
//! on `delete` and in the poststop hook.

pub mod argv;
pub mod judge;
pub mod patch;
pub mod place;
pub mod reserve;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::access::{self, NvidiaDevices};
use crate::allocate::Refusal;
use crate::audit::{self, Event};
use crate::config::{Config, ConfigError};
use crate::fsutil;
use crate::host::Host;
use crate::identity::{self, Accounts, Owner};
use crate::inventory::{Inventory, InventoryError};
use crate::ledger::{Ledger, LedgerError, Record};
use crate::log;
use crate::oci;
use crate::request::{self, Request, RequestError};
use crate::time::timestamp;

#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    #[error("ds01: {0}")]
    Config(#[from] ConfigError),
    #[error("ds01: {0}")]
    Inventory(#[from] InventoryError),
    #[error("ds01: {0}")]
    Ledger(#[from] LedgerError),
    #[error("ds01: {0}")]
    Refused(#[from] Refusal),
    #[error("ds01: {0}")]
    Request(#[from] RequestError),
    #[error("ds01: bundle config {path:?}: {msg}")]
    Spec { path: PathBuf, msg: String },
}

/// What `create` does with a container, decided from its spec alone
/// (see [`plan`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// Hand the spec to runc as it is.
    PassThrough,
    /// An admin's container that sees every GPU: let through unallocated,
    /// and written down in the audit log.
    Bypass { owner: Owner, why: String },
    /// Allocate for the request and run runc on the patched spec.
    Allocate(Want),
    /// No request, but NVIDIA's hook is in the spec: tell it to give no
    /// device (`NVIDIA_VISIBLE_DEVICES=void`), then runc.
    DenyHook,
    /// Refused, with the reason (already audited).
    Refuse(String),
}

/// What a GPU create asks for, and for whom. `wait`: how long it may
/// wait in the GPU queue when nothing is free.
#[derive(Debug, Clone, PartialEq)]
pub struct Want {
    pub owner: Owner,
    pub req: Request,
    pub wait: Duration,
}

/// What the shim works with.
pub struct Ctx<'a> {
    pub cfg: &'a Config,
    pub host: &'a dyn Host,
    /// This binary, which the poststop hook runs.
    pub exe: &'a Path,
    pub accounts: &'a dyn Accounts,
}

impl Ctx<'_> {
    fn ledger(&self) -> Ledger {
        Ledger::of(self.cfg)
    }

    fn log(&self, level: &str, msg: &str) {
        log::append(&self.cfg.log, level, msg);
    }

    /// Appends to the audit log; a failure there is logged, never fatal.
    fn audit(&self, event: &Event) {
        if let Err(e) = audit::append(&self.cfg.audit_log, event) {
            self.log("error", &e.to_string());
        }
    }

    fn refuse_text(&self, owner: &Owner, id: &str, msg: String) -> String {
        self.refuse(owner, id, Refusal(msg)).to_string()
    }

    fn refuse(&self, owner: &Owner, id: &str, refusal: Refusal) -> ShimError {
        self.log("info", &format!("refused container {id}: {refusal}"));
        self.audit(&Event {
            time: timestamp(self.host.now()),
            event: audit::EventKind::Refuse,
            user: owner.user.clone(),
            identity_source: owner.source,
            container_id: id.to_string(),
            devices: Vec::new(),
            gpueq: 0.0,
            reason: Some(refusal.0.clone()),
            seconds: None,
            alloc_id: None,
        });
        refusal.into()
    }
}

/// Whose container this is, by the config's identity order (`labels`:
/// Docker's record of them); an error is the config's, naming the bad step.
pub fn owner(
    cfg: &Config,
    accounts: &dyn Accounts,
    labels: Option<&Value>,
    spec: &Value,
) -> Result<Owner, ConfigError> {
    let order = identity::order(cfg)?;
    Ok(identity::resolve(
        &order,
        &identity::Container { spec, labels },
        accounts,
    ))
}

/// How an owner is named in messages.
pub fn who(owner: &Owner) -> String {
    owner
        .user
        .clone()
        .unwrap_or_else(|| "an unknown owner".into())
}

/// Decides what happens to a container whose spec [`access::might_touch_nvidia`]
/// could not clear: judged by device numbers against the inventory.
pub fn plan(ctx: &Ctx, id: &str, spec: &oci::Spec, inv: &Inventory) -> Plan {
    let access = access::judge(&spec.value, &NvidiaDevices::of(inv));
    // Docker's record, read once: the owner's label and the wait's.
    let labels = identity::docker_labels(&ctx.cfg.docker_data_root, id);
    let owner = match owner(ctx.cfg, ctx.accounts, labels.as_ref(), &spec.value) {
        Ok(o) => o,
        Err(e) => return Plan::Refuse(ShimError::from(e).to_string()),
    };
    if let Some(rule) = access.bypass() {
        if inv.gpus.is_empty() {
            return Plan::PassThrough;
        }
        let user = owner.user.as_deref();
        return match ctx.cfg.policy.check_privileged(
            &ctx.cfg.admin_group,
            user,
            ctx.accounts,
            &rule,
            access.wide.is_some(),
        ) {
            Ok(()) => Plan::Bypass {
                owner,
                why: format!("device rule {rule:?} opens NVIDIA devices"),
            },
            Err(why) => Plan::Refuse(ctx.refuse_text(&owner, id, why)),
        };
    }
    let req = match request::from_spec(&spec.value, &access) {
        Ok(Some(req)) => req,
        Ok(None) if access::has_nvidia_hook(&spec.value) => {
            if spec.lossy {
                return Plan::Refuse(ctx.refuse_text(
                    &owner,
                    id,
                    "the spec carries NVIDIA's hook and holds invalid UTF-8, which ds01 will not rewrite".into(),
                ));
            }
            return Plan::DenyHook;
        }
        Ok(None) => return Plan::PassThrough,
        Err(e) => return Plan::Refuse(ctx.refuse_text(&owner, id, e.to_string())),
    };
    let label = labels
        .as_ref()
        .and_then(|l| l.get(request::WAIT_LABEL))
        .and_then(Value::as_str);
    let wait = match request::wait(&spec.value, label) {
        Ok(w) => w.unwrap_or(ctx.cfg.gpu_wait),
        Err(e) => return Plan::Refuse(ctx.refuse_text(&owner, id, e.to_string())),
    };
    if spec.lossy {
        return Plan::Refuse(
            ctx.refuse_text(
                &owner,
                id,
                "the spec asks for a GPU but holds invalid UTF-8, which ds01 will not rewrite; \
             fix the bytes in its environment, labels or paths"
                    .into(),
            ),
        );
    }
    Plan::Allocate(Want { owner, req, wait })
}

/// Writes down an admin's container that sees every GPU.
pub fn record_bypass(ctx: &Ctx, id: &str, owner: &Owner, why: &str, inv: &Inventory) {
    ctx.log(
        "info",
        &format!("container {id} of {} sees every GPU: {why}", who(owner)),
    );
    ctx.audit(&Event {
        time: timestamp(ctx.host.now()),
        event: audit::EventKind::Bypass,
        user: owner.user.clone(),
        identity_source: owner.source,
        container_id: id.to_string(),
        devices: inv.gpus.iter().map(|g| g.uuid.clone()).collect(),
        gpueq: 0.0,
        reason: Some(format!("sees every GPU around the allocator: {why}")),
        seconds: None,
        alloc_id: None,
    });
}

pub fn spec_path(bundle: &Path) -> PathBuf {
    bundle.join("config.json")
}

/// The bundle's `config.json`, read as runc reads it.
pub fn read_spec(bytes: &[u8], bundle: &Path) -> Result<oci::Spec, ShimError> {
    oci::read(bytes).map_err(|e| ShimError::Spec {
        path: spec_path(bundle),
        msg: e.to_string(),
    })
}

/// Replaces a JSON file atomically, keeping its mode.
pub fn rewrite_json(path: &Path, value: &Value) -> Result<(), ShimError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o7777)
        .unwrap_or(0o644);
    let data = serde_json::to_vec(value).expect("a JSON value serialises");
    fsutil::write_atomic(path, &data, mode).map_err(|e| ShimError::Spec {
        path: path.to_path_buf(),
        msg: format!("cannot rewrite: {e}"),
    })
}

/// Removes the records `pred` selects; idempotent. Returns what was freed.
/// `container` names the container in messages.
pub fn release(
    ctx: &Ctx,
    why: &str,
    container: &str,
    pred: impl Fn(&Record) -> bool,
) -> Vec<Record> {
    match ctx.ledger().update(|rs| rs.take(pred)) {
        Ok(gone) => {
            let now = ctx.host.now();
            let dated: Vec<_> = gone.iter().map(|r| (r.clone(), now)).collect();
            audit::note_released(&ctx.cfg.log, &ctx.cfg.audit_log, why, &dated);
            gone
        }
        Err(e) => {
            ctx.log(
                "error",
                &format!("release of container {container} ({why}) failed: {e}"),
            );
            Vec::new()
        }
    }
}

/// `exec`: a process started in a GPU container gets the container's
/// `NVIDIA_VISIBLE_DEVICES` (its allocated UUIDs), not the value the user
/// first asked with, which Docker copies into every exec.
pub fn patch_exec_process(
    cfg: &Config,
    root: &Path,
    id: &str,
    process: &Path,
) -> Result<(), ShimError> {
    let records = Ledger::new(&cfg.state_dir).read()?;
    let Some(record) = records
        .records
        .iter()
        .find(|r| r.container_id == id && r.root == root)
    else {
        return Ok(());
    };
    let bad = |msg: String| ShimError::Spec {
        path: process.to_path_buf(),
        msg,
    };
    let bytes = std::fs::read(process).map_err(|e| bad(e.to_string()))?;
    let mut proc: Value = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
    let Some(env) = proc.get_mut("env").and_then(Value::as_array_mut) else {
        return Ok(());
    };
    let prefix = format!("{}=", crate::request::VISIBLE);
    env.retain(|e| !e.as_str().is_some_and(|s| s.starts_with(&prefix)));
    env.push(Value::String(format!(
        "{prefix}{}",
        record.devices.join(",")
    )));
    rewrite_json(process, &proc)
}

/// The poststop hook: the OCI state on stdin names the container, the
/// hook's own argument names the allocation.
pub fn release_from_hook(ctx: &Ctx, state: &[u8], alloc_id: Option<&str>) -> Vec<Record> {
    let (id, bundle) = hook_state(state);
    release(ctx, "poststop", &id, |r| match alloc_id {
        Some(a) => r.alloc_id == a,
        None => r.container_id == id && bundle.as_ref() == Some(&r.bundle),
    })
}

/// The container id and bundle the OCI state on a hook's stdin names;
/// empty and `None` for input that is not such a state.
pub fn hook_state(input: &[u8]) -> (String, Option<PathBuf>) {
    let state: Value = serde_json::from_slice(input).unwrap_or(Value::Null);
    let id = state.get("id").and_then(Value::as_str).unwrap_or_default();
    let bundle = state
        .get("bundle")
        .and_then(Value::as_str)
        .map(PathBuf::from);
    (id.to_string(), bundle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Groups;
    use crate::testing::FakeHost;
    use serde_json::json;

    /// Accounts where `boss` is in the Unix group `ds01-admin`.
    struct Users;
    impl Groups for Users {
        fn groups_of(&self, user: &str) -> Vec<String> {
            if user == "boss" {
                vec!["ds01-admin".into()]
            } else {
                Vec::new()
            }
        }
    }
    impl Accounts for Users {
        fn user_name(&self, _: u32) -> Option<String> {
            None
        }
    }

    use crate::testing::sim_inventory as inv;

    /// The plan for a spec, with the audit log in a temp dir.
    fn plan_of(spec: serde_json::Value) -> (Plan, Vec<Event>) {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Config {
            state_dir: dir.path().join("state"),
            log: dir.path().join("runtime.log"),
            audit_log: dir.path().join("events.jsonl"),
            docker_data_root: dir.path().join("docker"),
            ..Config::default()
        };
        let host = FakeHost::default();
        let ctx = Ctx {
            cfg: &cfg,
            host: &host,
            exe: Path::new("/usr/bin/ds01-runtime"),
            accounts: &Users,
        };
        let read = oci::read(spec.to_string().as_bytes()).unwrap();
        let plan = plan(&ctx, "c1", &read, &inv());
        (plan, audit::read(&cfg.audit_log).unwrap())
    }

    fn spec(
        env: &[&str],
        devices: serde_json::Value,
        rules: serde_json::Value,
    ) -> serde_json::Value {
        json!({"process": {"env": env}, "linux": {"devices": devices, "resources": {"devices": rules}}})
    }

    const PRIVILEGED: &str = r#"[{"allow": true, "access": "rwm"}]"#;

    #[test]
    fn nothing_gpu_is_passed_through_and_a_request_is_allocated() {
        let (p, ev) = plan_of(spec(&["PATH=/bin"], json!([]), json!([])));
        assert_eq!(p, Plan::PassThrough);
        assert!(ev.is_empty());
        let (p, _) = plan_of(spec(
            &["NVIDIA_VISIBLE_DEVICES=all", "DS01_USER=alice"],
            json!([]),
            json!([]),
        ));
        match p {
            Plan::Allocate(Want { owner, req, .. }) => {
                assert_eq!((owner.user.as_deref(), req.count), (Some("alice"), 1));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn privileged_is_a_bypass_for_an_admin_and_a_refusal_for_a_user() {
        let rules: serde_json::Value = serde_json::from_str(PRIVILEGED).unwrap();
        let (p, _) = plan_of(spec(&["DS01_USER=boss"], json!([]), rules.clone()));
        assert!(matches!(p, Plan::Bypass { .. }), "{p:?}");
        let (p, ev) = plan_of(spec(&["DS01_USER=alice"], json!([]), rules));
        match p {
            Plan::Refuse(msg) => assert!(msg.contains("(alice is not)"), "{msg}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].event, audit::EventKind::Refuse);
    }

    #[test]
    fn nvidia_s_hook_without_a_request_is_denied_devices_and_a_bad_profile_is_refused() {
        let mut s = spec(&["PATH=/bin"], json!([]), json!([]));
        s["hooks"] = json!({"prestart": [{"path": "/usr/bin/nvidia-container-runtime-hook"}]});
        assert_eq!(plan_of(s).0, Plan::DenyHook);
        let (p, _) = plan_of(spec(&["DS01_GPU_PROFILE=huge"], json!([]), json!([])));
        assert!(matches!(p, Plan::Refuse(m) if m.contains("not a GPU profile")));
    }
}
