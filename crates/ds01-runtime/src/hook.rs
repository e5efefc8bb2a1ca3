//! `ds01-runtime hook poststop [ALLOC_ID]`: runc runs this after the
//! container stops, with the OCI state JSON on stdin.

use std::ffi::OsString;
use std::io::Read;

use ds01_core::config::Config;
use ds01_core::host::RealHost;
use ds01_core::shim::{self, Ctx};

pub fn run(args: &[OsString]) -> i32 {
    let log_default = Config::default().log;
    if args.first().and_then(|a| a.to_str()) != Some("poststop") {
        ds01_core::log::append(&log_default, "error", "hook: only 'poststop' is known");
        eprintln!("ds01-runtime: unknown hook; usage: ds01-runtime hook poststop [ALLOC_ID]");
        return 2;
    }
    let cfg = match Config::load() {
        Ok(c) => c,
        Err(e) => {
            // A failing poststop hook is only logged by runc; stale-record
            // reclaim frees the devices later.
            ds01_core::log::append(&log_default, "error", &format!("poststop: {e}"));
            return 1;
        }
    };
    let mut state = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut state);
    let alloc_id = args.get(1).and_then(|a| a.to_str());
    let exe = std::env::current_exe().unwrap_or_default();
    let ctx = Ctx {
        cfg: &cfg,
        host: &RealHost,
        exe: &exe,
        accounts: &crate::accounts::HelperAccounts::beside(&exe),
    };
    shim::release_from_hook(&ctx, &state, alloc_id);
    0
}
