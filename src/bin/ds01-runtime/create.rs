//! `create` and `run`: allocate for a GPU container, patch its spec, run
//! runc, and note the init pid or release on failure.

use std::ffi::OsString;

use ds01::config::{self, Config};
use ds01::host::RealHost;
use ds01::identity::SystemAccounts;
use ds01::inventory::snapshot;
use ds01::shim::{self, Ctx, argv::Argv};
use ds01::{request, spec};

use crate::runc;

pub fn run(args: &[OsString], argv: &Argv) -> i32 {
    let cfg = Config::load();
    let runc_path = cfg
        .as_ref()
        .map(|c| c.runc.clone())
        .unwrap_or_else(|_| config::fallback_runc(&Config::locate()));
    // runc takes a relative bundle (or none) from the working directory.
    let cwd = std::env::current_dir().unwrap_or_default();
    let bundle = cwd.join(argv.bundle.clone().unwrap_or_default());

    // A spec that cannot be read is runc's to report, in its own words.
    let Ok(mut spec) = shim::read_spec(&bundle) else {
        return runc::exec(&runc_path, args, argv);
    };
    let privileged = spec::is_privileged(&spec);
    let req = match request::from_spec(&spec) {
        Ok(req) => req,
        Err(e) => return fail(argv, &shim::ShimError::from(e).to_string()),
    };
    if req.is_none() && !privileged {
        if let Err(e) = &cfg {
            let log = Config::default().log;
            ds01::log::append(
                &log,
                "warn",
                &format!("{e}; passing a container without GPU to runc"),
            );
        }
        return runc::exec(&runc_path, args, argv);
    }
    let cfg = match cfg {
        Ok(c) => c,
        // Without a config a privileged container cannot be judged; runc decides.
        Err(e) if req.is_none() => {
            ds01::log::append(
                &Config::default().log,
                "warn",
                &format!("{e}; privileged container not checked"),
            );
            return runc::exec(&runc_path, args, argv);
        }
        Err(e) => return fail(argv, &shim::ShimError::from(e).to_string()),
    };
    let exe = self_path();
    let ctx = Ctx {
        cfg: &cfg,
        host: &RealHost,
        exe: &exe,
        accounts: &SystemAccounts,
    };
    let id = argv.id.clone().unwrap_or_default();
    let owner = shim::owner(&cfg, &SystemAccounts, &id, &spec);
    if privileged {
        match snapshot::load(&cfg) {
            Ok(inv) => {
                if let Err(e) = shim::check_privileged(&ctx, &id, &owner, &inv) {
                    return fail(argv, &e.to_string());
                }
            }
            Err(e) => ds01::log::append(
                &cfg.log,
                "warn",
                &format!("privileged container {id} not checked: {e}"),
            ),
        }
    }
    let Some(req) = req else {
        return runc::exec(&runc_path, args, argv);
    };
    let record = match shim::allocate(&ctx, argv, &bundle, &mut spec, &req, &owner) {
        Ok(r) => r,
        Err(e) => return fail(argv, &e.to_string()),
    };
    let code = runc::run(&runc_path, args, argv);
    // `create` and `run --detach` return while the container lives on.
    let returns_early = argv.command.as_deref() == Some("create") || argv.detach;
    if code == 0 && returns_early {
        shim::note_init_pid(&ctx, &record, argv.pid_file.as_deref());
    } else {
        // A failed create, or a `run` that is over: the devices are free.
        let why = if code != 0 {
            "create failed"
        } else {
            "run ended"
        };
        shim::release(&ctx, why, |r| r.alloc_id == record.alloc_id);
    }
    code
}

fn fail(argv: &Argv, msg: &str) -> i32 {
    runc::report(argv, msg);
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
