//! `ds01 admin lock-host-gpus` / `unlock-host-gpus` and `bare-metal`:
//! the group that may use GPUs outside containers, and what was done.

use std::process::ExitCode;

use ds01::bare_metal::{self, Gpasswd};
use ds01::host_gpus::{Done, GROUP};
use ds01_core::config::Config;
use ds01_core::identity::{Accounts, SystemAccounts};

use crate::admin::BareMetal;

/// `ds01 admin bare-metal grant|revoke|list`.
pub fn bare_metal(cfg: &Config, action: BareMetal) -> anyhow::Result<ExitCode> {
    let path = &cfg.bare_metal_grants;
    match action {
        BareMetal::Grant { user, duration } => {
            let span = ds01_core::idle::parse(&duration)
                .ok()
                .flatten()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    anyhow::anyhow!("duration {duration:?}: write a time such as \"2h\" or \"3d\"")
                })?;
            if ds01_core::identity::account(&user).is_none() {
                anyhow::bail!("no user {user:?} on this host");
            }
            group()?;
            // SAFETY: getuid cannot fail.
            let by = SystemAccounts
                .user_name(unsafe { libc::getuid() })
                .unwrap_or_else(|| "root".into());
            let until = std::time::SystemTime::now() + span;
            let g = bare_metal::grant(path, &cfg.audit_log, &Gpasswd, &user, until, &by)
                .map_err(anyhow::Error::msg)?;
            println!(
                "ds01: {user} is in {GROUP} until {}; new logins of theirs may open the GPUs on the host",
                g.until
            );
        }
        BareMetal::Revoke { user } => {
            let had = bare_metal::revoke(path, &cfg.audit_log, &Gpasswd, &user, "by an admin")
                .map_err(anyhow::Error::msg)?;
            println!(
                "ds01: {user} is out of {GROUP}{}; processes already running keep their open devices until they end",
                if had { "" } else { " (they held no grant)" }
            );
        }
        BareMetal::List => {
            let grants = bare_metal::read(path).map_err(anyhow::Error::msg)?;
            if grants.is_empty() {
                println!("no bare-metal grants");
            }
            for g in grants {
                println!("{}  until {}  (by {})", g.user, g.until, g.by);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The gid of ds01-gpu-direct, made (a system group) where missing.
pub fn group() -> anyhow::Result<u32> {
    use ds01::gate_setup::{RealServices, Services};
    RealServices
        .ensure_group(GROUP)
        .map_err(anyhow::Error::msg)?;
    ds01_core::identity::group_id(GROUP)
        .ok_or_else(|| anyhow::anyhow!("group {GROUP} was made but cannot be found"))
}

/// Prints what was done; 1 ("found problems") while the loaded driver
/// would undo it.
pub fn say(done: &Done) -> ExitCode {
    for l in &done.lines {
        println!("ds01: {l}");
    }
    if done.reload_needed {
        println!(
            "ds01: NOT in force yet: the loaded NVIDIA driver still makes nodes with its old modes, and any \
             user can have it remake them (nvidia-modprobe is setuid root). Reload the driver (stop GPU work, \
             then `rmmod nvidia_uvm nvidia_drm nvidia_modeset nvidia && modprobe nvidia`) or reboot; \
             `ds01 doctor` fails until then"
        );
        ExitCode::from(1)
    } else {
        println!("ds01: in force; no driver reload needed");
        ExitCode::SUCCESS
    }
}
