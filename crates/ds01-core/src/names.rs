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

/// What made a container, for lifecycle by kind (`[kinds.NAME]`): a dev
/// container, a Compose service, `container deploy`, or plain `docker`
/// (anything else). Read from its labels, which its owner writes: a kind
/// may give other timeouts, never more of anything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Devcontainer,
    Compose,
    Deploy,
    Docker,
}

impl Kind {
    pub const ALL: [Kind; 4] = [
        Kind::Devcontainer,
        Kind::Compose,
        Kind::Deploy,
        Kind::Docker,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Devcontainer => "devcontainer",
            Kind::Compose => "compose",
            Kind::Deploy => "deploy",
            Kind::Docker => "docker",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The kind a container's labels say (`has`: whether it carries one).
    pub fn of(has: impl Fn(&str) -> bool) -> Kind {
        if has(DEVCONTAINER_LABEL) {
            Kind::Devcontainer
        } else if has(COMPOSE_LABEL) {
            Kind::Compose
        } else if has(NAME_LABEL) {
            Kind::Deploy
        } else {
            Kind::Docker
        }
    }
}

/// Whether a value of [`VISIBLE`] asks for no GPU: empty, `none` or
/// `void`, in any case, blanks around it ignored (as NVIDIA's toolkit
/// reads it).
pub fn says_none(value: &str) -> bool {
    let v = value.trim();
    v.is_empty() || v.eq_ignore_ascii_case("none") || v.eq_ignore_ascii_case("void")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_container_s_kind_comes_from_its_labels() {
        let of = |labels: &[&str]| Kind::of(|k| labels.contains(&k));
        assert_eq!(of(&[DEVCONTAINER_LABEL, COMPOSE_LABEL]), Kind::Devcontainer);
        assert_eq!(of(&[COMPOSE_LABEL, NAME_LABEL]), Kind::Compose);
        assert_eq!(of(&[NAME_LABEL, USER_LABEL]), Kind::Deploy);
        assert_eq!(of(&[USER_LABEL]), Kind::Docker);
        for k in Kind::ALL {
            assert_eq!(Kind::parse(k.as_str()), Some(k));
        }
        assert_eq!(Kind::parse("Docker"), None);
    }

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
