//! `exec`: give the new process the container's allocated UUIDs, then runc.

use std::ffi::OsString;

use ds01_core::shim::{self, argv::Argv};

use crate::runc;

pub fn run(args: &[OsString], argv: &Argv) -> i32 {
    let cfg = match runc::config_or_exec(args, argv) {
        Ok(cfg) => cfg,
        Err(code) => return code,
    };
    if let (Some(process), Some(id)) = (&argv.process, &argv.id) {
        // Best effort: the exec itself must not fail over this.
        if let Err(e) = shim::patch_exec_process(&cfg, &argv.root_or_default(), id, process) {
            ds01_core::log::append(&cfg.log, "warn", &format!("exec in {id}: {e}"));
        }
    }
    runc::exec(&cfg.runc, args, argv, &cfg.log)
}
