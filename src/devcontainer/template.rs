//! The devcontainer.json `devcontainer init` writes: valid JSONC with a
//! short comment on each setting. The command runs on the server, so paths
//! are the server user's literal ones (`${localEnv:HOME}` would name the
//! laptop's home when VS Code talks to a remote Docker).

use std::path::PathBuf;

use serde_json::json;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gpu {
    /// A MIG slice (ds01's default).
    Mig,
    /// A whole GPU, where the user's limits allow it.
    Full,
    /// No GPU at all.
    None,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub name: String,
    pub image: String,
    pub gpu: Gpu,
    /// The user on this server.
    pub user: String,
    pub home: PathBuf,
    pub extensions: Vec<String>,
    pub shm_size: String,
    /// Whether this server's Docker can honour `--gpus` (NVIDIA's
    /// container toolkit is installed); without it Docker refuses the
    /// container before ds01 sees it, so the request goes in the environment.
    pub docker_gpus: bool,
    /// Whether the image is one of the server's catalog.
    pub image_in_catalog: bool,
}

/// The extensions a framework's projects usually want.
pub fn default_extensions(framework: &str) -> Vec<String> {
    let mut e = vec!["ms-python.python".to_string()];
    if framework != "minimal" {
        e.push("ms-toolsai.jupyter".to_string());
    }
    e
}

/// The home mount, in the string form VS Code takes.
pub fn home_mount(home: &std::path::Path) -> String {
    format!("source={0},target={0},type=bind", home.display())
}

fn j(v: serde_json::Value) -> String {
    v.to_string()
}

/// `["a", "b"]`, spaced as people write it.
fn list(items: &[String]) -> String {
    let parts: Vec<String> = items.iter().map(|i| j(json!(i))).collect();
    format!("[{}]", parts.join(", "))
}

pub fn render(s: &Settings) -> String {
    let mut run_args: Vec<String> = Vec::new();
    if s.gpu != Gpu::None && s.docker_gpus {
        run_args.extend(["--gpus".into(), "all".into()]);
    }
    run_args.push(format!("--shm-size={}", s.shm_size));
    run_args.extend([
        "--label".into(),
        format!("{}={}", ds01_core::names::USER_LABEL, s.user),
    ]);
    let mut out = String::new();
    out.push_str(
        "// Dev container for this project on a ds01 GPU server, written by `devcontainer init`.\n",
    );
    out.push_str("// Check it at any time with: devcontainer check\n{\n");
    out.push_str("  // The name VS Code shows.\n");
    out.push_str(&format!("  \"name\": {},\n", j(json!(s.name))));
    out.push_str(if s.image_in_catalog {
        "  // From the server's image catalog; `devcontainer check` warns about others.\n"
    } else {
        "  // Not in the server's image catalog (chosen with --image); `devcontainer check` warns about it.\n"
    });
    out.push_str(&format!("  \"image\": {},\n", j(json!(s.image))));
    match s.gpu {
        Gpu::None => out.push_str("  // No --gpus: this container gets no GPU.\n"),
        _ if s.docker_gpus => out.push_str(
            "  // --gpus all asks ds01 for a GPU; ds01 picks the device (a MIG slice unless DS01_GPU_PROFILE says otherwise).\n",
        ),
        _ => out.push_str(
            "  // No --gpus: this server's Docker cannot honour it (NVIDIA's container toolkit is not installed);\n  // NVIDIA_VISIBLE_DEVICES in containerEnv asks ds01 for a GPU instead.\n",
        ),
    }
    out.push_str("  // --shm-size gives data loaders shared memory; the label tells ds01 whose container this is.\n");
    out.push_str(&format!("  \"runArgs\": {},\n", list(&run_args)));
    out.push_str("  // Your home on the server, at the same path inside the container.\n");
    out.push_str(&format!(
        "  \"mounts\": {},\n",
        list(&[home_mount(&s.home)])
    ));
    let visible = if s.docker_gpus {
        String::new()
    } else {
        "\"NVIDIA_VISIBLE_DEVICES\": \"all\", ".to_string()
    };
    match s.gpu {
        Gpu::Full => {
            out.push_str("  // A whole GPU instead of a MIG slice (only where your limits allow one: ds01 limits).\n");
            out.push_str(&format!(
                "  \"containerEnv\": {{{visible}\"DS01_GPU_PROFILE\": \"full\"}},\n"
            ));
        }
        Gpu::Mig if !s.docker_gpus => {
            out.push_str("  // Asks ds01 for a GPU.\n");
            out.push_str("  \"containerEnv\": {\"NVIDIA_VISIBLE_DEVICES\": \"all\"},\n");
        }
        Gpu::None => {
            out.push_str(
                "  // This project needs no GPU (devcontainer check will not ask for one).\n",
            );
            out.push_str("  \"hostRequirements\": {\"gpu\": false},\n");
            out.push_str(
                "  // CUDA images ask for a GPU in their own environment; \"none\" says no.\n",
            );
            out.push_str("  \"containerEnv\": {\"NVIDIA_VISIBLE_DEVICES\": \"none\"},\n");
        }
        Gpu::Mig => {}
    }
    out.push_str(
        "  // Stop the container when VS Code closes, so its GPU goes back to the pool.\n",
    );
    out.push_str("  \"shutdownAction\": \"stopContainer\",\n");
    out.push_str("  \"customizations\": {\n    \"vscode\": {\n");
    out.push_str("      // Installed inside the container.\n");
    out.push_str(&format!("      \"extensions\": {}\n", list(&s.extensions)));
    out.push_str("    }\n  }\n}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devcontainer::doc;

    fn settings(gpu: Gpu) -> Settings {
        Settings {
            name: "my \"thesis\"".into(),
            image: "pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime".into(),
            gpu,
            user: "alice".into(),
            home: "/home/alice".into(),
            extensions: default_extensions("pytorch"),
            shm_size: "8g".into(),
            docker_gpus: true,
            image_in_catalog: true,
        }
    }

    #[test]
    fn writes_valid_jsonc_with_the_servers_paths() {
        let text = render(&settings(Gpu::Mig));
        assert!(text.contains("// "), "commented");
        let v = doc::parse(&text).unwrap().value;
        assert_eq!(v["name"], "my \"thesis\"");
        assert_eq!(
            v["runArgs"],
            json!([
                "--gpus",
                "all",
                "--shm-size=8g",
                "--label",
                "ds01.user=alice"
            ])
        );
        assert_eq!(
            v["mounts"],
            json!(["source=/home/alice,target=/home/alice,type=bind"])
        );
        assert_eq!(v["shutdownAction"], "stopContainer");
        assert_eq!(
            v["customizations"]["vscode"]["extensions"],
            json!(["ms-python.python", "ms-toolsai.jupyter"])
        );
        assert!(v.get("containerEnv").is_none());
        assert!(!text.contains("localEnv"));
    }

    #[test]
    fn full_gpu_and_no_gpu() {
        let v = doc::parse(&render(&settings(Gpu::Full))).unwrap().value;
        assert_eq!(v["containerEnv"]["DS01_GPU_PROFILE"], "full");
        let v = doc::parse(&render(&settings(Gpu::None))).unwrap().value;
        assert_eq!(
            v["runArgs"],
            json!(["--shm-size=8g", "--label", "ds01.user=alice"])
        );
        assert_eq!(v["hostRequirements"]["gpu"], false);
        assert_eq!(v["containerEnv"]["NVIDIA_VISIBLE_DEVICES"], "none");
    }

    #[test]
    fn without_nvidia_s_toolkit_the_request_goes_in_the_environment() {
        for (gpu, env) in [
            (Gpu::Mig, json!({"NVIDIA_VISIBLE_DEVICES": "all"})),
            (
                Gpu::Full,
                json!({"NVIDIA_VISIBLE_DEVICES": "all", "DS01_GPU_PROFILE": "full"}),
            ),
        ] {
            let mut s = settings(gpu);
            s.docker_gpus = false;
            let text = render(&s);
            let v = doc::parse(&text).unwrap().value;
            assert_eq!(
                v["runArgs"],
                json!(["--shm-size=8g", "--label", "ds01.user=alice"])
            );
            assert_eq!(v["containerEnv"], env);
            assert!(text.contains("NVIDIA's container toolkit is not installed"));
        }
    }
}
