//! Builds every guest (samples/ and runtime/test-programs/) for wasm32-wasip2 and writes
//! `guests.rs` into OUT_DIR: one path constant per guest and a `foreach_guest!` macro, so
//! that `cargo test` alone builds and finds them (wasmtime's test-programs pattern).

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.join("../..").canonicalize().unwrap();
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").unwrap());
    let target_dir = out_dir.join("guests");

    for watched in ["samples", "runtime/test-programs", "sdk", "wit"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }

    let mut consts = String::new();
    let mut entries = Vec::new();
    for workspace in ["samples", "runtime/test-programs"] {
        let workspace_dir = root.join(workspace);
        build_workspace(&workspace_dir, &target_dir);
        for crate_name in members(&workspace_dir) {
            let file = target_dir
                .join("wasm32-wasip2/release")
                .join(format!("{}.wasm", crate_name.replace('-', "_")));
            assert!(
                file.exists(),
                "guest {crate_name} was not built: {}",
                file.display()
            );
            let ident = crate_name.replace('-', "_").to_uppercase();
            consts.push_str(&format!(
                "/// The `{crate_name}` guest ({workspace}/{crate_name}).\npub const {ident}: &str = {:?};\n",
                file.display().to_string()
            ));
            entries.push(ident);
        }
    }
    consts.push_str(&format!(
        "/// Every guest, by constant name and path.\npub const ALL: &[(&str, &str)] = &[{}];\n",
        entries
            .iter()
            .map(|e| format!("({e:?}, {e})"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    std::fs::write(out_dir.join("guests.rs"), consts).unwrap();
}

fn build_workspace(dir: &Path, target_dir: &Path) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(dir)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--target-dir",
        ])
        .arg(target_dir);
    // Do not leak this build's settings (flags, wrappers such as clippy-driver, the outer
    // target directory) into the guests' build.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
    ] {
        command.env_remove(var);
    }
    let status = command.status().expect("running cargo for the guests");
    assert!(
        status.success(),
        "building the guests in {} failed",
        dir.display()
    );
}

/// The member directories listed in a guest workspace's Cargo.toml.
fn members(dir: &Path) -> Vec<String> {
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    let line = manifest
        .lines()
        .find(|l| l.trim_start().starts_with("members"))
        .expect("a members line");
    line.split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}
