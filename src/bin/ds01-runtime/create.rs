//! `create`, `run` and `restore`: judge the spec, allocate for a GPU
//! container, patch its spec, run runc, and note the init pid or release.

use std::ffi::OsString;
use std::path::Path;

use ds01::access;
use ds01::config::Config;
use ds01::host::RealHost;
use ds01::inventory::snapshot;
use ds01::shim::{self, Ctx, Plan, argv::Argv};

use crate::accounts::HelperAccounts;
use crate::runc;

/// Present wherever the NVIDIA driver is loaded (its nodes may be made lazily).
const DRIVER_NODE: &str = "/dev/nvidiactl";
const DRIVER_MODULE: &str = "/sys/module/nvidia";

pub fn run(args: &[OsString], argv: &Argv) -> i32 {
    // runc takes a relative bundle (or none) from the working directory.
    let cwd = std::env::current_dir().unwrap_or_default();
    let bundle = cwd.join(argv.bundle.clone().unwrap_or_default());
    let path = shim::spec_path(&bundle);
    // A spec that cannot be opened is runc's to report, in its own words.
    let Ok(bytes) = std::fs::read(&path) else {
        return runc::exec(&runc::path(), args, argv, &Config::default().log);
    };
    // One that runc would read otherwise than ds01 is refused: what ds01
    // cannot read, it cannot vouch for.
    let spec = match shim::read_spec(&bytes, &bundle) {
        Ok(s) => s,
        Err(e) => return fail(argv, &log_of(Config::load().ok()), &e.to_string()),
    };
    // The cheap look every container gets: nothing in the spec could reach
    // an NVIDIA device, so runc runs it as it is, with no more of the config
    // read than its `runc` line.
    if !access::might_touch_nvidia(&spec.value) {
        return runc::exec(&runc::path(), args, argv, &Config::default().log);
    }
    let cfg = match Config::load() {
        Ok(c) => c,
        Err(e) => {
            return fail(
                argv,
                &Config::default().log,
                &shim::ShimError::from(e).to_string(),
            );
        }
    };
    let inv = match inventory(&cfg) {
        Ok(inv) => inv,
        // A host without the NVIDIA driver has no GPU to keep anyone from:
        // a container that asks for none (a --privileged one, say) runs.
        Err(e)
            if !access::env_asks(&spec.value)
                && !Path::new(DRIVER_NODE).exists()
                && !Path::new(DRIVER_MODULE).exists() =>
        {
            ds01::log::append(
                &cfg.log,
                "warn",
                &format!(
                    "{e}; no {DRIVER_NODE} on this host, so container passed to runc unjudged"
                ),
            );
            return runc::exec(&cfg.runc, args, argv, &cfg.log);
        }
        Err(e) => return fail(argv, &cfg.log, &e),
    };
    let exe = self_path();
    let accounts = HelperAccounts::beside(&exe);
    let ctx = Ctx {
        cfg: &cfg,
        host: &RealHost,
        exe: &exe,
        accounts: &accounts,
    };
    let id = argv.id.clone().unwrap_or_default();
    let (owner, req) = match shim::plan(&ctx, &id, &spec, &inv) {
        Plan::PassThrough => return runc::exec(&cfg.runc, args, argv, &cfg.log),
        Plan::Bypass { owner, why } => {
            shim::record_bypass(&ctx, &id, &owner, &why, &inv);
            return runc::exec(&cfg.runc, args, argv, &cfg.log);
        }
        Plan::Refuse(msg) => return fail(argv, &cfg.log, &msg),
        Plan::DenyHook => {
            let mut value = spec.value;
            ds01::spec::deny_nvidia_hook(&mut value);
            if let Err(e) = shim::rewrite_json(&path, &value) {
                return fail(argv, &cfg.log, &e.to_string());
            }
            return runc::exec(&cfg.runc, args, argv, &cfg.log);
        }
        Plan::Allocate { owner, req } => (owner, req),
    };
    let mut value = spec.value;
    let (record, pending) =
        match shim::allocate(&ctx, argv, &bundle, &mut value, &req, &owner, &inv) {
            Ok(r) => r,
            Err(e) => return fail(argv, &cfg.log, &e.to_string()),
        };
    // runc inherits the marker: while it runs, even if this process is
    // killed, the allocation counts as a create in flight.
    let code = runc::run(&cfg.runc, args, argv, &cfg.log, Some(pending.fd()));
    // `create`, `run --detach` and `restore --detach` return while the
    // container lives on; a foreground `run` or `restore` returns at its end.
    let returns_early = argv.command.as_deref() == Some("create") || argv.detach;
    if code == 0 && returns_early {
        let noted = shim::note_init_pid(&ctx, &record, argv.pid_file.as_deref());
        pending.finish();
        if let Err(msg) = noted {
            runc::delete_force(&cfg.runc, argv);
            return fail(argv, &cfg.log, &msg);
        }
    } else {
        // A failed create, or a `run` that is over: the devices are free.
        let why = if code != 0 {
            "create failed"
        } else {
            "run ended"
        };
        shim::release(&ctx, why, &id, |r| r.alloc_id == record.alloc_id);
        pending.finish();
    }
    code
}

/// The inventory snapshot. A missing one is made by `ds01 gpus refresh`
/// (beside this binary) as a child: NVML needs the dynamic loader, which
/// this static binary does without.
fn inventory(cfg: &Config) -> Result<ds01::inventory::Inventory, String> {
    if let Some(inv) = snapshot::cached(cfg) {
        return Ok(inv);
    }
    let cli = self_path().with_file_name("ds01");
    let out = std::process::Command::new(&cli)
        .args(["gpus", "refresh"])
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("ds01: no inventory snapshot, and {cli:?} cannot make one: {e}"))?;
    snapshot::cached(cfg).ok_or_else(|| {
        let err = String::from_utf8_lossy(&out.stderr);
        format!(
            "ds01: no inventory snapshot: {}",
            err.lines().next().unwrap_or("run 'ds01 gpus refresh'")
        )
    })
}

/// The config's log, or the default one.
fn log_of(cfg: Option<Config>) -> std::path::PathBuf {
    cfg.map_or_else(|| Config::default().log, |c| c.log)
}

fn fail(argv: &Argv, log: &std::path::Path, msg: &str) -> i32 {
    runc::report(argv, log, msg);
    1
}

/// This binary's path, for the poststop hook. After a package upgrade
/// `/proc/self/exe` reads "... (deleted)"; the path itself is still right.
fn self_path() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap_or_else(|_| "/usr/bin/ds01-runtime".into());
    let s = exe.to_string_lossy();
    match s.strip_suffix(" (deleted)") {
        Some(p) => p.into(),
        None => exe,
    }
}
