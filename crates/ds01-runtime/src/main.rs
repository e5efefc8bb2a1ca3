//! `ds01-runtime`: Docker's default OCI runtime. It hands GPU containers
//! exactly their allocation and runs the real runc; everything else goes to
//! runc untouched. Also the poststop hook (`ds01-runtime hook poststop`).
//!
//! Nothing here prints on stdout or stderr while a container is created:
//! those are the container's streams.

mod accounts;
mod create;
mod delete;
mod exec;
mod hook;
mod pin;
mod runc;

use std::ffi::OsString;

use ds01_core::shim::argv;

fn main() {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    if argv::is_hook(&args) {
        std::process::exit(hook::run(&args[1..]));
    }
    let parsed = argv::scan(&args);
    let code = match parsed.command.as_deref() {
        // `restore` builds a container from the bundle's spec just as `create` does.
        Some("create" | "run" | "restore") => create::run(&args, &parsed),
        Some("delete") => delete::run(&args, &parsed),
        Some("exec") => exec::run(&args, &parsed),
        // Everything else goes to runc as is, with no more than the config's
        // `runc` line read.
        _ => runc::exec(
            &runc::path(),
            &args,
            &parsed,
            std::path::Path::new(ds01_core::config::DEFAULT_LOG),
        ),
    };
    std::process::exit(code);
}
