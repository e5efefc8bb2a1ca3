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
    /// The devcontainer.json's folder, where its Compose files are found.
    pub dir: Option<&'a Path>,
    /// Whether `docker info` lists a runtime named `nvidia` (`None`: Docker
    /// could not be asked). The official CLI honours `hostRequirements.gpu`
    /// only then.
    pub nvidia_runtime: Option<bool>,
}

#[cfg(test)]
impl<'a> Context<'a> {
    /// alice's, on a server whose Docker honours `--gpus`, with Docker
    /// not asked about runtimes.
    pub(crate) fn alice(catalog: Option<&'a Catalog>) -> Context<'a> {
        Context {
            catalog,
            home: Path::new("/home/alice"),
            docker_gpus: true,
            dir: None,
            nvidia_runtime: None,
        }
    }
}

pub const LOCAL_HOME: &str = "${localEnv:HOME}";
const SHUTDOWN_ACTIONS: [&str; 3] = ["none", "stopContainer", "stopCompose"];

/// The laptop's home in a devcontainer.json: `${localEnv:HOME}`,
/// `${env:HOME}` (the same), either with a default (`${localEnv:HOME:/x}`).
/// Returns the token's byte range in `s`.
pub fn local_home(s: &str) -> Option<std::ops::Range<usize>> {
    ["${localEnv:HOME", "${env:HOME"].iter().find_map(|p| {
        let start = s.find(p)?;
        let rest = &s[start + p.len()..];
        if !(rest.starts_with('}') || rest.starts_with(':')) {
            return None;
        }
        let end = start + p.len() + rest.find('}')? + 1;
        Some(start..end)
    })
}

/// `s` with its laptop-home token replaced by `home`.
pub fn replace_local_home(s: &str, home: &str) -> String {
    let mut out = s.to_string();
    while let Some(r) = local_home(&out) {
        out.replace_range(r, home);
    }
    out
}

pub use ds01_core::access::{is_gpu_device, rule_reaches_gpu};
pub use ds01_core::names::says_none;

/// A flag's value in `runArgs`: `--flag=value`, or `--flag value`.
fn flag_value<'a>(args: &[&'a str], i: usize, names: &[&str]) -> Option<&'a str> {
    let a = args[i];
    names.iter().find_map(|n| {
        if a == *n {
            args.get(i + 1).copied()
        } else {
            a.strip_prefix(n).and_then(|r| r.strip_prefix('='))
        }
    })
}

/// (source, target) of a `--mount` or `-v` value.
fn mount_of(flag_mount: bool, value: &str) -> (String, String) {
    if flag_mount {
        let field = |keys: &[&str]| {
            value
                .split(',')
                .find_map(|kv| {
                    let (k, v) = kv.split_once('=')?;
                    keys.contains(&k.trim()).then(|| v.trim().to_string())
                })
                .unwrap_or_default()
        };
        (
            field(&["source", "src"]),
            field(&["target", "destination", "dst"]),
        )
    } else {
        let mut parts = value.split(':');
        let src = parts.next().unwrap_or("").to_string();
        (src, parts.next().unwrap_or("").to_string())
    }
}

/// The findings as they are found, each placed on its line.
struct Report<'d> {
    doc: &'d doc::Doc,
    out: Vec<Finding>,
}

impl Report<'_> {
    fn add(
        &mut self,
        id: &'static str,
        severity: Severity,
        ptr: &str,
        message: String,
        fix: &str,
        fixable: bool,
    ) {
        self.out.push(Finding {
            id,
            severity,
            line: self.doc.line(ptr),
            message,
            fix: fix.to_string(),
            fixable,
        })
    }
}

/// Parses and checks; a syntax error is returned as such (file:line:column).
pub fn check(text: &str, ctx: &Context) -> Result<Vec<Finding>, SyntaxError> {
    let doc = doc::parse(text)?;
    let mut r = Report {
        doc: &doc,
        out: Vec::new(),
    };
    let v = &doc.value;
    if !v.is_object() {
        r.add(
            "type",
            Severity::Error,
            "",
            "the file must hold one JSON object".into(),
            "wrap the settings in { }",
            false,
        );
        return Ok(r.out);
    }
    types(&mut r, v);
    let is_compose = v.get("dockerComposeFile").is_some();
    image(&mut r, v, ctx, is_compose);
    let args = run_args(&mut r, v);
    let compose = if is_compose {
        compose(&mut r, v, ctx)
    } else {
        (false, false)
    };
    gpu_request(&mut r, v, ctx, &args, compose, is_compose);
    shutdown(&mut r, v, is_compose);
    home_mount(&mut r, v, ctx, &args.mounts);
    let mut out = r.out;
    out.sort_by_key(|f| (f.severity, f.line));
    Ok(out)
}

/// Fields of the wrong JSON type.
fn types(r: &mut Report, v: &Value) {
    for (ptr, problem) in type_problems(v) {
        r.add(
            "type",
            Severity::Error,
            &ptr,
            problem,
            "see https://containers.dev/implementors/json_reference/",
            false,
        );
    }
}

/// What runs: an image (from the catalog, or not), or a build.
fn image(r: &mut Report, v: &Value, ctx: &Context, is_compose: bool) {
    let image = v.get("image").and_then(Value::as_str);
    // `dockerFile` (top level) is the spec's older spelling, still valid.
    let builds =
        v.pointer("/build/dockerfile").is_some() || v.get("dockerFile").is_some() || is_compose;
    if image.is_none() && !builds {
        r.add(
            "no-image",
            Severity::Error,
            "",
            "no \"image\", \"build.dockerfile\", \"dockerFile\" or \"dockerComposeFile\": nothing says what to run"
                .into(),
            "add \"image\" (devcontainer init picks one from the server's catalog)",
            false,
        );
    }
    match (image, ctx.catalog) {
        (Some(img), Some(cat)) if !cat.contains(img) => r.add(
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
        r.add(
            "builds-own-image",
            Severity::Info,
            if v.get("build").is_some() {
                "/build"
            } else if v.get("dockerFile").is_some() {
                "/dockerFile"
            } else {
                "/dockerComposeFile"
            },
            "the project builds its own image, so the catalog cannot vouch for it".into(),
            "base the Dockerfile on an image from the catalog",
            false,
        );
    }
}

/// What `runArgs` asks of Docker, as far as the GPU rules need it.
#[derive(Default)]
struct RunArgs {
    /// (source, target) of each `-v` and `--mount`.
    mounts: Vec<(String, String)>,
    env_request: bool,
    env_none: bool,
    device_request: bool,
    gpus_flag: bool,
}

/// `runArgs` and `privileged`: routes around the allocator, and devices
/// picked by hand.
fn run_args(r: &mut Report, v: &Value) -> RunArgs {
    let run_args: Vec<&str> = v
        .get("runArgs")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let arg_ptr = |i: usize| format!("/runArgs/{i}");
    let mut run_mounts: Vec<(String, String)> = Vec::new();
    let mut env_request = false;
    let mut env_none = false;
    let mut device_request = false;
    if v.get("privileged") == Some(&Value::Bool(true)) {
        r.add(
            "bypasses-allocation",
            Severity::Error,
            "/privileged",
            "\"privileged\": true bypasses GPU allocation: the container sees every GPU on the host".into(),
            "remove it and ask for a GPU with \"--gpus\", \"all\"",
            false,
        );
    }
    for (i, a) in run_args.iter().enumerate() {
        let next = run_args.get(i + 1).copied().unwrap_or("");
        let bypass = if *a == "--privileged" || *a == "--privileged=true" {
            Some("--privileged sees every GPU on the host".to_string())
        } else if *a == "--runtime" || a.starts_with("--runtime=") {
            Some("--runtime skips ds01's runtime".to_string())
        } else {
            flag_value(&run_args, i, &["--device-cgroup-rule"])
                .filter(|r| rule_reaches_gpu(r.trim_matches(['"', '\''])))
                .map(|r| format!("the device rule {r:?} opens NVIDIA devices"))
        };
        if let Some(why) = bypass {
            r.add(
                "bypasses-allocation",
                Severity::Error,
                &arg_ptr(i),
                format!("runArgs {a:?} bypasses GPU allocation: {why}"),
                "remove it and ask for a GPU with \"--gpus\", \"all\"",
                false,
            );
        }
        if let Some(dev) = flag_value(&run_args, i, &["--device"]) {
            let host = dev.split(':').next().unwrap_or(dev);
            if dev.starts_with("nvidia.com/gpu=") {
                device_request = true;
            } else if is_gpu_device(host) {
                // The runtime takes a GPU node as a request and gives the
                // device it allocates instead: a request, not a route.
                device_request = true;
                r.add(
                    "gpu-device-named",
                    Severity::Warning,
                    &arg_ptr(i),
                    format!(
                        "runArgs {a:?} names the GPU device {host:?}, but ds01 gives the container the device it allocates, not this one"
                    ),
                    "ask with \"--gpus\", \"all\" instead",
                    false,
                );
            }
        }
        if let Some(kv) = flag_value(&run_args, i, &["-e", "--env"])
            && let Some(val) = kv.strip_prefix("NVIDIA_VISIBLE_DEVICES=")
        {
            if says_none(val) {
                env_none = true;
            } else {
                env_request = true;
            }
        }
        if let Some(m) = flag_value(&run_args, i, &["-v", "--volume"]) {
            run_mounts.push(mount_of(false, m));
        }
        if let Some(m) = flag_value(&run_args, i, &["--mount"]) {
            run_mounts.push(mount_of(true, m));
        }
        let gpus = a
            .strip_prefix("--gpus=")
            .or((*a == "--gpus").then_some(next));
        if gpus.is_some_and(|g| g.trim_matches('"').starts_with("device=")) {
            r.add(
                "gpus-device",
                Severity::Warning,
                &arg_ptr(i),
                format!("runArgs {a:?} {next:?} picks a device, but ds01 chooses devices itself"),
                "use \"--gpus\", \"all\" (or a count); set DS01_GPU_PROFILE for a profile",
                false,
            );
        }
    }
    RunArgs {
        mounts: run_mounts,
        env_request,
        env_none,
        device_request,
        gpus_flag: run_args
            .iter()
            .any(|a| *a == "--gpus" || a.starts_with("--gpus=")),
    }
}

/// A Compose config: the service in its Compose files holds the settings.
/// Returns whether the service asks for a GPU, and whether it says none.
fn compose(r: &mut Report, v: &Value, ctx: &Context) -> (bool, bool) {
    let mut compose_request = false;
    let mut compose_none = false;
    if v.get("runArgs").is_some() {
        r.add(
            "runargs-compose",
            Severity::Warning,
            "/runArgs",
            "runArgs does nothing in a Compose config: Docker Compose starts the container".into(),
            "move these settings to the service in the Compose file",
            false,
        );
    }
    let service = v.get("service").and_then(Value::as_str).unwrap_or("");
    if let (Some(dir), Some(files)) = (ctx.dir, v.get("dockerComposeFile")) {
        match super::compose::read(dir, files, service) {
            Ok(s) => {
                compose_request = s.requests_gpu;
                compose_none = s.wants_none;
                for (file, what) in s.bypasses {
                    let name = file.file_name().map_or_else(
                        || file.display().to_string(),
                        |n| n.to_string_lossy().into_owned(),
                    );
                    r.add(
                        "bypasses-allocation",
                        Severity::Error,
                        "/dockerComposeFile",
                        format!("{name}: service {service:?}: {what}, around GPU allocation"),
                        "remove it, and ask for a GPU with a device reservation (deploy.resources.reservations.devices: driver nvidia)",
                        false,
                    );
                }
            }
            Err(e) => r.add(
                "compose-unreadable",
                Severity::Error,
                "/dockerComposeFile",
                e,
                "fix the Compose file, or its path in dockerComposeFile",
                false,
            ),
        }
    }
    (compose_request, compose_none)
}

/// Whether a GPU is asked for, in a way this server honours.
fn gpu_request(
    r: &mut Report,
    v: &Value,
    ctx: &Context,
    args: &RunArgs,
    (compose_request, compose_none): (bool, bool),
    is_compose: bool,
) {
    // In a Compose config runArgs does nothing: it asks for nothing either.
    let (env_request, env_none, device_request) = if is_compose {
        (false, false, false)
    } else {
        (args.env_request, args.env_none, args.device_request)
    };
    let host_gpu = v.pointer("/hostRequirements/gpu");
    let visible = v
        .pointer("/containerEnv/NVIDIA_VISIBLE_DEVICES")
        .and_then(Value::as_str);
    let visible_none = visible.is_some_and(says_none);
    let wants_none =
        host_gpu == Some(&Value::Bool(false)) || visible_none || env_none || compose_none;
    let uses_gpus_flag = !is_compose && args.gpus_flag;
    // The environment asks ds01 as well as --gpus does (and works where
    // Docker has no NVIDIA toolkit to honour --gpus).
    let requested = uses_gpus_flag
        || host_gpu.is_some_and(|g| g != &Value::Bool(false))
        || (visible.is_some() && !visible_none)
        || env_request
        || device_request
        || compose_request;
    if host_gpu.is_some_and(|g| g != &Value::Bool(false))
        && !uses_gpus_flag
        && ctx.nvidia_runtime == Some(false)
    {
        r.add(
            "host-gpu-ignored",
            Severity::Warning,
            "/hostRequirements/gpu",
            "hostRequirements.gpu asks for a GPU, but the Dev Containers CLI honours it only when `docker info` lists an \"nvidia\" runtime, and this server's Docker lists none".into(),
            "also add \"--gpus\", \"all\" to runArgs, or set containerEnv NVIDIA_VISIBLE_DEVICES to \"all\"",
            false,
        );
    }
    if uses_gpus_flag && !ctx.docker_gpus {
        r.add(
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
        if is_compose {
            r.add(
                "no-gpu-request",
                Severity::Warning,
                "/dockerComposeFile",
                "no GPU is requested, so the container will get none".into(),
                "give the service a device reservation: deploy.resources.reservations.devices: [{driver: nvidia, count: 1, capabilities: [gpu]}]",
                false,
            );
        } else {
            r.add(
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
    }
}

/// The container, and its GPU, end when VS Code closes.
fn shutdown(r: &mut Report, v: &Value, is_compose: bool) {
    // Image and Dockerfile configs stop a container; Compose configs stop
    // the Compose project. "none" keeps the GPU after VS Code closes.
    let (stop, other) = if is_compose {
        ("stopCompose", "stopContainer")
    } else {
        ("stopContainer", "stopCompose")
    };
    match v.get("shutdownAction").and_then(Value::as_str) {
        Some("none") => r.add(
            "shutdown-none",
            Severity::Error,
            "/shutdownAction",
            "shutdownAction \"none\" keeps the container, and its GPU, after VS Code closes".into(),
            &format!("set \"shutdownAction\": \"{stop}\""),
            true,
        ),
        Some(s) if s == other => r.add(
            "shutdown-kind",
            Severity::Error,
            "/shutdownAction",
            format!(
                "shutdownAction {other:?} belongs to {} configs; this one is {}",
                if is_compose { "image and Dockerfile" } else { "Compose" },
                if is_compose { "a Compose config" } else { "not a Compose config" }
            ),
            &format!("set \"shutdownAction\": \"{stop}\""),
            true,
        ),
        None if v.get("shutdownAction").is_none() => r.add(
            "shutdown-default",
            Severity::Info,
            "",
            "no shutdownAction: VS Code's default stops the container, but the file does not say so".into(),
            &format!("set \"shutdownAction\": \"{stop}\""),
            true,
        ),
        _ => {}
    }
}

/// The home is mounted, by its server path.
fn home_mount(r: &mut Report, v: &Value, ctx: &Context, run_mounts: &[(String, String)]) {
    let mounts = mount_sources(v);
    for (i, source, _) in &mounts {
        if local_home(source).is_some() {
            r.add(
                "localenv-home",
                Severity::Warning,
                &format!("/mounts/{i}"),
                format!(
                    "mount source {source:?} uses {LOCAL_HOME} (or ${{env:HOME}}), which names the laptop's home when VS Code uses a remote Docker"
                ),
                &format!("use the server path {}", ctx.home.display()),
                true,
            );
        }
    }
    let is_home = |s: &str| {
        s.starts_with("/home/") || local_home(s).is_some() || Path::new(s).starts_with(ctx.home)
    };
    // The home, mounted in "mounts" or by runArgs; or anything at the home
    // mount's target already (Docker refuses two mounts at one target).
    let home_mounted = mounts
        .iter()
        .map(|(_, s, t)| (s.as_str(), t.as_str()))
        .chain(run_mounts.iter().map(|(s, t)| (s.as_str(), t.as_str())))
        .any(|(s, t)| is_home(s) || Path::new(t) == ctx.home);
    if !home_mounted {
        r.add(
            "no-home-mount",
            Severity::Warning,
            if v.get("mounts").is_some() { "/mounts" } else { "" },
            "no home directory is mounted: work saved outside the project folder is lost with the container".into(),
            &format!("add the mount \"{}\"", super::template::home_mount(ctx.home)),
            true,
        );
    }
}

/// (index, source, target) of each mount, in string or object form.
fn mount_sources(v: &Value) -> Vec<(usize, String, String)> {
    let Some(mounts) = v.get("mounts").and_then(Value::as_array) else {
        return Vec::new();
    };
    mounts
        .iter()
        .enumerate()
        .filter_map(|(i, m)| {
            let (source, target) = match m {
                Value::String(s) => mount_of(true, s),
                Value::Object(o) => (
                    o.get("source")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                    o.get("target")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                ),
                _ => return None,
            };
            Some((i, source, target))
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
    for key in ["name", "image", "remoteUser", "service", "dockerFile"] {
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
    if let Some(p) = v.get("privileged") {
        expect("/privileged", p.is_boolean(), "true or false");
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
        let ctx = Context::alice(Some(&c));
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
                    image_in_catalog: true,
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
                ("shutdown-none", Severity::Error, 6),
                ("image-not-in-catalog", Severity::Warning, 3),
                ("gpus-device", Severity::Warning, 4),
                // A GPU node is a request the runtime serves with its own
                // device (as the README and docs/devcontainer.md say).
                ("gpu-device-named", Severity::Warning, 4),
                ("localenv-home", Severity::Warning, 5),
            ]
        );
    }

    fn only(text: &str) -> Vec<&'static str> {
        ids(text).into_iter().map(|(id, _, _)| id).collect()
    }

    const OK: &str = r#""image": "x", "mounts": ["source=/home/alice,target=/home/alice,type=bind"], "shutdownAction": "stopContainer""#;

    #[test]
    fn every_route_around_the_allocator_in_the_spec_or_run_args_is_an_error() {
        for extra in [
            r#""privileged": true"#,
            r#""runArgs": ["--privileged=true", "--gpus", "all"]"#,
            r#""runArgs": ["--runtime", "nvidia", "--gpus", "all"]"#,
            r#""runArgs": ["--device-cgroup-rule", "c 195:* rmw", "--gpus", "all"]"#,
            r#""runArgs": ["--device-cgroup-rule=a *:* rwm", "--gpus", "all"]"#,
        ] {
            let text = format!("{{{OK}, {extra}}}");
            assert!(
                only(&text).contains(&"bypasses-allocation"),
                "{extra}: {:?}",
                ids(&text)
            );
        }
        // A harmless rule and --privileged=false are not.
        let text = format!(
            r#"{{{OK}, "runArgs": ["--device-cgroup-rule", "c 10:200 rwm", "--privileged=false", "--gpus", "all"]}}"#
        );
        assert!(
            !only(&text).contains(&"bypasses-allocation"),
            "{:?}",
            ids(&text)
        );
        // A GPU node under another path is a GPU device too.
        assert!(is_gpu_device("/dev/char/195:0") && is_gpu_device("nvidia.com/gpu=all"));
        assert!(!is_gpu_device("/dev/null") && !is_gpu_device("/dev/char/1:3"));
    }

    #[test]
    fn every_way_of_asking_for_a_gpu_counts_as_a_request() {
        for extra in [
            r#""containerEnv": {"NVIDIA_VISIBLE_DEVICES": "all"}"#,
            r#""runArgs": ["-e", "NVIDIA_VISIBLE_DEVICES=all"]"#,
            r#""runArgs": ["--env=NVIDIA_VISIBLE_DEVICES=0"]"#,
            r#""runArgs": ["--device", "nvidia.com/gpu=all"]"#,
            r#""runArgs": ["--device=/dev/nvidia0"]"#,
        ] {
            let text = format!("{{{OK}, {extra}}}");
            assert!(
                !only(&text).contains(&"no-gpu-request"),
                "{extra}: {:?}",
                ids(&text)
            );
        }
        let text = format!(r#"{{{OK}, "runArgs": ["-e", "NVIDIA_VISIBLE_DEVICES=none"]}}"#);
        assert!(
            !only(&text).contains(&"no-gpu-request"),
            "asks for none: {:?}",
            ids(&text)
        );
    }

    #[test]
    fn the_home_mount_counts_however_it_is_written() {
        let base =
            r#""image": "x", "runArgs": ["--gpus", "all"], "shutdownAction": "stopContainer""#;
        for mount in [
            r#""runArgs": ["--gpus", "all", "-v", "/home/alice:/home/alice"]"#,
            r#""runArgs": ["--gpus", "all", "--mount", "type=bind,source=/srv/x,target=/home/alice"]"#,
            r#""mounts": [{"source": "/srv/other", "target": "/home/alice", "type": "bind"}]"#,
        ] {
            let text = format!("{{{base}, {mount}}}").replacen(
                r#""runArgs": ["--gpus", "all"], "#,
                "",
                usize::from(mount.contains("runArgs")),
            );
            assert!(
                !only(&text).contains(&"no-home-mount"),
                "{mount}: {:?}",
                ids(&text)
            );
        }
        for var in ["${env:HOME}", "${localEnv:HOME:/tmp}", "${localEnv:HOME}"] {
            let text =
                format!(r#"{{{base}, "mounts": ["source={var}/data,target=/data,type=bind"]}}"#);
            assert!(
                only(&text).contains(&"localenv-home"),
                "{var}: {:?}",
                ids(&text)
            );
        }
        assert_eq!(
            replace_local_home("source=${localEnv:HOME:/x}/d", "/home/a"),
            "source=/home/a/d"
        );
        assert_eq!(local_home("${localEnv:HOMEDIR}"), None);
    }

    #[test]
    fn legacy_dockerfile_is_a_build_and_bom_and_control_characters_read_as_vs_code_reads_them() {
        let text = r#"{"dockerFile": "Dockerfile", "runArgs": ["--gpus", "all"], "mounts": ["source=/home/alice,target=/home/alice,type=bind"], "shutdownAction": "stopContainer"}"#;
        assert_eq!(only(text), ["builds-own-image"]);
        let bom = format!("\u{feff}{text}");
        assert_eq!(only(&bom), ["builds-own-image"]);
        let raw = "{\n  \"name\": \"a\tb\"\n}";
        let e = check(raw, &Context::alice(None)).unwrap_err();
        assert_eq!((e.line, e.column), (2, 13));
        assert!(e.message.contains("U+0009"), "{}", e.message);
        // In a comment it is fine.
        let commented = "{\n  // a\tb\n  \"image\": \"x\"\n}";
        assert!(check(commented, &Context::alice(None)).is_ok());
    }

    #[test]
    fn host_requirements_gpu_alone_needs_docker_s_nvidia_runtime() {
        let text = r#"{"image": "x", "hostRequirements": {"gpu": true}, "mounts": ["source=/home/alice,target=/home/alice,type=bind"], "shutdownAction": "stopContainer"}"#;
        let with = |rt: Option<bool>| {
            let ctx = Context {
                nvidia_runtime: rt,
                ..Context::alice(None)
            };
            check(text, &ctx)
                .unwrap()
                .into_iter()
                .map(|f| f.id)
                .collect::<Vec<_>>()
        };
        assert_eq!(with(Some(false)), ["host-gpu-ignored"]);
        assert!(with(Some(true)).is_empty());
        assert!(with(None).is_empty(), "Docker not asked: no guess");
    }

    #[test]
    fn compose_configs_follow_compose_rules_and_their_service_is_read() {
        let d = tempfile::tempdir().unwrap();
        let ctx_dir = |text: &str| {
            let c = cat();
            let ctx = Context {
                dir: Some(d.path()),
                ..Context::alice(Some(&c))
            };
            check(text, &ctx)
                .unwrap()
                .into_iter()
                .map(|f| f.id)
                .collect::<Vec<_>>()
        };
        std::fs::write(
            d.path().join("docker-compose.yml"),
            "services:\n  app:\n    image: x\n    volumes: [/home/alice:/home/alice]\n    deploy:\n      resources:\n        reservations:\n          devices:\n            - driver: nvidia\n              capabilities: [gpu]\n",
        )
        .unwrap();
        let base = r#""dockerComposeFile": "docker-compose.yml", "service": "app", "mounts": ["source=/home/alice,target=/home/alice,type=bind"]"#;
        // stopCompose is right; the reservation is a GPU request.
        let ok = ctx_dir(&format!(r#"{{{base}, "shutdownAction": "stopCompose"}}"#));
        assert_eq!(ok, ["builds-own-image"], "{ok:?}");
        let wrong = ctx_dir(&format!(
            r#"{{{base}, "shutdownAction": "stopContainer", "runArgs": ["--gpus", "all"]}}"#
        ));
        assert!(
            wrong.contains(&"shutdown-kind") && wrong.contains(&"runargs-compose"),
            "{wrong:?}"
        );
        // A privileged service is a route around the allocator.
        std::fs::write(
            d.path().join("docker-compose.yml"),
            "services:\n  app:\n    image: x\n    privileged: true\n",
        )
        .unwrap();
        let bad = ctx_dir(&format!(r#"{{{base}, "shutdownAction": "stopCompose"}}"#));
        assert!(
            bad.contains(&"bypasses-allocation") && bad.contains(&"no-gpu-request"),
            "{bad:?}"
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
        let ctx = Context::alice(Some(&c));
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
        let ctx = Context::alice(Some(&c));
        // A missing comma is noticed where the value before it ends.
        let e = check("{\n  \"image\": \"x\"\n  \"name\": \"y\"\n}", &ctx).unwrap_err();
        assert_eq!((e.line, e.message.as_str()), (2, "Expected comma"), "{e:?}");
    }
}
