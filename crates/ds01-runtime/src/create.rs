//! `create`, `run` and `restore`: judge the spec, allocate for a GPU
//! container, patch its spec, and become runc (or, where binds are pinned
//! or the run is in the foreground, run it and note the init pid or release).

use std::ffi::OsString;
use std::path::Path;

use ds01_core::access;
use ds01_core::config::{self, Config, DriverInjection};
use ds01_core::host::RealHost;
use ds01_core::identity::Owner;
use ds01_core::inventory::snapshot;
use ds01_core::shim::{self, Ctx, Plan, argv::Argv, judge, patch, place, reserve::reserve};
use ds01_core::{cdi, driver};
use ds01_core::{oci, shape, share};

use crate::accounts::HelperAccounts;
use crate::{pin, runc};

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
    // The cheap looks every container gets: nothing in the spec could reach
    // an NVIDIA device, and it asks nothing beyond Docker's defaults, so
    // runc runs it as it is, with no more of the config read than its
    // `runc`, `state_dir` and `docker_data_root` lines. The first look
    // builds only the fields ds01 judges, and judges them by the defaults
    // (no default config is built) and this host's Docker data root. A
    // spec that names NVIDIA's variable goes straight to the whole read: a
    // GPU create would otherwise pay for both.
    if ds01_core::find::find(&bytes, oci::VISIBLE.as_bytes()).is_none() {
        let early = config::early(&Config::locate());
        let defaults = shape::Host {
            docker_root: &early.docker_data_root,
            cap_add: &[],
            host_namespaces: &[],
            nvidia_major: &access::maybe_nvidia_major,
        };
        if let Some(look) = oci::first_look(&bytes)
            && !access::might_touch_nvidia(&look)
            && shape::asks(&look, &defaults).is_empty()
            && placed_already(&look, &early.state_dir)
        {
            return runc::exec(&early.runc, args, argv, Path::new(config::DEFAULT_LOG));
        }
    }
    judge_and_run(args, argv, &bundle, &path, bytes)
}

/// A create the first look did not clear: the whole spec read and judged,
/// a GPU allocated where it asks for one, then runc. Apart from [`run`]
/// so that its large stack frame is not paid by a create the look clears.
#[inline(never)]
fn judge_and_run(
    args: &[OsString],
    argv: &Argv,
    bundle: &Path,
    path: &Path,
    bytes: Vec<u8>,
) -> i32 {
    let plain = Config::default();
    // Otherwise the whole spec. One that runc would read otherwise than
    // ds01 is refused: what ds01 cannot read, it cannot vouch for.
    let spec = match shim::read_spec(&bytes, bundle) {
        Ok(s) => s,
        Err(e) => return fail(argv, &log_of(Config::load().ok()), &e.to_string()),
    };
    let touches = access::might_touch_nvidia(&spec.value);
    let cfg = match Config::load() {
        Ok(c) => c,
        // A container that asks for no GPU still runs with a broken
        // config, judged by the defaults (and the config's `runc` line).
        Err(e) if !touches => {
            ds01_core::log::append(&plain.log, "warn", &format!("{e}; judged by the defaults"));
            Config {
                runc: runc::path(),
                ..Config::default()
            }
        }
        Err(e) => {
            return fail(argv, &plain.log, &shim::ShimError::from(e).to_string());
        }
    };
    let exe = self_path();
    let accounts = HelperAccounts::beside(&exe).with_snapshot(&cfg.state_dir, &cfg.admin_group);
    let ctx = Ctx {
        cfg: &cfg,
        host: &RealHost,
        exe: &exe,
        accounts: &accounts,
    };
    let id = argv.id.clone().unwrap_or_default();
    // What runs, judged for its owner: the second layer behind the gate.
    let judged = |majors: &dyn Fn(i64) -> bool, known: Option<&Owner>| -> Result<Judged, String> {
        let asks = shape::asks(&spec.value, &judge::host(&ctx, majors));
        // Where it runs matters once any share is set, or when it is in a
        // ds01 parent, which must be its owner's and carry their limits.
        let placed = cfg.policy.shares_host()
            || matches!(
                share::placement(
                    oci::at(&spec.value, "/linux/cgroupsPath").and_then(|p| p.as_str())
                ),
                share::Placement::Parent(_)
            );
        if asks.is_empty() && !placed {
            return Ok(Judged::default());
        }
        // The plan's owner, where it named one: Docker's record is not read
        // twice.
        if let Some(owner) = known.filter(|o| o.user.is_some()) {
            let fill = place::settle(&ctx, &id, &spec.value, owner, true)?;
            let verdict = judge::judge(&ctx, &id, &asks, owner, None)?;
            return Ok(Judged { verdict, fill });
        }
        let (owner, labels) = judge::owner_of(&ctx, &id, &spec.value)?;
        let labelled = labels
            .as_ref()
            .and_then(|l| l.get(ds01_core::names::USER_LABEL))
            .is_some();
        let fill = place::settle(&ctx, &id, &spec.value, &owner, labelled)?;
        let verdict = judge::judge(&ctx, &id, &asks, &owner, labels.as_ref())?;
        Ok(Judged { verdict, fill })
    };
    // A non-admin's binds are pinned into `value`, and the limits it lacks
    // written; `None` is an error already reported.
    let pin = |value: &mut serde_json::Value, judged: &Judged| {
        if judged.rewrites() && spec.lossy {
            fail(
                argv,
                &cfg.log,
                "ds01: the spec holds invalid UTF-8, which ds01 will not rewrite to pin its bind mounts or set its limits",
            );
            return None;
        }
        if let Some(fill) = &judged.fill {
            place::apply(value, fill);
        }
        let Some(v) = judged.verdict.as_ref().filter(|v| !v.binds.is_empty()) else {
            return Some(None);
        };
        let rule = pin::Rule {
            user: &v.user,
            roots: v.roots.clone(),
            need_nosuid: cfg.gate_require_nosuid,
        };
        match pin::pin(value, &v.binds, &id, &cfg.state_dir, &rule) {
            Ok(p) => Some(Some(p)),
            Err(msg) => {
                fail(argv, &cfg.log, &msg);
                None
            }
        }
    };
    // runc on the spec, edited by `edit` and carrying the pins where it has
    // binds to pin (then written first; untouched, it is not copied): with
    // pins, runc is a child, and they come down once it has made the
    // container; without, this process becomes runc.
    let run_on = |edit: Option<fn(&mut serde_json::Value)>, verdict: &Judged| -> i32 {
        if edit.is_none() && !verdict.rewrites() {
            return runc::exec(&cfg.runc, args, argv, &cfg.log);
        }
        let mut value = spec.value.clone();
        if let Some(edit) = edit {
            edit(&mut value);
        }
        let Some(pins) = pin(&mut value, verdict) else {
            return 1;
        };
        if let Err(e) = shim::rewrite_json(path, &value) {
            return fail(argv, &cfg.log, &e.to_string());
        }
        let Some(pins) = pins else {
            return runc::exec(&cfg.runc, args, argv, &cfg.log);
        };
        let code = runc::run(&cfg.runc, args, argv, &cfg.log, None);
        drop(pins);
        code
    };
    // A container that asks no GPU: judged for its owner, then runc.
    let no_gpu = || match judged(&access::maybe_nvidia_major, None) {
        Ok(verdict) => run_on(None, &verdict),
        Err(msg) => fail(argv, &cfg.log, &msg),
    };
    if !touches {
        return no_gpu();
    }
    let inv = match inventory(&cfg) {
        Ok(inv) => inv,
        // A host without the NVIDIA driver has no GPU to keep anyone from:
        // a container that asks for none (a --privileged one, say) runs,
        // if its owner may run what it asks.
        Err(e)
            if !access::env_asks(&spec.value)
                && !Path::new(DRIVER_NODE).exists()
                && !Path::new(DRIVER_MODULE).exists() =>
        {
            ds01_core::log::append(
                &cfg.log,
                "warn",
                &format!(
                    "{e}; no {DRIVER_NODE} on this host, so container passed to runc with no GPU judged"
                ),
            );
            return no_gpu();
        }
        Err(e) => return fail(argv, &cfg.log, &e),
    };
    let majors = inv.nvidia_majors();
    let nvidia_major = |m: i64| u32::try_from(m).is_ok_and(|m| majors.contains(&m));
    let plan = shim::plan(&ctx, &id, &spec, &inv);
    let known = match &plan {
        Plan::Allocate(want) => Some(&want.owner),
        _ => None,
    };
    // An admin's container around the allocator was judged by the plan.
    let verdict = if matches!(plan, Plan::Bypass { .. } | Plan::Refuse(_)) {
        Judged::default()
    } else {
        match judged(&nvidia_major, known) {
            Ok(v) => v,
            Err(msg) => return fail(argv, &cfg.log, &msg),
        }
    };
    let want = match plan {
        Plan::PassThrough => return run_on(None, &verdict),
        Plan::Bypass { owner, why } => {
            shim::record_bypass(&ctx, &id, &owner, &why, &inv);
            return runc::exec(&cfg.runc, args, argv, &cfg.log);
        }
        Plan::Refuse(msg) => return fail(argv, &cfg.log, &msg),
        Plan::DenyHook => return run_on(Some(patch::deny_hook), &verdict),
        Plan::Allocate(want) => want,
    };
    let mut value = spec.value;
    let Some(pins) = pin(&mut value, &verdict) else {
        return 1;
    };
    let found = driver_found(&cfg);
    // From here on, an error path that drops the reservation releases it.
    let mut res = match reserve(&ctx, argv, bundle, &want, &inv) {
        Ok(r) => r,
        Err(e) => return fail(argv, &cfg.log, &e.to_string()),
    };
    if let Err(e) = patch::patch(&mut res, &mut value, bundle, &want.owner, &inv, &found) {
        return fail(argv, &cfg.log, &e.to_string());
    }
    // Written out: the spec goes back with the process, without a free for
    // each of its thousand values (a tenth of a GPU create's instructions).
    std::mem::forget(value);
    // `create`, `run --detach` and `restore --detach` return while the
    // container lives on; a foreground `run` or `restore` returns at its end.
    let returns_early = argv.command.as_deref() == Some("create") || argv.detach;
    // runc inherits the marker: while it runs, even if this process is
    // killed, the allocation counts as a create in flight.
    if returns_early && pins.is_none() {
        // runc in this process's place, as for a container without a GPU:
        // a second process would cost more than the rest of the create
        // (0.3 ms on the benchmark's VM). The reservation is neither
        // committed nor dropped: the record stays, with no init pid, judged
        // by its marker while runc runs, then by runc's state
        // (`Record::stale_reason`). A create runc fails is freed by the
        // `delete --force` its caller sends after it (Docker's, containerd's),
        // or reclaimed when its devices are wanted. Returns only if runc
        // could not be run; the reservation then drops, and releases.
        return runc::exec_holding(&cfg.runc, args, argv, &cfg.log, res.fd());
    }
    let code = runc::run(&cfg.runc, args, argv, &cfg.log, Some(res.fd()));
    drop(pins);
    match (code, returns_early) {
        (0, true) => match res.note_init_pid(argv.pid_file.as_deref()) {
            Ok(()) => res.commit(),
            Err(msg) => {
                runc::delete_force(&cfg.runc, argv);
                return fail(argv, &cfg.log, &msg);
            }
        },
        (0, false) => res.release("run ended"),
        _ => res.release("create failed"),
    }
    code
}

/// What the judgement of a spec decided: binds to pin, limits to write.
#[derive(Default)]
struct Judged {
    verdict: Option<judge::Verdict>,
    fill: Option<share::Sizing>,
}

impl Judged {
    /// Whether the spec must be written again before runc reads it.
    fn rewrites(&self) -> bool {
        self.fill.is_some() || self.verdict.as_ref().is_some_and(|v| !v.binds.is_empty())
    }
}

/// Whether where the container runs needs no judgement: no share is on
/// (the marker `ds01 gpus refresh`, the reaper and every create that reads
/// the config keep), and it is not in a ds01 parent, or one already
/// written for the user it names. Which owner the container has is only
/// asked past this look.
fn placed_already(look: &serde_json::Value, state_dir: &Path) -> bool {
    let path = oci::at(look, "/linux/cgroupsPath").and_then(|p| p.as_str());
    if share::marker(state_dir).exists() {
        return false;
    }
    match share::placement(path) {
        share::Placement::Default => true,
        share::Placement::Parent(u) => path
            .and_then(share::parent_part)
            .is_some_and(|p| share::stamped(state_dir, &u, p)),
        share::Placement::Other => false,
    }
}

/// The inventory snapshot. A missing one is made by `ds01 gpus refresh`
/// (beside this binary) as a child: NVML needs the dynamic loader, which
/// this static binary does without.
fn inventory(cfg: &Config) -> Result<ds01_core::inventory::Inventory, String> {
    if let Some(inv) = snapshot::cached(cfg) {
        return Ok(inv);
    }
    let err = refresh();
    snapshot::cached(cfg).ok_or_else(|| format!("ds01: no inventory snapshot: {err}"))
}

/// NVIDIA's hook and the CDI specs as last read. Specs that changed since
/// (or were never read) are read again by `ds01 gpus refresh`: their parser
/// stays out of this binary.
fn driver_found(cfg: &Config) -> driver::Found {
    if cfg.driver_injection == DriverInjection::None {
        return driver::Found {
            hook: None,
            cdi: Err(cdi::stale(&cfg.cdi_spec_dirs)),
        };
    }
    let dirs = &cfg.cdi_spec_dirs;
    let cdi = cdi::current(&cfg.state_dir, dirs)
        .or_else(|| {
            refresh();
            cdi::current(&cfg.state_dir, dirs)
        })
        .ok_or_else(|| cdi::stale(dirs));
    driver::Found {
        hook: driver::find_hook(),
        cdi,
    }
}

/// Runs `ds01 gpus refresh --quiet` beside this binary; what went wrong,
/// in one line, for the caller's error.
fn refresh() -> String {
    let cli = self_path().with_file_name("ds01");
    match std::process::Command::new(&cli)
        .args(["gpus", "refresh", "--quiet"])
        .stdin(std::process::Stdio::null())
        .output()
    {
        Ok(out) => String::from_utf8_lossy(&out.stderr)
            .lines()
            .next()
            .unwrap_or("run 'ds01 gpus refresh'")
            .to_string(),
        Err(e) => format!("{cli:?} cannot run: {e}"),
    }
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
