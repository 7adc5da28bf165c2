//! Puts the `raynode` binary into the wheel beside the native module.
//!
//! maturin packs one crate's library; a wheel carries other executables as
//! wheel data (`[tool.maturin] data`, whose `scripts/` pip installs into
//! the environment's bin directory). This script copies the release build
//! of the `raynode` binary to `wheel-data/scripts/raynode`:
//!
//! - when this crate is built in the release profile (`maturin build
//!   --release`), the binary in the same target dir is used if it is newer
//!   than every source its dep-info file lists and Cargo.lock (as after
//!   `cargo build --release`, which `scripts/setup` runs). Otherwise it is
//!   built here, in `<target>/raynode-wheel`: cargo holds the release
//!   profile's directory while it builds this crate, so a nested build
//!   cannot use it;
//! - in any other profile, the release binary is built (or found up to
//!   date) in the same target dir, sharing the workspace's release build.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

fn main() {
    if let Err(e) = run() {
        panic!("cannot put the raynode binary into the wheel: {e}");
    }
}

fn run() -> Result<(), String> {
    let manifest_dir = PathBuf::from(env("CARGO_MANIFEST_DIR")?);
    let workspace = manifest_dir
        .parent()
        .ok_or("py/ has no parent")?
        .to_path_buf();
    let out_dir = PathBuf::from(env("OUT_DIR")?);
    // OUT_DIR is <target>[/<triple>]/<profile>/build/<crate>-<hash>/out.
    let profile_dir = out_dir
        .ancestors()
        .nth(3)
        .ok_or("unexpected OUT_DIR")?
        .to_path_buf();
    let target_triple = env("TARGET")?;
    let cross = profile_dir
        .parent()
        .and_then(Path::file_name)
        .is_some_and(|n| n == target_triple.as_str());
    let target_dir = profile_dir
        .ancestors()
        .nth(if cross { 2 } else { 1 })
        .ok_or("unexpected OUT_DIR")?
        .to_path_buf();
    let release_dir = |root: &Path| match cross {
        true => root.join(&target_triple).join("release"),
        false => root.join("release"),
    };

    let lock = workspace.join("Cargo.lock");
    let binary = if profile_dir.file_name().is_some_and(|n| n == "release") {
        let built = profile_dir.join("raynode");
        let sources = dep_info(&profile_dir.join("raynode.d"));
        for source in sources.iter().chain([&lock, &built]) {
            println!("cargo:rerun-if-changed={}", source.display());
        }
        if is_fresh(&built, &sources, &lock) {
            built
        } else {
            println!(
                "cargo:warning=building the raynode binary in {}; run `cargo build --release -p raynode` \
                 before building the wheel to use the workspace's release build instead",
                target_dir.join("raynode-wheel").display()
            );
            let own = target_dir.join("raynode-wheel");
            build_binary(&workspace, &own, cross.then_some(target_triple.as_str()))?;
            release_dir(&own).join("raynode")
        }
    } else {
        build_binary(
            &workspace,
            &target_dir,
            cross.then_some(target_triple.as_str()),
        )?;
        let built = release_dir(&target_dir).join("raynode");
        for source in dep_info(&release_dir(&target_dir).join("raynode.d"))
            .iter()
            .chain([&lock, &built])
        {
            println!("cargo:rerun-if-changed={}", source.display());
        }
        built
    };

    let dest_dir = manifest_dir.join("wheel-data").join("scripts");
    let dest = dest_dir.join("raynode");
    println!("cargo:rerun-if-changed={}", dest.display());
    copy_executable(&binary, &dest_dir, &dest)
}

fn env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("{name} is not set"))
}

/// The sources a dep-info file (`target: a b\ c`) lists; none if it is absent.
fn dep_info(path: &Path) -> Vec<PathBuf> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let Some(line) = text.lines().next() else {
        return Vec::new();
    };
    let Some((_, deps)) = line.split_once(": ") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    let mut current = String::new();
    let mut chars = deps.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => current.extend(chars.next()),
            ' ' => {
                if !current.is_empty() {
                    found.push(PathBuf::from(std::mem::take(&mut current)));
                }
            }
            c => current.push(c),
        }
    }
    if !current.is_empty() {
        found.push(PathBuf::from(current));
    }
    found
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Whether `binary` exists and is no older than any of its sources.
fn is_fresh(binary: &Path, sources: &[PathBuf], lock: &Path) -> bool {
    let Some(built) = modified(binary) else {
        return false;
    };
    !sources.is_empty()
        && sources
            .iter()
            .chain([&lock.to_path_buf()])
            .all(|s| modified(s).is_some_and(|m| m <= built))
}

fn build_binary(workspace: &Path, target_dir: &Path, triple: Option<&str>) -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--release")
        .arg("--manifest-path")
        .arg(workspace.join("Cargo.toml"))
        .args(["-p", "raynode", "--bin", "raynode", "--target-dir"])
        .arg(target_dir);
    if let Some(triple) = triple {
        cmd.args(["--target", triple]);
    }
    let status = cmd
        .status()
        .map_err(|e| format!("running cargo to build raynode: {e}"))?;
    match status.success() {
        true => Ok(()),
        false => Err(format!(
            "cargo build of the raynode binary failed ({status})"
        )),
    }
}

/// Copies `from` to `to` (mode 0755) unless `to` already holds the same bytes.
fn copy_executable(from: &Path, dir: &Path, to: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let bytes = std::fs::read(from).map_err(|e| format!("reading {}: {e}", from.display()))?;
    if std::fs::read(to).is_ok_and(|old| old == bytes) {
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let tmp = dir.join(".raynode.tmp");
    std::fs::write(&tmp, &bytes).map_err(|e| format!("writing {}: {e}", tmp.display()))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("making {} executable: {e}", tmp.display()))?;
    std::fs::rename(&tmp, to).map_err(|e| format!("writing {}: {e}", to.display()))
}
