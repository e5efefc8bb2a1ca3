//! What a container asks for, read from its environment.
//!
//! `NVIDIA_VISIBLE_DEVICES` says how many devices (`all` is one, a comma
//! list is that many; users never pick a physical device), and
//! `DS01_GPU_PROFILE` says what kind: `full`, or a MIG profile name.

pub const VISIBLE: &str = "NVIDIA_VISIBLE_DEVICES";
pub const PROFILE: &str = "DS01_GPU_PROFILE";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Profile {
    /// Any MIG slice (the default); a full GPU only where the config allows.
    AnyMig,
    /// A MIG slice of this profile, such as `1g.10gb`.
    Mig(String),
    /// A whole GPU.
    Full,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub count: usize,
    pub profile: Profile,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RequestError {
    #[error(
        "{PROFILE}={0:?} is not a GPU profile; use \"full\" or a MIG profile such as \"1g.10gb\""
    )]
    BadProfile(String),
}

/// The last value of `name` in an OCI `process.env` list, as execve's
/// consumers see it when a name repeats.
pub fn env_value<'a>(env: &'a [String], name: &str) -> Option<&'a str> {
    env.iter()
        .rev()
        .find_map(|e| e.strip_prefix(name).and_then(|rest| rest.strip_prefix('=')))
}

/// The GPU request in a container's environment, or `None` for a container
/// that asks for no GPU.
pub fn parse(env: &[String]) -> Result<Option<Request>, RequestError> {
    let Some(visible) = env_value(env, VISIBLE) else {
        return Ok(None);
    };
    let count = match visible.trim() {
        "" | "none" | "void" => return Ok(None),
        "all" => 1,
        list => list.split(',').filter(|s| !s.trim().is_empty()).count(),
    };
    if count == 0 {
        return Ok(None);
    }
    Ok(Some(Request {
        count,
        profile: profile(env)?,
    }))
}

/// The GPU request of a spec: its environment's, or else one device per
/// `/dev/nvidiaN` node it brings along (`--device /dev/nvidia0`, a CDI
/// spec): those are requests too, and ds01 decides which device they get.
pub fn from_spec(spec: &serde_json::Value) -> Result<Option<Request>, RequestError> {
    let env = crate::spec::env(spec);
    if let Some(req) = parse(&env)? {
        return Ok(Some(req));
    }
    let mut gpus: Vec<&str> = spec
        .pointer("/linux/devices")
        .and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|d| d.get("path").and_then(serde_json::Value::as_str))
        .filter(|p| {
            p.strip_prefix("/dev/nvidia")
                .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
        })
        .collect();
    gpus.sort();
    gpus.dedup();
    if gpus.is_empty() {
        return Ok(None);
    }
    Ok(Some(Request {
        count: gpus.len(),
        profile: profile(&env)?,
    }))
}

fn profile(env: &[String]) -> Result<Profile, RequestError> {
    Ok(match env_value(env, PROFILE).map(str::trim) {
        None | Some("") | Some("mig") => Profile::AnyMig,
        Some("full") => Profile::Full,
        Some(p) if is_mig_profile(p) => Profile::Mig(p.to_string()),
        Some(p) => return Err(RequestError::BadProfile(p.to_string())),
    })
}

/// `<n>g.<m>gb`, optionally with a `+me` style suffix, as NVML names them.
fn is_mig_profile(p: &str) -> bool {
    let Some((g, rest)) = p.split_once("g.") else {
        return false;
    };
    let mem = rest.split('+').next().unwrap_or("");
    let Some(gb) = mem.strip_suffix("gb") else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
    digits(g) && digits(gb)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(vars: &[&str]) -> Result<Option<Request>, RequestError> {
        parse(&vars.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    fn mig(count: usize) -> Option<Request> {
        Some(Request {
            count,
            profile: Profile::AnyMig,
        })
    }

    #[test]
    fn no_variable_or_none_means_no_gpu() {
        assert_eq!(req(&["PATH=/bin"]), Ok(None));
        for v in ["none", "void", "", " "] {
            assert_eq!(
                req(&[&format!("NVIDIA_VISIBLE_DEVICES={v}")]),
                Ok(None),
                "{v:?}"
            );
        }
        // A look-alike name is not the variable.
        assert_eq!(req(&["NVIDIA_VISIBLE_DEVICES_X=all"]), Ok(None));
    }

    #[test]
    fn all_is_one_and_a_list_is_its_length() {
        assert_eq!(req(&["NVIDIA_VISIBLE_DEVICES=all"]), Ok(mig(1)));
        assert_eq!(req(&["NVIDIA_VISIBLE_DEVICES=0,1"]), Ok(mig(2)));
        assert_eq!(req(&["NVIDIA_VISIBLE_DEVICES=GPU-a,MIG-b,1:0"]), Ok(mig(3)));
        assert_eq!(req(&["NVIDIA_VISIBLE_DEVICES=3"]), Ok(mig(1)));
    }

    #[test]
    fn the_last_value_wins() {
        assert_eq!(
            req(&["NVIDIA_VISIBLE_DEVICES=0,1", "NVIDIA_VISIBLE_DEVICES=none"]),
            Ok(None)
        );
    }

    #[test]
    fn devices_brought_along_are_requests_too() {
        let spec = |devs: serde_json::Value, env: &[&str]| serde_json::json!({"process": {"env": env}, "linux": {"devices": devs}});
        let gpu = |p: &str| serde_json::json!({"path": p, "type": "c", "major": 195, "minor": 0});
        let two = spec(
            serde_json::json!([
                gpu("/dev/nvidia0"),
                gpu("/dev/nvidiactl"),
                gpu("/dev/nvidia3")
            ]),
            &["NVIDIA_VISIBLE_DEVICES=void"],
        );
        assert_eq!(from_spec(&two), Ok(mig(2)));
        let full = spec(
            serde_json::json!([gpu("/dev/nvidia0")]),
            &["DS01_GPU_PROFILE=full"],
        );
        assert_eq!(from_spec(&full).unwrap().unwrap().profile, Profile::Full);
        // Only the driver's control nodes, or nothing: no GPU.
        assert_eq!(
            from_spec(&spec(serde_json::json!([gpu("/dev/nvidiactl")]), &[])),
            Ok(None)
        );
        assert_eq!(from_spec(&serde_json::json!({"process": {}})), Ok(None));
        // The environment's request wins.
        let env = spec(
            serde_json::json!([gpu("/dev/nvidia0")]),
            &["NVIDIA_VISIBLE_DEVICES=0,1,2"],
        );
        assert_eq!(from_spec(&env), Ok(mig(3)));
    }

    #[test]
    fn profile_picks_the_kind() {
        let p = |v: &str| {
            req(&[
                "NVIDIA_VISIBLE_DEVICES=all",
                &format!("DS01_GPU_PROFILE={v}"),
            ])
            .map(|r| r.unwrap().profile)
        };
        assert_eq!(p("full"), Ok(Profile::Full));
        assert_eq!(p("1g.10gb"), Ok(Profile::Mig("1g.10gb".into())));
        assert_eq!(p("1g.10gb+me"), Ok(Profile::Mig("1g.10gb+me".into())));
        assert_eq!(p(""), Ok(Profile::AnyMig));
        assert_eq!(p("mig"), Ok(Profile::AnyMig));
        let e = p("huge").unwrap_err();
        assert!(
            e.to_string().contains("\"huge\" is not a GPU profile"),
            "{e}"
        );
        assert!(p("1g.gb").is_err());
    }
}
