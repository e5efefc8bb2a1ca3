//! ds01-runtime under containerd's own client (`ctr run --runc-binary`),
//! through a private containerd, as root. Skipped without root or
//! containerd unless `DS01_E2E=1`.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

struct Containerd {
    env: Env,
    child: Child,
    rootfs: PathBuf,
}

impl Drop for Containerd {
    fn drop(&mut self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.child.try_wait().unwrap().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
    }
}

fn start() -> Option<Containerd> {
    let runc = ["/usr/sbin/runc", "/usr/bin/runc"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    let missing = if !std::path::Path::new("/usr/bin/containerd").exists()
        || !std::path::Path::new("/usr/bin/ctr").exists()
    {
        Some("containerd (docker.io) is not installed")
    } else if runc.is_none() || busybox().is_none() {
        Some("runc or busybox-static is not installed")
    } else if unsafe { libc::geteuid() } != 0 {
        Some("not running as root")
    } else {
        None
    };
    if let Some(why) = missing {
        if std::env::var("DS01_E2E").as_deref() == Ok("1") {
            panic!("DS01_E2E=1 but {why}");
        }
        skip("containerd", why);
        return None;
    }
    host_nodes();
    let env = Env::new(&runc.unwrap(), "");
    let rootfs = env.path("rootfs");
    make_busybox_rootfs(&busybox().unwrap(), &rootfs);
    let config = env.path("containerd.toml");
    std::fs::write(
        &config,
        format!(
            "version = 2\nroot = {:?}\nstate = {:?}\n[grpc]\n  address = {:?}\n",
            env.path("croot"),
            env.path("cstate"),
            env.path("containerd.sock")
        ),
    )
    .unwrap();
    let log = std::fs::File::create(env.path("containerd.log")).unwrap();
    // The runc shim, and so ds01-runtime, inherit containerd's environment.
    let child = Command::new("/usr/bin/containerd")
        .arg("--config")
        .arg(&config)
        .env("DS01_CONFIG", &env.config)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let c = Containerd { env, child, rootfs };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !c.ctr(&["version"]).status.success() {
        assert!(Instant::now() < deadline, "containerd did not come up");
        std::thread::sleep(Duration::from_millis(100));
    }
    Some(c)
}

impl Containerd {
    fn ctr(&self, args: &[&str]) -> Output {
        Command::new("/usr/bin/ctr")
            .arg("--address")
            .arg(self.env.path("containerd.sock"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// `ctr run --rm` of the busybox rootfs through ds01-runtime.
    fn run(&self, id: &str, env: &[&str], script: &str) -> Output {
        let mut args = vec!["run", "--rm", "--runc-binary", shim(), "--env", "PATH=/bin"];
        for e in env {
            args.extend(["--env", e]);
        }
        let rootfs = self.rootfs.to_str().unwrap();
        args.extend(["--rootfs", rootfs, id, "/bin/sh", "-c", script]);
        self.ctr(&args)
    }
}

#[test]
fn ctr_runs_gpu_and_plain_containers_through_ds01() {
    let Some(c) = start() else { return };
    let out = c.run(
        "gpu",
        &["NVIDIA_VISIBLE_DEVICES=all"],
        "echo VISIBLE=$NVIDIA_VISIBLE_DEVICES; for f in /dev/nvidia* /dev/nvidia-caps/*; do [ -c $f ] && echo $f; done",
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("VISIBLE=MIG-"), "{text}");
    assert_eq!(device_lines(&text), FIRST_SLICE_NODES, "{text}");
    assert!(c.env.held().is_empty(), "released when the run ended");

    let out = c.run("plain", &[], "echo plain");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "plain\n");
    c.env.assert_log_contains(&["allocated"]);
}
