//! `devcontainer check --fix`: repairs what can safely be repaired, in
//! place, keeping every comment and the formatting (jsonc-parser's CST).

use std::path::Path;

use jsonc_parser::cst::{CstInputValue, CstRootNode};

use super::check::{Finding, local_home, replace_local_home};
use super::doc;
use super::template::home_mount;

/// Applies the fixable findings to `text`. Returns the new text and a line
/// per change, for the user.
/// `docker_gpus`: whether Docker can honour `--gpus` here; without it the
/// GPU request goes in `containerEnv`.
pub fn apply(
    text: &str,
    findings: &[Finding],
    home: &Path,
    docker_gpus: bool,
) -> Result<(String, Vec<String>), String> {
    // A byte-order mark is kept as it was.
    let (bom, text) = match text.strip_prefix('\u{feff}') {
        Some(rest) => ("\u{feff}", rest),
        None => ("", text),
    };
    let root = CstRootNode::parse(text, &doc::options()).map_err(|e| e.to_string())?;
    let Some(obj) = root.object_value() else {
        return Ok((format!("{bom}{text}"), Vec::new()));
    };
    let has = |id: &str| findings.iter().any(|f| f.id == id && f.fixable);
    let home_text = home.display().to_string();
    let mut changes = Vec::new();

    if has("shutdown-none") || has("shutdown-default") || has("shutdown-kind") {
        // A Compose config stops its project; any other its container.
        let stop = if obj.get("dockerComposeFile").is_some() {
            "stopCompose"
        } else {
            "stopContainer"
        };
        let value = CstInputValue::String(stop.into());
        match obj.get("shutdownAction") {
            Some(prop) => prop.set_value(value),
            None => {
                obj.append("shutdownAction", value);
            }
        }
        changes.push(format!("set \"shutdownAction\": \"{stop}\""));
    }
    if has("localenv-home")
        && let Some(mounts) = obj.array_value("mounts")
    {
        for el in mounts.elements() {
            if let Some(s) = el.as_string_lit() {
                let old = s.decoded_value().unwrap_or_default();
                if local_home(&old).is_some() {
                    let new = replace_local_home(&old, &home_text);
                    s.replace_with(CstInputValue::String(new.clone()));
                    changes.push(format!("mount {old:?} -> {new:?}"));
                }
            } else if let Some(source) = el.as_object().and_then(|o| o.get("source"))
                && let Some(s) = source.value().and_then(|v| v.as_string_lit())
            {
                let old = s.decoded_value().unwrap_or_default();
                if local_home(&old).is_some() {
                    let new = replace_local_home(&old, &home_text);
                    source.set_value(CstInputValue::String(new.clone()));
                    changes.push(format!("mount source {old:?} -> {new:?}"));
                }
            }
        }
    }
    if has("no-home-mount") {
        let mount = home_mount(home);
        match obj.get("mounts") {
            None => {
                obj.append(
                    "mounts",
                    CstInputValue::Array(vec![CstInputValue::String(mount.clone())]),
                );
                changes.push(format!("added \"mounts\": [{mount:?}]"));
            }
            Some(_) => {
                if let Some(arr) = obj.array_value("mounts") {
                    arr.append(CstInputValue::String(mount.clone()));
                    changes.push(format!("added the mount {mount:?}"));
                }
            }
        }
    }
    if has("no-gpu-request") && !docker_gpus {
        let entry = (
            "NVIDIA_VISIBLE_DEVICES",
            CstInputValue::String("all".into()),
        );
        match obj.object_value("containerEnv") {
            Some(env) => {
                env.append(entry.0, entry.1);
                changes.push("added NVIDIA_VISIBLE_DEVICES=all to containerEnv".to_string());
            }
            None => {
                obj.append(
                    "containerEnv",
                    CstInputValue::Object(vec![(entry.0.to_string(), entry.1)]),
                );
                changes.push(
                    "added \"containerEnv\": {\"NVIDIA_VISIBLE_DEVICES\": \"all\"}".to_string(),
                );
            }
        }
    } else if has("no-gpu-request") {
        let gpus = [
            CstInputValue::String("--gpus".into()),
            CstInputValue::String("all".into()),
        ];
        match obj.get("runArgs") {
            None => {
                obj.append("runArgs", CstInputValue::Array(gpus.to_vec()));
                changes.push("added \"runArgs\": [\"--gpus\", \"all\"]".to_string());
            }
            Some(_) => {
                if let Some(arr) = obj.array_value("runArgs") {
                    for g in gpus {
                        arr.append(g);
                    }
                    changes.push("added \"--gpus\", \"all\" to runArgs".to_string());
                }
            }
        }
    }
    Ok((format!("{bom}{root}"), changes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devcontainer::check::{Context, check};

    fn findings(text: &str) -> Vec<Finding> {
        check(text, &Context::alice(None)).unwrap()
    }

    #[test]
    fn fixes_keep_comments_and_formatting() {
        let text = r#"// my project
{
  // the image we like
  "image": "nvidia/cuda:12.4.1-base-ubuntu22.04", // pinned
  "mounts": [
    "source=${localEnv:HOME}/data,target=/data,type=bind", // data
  ],
  /* keep me */
  "shutdownAction": "none",
}
"#;
        let f = findings(text);
        let (fixed, changes) = apply(text, &f, Path::new("/home/alice"), true).unwrap();
        assert_eq!(changes.len(), 3, "{changes:?}");
        for kept in [
            "// my project",
            "// the image we like",
            "// pinned",
            "// data",
            "/* keep me */",
        ] {
            assert!(fixed.contains(kept), "{kept} lost:\n{fixed}");
        }
        assert!(
            fixed.contains("\"source=/home/alice/data,target=/data,type=bind\""),
            "{fixed}"
        );
        assert!(
            fixed.contains("\"shutdownAction\": \"stopContainer\""),
            "{fixed}"
        );
        assert!(fixed.contains("\"--gpus\""), "{fixed}");
        // Everything fixable is gone; the rest of the file is byte for byte the same.
        let after: Vec<&str> = findings(&fixed).iter().map(|f| f.id).collect();
        assert_eq!(after, Vec::<&str>::new(), "{fixed}");
        assert!(fixed.starts_with("// my project\n{\n  // the image we like\n  \"image\": \"nvidia/cuda:12.4.1-base-ubuntu22.04\", // pinned\n"));
    }

    #[test]
    fn a_compose_config_gets_stop_compose_and_never_run_args_and_a_bom_stays() {
        let text = "\u{feff}{\n  \"dockerComposeFile\": \"c.yml\",\n  \"service\": \"app\",\n  \"shutdownAction\": \"stopContainer\",\n  \"mounts\": [\"source=/home/alice,target=/home/alice,type=bind\"]\n}\n";
        let (fixed, changes) =
            apply(text, &findings(text), Path::new("/home/alice"), true).unwrap();
        assert!(fixed.starts_with('\u{feff}'), "the BOM is kept");
        assert!(
            fixed.contains("\"shutdownAction\": \"stopCompose\""),
            "{fixed}"
        );
        assert!(
            !fixed.contains("runArgs"),
            "runArgs does nothing in Compose: {fixed}"
        );
        assert_eq!(changes, ["set \"shutdownAction\": \"stopCompose\""]);
    }

    #[test]
    fn a_mount_at_the_home_target_is_not_added_twice() {
        let text = "{\n  \"image\": \"x\",\n  \"runArgs\": [\"--gpus\", \"all\", \"-v\", \"/srv/alice:/home/alice\"]\n}\n";
        let (fixed, _) = apply(text, &findings(text), Path::new("/home/alice"), true).unwrap();
        assert!(!fixed.contains("target=/home/alice"), "{fixed}");
    }

    #[test]
    fn adds_missing_mounts_and_run_args() {
        let text = "{\n  \"image\": \"x\",\n  \"runArgs\": [\"--shm-size=8g\"]\n}\n";
        let (fixed, changes) =
            apply(text, &findings(text), Path::new("/home/alice"), true).unwrap();
        assert_eq!(changes.len(), 3, "{changes:?}");
        let v = doc::parse(&fixed).unwrap().value;
        assert_eq!(
            v["runArgs"],
            serde_json::json!(["--shm-size=8g", "--gpus", "all"])
        );
        assert_eq!(
            v["mounts"],
            serde_json::json!(["source=/home/alice,target=/home/alice,type=bind"])
        );
        assert_eq!(v["shutdownAction"], "stopContainer");
    }

    #[test]
    fn without_nvidia_s_toolkit_the_fix_asks_in_the_environment() {
        let text = "{\n  \"image\": \"x\",\n  \"containerEnv\": {\"A\": \"1\"}\n}\n";
        let (fixed, _) = apply(text, &findings(text), Path::new("/home/alice"), false).unwrap();
        let v = doc::parse(&fixed).unwrap().value;
        assert!(v.get("runArgs").is_none(), "{fixed}");
        assert_eq!(
            v["containerEnv"],
            serde_json::json!({"A": "1", "NVIDIA_VISIBLE_DEVICES": "all"})
        );
        let text = "{\"image\": \"x\"}";
        let (fixed, _) = apply(text, &findings(text), Path::new("/home/alice"), false).unwrap();
        let v = doc::parse(&fixed).unwrap().value;
        assert_eq!(v["containerEnv"]["NVIDIA_VISIBLE_DEVICES"], "all");
        // And check warns where --gpus cannot work here.
        let with_flag = "{\"image\": \"x\", \"runArgs\": [\"--gpus\", \"all\"]}";
        let f = check(
            with_flag,
            &Context {
                docker_gpus: false,
                ..Context::alice(None)
            },
        )
        .unwrap();
        assert!(f.iter().any(|x| x.id == "gpus-unsupported"), "{f:?}");
    }
}
