//! `devcontainer check`: findings about a devcontainer.json, each with a
//! stable id, a severity, the line, and how to fix it.

use std::path::Path;

use serde::Serialize;
use serde_json::Value;

use super::catalog::Catalog;
use super::doc::{self, SyntaxError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
    Info,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub id: &'static str,
    pub severity: Severity,
    pub line: usize,
    pub message: String,
    pub fix: String,
    /// Whether `--fix` repairs it.
    pub fixable: bool,
}

/// What the checks compare against.
pub struct Context<'a> {
    pub catalog: Option<&'a Catalog>,
    /// The server user's home, for the home mount.
    pub home: &'a Path,
    /// Whether this server's Docker can honour `--gpus` (NVIDIA's container
    /// toolkit is installed); without it Docker refuses such a container.
    pub docker_gpus: bool,
}

pub const LOCAL_HOME: &str = "${localEnv:HOME}";
const SHUTDOWN_ACTIONS: [&str; 3] = ["none", "stopContainer", "stopCompose"];

/// Parses and checks; a syntax error is returned as such (file:line:column).
pub fn check(text: &str, ctx: &Context) -> Result<Vec<Finding>, SyntaxError> {
    let doc = doc::parse(text)?;
    let mut out = Vec::new();
    let mut add = |id, severity, ptr: &str, message: String, fix: &str, fixable| {
        out.push(Finding {
            id,
            severity,
            line: doc.line(ptr),
            message,
            fix: fix.to_string(),
            fixable,
        })
    };
    let v = &doc.value;
    if !v.is_object() {
        add(
            "type",
            Severity::Error,
            "",
            "the file must hold one JSON object".into(),
            "wrap the settings in { }",
            false,
        );
        return Ok(out);
    }
    for (ptr, problem) in type_problems(v) {
        add(
            "type",
            Severity::Error,
            &ptr,
            problem,
            "see https://containers.dev/implementors/json_reference/",
            false,
        );
    }

    let image = v.get("image").and_then(Value::as_str);
    let builds = v.pointer("/build/dockerfile").is_some() || v.get("dockerComposeFile").is_some();
    if image.is_none() && !builds {
        add(
            "no-image",
            Severity::Error,
            "",
            "no \"image\", \"build.dockerfile\" or \"dockerComposeFile\": nothing says what to run"
                .into(),
            "add \"image\" (devcontainer init picks one from the server's catalog)",
            false,
        );
    }
    match (image, ctx.catalog) {
        (Some(img), Some(cat)) if !cat.contains(img) => add(
            "image-not-in-catalog",
            Severity::Warning,
            "/image",
            format!(
                "image {img:?} is not in the server's image catalog ({})",
                cat.path.display()
            ),
            "use an image from the catalog, or ask an admin to add this one",
            false,
        ),
        _ => {}
    }
    if image.is_none() && builds {
        add(
            "builds-own-image",
            Severity::Info,
            if v.get("build").is_some() {
                "/build"
            } else {
                "/dockerComposeFile"
            },
            "the project builds its own image, so the catalog cannot vouch for it".into(),
            "base the Dockerfile on an image from the catalog",
            false,
        );
    }

    let run_args: Vec<&str> = v
        .get("runArgs")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let arg_ptr = |i: usize| format!("/runArgs/{i}");
    for (i, a) in run_args.iter().enumerate() {
        let next = run_args.get(i + 1).copied().unwrap_or("");
        let device = a
            .strip_prefix("--device=")
            .or((*a == "--device").then_some(next));
        let bypass = if *a == "--privileged" {
            Some("--privileged sees every GPU on the host")
        } else if *a == "--runtime" || a.starts_with("--runtime=") {
            Some("--runtime skips ds01's runtime")
        } else if device.is_some_and(|d| d.starts_with("/dev/nvidia")) {
            Some("a raw /dev/nvidia* device is not one ds01 allocated")
        } else {
            None
        };
        if let Some(why) = bypass {
            add(
                "bypasses-allocation",
                Severity::Error,
                &arg_ptr(i),
                format!("runArgs {a:?} bypasses GPU allocation: {why}"),
                "remove it and ask for a GPU with \"--gpus\", \"all\"",
                false,
            );
        }
        let gpus = a
            .strip_prefix("--gpus=")
            .or((*a == "--gpus").then_some(next));
        if gpus.is_some_and(|g| g.trim_matches('"').starts_with("device=")) {
            add(
                "gpus-device",
                Severity::Warning,
                &arg_ptr(i),
                format!("runArgs {a:?} {next:?} picks a device, but ds01 chooses devices itself"),
                "use \"--gpus\", \"all\" (or a count); set DS01_GPU_PROFILE for a profile",
                false,
            );
        }
    }

    let host_gpu = v.pointer("/hostRequirements/gpu");
    let visible = v
        .pointer("/containerEnv/NVIDIA_VISIBLE_DEVICES")
        .and_then(Value::as_str);
    let says_none = visible.is_some_and(|v| {
        let v = v.trim();
        v.is_empty() || v.eq_ignore_ascii_case("none") || v.eq_ignore_ascii_case("void")
    });
    let wants_none = host_gpu == Some(&Value::Bool(false)) || says_none;
    // The environment asks ds01 as well as --gpus does (and works where
    // Docker has no NVIDIA toolkit to honour --gpus).
    let requested = run_args
        .iter()
        .any(|a| *a == "--gpus" || a.starts_with("--gpus="))
        || host_gpu.is_some_and(|g| g != &Value::Bool(false))
        || (visible.is_some() && !says_none);
    let uses_gpus_flag = run_args
        .iter()
        .any(|a| *a == "--gpus" || a.starts_with("--gpus="));
    if uses_gpus_flag && !ctx.docker_gpus {
        add(
            "gpus-unsupported",
            Severity::Warning,
            "/runArgs",
            "runArgs asks with --gpus, which this server's Docker refuses (\"could not select device driver\"): \
             NVIDIA's container toolkit is not installed"
                .into(),
            "drop \"--gpus\", \"all\" and set containerEnv NVIDIA_VISIBLE_DEVICES to \"all\", or ask the admin to install nvidia-container-toolkit",
            false,
        );
    }
    if !requested && !wants_none {
        add(
            "no-gpu-request",
            Severity::Warning,
            if v.get("runArgs").is_some() {
                "/runArgs"
            } else {
                ""
            },
            "no GPU is requested, so the container will get none".into(),
            "add \"--gpus\", \"all\" to runArgs, or set hostRequirements.gpu to false if the project needs no GPU",
            true,
        );
    }

    match v.get("shutdownAction").and_then(Value::as_str) {
        Some("none") => add(
            "shutdown-none",
            Severity::Error,
            "/shutdownAction",
            "shutdownAction \"none\" keeps the container, and its GPU, after VS Code closes".into(),
            "set \"shutdownAction\": \"stopContainer\"",
            true,
        ),
        None if v.get("shutdownAction").is_none() => add(
            "shutdown-default",
            Severity::Info,
            "",
            "no shutdownAction: VS Code's default stops the container, but the file does not say so".into(),
            "set \"shutdownAction\": \"stopContainer\"",
            true,
        ),
        _ => {}
    }

    let mounts = mount_sources(v);
    for (i, source) in &mounts {
        if source.contains(LOCAL_HOME) {
            add(
                "localenv-home",
                Severity::Warning,
                &format!("/mounts/{i}"),
                format!(
                    "mount source {source:?} uses {LOCAL_HOME}, which names the laptop's home when VS Code uses a remote Docker"
                ),
                &format!("use the server path {}", ctx.home.display()),
                true,
            );
        }
    }
    let home_mounted = mounts.iter().any(|(_, s)| {
        s.starts_with("/home/") || s.contains(LOCAL_HOME) || Path::new(s).starts_with(ctx.home)
    });
    if !home_mounted {
        add(
            "no-home-mount",
            Severity::Warning,
            if v.get("mounts").is_some() { "/mounts" } else { "" },
            "no home directory is mounted: work saved outside the project folder is lost with the container".into(),
            &format!("add the mount \"{}\"", super::template::home_mount(ctx.home)),
            true,
        );
    }
    out.sort_by_key(|f| (f.severity, f.line));
    Ok(out)
}

/// (index, source) of each mount, in string or object form.
fn mount_sources(v: &Value) -> Vec<(usize, String)> {
    let Some(mounts) = v.get("mounts").and_then(Value::as_array) else {
        return Vec::new();
    };
    mounts
        .iter()
        .enumerate()
        .filter_map(|(i, m)| {
            let source = match m {
                Value::String(s) => s.split(',').find_map(|kv| {
                    let (k, val) = kv.split_once('=')?;
                    matches!(k.trim(), "source" | "src").then(|| val.trim().to_string())
                }),
                Value::Object(o) => o.get("source").and_then(Value::as_str).map(String::from),
                _ => None,
            }?;
            Some((i, source))
        })
        .collect()
}

/// The spec's types and enums for the properties ds01 relies on.
fn type_problems(v: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut expect = |ptr: &str, ok: bool, what: &str| {
        if !ok {
            out.push((
                ptr.to_string(),
                format!("{:?} must be {what}", ptr.trim_start_matches('/')),
            ));
        }
    };
    let strings = |x: &Value| x.as_array().is_some_and(|a| a.iter().all(Value::is_string));
    for key in ["name", "image", "remoteUser", "service"] {
        if let Some(x) = v.get(key) {
            expect(&format!("/{key}"), x.is_string(), "a string");
        }
    }
    if let Some(b) = v.get("build") {
        expect("/build", b.is_object(), "an object");
        if let Some(d) = b.get("dockerfile") {
            expect("/build/dockerfile", d.is_string(), "a string");
        }
    }
    if let Some(c) = v.get("dockerComposeFile") {
        expect(
            "/dockerComposeFile",
            c.is_string() || strings(c),
            "a string or an array of strings",
        );
    }
    if let Some(r) = v.get("runArgs") {
        expect("/runArgs", strings(r), "an array of strings");
    }
    if let Some(m) = v.get("mounts") {
        match m.as_array() {
            None => expect("/mounts", false, "an array"),
            Some(items) => {
                for (i, item) in items.iter().enumerate() {
                    let ok = match item {
                        Value::String(_) => true,
                        Value::Object(o) => {
                            o.get("target").is_some_and(Value::is_string)
                                && o.get("source").is_none_or(Value::is_string)
                                && o.get("type")
                                    .and_then(Value::as_str)
                                    .is_some_and(|t| ["bind", "volume", "tmpfs"].contains(&t))
                        }
                        _ => false,
                    };
                    expect(
                        &format!("/mounts/{i}"),
                        ok,
                        "a mount string, or an object with \"target\" and \"type\" (bind, volume or tmpfs)",
                    );
                }
            }
        }
    }
    if let Some(s) = v.get("shutdownAction") {
        let ok = s.as_str().is_some_and(|s| SHUTDOWN_ACTIONS.contains(&s));
        expect(
            "/shutdownAction",
            ok,
            "one of \"none\", \"stopContainer\", \"stopCompose\"",
        );
    }
    if let Some(h) = v.get("hostRequirements") {
        expect("/hostRequirements", h.is_object(), "an object");
        if let Some(g) = h.get("gpu") {
            let ok = g.is_boolean() || g.as_str() == Some("optional") || g.is_object();
            expect(
                "/hostRequirements/gpu",
                ok,
                "true, false, \"optional\" or an object",
            );
        }
    }
    if let Some(e) = v.get("containerEnv") {
        let ok = e
            .as_object()
            .is_some_and(|o| o.values().all(Value::is_string));
        expect("/containerEnv", ok, "an object of strings");
    }
    out
}

/// Whether any finding is an error (exit code 1).
pub fn has_errors(findings: &[Finding]) -> bool {
    findings.iter().any(|f| f.severity == Severity::Error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devcontainer::{catalog, template};

    fn cat() -> Catalog {
        catalog::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/images.toml")).unwrap()
    }

    fn ids(text: &str) -> Vec<(&'static str, Severity, usize)> {
        let c = cat();
        let ctx = Context {
            catalog: Some(&c),
            home: Path::new("/home/alice"),
            docker_gpus: true,
        };
        check(text, &ctx)
            .unwrap()
            .into_iter()
            .map(|f| (f.id, f.severity, f.line))
            .collect()
    }

    #[test]
    fn what_init_writes_is_clean() {
        for docker_gpus in [true, false] {
            for gpu in [template::Gpu::Mig, template::Gpu::Full, template::Gpu::None] {
                let text = template::render(&template::Settings {
                    name: "p".into(),
                    image: cat().rows[0].image.clone(),
                    gpu,
                    user: "alice".into(),
                    home: "/home/alice".into(),
                    extensions: vec![],
                    shm_size: "8g".into(),
                    docker_gpus,
                });
                assert_eq!(ids(&text), [], "{gpu:?}\n{text}");
            }
        }
    }

    #[test]
    fn each_problem_has_its_id_severity_and_line() {
        let text = r#"{
  // a comment
  "image": "someone/else:latest",
  "runArgs": ["--privileged", "--gpus", "device=1", "--device", "/dev/nvidia0", "--runtime=nvidia"],
  "mounts": ["source=${localEnv:HOME}/data,target=/data,type=bind"],
  "shutdownAction": "none",
}"#;
        assert_eq!(
            ids(text),
            [
                ("bypasses-allocation", Severity::Error, 4),
                ("bypasses-allocation", Severity::Error, 4),
                ("bypasses-allocation", Severity::Error, 4),
                ("shutdown-none", Severity::Error, 6),
                ("image-not-in-catalog", Severity::Warning, 3),
                ("gpus-device", Severity::Warning, 4),
                ("localenv-home", Severity::Warning, 5),
            ]
        );
    }

    #[test]
    fn missing_pieces() {
        let text = "{\n  \"build\": {\"dockerfile\": \"Dockerfile\"}\n}";
        assert_eq!(
            ids(text),
            [
                ("no-gpu-request", Severity::Warning, 1),
                ("no-home-mount", Severity::Warning, 1),
                ("shutdown-default", Severity::Info, 1),
                ("builds-own-image", Severity::Info, 2),
            ]
        );
        assert_eq!(ids("{}")[0], ("no-image", Severity::Error, 1));
    }

    #[test]
    fn types_and_enums() {
        let text = r#"{
  "image": 3,
  "runArgs": "--gpus all",
  "mounts": [{"source": "/home/alice", "target": "/w", "type": "nfs"}, 7],
  "shutdownAction": "stop",
  "hostRequirements": {"gpu": "yes"},
  "containerEnv": {"A": 1},
  "remoteUser": false
}"#;
        let c = cat();
        let ctx = Context {
            catalog: Some(&c),
            home: Path::new("/home/alice"),
            docker_gpus: true,
        };
        let found = check(text, &ctx).unwrap();
        let types: Vec<(usize, &str)> = found
            .iter()
            .filter(|f| f.id == "type")
            .map(|f| (f.line, f.message.as_str()))
            .collect();
        assert_eq!(types.len(), 8, "{types:#?}");
        assert!(types.contains(&(
            5,
            "\"shutdownAction\" must be one of \"none\", \"stopContainer\", \"stopCompose\""
        )));
        assert!(types.contains(&(4, "\"mounts/1\" must be a mount string, or an object with \"target\" and \"type\" (bind, volume or tmpfs)")));
        assert!(has_errors(&found));
    }

    #[test]
    fn saying_no_gpu_is_respected() {
        let base = r#"{"image": "nvidia/cuda:12.4.1-base-ubuntu22.04", "mounts": ["source=/home/alice,target=/home/alice,type=bind"], "shutdownAction": "stopContainer""#;
        assert_eq!(
            ids(&format!(
                "{base}, \"hostRequirements\": {{\"gpu\": false}}}}"
            )),
            []
        );
        assert_eq!(
            ids(&format!(
                "{base}, \"containerEnv\": {{\"NVIDIA_VISIBLE_DEVICES\": \"none\"}}}}"
            )),
            []
        );
        assert_eq!(
            ids(&format!(
                "{base}, \"hostRequirements\": {{\"gpu\": \"optional\"}}}}"
            )),
            []
        );
        assert_eq!(ids(&format!("{base}}}"))[0].0, "no-gpu-request");
    }

    #[test]
    fn syntax_errors_carry_line_and_column() {
        let c = cat();
        let ctx = Context {
            catalog: Some(&c),
            home: Path::new("/home/alice"),
            docker_gpus: true,
        };
        // A missing comma is noticed where the value before it ends.
        let e = check("{\n  \"image\": \"x\"\n  \"name\": \"y\"\n}", &ctx).unwrap_err();
        assert_eq!((e.line, e.message.as_str()), (2, "Expected comma"), "{e:?}");
    }
}
