//! Every dependency a workspace crate declares is named by one of its
//! source files: an unused dependency costs every cold build its compile
//! time. The crate's `.rs` files are searched for a path through it
//! (`name::`) or a `use name` / `extern crate name`; the bare word (as in
//! `"config.toml"`) does not count.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// A workspace crate and the names its dependencies have in code.
struct Package {
    name: String,
    dir: PathBuf,
    dependencies: BTreeSet<String>,
}

#[test]
fn every_declared_dependency_is_named_by_a_source_file() {
    let mut unused = Vec::new();
    for package in workspace_packages() {
        let sources = rust_sources(&package.dir);
        for dependency in &package.dependencies {
            if !sources.iter().any(|text| names_crate(text, dependency)) {
                unused.push(format!("{}: `{dependency}`", package.name));
            }
        }
    }
    assert!(
        unused.is_empty(),
        "declared in Cargo.toml but named by no source file (remove them, \
         or name them where they are used):\n{}",
        unused.join("\n")
    );
}

#[test]
fn a_crate_is_named_by_a_path_use_or_extern_not_by_a_word_in_prose() {
    assert!(names_crate(
        "let x = serde_json::to_vec(&v)?;",
        "serde_json"
    ));
    assert!(names_crate("#[tokio::main]\nasync fn main() {}", "tokio"));
    assert!(names_crate("use stripe;\n", "stripe"));
    assert!(names_crate(
        "use stripe_core::{Customer, Refund};",
        "stripe_core"
    ));
    assert!(names_crate("extern crate mimalloc as alloc;", "mimalloc"));
    assert!(!names_crate("// tokio is fast\nfn f() {}", "tokio"));
    assert!(!names_crate("use stripe_core::Customer;", "stripe"));
    assert!(!names_crate("let my_tokio::x = 1;", "tokio"));
    assert!(!names_crate("let file = \"tokio.toml\";", "tokio"));
}

/// Whether `text` names the crate `name`: `name::` after a non-identifier
/// character, or `name` right after `use ` or `extern crate `.
fn names_crate(text: &str, name: &str) -> bool {
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    text.match_indices(name).any(|(at, _)| {
        let before = &text[..at];
        let after = &text[at + name.len()..];
        if before.chars().next_back().is_some_and(is_ident) {
            return false;
        }
        if after.starts_with("::") {
            return true;
        }
        let ends_word = !after.chars().next().is_some_and(is_ident);
        let before = before.trim_end();
        let keyword_before = |kw: &str| {
            before
                .strip_suffix(kw)
                .is_some_and(|rest| !rest.chars().next_back().is_some_and(is_ident))
        };
        ends_word && (keyword_before("use") || keyword_before("extern crate"))
    })
}

/// The workspace's crates, from `cargo metadata --no-deps` (nothing to
/// download). A dependency's name in code is its key in Cargo.toml with `-`
/// as `_`; a crate whose library is called otherwise (`async-stripe` is
/// `stripe`) is declared under that name with `package = "..."`.
fn workspace_packages() -> Vec<Package> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .arg("--manifest-path")
        .arg(root.join("Cargo.toml"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: Value = serde_json::from_slice(&output.stdout).expect("cargo metadata's JSON");
    let packages: Vec<Package> = metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|package| {
            let manifest = package["manifest_path"].as_str().expect("manifest_path");
            Package {
                name: package["name"].as_str().unwrap_or_default().to_string(),
                dir: Path::new(manifest).parent().expect("a crate's dir").into(),
                dependencies: package["dependencies"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|dep| dep["rename"].as_str().or(dep["name"].as_str()))
                    .map(|name| name.replace('-', "_"))
                    .collect(),
            }
        })
        .collect();
    assert!(!packages.is_empty(), "the workspace's members are listed");
    packages
}

/// The text of every `.rs` file under `dir`, build outputs left out.
fn rust_sources(dir: &Path) -> Vec<String> {
    let mut texts = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = std::fs::read_dir(&dir).expect("a crate's dir is readable");
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                if entry.file_name() != "target" {
                    pending.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "rs") {
                texts.push(std::fs::read_to_string(&path).expect("a source file is UTF-8"));
            }
        }
    }
    texts
}
