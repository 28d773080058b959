//! Finding a guest's component: a `.wasm` file as given, or a crate built with cargo for
//! `wasm32-wasip2`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::SystemTime;

use anyhow::{Context, Result, bail};

/// Where a component comes from.
#[derive(Debug, Clone)]
pub(crate) enum GuestSource {
    /// A component file.
    Wasm(PathBuf),
    /// A cargo crate (the directory holding its Cargo.toml).
    Crate(PathBuf),
}

impl GuestSource {
    pub(crate) fn from_path(path: &Path) -> Result<Self> {
        if path.is_dir() {
            if !path.join("Cargo.toml").is_file() {
                bail!(
                    "{} is a directory without a Cargo.toml: give a guest crate or a .wasm file",
                    path.display()
                );
            }
            return Ok(Self::Crate(path.to_path_buf()));
        }
        if path.is_file() {
            return Ok(Self::Wasm(path.to_path_buf()));
        }
        bail!("{} does not exist", path.display())
    }

    /// A name for the deployment: the file stem, or the crate directory's name.
    pub(crate) fn name(&self) -> String {
        let name = match self {
            Self::Wasm(path) => path.file_stem().map(|s| s.to_string_lossy().into_owned()),
            Self::Crate(dir) => dir
                .canonicalize()
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned())),
        };
        name.unwrap_or_else(|| "dev".to_owned())
    }

    /// Builds (for a crate) and reads the component's bytes.
    pub(crate) fn load(&self) -> Result<Vec<u8>> {
        let file = match self {
            Self::Wasm(path) => path.clone(),
            Self::Crate(dir) => build_crate(dir)?,
        };
        std::fs::read(&file).with_context(|| format!("reading {}", file.display()))
    }

    /// The newest modification time among the files that make the guest.
    pub(crate) fn newest_change(&self) -> Option<SystemTime> {
        match self {
            Self::Wasm(path) => std::fs::metadata(path).and_then(|m| m.modified()).ok(),
            Self::Crate(dir) => newest_in(dir),
        }
    }
}

fn newest_in(dir: &Path) -> Option<SystemTime> {
    let mut newest = None;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            if name == "target" || name.to_string_lossy().starts_with('.') {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(modified) = entry.metadata().and_then(|m| m.modified()) {
                newest = newest.max(Some(modified));
            }
        }
    }
    newest
}

/// Runs `cargo build --release --target wasm32-wasip2` in `dir` and returns the `.wasm` it
/// produced (read from cargo's JSON messages, so workspaces and renamed targets work).
fn build_crate(dir: &Path) -> Result<PathBuf> {
    eprintln!(
        "building {} (cargo build --release --target wasm32-wasip2)",
        dir.display()
    );
    let output = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .current_dir(dir)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--message-format=json-render-diagnostics",
        ])
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo")?;
    if !output.status.success() {
        bail!("cargo build failed in {}", dir.display());
    }
    let mut wasm = None;
    for line in output.stdout.split(|b| *b == b'\n') {
        let Ok(message) = serde_json::from_slice::<serde_json::Value>(line) else {
            continue;
        };
        if message["reason"] != "compiler-artifact" {
            continue;
        }
        let manifest = message["manifest_path"].as_str().map(PathBuf::from);
        let ours = manifest
            .and_then(|m| m.parent().map(Path::to_path_buf))
            .and_then(|m| m.canonicalize().ok())
            == dir.canonicalize().ok();
        if !ours {
            continue;
        }
        if let Some(files) = message["filenames"].as_array() {
            for file in files.iter().filter_map(|f| f.as_str()) {
                if file.ends_with(".wasm") {
                    wasm = Some(PathBuf::from(file));
                }
            }
        }
    }
    wasm.with_context(|| {
        format!(
            "cargo built no .wasm for {}: is it a library with crate-type = [\"cdylib\"]?",
            dir.display()
        )
    })
}
