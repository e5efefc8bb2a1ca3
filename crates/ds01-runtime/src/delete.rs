//! `delete`: run runc, then free what the container held once runc has
//! forgotten it.

use std::ffi::OsString;

use ds01_core::host::{Host, RealHost};
use ds01_core::shim::{self, Ctx, argv::Argv};

use crate::runc;

pub fn run(args: &[OsString], argv: &Argv) -> i32 {
    let cfg = match runc::config_or_exec(args, argv) {
        Ok(cfg) => cfg,
        Err(code) => return code,
    };
    let root = argv.root_or_default();
    let id = argv.id.clone().unwrap_or_default();
    if !shim::ledger(&cfg).holds_container(&root, &id) {
        return runc::exec(&cfg.runc, args, argv, &cfg.log);
    }
    let code = runc::run(&cfg.runc, args, argv, &cfg.log, None);
    let host = RealHost;
    // runc's delete ran the poststop hook, which marked the devices
    // released: the write below takes the record out, logs and audits it.
    // (A container of an older ds01-runtime freed them in its hook already:
    // then a look at the file, with no lock, is all.)
    let ledger = shim::ledger(&cfg);
    if !host.runc_knows(&root, &id) && ledger.holds_container(&root, &id) {
        let exe = std::env::current_exe().unwrap_or_default();
        let ctx = Ctx {
            cfg: &cfg,
            host: &host,
            exe: &exe,
            accounts: &crate::accounts::HelperAccounts::beside(&exe),
        };
        // A record whose create is still in flight (its runtime killed, its
        // runc orphaned) is not this delete's to free: that runc may still
        // make the container. It is reclaimed once no process of it is left.
        let pending = ledger.pending_dir();
        shim::release(&ctx, "delete", &id, |r| {
            r.container_id == id
                && r.root == root
                && !host.create_in_flight(&pending.join(&r.alloc_id))
        });
    }
    code
}
