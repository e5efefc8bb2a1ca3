//! `delete`: runc in this process's place. runc's delete runs the
//! poststop hook, which marks the container's devices released; the
//! ledger's next write logs and audits that, and takes the record out.
//! A container runc has forgotten already gets no hook from it: what it
//! still holds is freed here, under the lock, before runc is run.

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
    let host = RealHost;
    let ledger = ds01_core::ledger::Ledger::of(&cfg);
    // The file as written, marks not applied: a record the hook marked is
    // taken out (and logged) by a second delete of the same container, as
    // by any later write of the ledger.
    if ledger.holds_container(&root, &id) && !host.runc_knows(&root, &id) {
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
        // Asked again under the lock, in this order: a create of the same
        // id may have allocated and run since the look above.
        let pending = ledger.pending_dir();
        shim::release(&ctx, "delete", &id, |r| {
            r.container_id == id
                && r.root == root
                && !host.create_in_flight(&pending.join(&r.alloc_id))
                && !host.runc_knows(&root, &id)
        });
    }
    runc::exec(&cfg.runc, args, argv, &cfg.log)
}
