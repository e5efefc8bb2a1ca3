//! `devcontainer init`, `devcontainer check [--fix]` and `project init`,
//! as users run them (no terminal here, so the scripted forms).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::*;

struct T {
    env: Env,
    project: PathBuf,
}

fn setup() -> T {
    let env = Env::new(
        Path::new("/usr/sbin/runc"),
        &format!(
            "image_catalog = {:?}\n",
            repo().join("packaging/images.toml")
        ),
    );
    let project = env.path("my-thesis");
    std::fs::create_dir_all(&project).unwrap();
    T { env, project }
}

impl T {
    /// Runs `name args` (name: ds01, devcontainer or project) in the project.
    fn run(&self, name: &str, args: &[&str]) -> Output {
        let bin = self.env.path("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let exe = bin.join(name);
        if !exe.exists() {
            std::os::unix::fs::symlink(CLI, &exe).unwrap();
        }
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        Command::new(exe)
            .args(args)
            .env("PATH", path)
            .current_dir(&self.project)
            .env("DS01_CONFIG", &self.env.config)
            .env("HOME", self.env.dir.path())
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn file(&self) -> PathBuf {
        self.project.join(".devcontainer/devcontainer.json")
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn init_writes_gpus_only_where_docker_can_honour_it() {
    // Where NVIDIA's toolkit is installed on this machine, there is no
    // "without" to try.
    if ds01_core::driver::find_hook().is_some() {
        return;
    }
    let t = setup();
    let out = t.run("devcontainer", &["init", "--quick"]);
    assert!(out.status.success(), "{}", text(&out));
    let v = ds01::devcontainer::doc::parse(&std::fs::read_to_string(t.file()).unwrap())
        .unwrap()
        .value;
    assert!(!v["runArgs"].to_string().contains("--gpus"), "{v}");
    assert_eq!(v["containerEnv"]["NVIDIA_VISIBLE_DEVICES"], "all");
    let out = t.run("devcontainer", &["check"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[test]
fn init_quick_writes_a_file_that_checks_clean() {
    let t = setup();
    // NVIDIA's toolkit is installed here: Docker can honour --gpus.
    fake_nvidia_hook(&t.env.path("bin"), &t.env.path("hook.log"));
    let out = t.run(
        "devcontainer",
        &[
            "init",
            "--quick",
            "--extensions",
            "ms-python.python,charliermarsh.ruff",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let written = std::fs::read_to_string(t.file()).unwrap();
    assert!(written.contains("// "), "commented JSONC");
    let v = ds01::devcontainer::doc::parse(&written).unwrap().value;
    assert_eq!(v["name"], "my-thesis");
    assert_eq!(
        v["image"], "pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime",
        "newest pytorch for sm_80"
    );
    assert_eq!(v["runArgs"][0], "--gpus");
    assert!(
        v["runArgs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a.as_str().unwrap().starts_with("ds01.user="))
    );
    assert_eq!(v["shutdownAction"], "stopContainer");
    assert_eq!(
        v["customizations"]["vscode"]["extensions"][1],
        "charliermarsh.ruff"
    );
    let mount = v["mounts"][0].as_str().unwrap();
    assert!(
        mount.starts_with("source=/") && !mount.contains("localEnv"),
        "{mount}"
    );

    let out = t.run("devcontainer", &["check"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("no problems found"));

    // An existing file is not replaced without --force; with it, a backup is kept.
    let out = t.run("devcontainer", &["init", "--quick", "--no-gpu"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("exists; use --force"), "{}", text(&out));
    let out = t.run("devcontainer", &["init", "--quick", "--no-gpu", "--force"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        std::fs::read_to_string(t.project.join(".devcontainer/devcontainer.json.bak")).unwrap(),
        written
    );
    let v = ds01::devcontainer::doc::parse(&std::fs::read_to_string(t.file()).unwrap())
        .unwrap()
        .value;
    assert_eq!(v["hostRequirements"]["gpu"], false);
}

#[test]
fn init_without_a_terminal_needs_quick_and_concepts_writes_nothing() {
    let t = setup();
    let out = t.run("ds01", &["devcontainer", "init"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("no terminal to ask on; use --quick"),
        "{}",
        text(&out)
    );
    let out = t.run("devcontainer", &["init", "--concepts"]);
    assert!(out.status.success());
    assert!(text(&out).contains("MIG slice"));
    assert!(!t.file().exists());
    let out = t.run(
        "devcontainer",
        &[
            "init",
            "--quick",
            "--output",
            "custom.json",
            "--framework",
            "jax",
            "--full-gpu",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let v = ds01::devcontainer::doc::parse(
        &std::fs::read_to_string(t.project.join("custom.json")).unwrap(),
    )
    .unwrap()
    .value;
    assert_eq!(
        (
            v["image"].as_str(),
            v["containerEnv"]["DS01_GPU_PROFILE"].as_str()
        ),
        (Some("nvcr.io/nvidia/jax:24.10-py3"), Some("full"))
    );
}

const MESSY: &str = r#"// our file
{
  "name": "p",
  "image": "someone/else:latest", // we like it
  "runArgs": ["--gpus", "device=1"],
  "mounts": ["source=${localEnv:HOME},target=/home/me,type=bind"],
  /* VS Code closes often */
  "shutdownAction": "none",
}
"#;

#[test]
fn check_reports_then_fix_repairs_in_place() {
    let t = setup();
    // A server whose Docker can honour --gpus.
    fake_nvidia_hook(&t.env.path("bin"), &t.env.path("hook.log"));
    std::fs::create_dir_all(t.project.join(".devcontainer")).unwrap();
    std::fs::write(t.file(), MESSY).unwrap();
    let out = t.run("devcontainer", &["check", "--json"]);
    assert_eq!(out.status.code(), Some(1), "errors found");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let found: Vec<(&str, &str, u64)> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["id"].as_str().unwrap(),
                f["severity"].as_str().unwrap(),
                f["line"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        found,
        [
            ("shutdown-none", "error", 8),
            ("image-not-in-catalog", "warning", 4),
            ("gpus-device", "warning", 5),
            ("localenv-home", "warning", 6),
        ]
    );
    let out = t.run("devcontainer", &["check"]);
    let report = text(&out);
    assert!(
        report.contains(".devcontainer/devcontainer.json:8: error[shutdown-none]"),
        "{report}"
    );

    let out = t.run("devcontainer", &["check", "--fix"]);
    let report = text(&out);
    assert_eq!(out.status.code(), Some(0), "only warnings remain: {report}");
    assert!(
        report.contains("fixed: set \"shutdownAction\": \"stopContainer\""),
        "{report}"
    );
    let fixed = std::fs::read_to_string(t.file()).unwrap();
    for kept in ["// our file", "// we like it", "/* VS Code closes often */"] {
        assert!(fixed.contains(kept), "{kept}: {fixed}");
    }
    assert!(!fixed.contains("localEnv"), "{fixed}");
    assert_eq!(
        std::fs::read_to_string(t.project.join(".devcontainer/devcontainer.json.bak")).unwrap(),
        MESSY
    );
}

#[test]
fn check_errors_say_where() {
    let t = setup();
    std::fs::write(
        t.project.join(".devcontainer.json"),
        "{\n  \"image\": \"x\",\n  'name': 1\n}\n",
    )
    .unwrap();
    let out = t.run("devcontainer", &["check", "."]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains(".devcontainer.json:3:3: error[syntax]"),
        "{}",
        text(&out)
    );
    let out = t.run("devcontainer", &["check", "/nonexistent/dir"]);
    assert_eq!(out.status.code(), Some(2), "could not run");
    assert!(text(&out).contains("does not exist"));
}

#[test]
fn project_init_makes_a_project_and_its_dev_container() {
    let t = setup();
    let out = t.run("project", &["init", "vision"]);
    assert_eq!(out.status.code(), Some(2), "no terminal, no --workflow");
    assert!(text(&out).contains("--workflow=cli"), "{}", text(&out));
    let dir = t.env.path("workspace/vision");
    assert!(
        !dir.exists(),
        "nothing made when the question cannot be asked"
    );

    let out = t.run(
        "project",
        &["init", "vision", "--type=ml", "--workflow=devcontainer"],
    );
    assert!(out.status.success(), "{}", text(&out));
    for p in [
        ".git",
        "README.md",
        ".gitignore",
        "data",
        "notebooks",
        "src",
        "requirements.txt",
        ".devcontainer/devcontainer.json",
    ] {
        assert!(dir.join(p).exists(), "{p} missing");
    }
    assert!(
        std::fs::read_to_string(dir.join(".gitignore"))
            .unwrap()
            .contains("data/*")
    );
    let v = ds01::devcontainer::doc::parse(
        &std::fs::read_to_string(dir.join(".devcontainer/devcontainer.json")).unwrap(),
    )
    .unwrap()
    .value;
    assert_eq!(v["name"], "vision");

    let out = t.run(
        "ds01",
        &["project", "init", "notes", "--type=basic", "--workflow=cli"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let notes = t.env.path("workspace/notes");
    assert!(
        text(&out).contains(&format!("  container deploy notes {}", notes.display())),
        "{}",
        text(&out)
    );
    assert!(!text(&out).contains("docker run"), "{}", text(&out));
    let basic = t.env.path("workspace/notes");
    assert!(basic.join(".git").exists() && !basic.join("data").exists());

    let out = t.run("project", &["init", "vision", "--workflow=skip"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("already exists"));
}

/// The official Dev Containers CLI, as a script that says how it was called.
fn fake_official(t: &T) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let cli = t.env.path("official/bin/devcontainer");
    std::fs::create_dir_all(cli.parent().unwrap()).unwrap();
    std::fs::write(
        &cli,
        "#!/bin/sh\nif [ \"$1\" = --help ]; then echo 'Commands: up build exec'; \
         elif [ \"$2\" = --help ]; then case \"$1\" in up|build|exec) echo \"devcontainer $1 --workspace-folder\";; *) exit 1;; esac; \
         else echo \"official: $*\"; fi\n",
    )
    .unwrap();
    std::fs::set_permissions(&cli, std::fs::Permissions::from_mode(0o755)).unwrap();
    cli
}

#[test]
fn the_official_cli_gets_every_command_and_flag_ds01_does_not_own() {
    let t = setup();
    let base = std::fs::read_to_string(&t.env.config).unwrap();
    // Not installed (whatever this machine has): the hint is one that works
    // beside ds01's own name.
    std::fs::write(
        &t.env.config,
        format!("devcontainer_cli = \"/nonexistent/devcontainer\"\n{base}"),
    )
    .unwrap();
    let out = t.run("devcontainer", &["up", "--workspace-folder", "."]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(
            "npm install -g --prefix /usr/local/lib/devcontainers-cli @devcontainers/cli"
        ),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cli = fake_official(&t);
    std::fs::write(&t.env.config, format!("devcontainer_cli = {cli:?}\n{base}")).unwrap();
    for (args, want) in [
        (
            &["up", "--workspace-folder", "."][..],
            "official: up --workspace-folder .",
        ),
        (&["--version"][..], "official: --version"),
        (&["exec", "--", "ls"][..], "official: exec -- ls"),
    ] {
        let out = t.run("devcontainer", args);
        assert_eq!(
            text(&out).trim(),
            want,
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // --help lists ds01's commands and the official ones.
    let help = text(&t.run("devcontainer", &["--help"]));
    assert!(help.contains("init") && help.contains("check"), "{help}");
    assert!(help.contains("Commands: up build exec"), "{help}");
    // ds01's own commands stay ds01's.
    let out = t.run("devcontainer", &["check", "--help"]);
    assert!(text(&out).contains("--fix"), "{}", text(&out));
}

#[test]
fn init_says_where_its_image_came_from_and_a_cuda_image_without_gpu_asks_for_none() {
    let t = setup();
    let out = t.run(
        "devcontainer",
        &["init", "--quick", "--image", "my/own:1", "--no-gpu"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let written = std::fs::read_to_string(t.file()).unwrap();
    assert!(
        written.contains("Not in the server's image catalog"),
        "{written}"
    );
    assert!(
        !written.contains("From the server's image catalog"),
        "{written}"
    );
    let v = ds01::devcontainer::doc::parse(&written).unwrap().value;
    assert_eq!(v["containerEnv"]["NVIDIA_VISIBLE_DEVICES"], "none");
    // The file it wrote asks for no GPU, and check agrees.
    let out = t.run("devcontainer", &["check", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<&str> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert!(!ids.contains(&"no-gpu-request"), "{ids:?}");
}

#[test]
fn a_missing_catalog_means_the_built_in_one_and_a_broken_one_is_named() {
    let t = setup();
    let cfg = std::fs::read_to_string(&t.env.config).unwrap();
    let missing = t.env.path("nowhere/images.toml");
    let with = |catalog: &Path| {
        let text = cfg
            .lines()
            .filter(|l| !l.starts_with("image_catalog"))
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(
            &t.env.config,
            format!("image_catalog = {catalog:?}\n{text}\n"),
        )
        .unwrap();
    };
    with(&missing);
    let out = t.run("devcontainer", &["init", "--quick"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("used the one built into ds01"),
        "{}",
        text(&out)
    );
    let broken = t.env.path("broken.toml");
    std::fs::write(&broken, "[[image]]\nframework = \"pytorch\"\n").unwrap();
    with(&broken);
    let out = t.run("devcontainer", &["init", "--quick", "--force"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("broken.toml"), "{err}");
}

/// Every `ds01`, `container`, `devcontainer` and `project` command line in
/// the user guide exists: run with `--help`, it succeeds and names the
/// flags the guide uses.
#[test]
fn every_command_in_the_user_guide_exists() {
    let t = setup();
    let cli = fake_official(&t);
    let cfg = std::fs::read_to_string(&t.env.config).unwrap();
    std::fs::write(&t.env.config, format!("devcontainer_cli = {cli:?}\n{cfg}")).unwrap();
    let guide = std::fs::read_to_string(repo().join("docs/devcontainers.md")).unwrap();
    let mut in_block = false;
    let mut lines = Vec::new();
    for line in guide.lines() {
        if line.starts_with("```") {
            in_block = line.len() > 3 && !in_block;
            continue;
        }
        if in_block {
            let cmd = line.strip_prefix("$ ").unwrap_or(line);
            let cmd = cmd.split(" #").next().unwrap().trim();
            lines.push(cmd.to_string());
        }
    }
    let mut checked = 0;
    for line in &lines {
        let words: Vec<&str> = line.split_whitespace().collect();
        let Some(&bin) = words.first() else { continue };
        if !["ds01", "container", "devcontainer", "project"].contains(&bin) {
            continue;
        }
        let subs: Vec<&str> = words[1..]
            .iter()
            .take_while(|w| {
                w.chars().all(|c| c.is_ascii_lowercase() || c == '-') && !w.starts_with('-')
            })
            .copied()
            .collect();
        let mut args = subs.clone();
        args.push("--help");
        let out = t.run(bin, &args);
        let help = text(&out);
        assert!(
            out.status.success(),
            "{line}: {help}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for flag in words.iter().filter(|w| w.starts_with("--")) {
            let flag = flag.split('=').next().unwrap();
            assert!(
                help.contains(flag),
                "{line}: {flag} is not in its --help:\n{help}"
            );
        }
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} commands found in the guide");
}

#[test]
fn check_json_reports_a_failure_to_run_as_json() {
    let t = setup();
    let out = t.run("devcontainer", &["check", "--json", "nowhere"]);
    assert_eq!(out.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        v["error"].as_str().unwrap().contains("does not exist"),
        "{v}"
    );
}
