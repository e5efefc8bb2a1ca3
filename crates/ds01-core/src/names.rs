//! One name for one thing: the labels, annotations and variables ds01
//! reads and writes, each defined here once, and what their values mean.

/// The label naming a container's (or image's, volume's, network's) owner.
pub const USER_LABEL: &str = "ds01.user";
/// The name `container deploy` gave a container.
pub const NAME_LABEL: &str = "ds01.name";
/// The label an owner may use to keep an idle container from the reaper.
pub const KEEP_ALIVE_LABEL: &str = "ds01.keep-alive";
/// How long a GPU create may wait in the queue (as label or annotation).
pub const WAIT_LABEL: &str = "ds01.gpu-wait";
/// The annotation of a patched spec that records its allocation.
pub const ALLOCATION_ANNOTATION: &str = "ds01.allocation";

/// The Dev Containers CLI's label: the project folder on the host.
pub const DEVCONTAINER_LABEL: &str = "devcontainer.local_folder";
/// Compose's labels: the project, and the folder it was started from.
pub const COMPOSE_LABEL: &str = "com.docker.compose.project";
pub const COMPOSE_DIR_LABEL: &str = "com.docker.compose.project.working_dir";

/// NVIDIA's variable naming the devices a container gets.
pub const VISIBLE: &str = "NVIDIA_VISIBLE_DEVICES";
/// ds01's variable naming the GPU profile a container asks for.
pub const PROFILE: &str = "DS01_GPU_PROFILE";

/// Whether a value of [`VISIBLE`] asks for no GPU: empty, `none` or
/// `void`, in any case, blanks around it ignored (as NVIDIA's toolkit
/// reads it).
pub fn says_none(value: &str) -> bool {
    let v = value.trim();
    v.is_empty() || v.eq_ignore_ascii_case("none") || v.eq_ignore_ascii_case("void")
}

#[cfg(test)]
mod tests {
    #[test]
    fn none_void_and_empty_in_any_case_say_none() {
        for v in ["none", "void", "", " ", "NONE", "Void", " nOnE "] {
            assert!(super::says_none(v), "{v:?}");
        }
        for v in ["all", "0", "GPU-1", "nonee"] {
            assert!(!super::says_none(v), "{v:?}");
        }
    }
}
