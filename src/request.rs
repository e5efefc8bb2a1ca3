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
    let profile = match env_value(env, PROFILE).map(str::trim) {
        None | Some("") | Some("mig") => Profile::AnyMig,
        Some("full") => Profile::Full,
        Some(p) if is_mig_profile(p) => Profile::Mig(p.to_string()),
        Some(p) => return Err(RequestError::BadProfile(p.to_string())),
    };
    Ok(Some(Request { count, profile }))
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
