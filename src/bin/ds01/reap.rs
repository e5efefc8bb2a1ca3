//! `ds01 reap [--dry-run] [--json]`: one pass of the idle and runtime
//! rules over the GPU containers (the package runs it every minute).

use std::path::Path;
use std::process::{Command, ExitCode, Stdio};

use ds01::reap::{self, World};
use ds01_core::activity::Activity;
use ds01_core::config::Config;

use crate::docker::Engine;
use ds01_core::identity::SystemAccounts;

#[derive(clap::Args)]
pub struct Args {
    /// List what it would do and why; warn and stop nothing
    #[arg(long)]
    dry_run: bool,
    /// Print JSON for scripts
    #[arg(long)]
    json: bool,
}

pub fn run(cfg: &Config, args: Args) -> anyhow::Result<ExitCode> {
    let activity: Box<dyn Activity> = ds01::scan::activity(cfg);
    let cpu = |pid: u32| {
        ds01_core::activity::cpu_usec(Path::new("/proc"), Path::new("/sys/fs/cgroup"), pid)
    };
    let world = World {
        docker: &Engine,
        activity: activity.as_ref(),
        groups: &SystemAccounts,
        cpu_usec: &cpu,
        notify: &leave_notice,
        now: std::time::SystemTime::now(),
    };
    let actions = reap::pass(cfg, &world, args.dry_run).map_err(anyhow::Error::msg)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&actions)?);
    } else if actions.is_empty() {
        println!("nothing to warn or stop");
    } else {
        let verb = |a: &str| match (a, args.dry_run) {
            ("warn", false) => "warned",
            ("warn", true) => "would warn",
            ("stop", false) => "stopped",
            ("stop", true) => "would stop",
            _ => "left alone",
        };
        for a in &actions {
            let who = a.user.as_deref().unwrap_or("unknown owner");
            let name = if a.name.is_empty() {
                &a.container_id
            } else {
                &a.name
            };
            let when = a
                .stop_at
                .as_deref()
                .map(|t| format!(" (stop at {t})"))
                .unwrap_or_default();
            println!("{} {name} of {who}: {}{when}", verb(a.action), a.why);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Appends `text` to `~user/.ds01/notices`, written as that user (never as
/// root into a directory the user controls), where the login snippet in
/// /etc/profile.d shows it.
fn leave_notice(user: &str, text: &str) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::process::CommandExt;
    let (uid, gid, home) =
        ds01_core::identity::account(user).ok_or_else(|| format!("no account {user:?}"))?;
    let mut child = Command::new("/bin/sh")
        .args([
            "-c",
            "umask 077 && mkdir -p \"$HOME/.ds01\" && cat >> \"$HOME/.ds01/notices\"",
        ])
        .env_clear()
        .env("HOME", &home)
        .env("PATH", "/usr/bin:/bin")
        .uid(uid)
        .gid(gid)
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run /bin/sh as {user}: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = writeln!(stdin, "{text}");
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "writing {home}/.ds01/notices: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}
