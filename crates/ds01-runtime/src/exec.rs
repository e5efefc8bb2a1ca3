//! `exec`: judge the new process, give it the container's allocated UUIDs,
//! then runc.

use std::ffi::OsString;

use ds01_core::shim::{self, argv::Argv};

use crate::runc;

pub fn run(args: &[OsString], argv: &Argv) -> i32 {
    let cfg = match runc::config_or_exec(args, argv) {
        Ok(cfg) => cfg,
        Err(code) => return code,
    };
    if let (Some(process), Some(id)) = (&argv.process, &argv.id) {
        // A non-admin's exec runs with no power beyond the container's.
        let exe = std::env::current_exe().unwrap_or_default();
        let accounts = crate::accounts::HelperAccounts::beside(&exe)
            .with_snapshot(&cfg.state_dir, &cfg.admin_group);
        let ctx = shim::Ctx {
            cfg: &cfg,
            host: &ds01_core::host::RealHost,
            exe: &exe,
            accounts: &accounts,
        };
        if let Err(msg) = shim::judge::judge_exec(&ctx, id, process) {
            runc::report(argv, &cfg.log, &msg);
            return 1;
        }
        // Best effort: the exec itself must not fail over this.
        if let Err(e) = shim::patch_exec_process(&cfg, &argv.root_or_default(), id, process) {
            ds01_core::log::append(&cfg.log, "warn", &format!("exec in {id}: {e}"));
        }
    }
    runc::exec(&cfg.runc, args, argv, &cfg.log)
}
