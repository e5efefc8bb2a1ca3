//! The image catalog admins edit (config key `image_catalog`): which image
//! to use for a framework on this host's GPU architecture.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Row {
    /// `pytorch`, `tensorflow`, `jax`, `minimal`, ...
    pub framework: String,
    /// The framework's version; the newest fitting row wins.
    pub version: String,
    /// CUDA architectures the image supports (`sm_80`, `sm_90`, ...).
    pub cuda_archs: Vec<String>,
    pub image: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    image: Vec<Row>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Catalog {
    pub path: PathBuf,
    pub rows: Vec<Row>,
}

/// The catalog shipped in the package, built in: it serves when no file is
/// installed.
pub const BUILT_IN: &str = include_str!("../../packaging/images.toml");

/// The catalog at `path`; when there is no file there, the built-in one
/// and a note saying so. A file that cannot be read or parsed is an error
/// naming it and why.
pub fn load_or_built_in(path: &Path) -> Result<(Catalog, Option<String>), String> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(path, &text).map(|c| (c, None)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let c = parse(Path::new("(built into ds01)"), BUILT_IN)?;
            Ok((
                c,
                Some(format!(
                    "no image catalog at {path:?}; used the one built into ds01"
                )),
            ))
        }
        Err(e) => Err(format!("image catalog {path:?}: cannot read: {e}")),
    }
}

pub fn load(path: &Path) -> Result<Catalog, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("image catalog {path:?}: {e}"))?;
    parse(path, &text)
}

pub fn parse(path: &Path, text: &str) -> Result<Catalog, String> {
    let file: File = toml::from_str(text)
        .map_err(|e| format!("image catalog {path:?}: {}", e.message().replace('\n', " ")))?;
    for (i, r) in file.image.iter().enumerate() {
        if r.framework.is_empty() || r.image.is_empty() || r.version.is_empty() {
            return Err(format!(
                "image catalog {path:?}: [[image]] number {} needs framework, version and image",
                i + 1
            ));
        }
    }
    Ok(Catalog {
        path: path.to_path_buf(),
        rows: file.image,
    })
}

/// `2.10.1` sorts after `2.9`.
fn version_key(v: &str) -> Vec<u64> {
    v.split(['.', '-'])
        .map(|p| p.parse().unwrap_or(0))
        .collect()
}

impl Catalog {
    /// The newest row for `framework` that runs on every architecture in
    /// `host_archs` (any row when the host's are unknown).
    pub fn pick(&self, framework: &str, host_archs: &[String]) -> Option<&Row> {
        self.rows
            .iter()
            .filter(|r| r.framework == framework)
            .filter(|r| host_archs.iter().all(|a| r.cuda_archs.contains(a)))
            .max_by_key(|r| version_key(&r.version))
    }

    pub fn contains(&self, image: &str) -> bool {
        self.rows.iter().any(|r| r.image == image)
    }

    pub fn frameworks(&self) -> Vec<&str> {
        let mut f: Vec<&str> = self.rows.iter().map(|r| r.framework.as_str()).collect();
        f.sort();
        f.dedup();
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_catalog_falls_back_to_the_built_in_one_and_a_broken_one_is_named() {
        let d = tempfile::tempdir().unwrap();
        let (c, note) = load_or_built_in(&d.path().join("images.toml")).unwrap();
        assert!(!c.rows.is_empty());
        assert!(note.unwrap().contains("built into ds01"));
        std::fs::write(d.path().join("bad.toml"), "[[image]]\nframework = 1\n").unwrap();
        let e = load_or_built_in(&d.path().join("bad.toml")).unwrap_err();
        assert!(e.contains("bad.toml"), "{e}");
        let e = load_or_built_in(d.path()).unwrap_err();
        assert!(e.contains("cannot read"), "a directory: {e}");
    }

    fn shipped() -> Catalog {
        load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/images.toml")).unwrap()
    }

    #[test]
    fn newest_row_for_the_hosts_architecture() {
        let c = parse(
            Path::new("/c.toml"),
            r#"
            [[image]]
            framework = "pytorch"
            version = "2.9"
            cuda_archs = ["sm_80", "sm_90"]
            image = "pt:2.9"
            [[image]]
            framework = "pytorch"
            version = "2.10"
            cuda_archs = ["sm_90"]
            image = "pt:2.10"
            "#,
        )
        .unwrap();
        let arch = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            c.pick("pytorch", &arch(&["sm_90"])).unwrap().image,
            "pt:2.10"
        );
        assert_eq!(
            c.pick("pytorch", &arch(&["sm_80"])).unwrap().image,
            "pt:2.9"
        );
        assert_eq!(
            c.pick("pytorch", &arch(&["sm_80", "sm_90"])).unwrap().image,
            "pt:2.9"
        );
        assert_eq!(c.pick("pytorch", &[]).unwrap().image, "pt:2.10");
        assert!(c.pick("pytorch", &arch(&["sm_70"])).is_none());
        assert!(c.pick("jax", &[]).is_none());
    }

    #[test]
    fn shipped_catalog_covers_every_framework_on_the_simulated_gpus() {
        let c = shipped();
        assert_eq!(c.frameworks(), ["jax", "minimal", "pytorch", "tensorflow"]);
        for f in c.frameworks() {
            assert!(c.pick(f, &["sm_80".to_string()]).is_some(), "{f}");
        }
    }

    #[test]
    fn bad_catalogs_name_the_file() {
        let e = parse(Path::new("/c.toml"), "[[image]]\nframework = \"x\"\n").unwrap_err();
        assert!(e.contains("/c.toml"), "{e}");
        let e = parse(
            Path::new("/c.toml"),
            "[[image]]\nframework=\"x\"\nversion=\"1\"\ncuda_archs=[]\nimage=\"\"\n",
        )
        .unwrap_err();
        assert!(e.contains("needs framework, version and image"), "{e}");
    }
}
