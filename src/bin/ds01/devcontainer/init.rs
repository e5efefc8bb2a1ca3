//! `devcontainer init [PATH]`: a devcontainer.json fit for this server.
//! A wizard on a terminal (`--guided` explains each step), defaults with
//! `--quick`; every question has a flag, so it can be scripted.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::bail;
use ds01::devcontainer::catalog::{self, Catalog};
use ds01::devcontainer::template::{self, Gpu, Settings};
use ds01::devcontainer::write::write_file;
use ds01_core::config::Config;

use crate::me::{Me, me};
use crate::prompt::{self, Prompter};

pub const FRAMEWORKS: [&str; 4] = ["pytorch", "tensorflow", "jax", "minimal"];

#[derive(clap::Args, Default)]
pub struct Args {
    /// The project directory (default: this one; the wizard offers ~/workspace projects)
    path: Option<PathBuf>,
    /// No questions: defaults and the flags given
    #[arg(long, conflicts_with_all = ["guided", "concepts"])]
    quick: bool,
    /// Explain each step as it is asked
    #[arg(long)]
    guided: bool,
    /// Explain dev containers and GPU allocation here, and write nothing
    #[arg(long)]
    concepts: bool,
    #[arg(long, value_parser = FRAMEWORKS)]
    framework: Option<String>,
    /// An image instead of the catalog's choice
    #[arg(long)]
    image: Option<String>,
    /// No GPU for this project
    #[arg(long, conflicts_with = "full_gpu")]
    no_gpu: bool,
    /// A whole GPU instead of a MIG slice (where your limits allow)
    #[arg(long)]
    full_gpu: bool,
    /// The name VS Code shows (default: the directory's name)
    #[arg(long)]
    name: Option<String>,
    /// VS Code extensions to install, comma-separated
    #[arg(long, value_delimiter = ',')]
    extensions: Option<Vec<String>>,
    /// Replace an existing file (a backup is kept)
    #[arg(long)]
    force: bool,
    /// Write here instead of PATH/.devcontainer/devcontainer.json
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,
}

pub const CONCEPTS: &str = "\
Dev containers, on this server
==============================
A dev container is a Docker container that VS Code opens your project in: the
editor runs on your laptop, the code runs here, next to the GPUs. The file
.devcontainer/devcontainer.json in the project says which image to use, what
to mount and how to start it; VS Code (\"Reopen in Container\") or the
devcontainer CLI (devcontainer up) reads it.

GPUs here are shared. When a container asks for one (\"--gpus\", \"all\" in
runArgs), ds01 gives it one device: a MIG slice (a fixed share of a GPU with
its own memory) by default, a whole GPU only where your limits allow it and
you ask (DS01_GPU_PROFILE=full). You never pick a device: ds01 does, and it
comes back to the pool when the container stops, which is why the file says
\"shutdownAction\": \"stopContainer\". See your share with: ds01 limits

devcontainer init writes such a file; devcontainer check [--fix] checks one.
";

/// What the wizard settles.
#[derive(Debug, Clone, PartialEq)]
pub struct Answers {
    pub name: String,
    pub framework: String,
    pub image: String,
    pub gpu: Gpu,
    pub extensions: Vec<String>,
}

pub fn run(cfg: &Config, args: Args) -> anyhow::Result<ExitCode> {
    if args.concepts {
        print!("{CONCEPTS}");
        return Ok(ExitCode::SUCCESS);
    }
    let interactive = !args.quick && prompt::interactive();
    if !args.quick && !interactive {
        bail!(
            "devcontainer init: no terminal to ask on; use --quick, with flags for anything not to be defaulted"
        );
    }
    let me = me()?;
    // No catalog file: the built-in one, said so. One that cannot be read
    // is an error naming it, unless --image makes it unneeded.
    let (catalog, note) = match catalog::load_or_built_in(&cfg.image_catalog) {
        Ok((c, note)) => (Some(c), note),
        Err(e) if args.image.is_some() => (
            None,
            Some(format!("{e}; the image is the one --image names")),
        ),
        Err(e) => bail!("{e}"),
    };
    let archs = ds01::scan::load(cfg)
        .map(|i| i.cuda_archs())
        .unwrap_or_default();
    let stdin = std::io::stdin();
    let mut p = Prompter::new(stdin.lock(), std::io::stdout(), args.guided);
    let mut prompter = interactive.then_some(&mut p);
    let project = match &args.path {
        Some(p) => p.clone(),
        None => {
            let cwd = std::env::current_dir()?;
            match prompter.as_deref_mut() {
                Some(p) if !is_project(&cwd, &me.home) => pick_project(p, &me.home)?,
                _ => cwd,
            }
        }
    };
    let file = args
        .output
        .clone()
        .unwrap_or_else(|| project.join(".devcontainer/devcontainer.json"));
    if file.exists() && !args.force {
        let overwrite = match prompter.as_deref_mut() {
            Some(p) => p.confirm(
                &format!("{} exists; replace it (a backup is kept)?", file.display()),
                false,
            )?,
            None => false,
        };
        if !overwrite {
            bail!("{file:?} exists; use --force to replace it (a backup is kept)");
        }
    }
    let answers = settle(&args, &project, catalog.as_ref(), &archs, prompter)?;
    let text = render(answers, &me, catalog.as_ref());
    if let Some(n) = note {
        println!("note: {n}");
    }
    if let Some(b) = write_file(&file, &text)? {
        println!("kept the old file as {}", b.display());
    }
    println!("wrote {}", file.display());
    println!(
        "next: open {} in VS Code and choose \"Reopen in Container\" (or: devcontainer up --workspace-folder {0})",
        project.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// The file for `me`, with these answers.
fn render(a: Answers, me: &Me, catalog: Option<&Catalog>) -> String {
    let image_in_catalog = catalog.is_some_and(|c| c.contains(&a.image));
    template::render(&Settings {
        image_in_catalog,
        name: a.name,
        image: a.image,
        gpu: a.gpu,
        user: me.name.clone(),
        home: me.home.clone(),
        extensions: a.extensions,
        shm_size: "8g".into(),
        docker_gpus: ds01_core::driver::find_hook().is_some(),
    })
}

/// A project: a git repository, a folder with a dev container, or a folder in ~/workspace.
fn is_project(dir: &Path, home: &Path) -> bool {
    dir.join(".git").exists()
        || dir.join(".devcontainer").exists()
        || dir.join(".devcontainer.json").exists()
        || dir.parent() == Some(&home.join("workspace"))
}

fn pick_project<R: BufRead, W: Write>(
    p: &mut Prompter<R, W>,
    home: &Path,
) -> anyhow::Result<PathBuf> {
    let ws = home.join("workspace");
    let mut projects: Vec<PathBuf> = std::fs::read_dir(&ws)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default();
    projects.sort();
    if projects.is_empty() {
        bail!(
            "this is not a project folder and {ws:?} has no projects; create one with: project init NAME"
        );
    }
    let names: Vec<String> = projects
        .iter()
        .map(|p| {
            p.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let i = p.choose(
        &format!(
            "This is not a project folder. Which project in {}?",
            ws.display()
        ),
        &refs,
        0,
    )?;
    Ok(projects[i].clone())
}

/// Every answer: from its flag, else asked (when a prompter is given), else the default.
pub fn settle<R: BufRead, W: Write>(
    args: &Args,
    project: &Path,
    catalog: Option<&Catalog>,
    archs: &[String],
    mut p: Option<&mut Prompter<R, W>>,
) -> anyhow::Result<Answers> {
    let dir_name = project
        .canonicalize()
        .unwrap_or_else(|_| project.to_path_buf())
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "project".into());
    let name = match (&args.name, p.as_deref_mut()) {
        (Some(n), _) => n.clone(),
        (None, Some(p)) => {
            p.explain("The name is what VS Code shows for this container.")?;
            p.ask("Name", &dir_name)?
        }
        (None, None) => dir_name,
    };
    let framework = match (&args.framework, p.as_deref_mut()) {
        (Some(f), _) => f.clone(),
        (None, Some(p)) => {
            p.explain("The framework picks the image: the newest one in the server's catalog that runs on these GPUs.")?;
            FRAMEWORKS[p.choose("Framework", &FRAMEWORKS, 0)?].to_string()
        }
        (None, None) => FRAMEWORKS[0].to_string(),
    };
    let suggested = catalog
        .and_then(|c| c.pick(&framework, archs))
        .map(|r| r.image.clone());
    let image = match (&args.image, p.as_deref_mut(), suggested) {
        (Some(i), _, _) => i.clone(),
        (None, Some(p), Some(s)) => {
            p.explain("The image is what the container runs; other images work, but devcontainer check warns about them.")?;
            p.ask("Image", &s)?
        }
        (None, None, Some(s)) => s,
        (None, _, None) => {
            let why = match catalog {
                Some(c) => format!(
                    "the image catalog {:?} has no {framework} image for {}",
                    c.path,
                    describe(archs)
                ),
                None => "the image catalog could not be read".to_string(),
            };
            bail!("{why}; name one with --image");
        }
    };
    let gpu = if args.no_gpu {
        Gpu::None
    } else if args.full_gpu {
        Gpu::Full
    } else if let Some(p) = p.as_deref_mut() {
        p.explain(
            "A MIG slice is a fixed share of a GPU with its own memory: most work fits one. A whole GPU \
             is only for those whose limits allow it (ds01 limits).",
        )?;
        [Gpu::Mig, Gpu::Full, Gpu::None]
            [p.choose("GPU", &["MIG slice (recommended)", "full GPU", "none"], 0)?]
    } else {
        Gpu::Mig
    };
    let default_ext = template::default_extensions(&framework);
    let extensions = match (&args.extensions, p) {
        (Some(e), _) => e
            .iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
        (None, Some(p)) => {
            p.explain("VS Code installs these extensions inside the container.")?;
            let a = p.ask("Extensions (comma-separated)", &default_ext.join(","))?;
            a.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        }
        (None, None) => default_ext,
    };
    Ok(Answers {
        name,
        framework,
        image,
        gpu,
        extensions,
    })
}

fn describe(archs: &[String]) -> String {
    if archs.is_empty() {
        "any GPU".into()
    } else {
        archs.join(", ")
    }
}

/// For `project init`: the default file, no questions.
pub fn write_quick(
    cfg: &Config,
    project: &Path,
    framework: &str,
    me: &Me,
) -> anyhow::Result<PathBuf> {
    let catalog = catalog::load_or_built_in(&cfg.image_catalog)
        .map_err(anyhow::Error::msg)?
        .0;
    let catalog = Some(catalog);
    let archs = ds01::scan::load(cfg)
        .map(|i| i.cuda_archs())
        .unwrap_or_default();
    let args = Args {
        framework: Some(framework.to_string()),
        ..Args::default()
    };
    let answers = settle::<&[u8], Vec<u8>>(&args, project, catalog.as_ref(), &archs, None)?;
    let file = project.join(".devcontainer/devcontainer.json");
    let text = render(answers, me, catalog.as_ref());
    write_file(&file, &text)?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Catalog {
        catalog::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/images.toml")).unwrap()
    }

    fn settle_with(args: &Args, input: &str) -> (anyhow::Result<Answers>, String) {
        let mut out = Vec::new();
        let c = catalog();
        let res = {
            let mut p = Prompter::new(input.as_bytes(), &mut out, true);
            settle(
                args,
                Path::new("/tmp/my-thesis"),
                Some(&c),
                &["sm_90".into()],
                Some(&mut p),
            )
        };
        (res, String::from_utf8(out).unwrap())
    }

    #[test]
    fn the_wizard_asks_what_flags_do_not_say() {
        // name, framework (jax), image (default), GPU (full), extensions
        let (a, out) = settle_with(&Args::default(), "\n3\n\n2\nms-python.python\n");
        let a = a.unwrap();
        assert_eq!(a.name, "my-thesis");
        assert_eq!(a.framework, "jax");
        assert_eq!(a.image, "nvcr.io/nvidia/jax:24.10-py3");
        assert_eq!(a.gpu, Gpu::Full);
        assert_eq!(a.extensions, ["ms-python.python"]);
        assert!(
            out.contains("A MIG slice is a fixed share"),
            "guided mode explains: {out}"
        );
    }

    #[test]
    fn flags_answer_their_questions() {
        let args = Args {
            name: Some("n".into()),
            framework: Some("tensorflow".into()),
            no_gpu: true,
            extensions: Some(vec!["a".into(), " b ".into()]),
            ..Args::default()
        };
        // Only the image is left to ask.
        let (a, out) = settle_with(&args, "\n");
        let a = a.unwrap();
        assert_eq!(
            (a.name.as_str(), a.image.as_str(), a.gpu, a.extensions),
            (
                "n",
                "tensorflow/tensorflow:2.17.0-gpu",
                Gpu::None,
                vec!["a".to_string(), "b".to_string()]
            )
        );
        assert_eq!(out.matches("[").count(), 1, "one question: {out}");
    }

    #[test]
    fn quick_takes_defaults_and_explains_a_missing_image() {
        let c = catalog();
        let a = settle::<&[u8], Vec<u8>>(&Args::default(), Path::new("/x/p"), Some(&c), &[], None)
            .unwrap();
        assert_eq!((a.framework.as_str(), a.gpu), ("pytorch", Gpu::Mig));
        assert_eq!(a.image, "pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime");
        let e = settle::<&[u8], Vec<u8>>(
            &Args {
                framework: Some("jax".into()),
                ..Args::default()
            },
            Path::new("/x/p"),
            Some(&c),
            &["sm_70".into()],
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("has no jax image for sm_70; name one with --image"),
            "{e}"
        );
    }
}
