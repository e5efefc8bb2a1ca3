//! create + start + delete of a busybox container, through plain runc and
//! through ds01-runtime, measured side by side in one run (as root):
//!
//!     cargo bench --bench runtime [-- ITERATIONS]
//!
//! Seven cases per round, in rotating order so drift hits all alike:
//! - `runc`: plain runc, a bundle without GPU;
//! - `stub`: a static program that only execs runc (built here): the floor
//!   for any wrapper, one more exec per runc command;
//! - `ds01 no-gpu`: the shim, as shipped (statically linked), same bundle;
//! - `runc +nodes`: plain runc given the spec the shim would write for a
//!   GPU container (same device nodes, no hook);
//! - `stub +nodes`: the stub on that spec: the floor for the GPU case;
//! - `stub +hook`: the stub on the spec the shim writes, its poststop hook
//!   kept (it marks an allocation long gone): what runc's running of any
//!   hook costs, of the GPU case's gap;
//! - `ds01 gpu`: the shim with `NVIDIA_VISIBLE_DEVICES=all`, simulated inventory.
//!
//! Then, with runc replaced by a stand-in that does next to nothing, the
//! time of a `create` through the stub and through the shim (without and
//! with a GPU): the shim's own time in milliseconds, which the lifecycle's
//! noise (runc's tens of milliseconds) cannot hide.
//!
//! The static shim is built here too (`cargo rustc ... +crt-static` into
//! `target/static`), as `packaging/build-deb.sh` builds it. Everything lives
//! on tmpfs (/dev/shm), as /run does on a real host.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CLI: &str = env!("CARGO_BIN_EXE_ds01");

/// The floor: a static program that only execs runc.
const STUB: &str = "use std::os::unix::process::CommandExt;\n\
fn main() {\n\
    let args: Vec<_> = std::env::args_os().skip(1).collect();\n\
    let err = std::process::Command::new(env!(\"RUNC\")).args(args).exec();\n\
    panic!(\"{err}\");\n\
}\n";

/// Builds the stub and the static shim (beside copies of the CLI, which it
/// asks for snapshots, and of ds01-accounts) into `d`.
fn build_static(d: &Path, runc: &Path) -> (PathBuf, PathBuf) {
    let stub = rustc_static(d, "stub", STUB, runc);
    // The same, doing nothing: what any process runc starts costs (a hook).
    rustc_static(d, "empty", "fn main() {}\n", runc);
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = static_runtime("target/static");
    let ok = Command::new("cargo")
        .current_dir(manifest)
        .env("CARGO_TARGET_DIR", &target)
        .args(["build", "--release", "--locked", "-p", "ds01-poststop"])
        .status()
        .unwrap()
        .success();
    assert!(ok, "cannot build ds01-poststop");
    let bin = d.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy(
        target.join("release/ds01-runtime"),
        bin.join("ds01-runtime"),
    )
    .unwrap();
    // The same link with its symbols, for callgrind (`static_with_symbols`).
    std::fs::copy(
        target.join("release/ds01-runtime.symbols"),
        bin.join("ds01-runtime-symbols"),
    )
    .unwrap();
    std::fs::copy(
        target.join("release/ds01-poststop"),
        bin.join("ds01-poststop"),
    )
    .unwrap();
    std::fs::copy(CLI, bin.join("ds01")).unwrap();
    let accounts = Path::new(CLI).with_file_name("ds01-accounts");
    std::fs::copy(accounts, bin.join("ds01-accounts")).unwrap();
    (stub, bin.join("ds01-runtime"))
}

/// `d/NAME`, a config for the simulated inventory with this runc and
/// state directory (`d/STATE`).
fn write_config(d: &Path, name: &str, runc: &Path, state: &str) -> PathBuf {
    let inventory = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/sim/inventory.toml");
    let config = d.join(name);
    std::fs::write(
        &config,
        format!(
            "runc = {runc:?}\nstate_dir = {:?}\nlog = {:?}\ninventory = {inventory:?}\n\
             docker_data_root = {:?}\n",
            d.join(state),
            d.join("runtime.log"),
            d.join("docker-data"),
        ),
    )
    .unwrap();
    config
}

/// `d/NAME`, a static program built from `src` (which may name `RUNC`).
fn rustc_static(d: &Path, name: &str, src: &str, runc: &Path) -> PathBuf {
    let src_path = d.join(format!("{name}.rs"));
    std::fs::write(&src_path, src).unwrap();
    let ok = Command::new("rustc")
        .args([
            "--edition",
            "2021",
            "-O",
            "-C",
            "target-feature=+crt-static",
            "-o",
        ])
        .arg(d.join(name))
        .arg(&src_path)
        .env("RUNC", runc)
        .status()
        .unwrap()
        .success();
    assert!(ok, "cannot build {name}");
    d.join(name)
}

struct Case {
    name: &'static str,
    runtime: PathBuf,
    bundle: PathBuf,
    times: Vec<Duration>,
    /// create, start and delete on their own, to show where a gap lies.
    phases: [Vec<Duration>; 3],
}

fn main() {
    let iterations: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(40);
    let runc = ["/usr/sbin/runc", "/usr/bin/runc"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("runc is not installed (apt-get install runc)");
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("busybox is not installed (apt-get install busybox-static)");
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "the benchmark runs containers: run it as root"
    );

    let dir = tempfile::Builder::new()
        .prefix("ds01-bench-")
        .tempdir_in("/dev/shm")
        .unwrap();
    let d = dir.path();
    let rootfs = d.join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    std::fs::copy(&busybox, rootfs.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", rootfs.join("bin/true")).unwrap();
    let config = write_config(d, "config.toml", &runc, "state");
    // SAFETY: single-threaded here; the variable is read by the child processes.
    unsafe { std::env::set_var("DS01_CONFIG", &config) };
    // The snapshot the runtime reads, as the package's install makes it.
    assert!(
        Command::new(CLI)
            .args(["gpus", "refresh"])
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success()
    );

    let (stub, shim) = build_static(d, &runc);
    let plain = bundle(&runc, d, "plain", &rootfs, &[]);
    let gpu = bundle(&runc, d, "gpu", &rootfs, &["NVIDIA_VISIBLE_DEVICES=all"]);
    // `DS01_BENCH_ONLY=own`: the own-time figures alone (a minute, not ten).
    if std::env::var("DS01_BENCH_ONLY").as_deref() == Ok("own") {
        own_time(d, &shim, &plain, &gpu, iterations);
        return;
    }
    let (nodes, hooked) = patched_baseline(d, &gpu, &shim);

    let case = |name, runtime: &Path, bundle: &Path| Case {
        name,
        runtime: runtime.to_path_buf(),
        bundle: bundle.to_path_buf(),
        times: vec![],
        phases: Default::default(),
    };
    let mut cases = vec![
        case("runc", &runc, &plain),
        case("stub", &stub, &plain),
        case("ds01 no-gpu", &shim, &plain),
        case("runc +nodes", &runc, &nodes),
        case("stub +nodes", &stub, &nodes),
        case("stub +hook", &stub, &hooked),
        case("ds01 gpu", &shim, &gpu),
    ];
    let root = d.join("runc-root");
    // Warm up caches and the inventory snapshot.
    for c in &cases {
        cycle(c, &root, "warm", &gpu);
    }
    for i in 0..iterations {
        let n = cases.len();
        for k in 0..n {
            let c = &mut cases[(i + k) % n];
            let p = cycle(c, &root, &format!("b{i}"), &gpu);
            c.times.push(p.iter().sum());
            for (all, t) in c.phases.iter_mut().zip(p) {
                all.push(t);
            }
        }
    }
    let median = |c: &Case| middle(&c.times);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!("create+start+delete of a busybox container, {iterations} rounds, medians:");
    println!(
        "  {:<12} {:>8} {:>8} {:>8} {:>8}",
        "", "all", "create", "start", "delete"
    );
    for c in &cases {
        let [cr, st, de] = &c.phases;
        println!(
            "  {:<12} {:>8.2} {:>8.2} {:>8.2} {:>8.2} ms",
            c.name,
            ms(median(c)),
            ms(middle(cr)),
            ms(middle(st)),
            ms(middle(de))
        );
    }
    // Two figures per pair: the ratio of the medians, and the median of
    // the ratios of each round (the two cases ran moments apart, so drift
    // over the run cancels out of it).
    let ratio = |a: usize, b: usize| {
        let of_medians = median(&cases[a]).as_secs_f64() / median(&cases[b]).as_secs_f64();
        let mut each: Vec<f64> = cases[a]
            .times
            .iter()
            .zip(&cases[b].times)
            .map(|(x, y)| x.as_secs_f64() / y.as_secs_f64())
            .collect();
        each.sort_by(f64::total_cmp);
        format!("{of_medians:.3} (per round {:.3})", each[each.len() / 2])
    };
    println!("ratios: of the medians (median of the per-round ratios)");
    println!(
        "without GPU: ds01 / static stub  {}  target <= 1.02; ds01 / runc {}; stub / runc {}",
        ratio(2, 1),
        ratio(2, 0),
        ratio(1, 0)
    );
    println!(
        "with GPU:    ds01 / stub +nodes  {}  target <= 1.05; ds01 / runc +nodes {}",
        ratio(6, 4),
        ratio(6, 3)
    );
    println!(
        "of which runc running a hook: stub +hook / stub +nodes {}",
        ratio(5, 4)
    );
    hook_share(d, &shim, iterations);
    own_time(d, &shim, &plain, &gpu, iterations);
}

/// A stand-in for runc that does nothing but what the shim reads after a
/// create: the init pid (pid 1, always alive) in the `--pid-file`.
const STANDIN: &str = "fn main() {\n\
    let args: Vec<String> = std::env::args().collect();\n\
    if let Some(i) = args.iter().position(|a| a == \"--pid-file\") {\n\
        std::fs::write(&args[i + 1], \"1\").unwrap();\n\
    }\n\
}\n";

/// ds01's own time in a `create`, apart from runc's: the stub and the shim
/// each run a stand-in that does next to nothing, so what differs is the
/// shim's work. Far less noisy than the lifecycle ratios, whose runc
/// dwarfs it.
fn own_time(d: &Path, shim: &Path, plain: &Path, gpu: &Path, iterations: usize) {
    let standin = rustc_static(d, "standin", STANDIN, Path::new("/"));
    let stub = rustc_static(d, "stub-standin", STUB, &standin);
    // A state of its own, so that the lifecycles' records stay apart.
    let config = write_config(d, "config-standin.toml", &standin, "state-standin");
    let with_config = |cmd: &mut Command| {
        cmd.env("DS01_CONFIG", &config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
    };
    let mut refresh = Command::new(CLI);
    refresh.args(["gpus", "refresh"]);
    with_config(&mut refresh);
    assert!(refresh.status().unwrap().success());
    let root = d.join("standin-root");
    let global = global_args(&root, "/dev/null");
    // Docker's argv for a create of `id` from `bundle`.
    let create_args = |bundle: &Path, id: &str| -> Vec<String> {
        let b = bundle.to_str().unwrap();
        let mut args: Vec<String> = global.iter().map(|a| a.to_string()).collect();
        args.extend(
            [
                "create",
                "--bundle",
                b,
                "--pid-file",
                &format!("{b}/init.pid"),
                id,
            ]
            .map(String::from),
        );
        args
    };
    let create = |runtime: &Path, bundle: &Path, id: &str| {
        let b = bundle.to_str().unwrap();
        let mut cmd = Command::new(runtime);
        cmd.args(create_args(bundle, id));
        with_config(&mut cmd);
        let start = Instant::now();
        assert!(
            cmd.status().unwrap().success(),
            "{} create of {b} failed; the log ends: {}",
            runtime.display(),
            std::fs::read_to_string(d.join("runtime.log"))
                .unwrap_or_default()
                .lines()
                .last()
                .unwrap_or_default()
        );
        start.elapsed()
    };
    // The spec Docker writes for a plain container on a host with Docker's
    // default data root (the shim's first look needs nothing more), and
    // the same asking for one capability more: judged, its owner looked up
    // (none here: the host's own), as the runtime's second layer does.
    let docker = docker_bundle(d, "docker", plain, &[]);
    let judged = docker_bundle(d, "docker-judged", plain, &["CAP_SYS_PTRACE"]);
    // A GPU container of a known owner: Docker's record of it names a real
    // account, in a group, so the owner's and the group's lookups are paid
    // as on a real host.
    let owner = Account::make();
    let owned = docker_bundle_in(
        d,
        "docker-gpu-owned",
        plain,
        &[],
        &d.join("docker-data"),
        &["NVIDIA_VISIBLE_DEVICES=all"],
    );
    let record = d.join("docker-data/containers/owned");
    std::fs::create_dir_all(&record).unwrap();
    std::fs::write(
        record.join("config.v2.json"),
        format!(
            "{{\"Config\": {{\"Labels\": {{\"ds01.user\": \"{}\"}}}}}}",
            owner.user
        ),
    )
    .unwrap();
    // The users-and-groups snapshot, as the package's timer keeps it.
    let mut snapshot = Command::new(CLI);
    snapshot.args(["gpus", "refresh"]);
    with_config(&mut snapshot);
    assert!(snapshot.status().unwrap().success());
    // Another build of the runtime to set beside this one, on the same
    // rounds (`DS01_BENCH_BASELINE=path/to/ds01-runtime`, static, say of
    // the last release): its no-GPU creates.
    // Copied beside this one's, so both start from the same filesystem.
    let baseline = std::env::var_os("DS01_BENCH_BASELINE").map(|b| {
        let to = d.join("baseline");
        std::fs::create_dir_all(&to).unwrap();
        std::fs::copy(&b, to.join("ds01-runtime")).unwrap();
        to.join("ds01-runtime")
    });
    let mut cases: Vec<(&Path, &Path)> = vec![
        (&stub, plain),
        (shim, plain),
        (shim, gpu),
        (&stub, &docker),
        (shim, &docker),
        (shim, &judged),
        (shim, &owned),
    ];
    if let Some(b) = &baseline {
        cases.extend([(b.as_path(), plain), (b.as_path(), docker.as_path())]);
    }
    // A create's container id; a GPU bundle's spec is put back first, for
    // the shim edits it in place.
    let prepare = |bundle: &Path| {
        if bundle == gpu || bundle == owned {
            std::fs::copy(bundle.join("config.orig.json"), bundle.join("config.json")).unwrap();
        }
        if bundle == owned { "owned" } else { "own" }
    };
    // Untimed: frees the slice, as Docker's delete after a create runc never made.
    let free = |id: &str| {
        let mut delete = Command::new(shim);
        delete.args(global).args(["delete", "--force", id]);
        with_config(&mut delete);
        assert!(delete.status().unwrap().success());
    };
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); cases.len()];
    for i in 0..iterations * 4 {
        for k in 0..cases.len() {
            let n = (i + k) % cases.len();
            let (runtime, bundle) = cases[n];
            let id = prepare(bundle);
            times[n].push(create(runtime, bundle, id));
            if bundle == gpu || bundle == owned {
                free(id);
            }
        }
    }
    let ms = |t: &[Duration]| middle(t).as_secs_f64() * 1e3;
    let t: Vec<f64> = times.iter().map(|t| ms(t)).collect();
    println!(
        "own time of a create, runc a stand-in ({} rounds, medians): stub {:.2} ms, \
         ds01 no-gpu {:.2} ms (+{:.2}), ds01 gpu {:.2} ms (+{:.2})",
        iterations * 4,
        t[0],
        t[1],
        t[1] - t[0],
        t[2],
        t[2] - t[0]
    );
    println!(
        "own time on Docker's spec: stub {:.2} ms, ds01 no-gpu {:.2} ms (+{:.2}), \
         ds01 no-gpu judged (a capability more) {:.2} ms (+{:.2})",
        t[3],
        t[4],
        t[4] - t[3],
        t[5],
        t[5] - t[3]
    );
    println!(
        "own time of a GPU create of a known owner ({} in group {}): ds01 gpu {:.2} ms (+{:.2})",
        owner.user,
        owner.group,
        t[6],
        t[6] - t[0]
    );
    // Instruction counts: the same from run to run, where times are not.
    let names = [
        "stub",
        "ds01 no-gpu",
        "ds01 gpu",
        "stub (Docker's spec)",
        "ds01 no-gpu (Docker's spec)",
        "ds01 no-gpu judged",
        "ds01 gpu, known owner",
    ];
    let shim_symbols = static_with_symbols(shim);
    let hot = std::env::var_os("DS01_BENCH_HOT").map(PathBuf::from);
    let mut ran = vec![Vec::new(); names.len()];
    let counted: Vec<Option<u64>> = cases[..names.len()]
        .iter()
        .enumerate()
        .map(|(i, &(runtime, bundle))| {
            let id = prepare(bundle);
            let args = create_args(bundle, id);
            // The shipped binary is stripped: callgrind counts one with
            // symbols, to find where it execs runc.
            let runtime = if runtime == shim {
                &shim_symbols
            } else {
                runtime
            };
            let n = instructions(d, runtime, &args, &config);
            if hot.is_some() && *runtime == shim_symbols {
                ran[i] = functions_run(&d.join("callgrind"), runtime);
            }
            // `DS01_BENCH_CALLGRIND=DIR`: the profiles kept, for callgrind_annotate.
            if let Some(keep) = std::env::var_os("DS01_BENCH_CALLGRIND") {
                let to = Path::new(&keep).join(format!("case{i}"));
                std::fs::create_dir_all(&to).unwrap();
                for e in std::fs::read_dir(d.join("callgrind")).unwrap().flatten() {
                    std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
                }
            }
            free(id);
            n
        })
        .collect();
    if let Some(to) = &hot {
        // The no-GPU create on Docker's spec first: the one every
        // container pays. Then the GPU create of a known owner.
        let order = [4, 6, 1, 5, 2].map(|i| std::mem::take(&mut ran[i]));
        write_hot_list(to, &shim_symbols, &order);
    }
    if counted.iter().all(Option::is_some) {
        let c: Vec<u64> = counted.into_iter().flatten().collect();
        println!(
            "instructions of one create (callgrind, children followed: helpers and the stand-in):"
        );
        for (i, name) in names.iter().enumerate() {
            let floor = if i < 3 { c[0] } else { c[3] };
            let own = c[i] as i64 - floor as i64;
            println!("  {name:<28} {:>12}  ({own:+} over the stub)", c[i]);
        }
    } else {
        println!("instructions: valgrind is not installed (apt-get install valgrind)");
    }
    if baseline.is_some() {
        println!(
            "the baseline ({}): no-gpu {:.2} ms (+{:.2}), on Docker's spec {:.2} ms (+{:.2})",
            std::env::var("DS01_BENCH_BASELINE").unwrap_or_default(),
            t[7],
            t[7] - t[0],
            t[8],
            t[8] - t[3]
        );
    }
}

/// Builds the static ds01-runtime as `packaging/build-deb.sh` does
/// (`packaging/build-runtime.sh`), into the target directory `dir`
/// (relative to the workspace). Returns the target dir.
fn static_runtime(dir: &str) -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = manifest.join(dir);
    eprintln!(
        "building the static ds01-runtime (into {})",
        target.display()
    );
    let ok = Command::new(manifest.join("packaging/build-runtime.sh"))
        .arg(&target)
        .status()
        .unwrap()
        .success();
    assert!(ok, "cannot build the static ds01-runtime");
    target
}

/// The static runtime as shipped but with its symbols (the same link),
/// which `build_static` put beside `shim` (whose helpers it then finds).
fn static_with_symbols(shim: &Path) -> PathBuf {
    shim.with_file_name("ds01-runtime-symbols")
}

/// The instructions `runtime ARGS` executes, its children's included,
/// as callgrind counts them; `None` without valgrind.
fn instructions(d: &Path, runtime: &Path, args: &[String], config: &Path) -> Option<u64> {
    let out = d.join("callgrind");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    let mut child = Command::new("valgrind")
        .args(["--tool=callgrind", "--trace-children=yes", "--quiet"])
        // An exec ends a process without its exit: dump the count first.
        .arg("--dump-before=execv*")
        // The hot list wants the names the linker knows.
        .args(
            std::env::var_os("DS01_BENCH_HOT")
                .is_some()
                .then_some("--demangle=no"),
        )
        .arg(format!("--callgrind-out-file={}/cg.%p", out.display()))
        .arg(runtime)
        .args(args)
        .env("DS01_CONFIG", config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let top = child.id().to_string();
    assert!(
        child.wait().unwrap().success(),
        "{} under callgrind failed",
        runtime.display()
    );
    let mut total = 0;
    for e in std::fs::read_dir(&out).unwrap().flatten() {
        // A forked child's part before its exec repeats its parent's count
        // up to the fork: only what it ran after the exec is its own.
        let name = e.file_name().to_string_lossy().into_owned();
        let mut parts = name.trim_start_matches("cg.").split('.');
        let (pid, part) = (parts.next().unwrap_or(""), parts.next());
        if pid != top && part.is_some() {
            continue;
        }
        let text = std::fs::read_to_string(e.path()).unwrap();
        total += text
            .lines()
            .find_map(|l| l.strip_prefix("summary: "))
            .and_then(|n| n.trim().parse::<u64>().ok())
            .unwrap_or(0);
    }
    Some(total)
}

/// A real account in a group of its own, made for the benchmark and
/// removed after it.
struct Account {
    user: String,
    group: String,
}

impl Account {
    fn make() -> Account {
        let a = Account {
            user: "ds01bench".into(),
            group: "ds01-bench".into(),
        };
        a.remove();
        let ok = |cmd: &mut Command| cmd.status().is_ok_and(|s| s.success());
        assert!(
            ok(Command::new("groupadd").arg(&a.group)),
            "groupadd failed"
        );
        assert!(
            ok(Command::new("useradd").args([
                "--no-create-home",
                "--gid",
                &a.group,
                "--shell",
                "/usr/sbin/nologin",
                &a.user
            ])),
            "useradd failed"
        );
        a
    }

    fn remove(&self) {
        let _ = Command::new("userdel")
            .arg(&self.user)
            .stderr(Stdio::null())
            .status();
        let _ = Command::new("groupdel")
            .arg(&self.group)
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for Account {
    fn drop(&mut self) {
        self.remove();
    }
}

/// A bundle holding the spec a real Docker wrote for a plain container
/// (`tests/fixtures/docker/plain.json`), its Docker paths under the data
/// root the benchmark's configs name (`d/docker-data`), its root the
/// lifecycle's rootfs, with `caps` added.
fn docker_bundle(d: &Path, name: &str, plain: &Path, caps: &[&str]) -> PathBuf {
    docker_bundle_in(d, name, plain, caps, &d.join("docker-data"), &[])
}

/// The same, Docker's data root at `data_root`, with `env` added.
fn docker_bundle_in(
    d: &Path,
    name: &str,
    plain: &Path,
    caps: &[&str],
    data_root: &Path,
    env: &[&str],
) -> PathBuf {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/docker/plain.json");
    let text = std::fs::read_to_string(fixture)
        .unwrap()
        .replace("/tmp/dk/data/", &format!("{}/", data_root.display()));
    let mut spec: serde_json::Value = serde_json::from_str(&text).unwrap();
    let orig: serde_json::Value =
        serde_json::from_slice(&std::fs::read(plain.join("config.json")).unwrap()).unwrap();
    spec["root"] = orig["root"].clone();
    for c in caps {
        for set in ["bounding", "effective", "permitted"] {
            spec["process"]["capabilities"][set]
                .as_array_mut()
                .unwrap()
                .push(serde_json::json!(c));
        }
    }
    let vars = spec["process"]["env"].as_array_mut().unwrap();
    vars.extend(env.iter().map(|v| serde_json::json!(v)));
    let b = d.join(name);
    std::fs::create_dir_all(&b).unwrap();
    let data = serde_json::to_vec(&spec).unwrap();
    std::fs::write(b.join("config.json"), &data).unwrap();
    std::fs::write(b.join("config.orig.json"), &data).unwrap();
    b
}

/// The poststop hook on its own (`ds01-poststop`, which marks the
/// allocation released), the runtime's own hook entry (which frees it
/// under the lock, as before; here an allocation already gone) and a
/// static program that does nothing: what one more process costs.
fn hook_share(d: &Path, shim: &Path, iterations: usize) {
    let state = br#"{"ociVersion":"1.0.2","id":"gone","status":"stopped","bundle":"/nowhere"}"#;
    let time = |cmd: &mut Command| {
        use std::io::Write;
        let start = Instant::now();
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let _ = child.stdin.take().unwrap().write_all(state);
        assert!(child.wait().unwrap().success());
        start.elapsed()
    };
    let released = d.join("state/released");
    let (mut hook, mut own, mut empty) = (vec![], vec![], vec![]);
    for _ in 0..iterations {
        hook.push(time(
            Command::new(shim.with_file_name("ds01-poststop"))
                .arg("poststop")
                .arg("0-0")
                .arg(&released),
        ));
        own.push(time(
            Command::new(shim).args(["hook", "poststop", "gone-0"]),
        ));
        empty.push(time(&mut Command::new(d.join("empty"))));
    }
    let ms = |t: &[Duration]| middle(t).as_secs_f64() * 1e3;
    println!(
        "the poststop hook alone: {:.2} ms (ds01-runtime's own hook entry: {:.2} ms); a static program doing nothing: {:.2} ms (medians)",
        ms(&hook),
        ms(&own),
        ms(&empty)
    );
}

fn middle(times: &[Duration]) -> Duration {
    let mut t = times.to_vec();
    t.sort();
    t[t.len() / 2]
}

/// One create, start and delete; returns the wall time of each.
fn cycle(c: &Case, root: &Path, id: &str, gpu: &Path) -> [Duration; 3] {
    let id = format!("{id}-{}", c.name.replace([' ', '+'], "-"));
    let b = c.bundle.to_str().unwrap();
    // Docker rewrites config.json before each create; so must we, for the
    // shim edits it in place.
    if c.bundle == gpu {
        std::fs::copy(gpu.join("config.orig.json"), gpu.join("config.json")).unwrap();
    }
    let log = format!("{b}/log.json");
    let global = global_args(root, &log);
    let pid = format!("{b}/init.pid");
    let timed = |rest: &[&str]| {
        let start = Instant::now();
        run(&c.runtime, &global, rest);
        start.elapsed()
    };
    [
        timed(&["create", "--bundle", b, "--pid-file", &pid, &id]),
        timed(&["start", &id]),
        timed(&["delete", "--force", &id]),
    ]
}

/// runc's global flags as Docker passes them.
fn global_args<'a>(root: &'a Path, log: &'a str) -> [&'a str; 6] {
    [
        "--root",
        root.to_str().unwrap(),
        "--log",
        log,
        "--log-format",
        "json",
    ]
}

fn run(runtime: &Path, global: &[&str], rest: &[&str]) {
    let status = Command::new(runtime)
        .args(global)
        .args(rest)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "{} {rest:?} failed", runtime.display());
}

fn bundle(runc: &Path, d: &Path, name: &str, rootfs: &Path, env: &[&str]) -> PathBuf {
    let b = d.join(name);
    std::fs::create_dir_all(&b).unwrap();
    assert!(
        Command::new(runc)
            .arg("spec")
            .current_dir(&b)
            .status()
            .unwrap()
            .success()
    );
    let mut spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(b.join("config.json")).unwrap()).unwrap();
    spec["process"]["terminal"] = false.into();
    spec["process"]["args"] = serde_json::json!(["true"]);
    spec["root"] = serde_json::json!({"path": rootfs, "readonly": true});
    let e = spec["process"]["env"].as_array_mut().unwrap();
    e.extend(env.iter().map(|v| serde_json::json!(v)));
    let data = serde_json::to_vec_pretty(&spec).unwrap();
    std::fs::write(b.join("config.json"), &data).unwrap();
    std::fs::write(b.join("config.orig.json"), &data).unwrap();
    b
}

/// Bundles holding what the shim writes for a GPU container, for plain
/// runc: without the poststop hook, and with it.
fn patched_baseline(d: &Path, gpu: &Path, shim: &Path) -> (PathBuf, PathBuf) {
    let root = d.join("probe-root");
    let b = gpu.to_str().unwrap();
    let log = format!("{b}/log.json");
    let global = global_args(&root, &log);
    run(shim, &global, &["create", "--bundle", b, "probe"]);
    let mut spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(gpu.join("config.json")).unwrap()).unwrap();
    run(shim, &global, &["delete", "--force", "probe"]);
    let write = |name: &str, spec: &serde_json::Value| {
        let out = d.join(name);
        std::fs::create_dir_all(&out).unwrap();
        std::fs::write(
            out.join("config.json"),
            serde_json::to_vec_pretty(spec).unwrap(),
        )
        .unwrap();
        out
    };
    let hooked = write("nodes-hook", &spec);
    spec["hooks"].as_object_mut().unwrap().remove("poststop");
    (write("nodes", &spec), hooked)
}

/// `DS01_BENCH_HOT=FILE`: the functions the static runtime ran in these
/// creates, by `nm -C`'s names, first the no-GPU create on Docker's spec,
/// then the GPU create of a known owner, then the rest: the order
/// `packaging/build-runtime.sh` lays them out in
/// (`packaging/hot-functions.txt`).
fn write_hot_list(to: &Path, runtime: &Path, cases: &[Vec<String>]) {
    let names = |demangle: bool| -> Vec<String> {
        let mut nm = Command::new("nm");
        nm.args(["-p", "--defined-only"]);
        if demangle {
            nm.arg("-C");
        }
        let out = nm.arg(runtime).output().unwrap();
        assert!(out.status.success(), "nm {} failed", runtime.display());
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.splitn(3, ' ').nth(2).unwrap_or("").to_string())
            .collect()
    };
    let demangled: std::collections::HashMap<String, String> =
        names(false).into_iter().zip(names(true)).collect();
    let mut seen = std::collections::HashSet::new();
    let mut text = String::from(
        "# The functions ds01-runtime runs in a create, in the order\n\
         # packaging/build-runtime.sh lays them out: written by\n\
         # `DS01_BENCH_HOT=packaging/hot-functions.txt cargo bench --bench runtime`.\n",
    );
    // Each case's own functions, then the string functions' variants it
    // uses (the host's CPU picks one of each), then the next case's.
    for case in cases {
        let plain: Vec<&String> = case.iter().filter_map(|n| demangled.get(n)).collect();
        let exact = plain.iter().filter(|n| ifunc_family(n).is_none());
        let families = plain.iter().filter_map(|n| ifunc_family(n));
        for line in exact.map(|n| n.to_string()).chain(families) {
            if seen.insert(line.clone()) {
                text.push_str(&line);
                text.push('\n');
            }
        }
    }
    std::fs::write(to, text).unwrap();
    println!("hot functions written to {}", to.display());
}

/// glibc picks one of a string function's variants by the CPU it runs on
/// (callgrind's is not the host's): `__memchr_avx2` stands for all of
/// `__memchr_*`.
fn ifunc_family(name: &str) -> Option<String> {
    const FAMILIES: [&str; 6] = ["__mem", "__str", "__stp", "__rawmem", "__wmem", "__wcs"];
    const VARIANTS: [&str; 7] = [
        "_sse",
        "_ssse3",
        "_avx",
        "_evex",
        "_erms",
        "_unaligned",
        "_aligned",
    ];
    if !FAMILIES.iter().any(|f| name.starts_with(f)) {
        return None;
    }
    let cut = VARIANTS.iter().filter_map(|v| name.find(v)).min()?;
    Some(format!("{}_*", &name[..cut]))
}

/// The functions of `binary` that the profiles in `dir` ran, by their
/// mangled names (callgrind run with `--demangle=no`), in the order
/// callgrind first met them.
fn functions_run(dir: &Path, binary: &Path) -> Vec<String> {
    let binary = binary.to_string_lossy();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        // Names are given once with their id, `(12) name`, then by the
        // id alone; `cob=` names the object of the next `cfn=` only.
        let mut objects = std::collections::HashMap::new();
        let (mut ob, mut cob) = (String::new(), None::<String>);
        for line in std::fs::read_to_string(&f).unwrap().lines() {
            let Some((key, rest)) = line.split_once('=') else {
                continue;
            };
            match key {
                "ob" | "cob" => {
                    let name = match rest.split_once(") ") {
                        Some((id, name)) => {
                            objects.insert(id.to_string(), name.to_string());
                            name.to_string()
                        }
                        None => objects
                            .get(rest.trim_end_matches(')'))
                            .cloned()
                            .unwrap_or_default(),
                    };
                    if key == "ob" {
                        ob = name;
                    } else {
                        cob = Some(name);
                    }
                }
                "fn" | "cfn" => {
                    let object = if key == "cfn" {
                        cob.take().unwrap_or_else(|| ob.clone())
                    } else {
                        ob.clone()
                    };
                    if let Some((_, name)) = rest.split_once(") ")
                        && object == binary
                        && !name.starts_with(['(', '0'])
                    {
                        out.push(name.trim_end_matches("'2").to_string());
                    }
                }
                _ => {}
            }
        }
    }
    out
}
