//! `retort new KIND NAME`: a plugin crate of any of the five kinds, with its own name, summary,
//! documented parameters (`#[params]`) and a test that loads the built library into a real host.
use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::{bail, Context};
use clap::ValueEnum;

/// The kind of plugin to scaffold.
#[derive(Clone, Copy, ValueEnum)]
pub enum Kind {
    Loss,
    Model,
    Teacher,
    Router,
    Augmenter,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Loss => "loss",
            Kind::Model => "model",
            Kind::Teacher => "teacher",
            Kind::Router => "router",
            Kind::Augmenter => "augmenter",
        }
    }

    /// The folder of `plugins/` that holds this kind.
    fn plural(self) -> &'static str {
        match self {
            Kind::Loss => "losses",
            Kind::Model => "models",
            Kind::Teacher => "teachers",
            Kind::Router => "routers",
            Kind::Augmenter => "augmenters",
        }
    }

    /// (library source, test source) templates.
    fn templates(self) -> (&'static str, &'static str) {
        match self {
            Kind::Loss => (include_str!("new/loss.rs.tmpl"), include_str!("new/loss.test.tmpl")),
            Kind::Model => (include_str!("new/model.rs.tmpl"), include_str!("new/model.test.tmpl")),
            Kind::Teacher => (include_str!("new/teacher.rs.tmpl"), include_str!("new/teacher.test.tmpl")),
            Kind::Router => (include_str!("new/router.rs.tmpl"), include_str!("new/router.test.tmpl")),
            Kind::Augmenter => (include_str!("new/augmenter.rs.tmpl"), include_str!("new/augmenter.test.tmpl")),
        }
    }
}

/// What `retort new` was asked to do.
pub struct NewArgs {
    pub kind: Kind,
    pub name: String,
    pub dir: Option<PathBuf>,
    pub retort_src: Option<PathBuf>,
}

/// `my-loss` → `MyLoss`.
fn camel(name: &str) -> String {
    name.split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
        })
        .collect()
}

fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-')
        && !name.contains("--");
    if !ok {
        bail!("plugin name `{name}`: use lowercase letters, digits and single dashes, starting with a letter");
    }
    Ok(())
}

/// Whether `dir` holds the Retort sources (the workspace with `sdk/` and `host/`).
fn is_retort_root(dir: &Path) -> bool {
    dir.join("sdk/Cargo.toml").exists()
        && dir.join("host/Cargo.toml").exists()
        && std::fs::read_to_string(dir.join("Cargo.toml")).is_ok_and(|t| t.contains("retort-sdk"))
}

/// The Retort checkout: `--retort-src`, else above the working directory, else above the executable.
fn retort_root(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(g) = given {
        let g = std::path::absolute(g)?;
        if !is_retort_root(&g) {
            bail!("--retort-src {}: not a Retort checkout (no sdk/ and host/ crates)", g.display());
        }
        return Ok(g);
    }
    let cwd = std::env::current_dir()?;
    let exe = std::env::current_exe().ok();
    let candidates = cwd.ancestors().chain(exe.iter().flat_map(|e| e.ancestors().skip(1)));
    for d in candidates {
        if is_retort_root(d) {
            return Ok(d.to_path_buf());
        }
    }
    bail!(
        "cannot find the Retort sources (looked above {} and the retort executable): pass --retort-src",
        cwd.display()
    )
}

/// The nearest directory above `dir` whose Cargo.toml declares a workspace.
fn enclosing_workspace(dir: &Path) -> Option<PathBuf> {
    dir.ancestors()
        .skip(1)
        .find(|d| std::fs::read_to_string(d.join("Cargo.toml")).is_ok_and(|t| t.contains("[workspace]")))
        .map(Path::to_path_buf)
}

fn manifest(package: &str, kind: Kind, root: &Path, member_of_retort: bool, in_other_workspace: bool) -> String {
    let description = format!("A Retort {} plugin.", kind.name());
    if member_of_retort {
        return format!(
            r#"[package]
name = "{package}"
version = "0.1.0"
description = "{description}"
edition.workspace = true
license.workspace = true
rust-version.workspace = true

# A plugin is a cdylib the host loads at run time (rlib too, so tests can link it).
[lib]
crate-type = ["cdylib", "rlib"]

[dependencies]
retort-sdk.workspace = true

[dev-dependencies]
retort.workspace = true
retort-e2e.workspace = true
candle-core.workspace = true
"#
        );
    }
    let r = root.display();
    let own_workspace = if in_other_workspace {
        String::new()
    } else {
        "\n# A workspace of its own (not a member of another).\n[workspace]\n".to_string()
    };
    format!(
        r#"[package]
name = "{package}"
version = "0.1.0"
description = "{description}"
edition = "2021"

# A plugin is a cdylib the host loads at run time (rlib too, so tests can link it).
[lib]
crate-type = ["cdylib", "rlib"]

[dependencies]
retort-sdk = {{ path = "{r}/sdk" }}

[dev-dependencies]
retort = {{ path = "{r}/host" }}
retort-e2e = {{ path = "{r}/tests" }}
candle-core = "0.11.1"
{own_workspace}"#
    )
}

/// Scaffolds the crate and prints what to do next.
pub fn run(args: NewArgs) -> anyhow::Result<ExitCode> {
    let NewArgs { kind, name, dir, retort_src } = args;
    check_name(&name)?;
    let root = retort_root(retort_src.as_deref())?;
    let dir = match dir {
        Some(d) => std::path::absolute(d)?,
        None => root.join("plugins").join(kind.plural()).join(&name),
    };
    // Members of the Retort workspace are `plugins/<kind>/<name>`.
    let member_of_retort = dir.parent().and_then(Path::parent) == Some(root.join("plugins").as_path());
    let other_workspace = if member_of_retort { None } else { enclosing_workspace(&dir) };
    if std::fs::read_dir(&dir).is_ok_and(|mut d| d.next().is_some()) {
        bail!("{} exists and is not empty; choose another name or --dir", dir.display());
    }
    let package = format!("retort-{}-{name}", kind.name());
    let (lib, test) = kind.templates();
    let fill =
        |t: &str| t.replace("__NAME__", &name).replace("__TYPE__", &camel(&name)).replace("__PACKAGE__", &package);
    let write = |rel: &str, text: String| -> anyhow::Result<()> {
        let p = dir.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).with_context(|| parent.display().to_string())?;
        }
        std::fs::write(&p, text).with_context(|| p.display().to_string())
    };
    write("Cargo.toml", manifest(&package, kind, &root, member_of_retort, other_workspace.is_some()))?;
    write("src/lib.rs", fill(lib))?;
    write(&format!("tests/{}.rs", name.replace('-', "_")), fill(test))?;

    println!("created {} plugin `{name}` in {} (package {package})", kind.name(), dir.display());
    if let Some(ws) = other_workspace {
        println!("note: add it to the members of the workspace at {}", ws.display());
    }
    let at = if member_of_retort { String::new() } else { format!(" --manifest-path {}/Cargo.toml", dir.display()) };
    println!("next:");
    println!("  cargo test --release{at} -p {package}    # its test: builds the library and loads it into a host");
    let found = if member_of_retort { "" } else { " --plugin-dir <its target dir>/release" };
    println!("  retort plugins inspect {name}{found}");
    println!("  edit {}/src/lib.rs; run it live with `retort train run.toml --dev {}`", dir.display(), dir.display());
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(camel("my-loss"), "MyLoss");
        assert_eq!(camel("kd2"), "Kd2");
        assert!(check_name("my-loss").is_ok());
        for bad in ["My", "-x", "x-", "a--b", "a_b", ""] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn templates_fill_every_placeholder() {
        for k in [Kind::Loss, Kind::Model, Kind::Teacher, Kind::Router, Kind::Augmenter] {
            let (lib, test) = k.templates();
            for t in [lib, test] {
                let filled = t.replace("__NAME__", "x").replace("__TYPE__", "X").replace("__PACKAGE__", "retort-x");
                assert!(!filled.contains("__"), "{} template keeps a placeholder", k.name());
            }
        }
    }
}
