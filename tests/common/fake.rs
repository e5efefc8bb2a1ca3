//! The shim against a stand-in runc (`tests/fake_runc.sh`) that records
//! its argv and the config.json it was given. Needs no root.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Output;

use super::*;

pub struct Fake {
    pub env: Env,
}

impl Fake {
    pub fn new(extra: &str) -> Fake {
        Fake {
            env: Env::new(&repo().join("tests/fake_runc.sh"), extra),
        }
    }

    pub fn log(&self) -> PathBuf {
        self.env.path("runc-argv.log")
    }

    /// A bundle holding a config.json that a real Docker wrote, its paths
    /// moved from that Docker's data root to this test's (as the config
    /// names it), as a host's Docker would have them.
    pub fn bundle(&self, name: &str, fixture: &str) -> PathBuf {
        let b = self.env.path(name);
        std::fs::create_dir_all(&b).unwrap();
        let spec =
            std::fs::read_to_string(repo().join("tests/fixtures/docker").join(fixture)).unwrap();
        let data = self.env.path("data");
        std::fs::write(
            b.join("config.json"),
            spec.replace("/tmp/dk/data/", &format!("{}/", data.display())),
        )
        .unwrap();
        b
    }

    pub fn run(&self, args: &[OsString], vars: &[(&str, &str)]) -> Output {
        let mut c = self.env.shim();
        c.env("FAKE_RUNC_LOG", self.log()).args(args);
        for (k, v) in vars {
            c.env(k, v);
        }
        c.output().unwrap()
    }

    pub fn create(&self, bundle: &Path, id: &str, vars: &[(&str, &str)]) -> Output {
        self.run(&docker_create(bundle, id), vars)
    }

    /// A GPU bundle whose container names its owner with DS01_USER.
    pub fn bundle_of(&self, name: &str, user: &str) -> PathBuf {
        let b = self.bundle(name, "gpu.json");
        let spec = std::fs::read_to_string(b.join("config.json")).unwrap();
        let spec = spec.replace(
            "\"DS01_GPU_PROFILE=1g.10gb\"",
            &format!("\"DS01_USER={user}\""),
        );
        std::fs::write(b.join("config.json"), spec).unwrap();
        b
    }

    /// The argv runc saw last.
    pub fn last_argv(&self) -> Vec<String> {
        let text = std::fs::read_to_string(self.log()).unwrap();
        let last = text.rsplit("---\n").next().unwrap();
        last.lines().map(String::from).collect()
    }

    pub fn calls(&self) -> usize {
        std::fs::read_to_string(self.log()).map_or(0, |t| t.matches("---\n").count())
    }

    /// The config.json runc saw last.
    pub fn last_spec(&self) -> serde_json::Value {
        let bytes = std::fs::read(format!("{}.config", self.log().display())).unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }
}

pub fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

/// The argv dockerd's containerd-shim sends for `create`.
pub fn docker_create(bundle: &Path, id: &str) -> Vec<OsString> {
    let b = bundle.to_str().unwrap();
    os(&[
        "--root",
        &format!("{b}/../runc-root"),
        "--log",
        &format!("{b}/log.json"),
        "--log-format",
        "json",
        "create",
        "--bundle",
        b,
        "--pid-file",
        &format!("{b}/init.pid"),
        id,
    ])
}

pub fn docker_delete(bundle: &Path, id: &str) -> Vec<OsString> {
    let b = bundle.to_str().unwrap();
    os(&[
        "--root",
        &format!("{b}/../runc-root"),
        "--log",
        &format!("{b}/log.json"),
        "--log-format",
        "json",
        "delete",
        id,
    ])
}

pub fn quiet(out: &Output) {
    assert!(
        out.stdout.is_empty(),
        "stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        out.stderr.is_empty(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn me() -> String {
    std::process::id().to_string()
}
