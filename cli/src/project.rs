//! A function folder on disk: its `wafer.toml`, building it when its component is stale, and
//! reading the component.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use anyhow::{Context, bail};
use wafer_gateway::Manifest;

pub const MANIFEST: &str = "wafer.toml";

pub struct Project {
    /// The folder holding the manifest: `component` and `build` are relative to it.
    pub dir: PathBuf,
    pub manifest: Manifest,
}

impl Project {
    /// Loads `path`: a manifest file, or a folder holding `wafer.toml`.
    pub fn load(path: &Path) -> anyhow::Result<Project> {
        let file = if path.is_dir() {
            path.join(MANIFEST)
        } else {
            path.to_path_buf()
        };
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("failed to read manifest {}", file.display()))?;
        let manifest = Manifest::from_toml(&text)
            .with_context(|| format!("in manifest {}", file.display()))?;
        let dir = file
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        Ok(Project { dir, manifest })
    }

    pub fn name(&self) -> anyhow::Result<String> {
        match &self.manifest.name {
            Some(name) => Ok(name.clone()),
            None => bail!("the manifest in {} has no `name`", self.dir.display()),
        }
    }

    pub fn component_path(&self) -> anyhow::Result<PathBuf> {
        match &self.manifest.component {
            Some(component) => Ok(self.dir.join(component)),
            None => bail!(
                "the manifest in {} has no `component` (the .wasm file to deploy)",
                self.dir.display()
            ),
        }
    }

    /// Runs the manifest's `build` command if the component is missing or older than a source
    /// file in the folder.
    pub fn build_if_stale(&self) -> anyhow::Result<()> {
        if self.manifest.build.is_none() {
            return Ok(());
        }
        let component = self.component_path()?;
        let built = std::fs::metadata(&component)
            .and_then(|m| m.modified())
            .ok();
        let stale = match built {
            None => true,
            Some(built) => newest_source(&self.dir, &component).is_some_and(|t| t > built),
        };
        if stale { self.build() } else { Ok(()) }
    }

    /// Runs the manifest's `build` command in the manifest's folder, its output shown as it
    /// comes, and checks that it produced the component.
    pub fn build(&self) -> anyhow::Result<()> {
        let Some(build) = &self.manifest.build else {
            bail!(
                "the manifest in {} has no `build` command",
                self.dir.display()
            );
        };
        let component = self.component_path()?;
        eprintln!("building {} ({build})", self.dir.display());
        let status = Command::new("sh")
            .arg("-c")
            .arg(build)
            .current_dir(&self.dir)
            .status()
            .with_context(|| format!("failed to run the build command `{build}`"))?;
        if !status.success() {
            bail!("the build command `{build}` failed ({status})");
        }
        if !component.exists() {
            bail!(
                "the build command succeeded but {} does not exist: check `component` in the manifest",
                component.display()
            );
        }
        Ok(())
    }

    /// Builds if needed, then reads the component.
    pub fn component(&self) -> anyhow::Result<Vec<u8>> {
        self.build_if_stale()?;
        let path = self.component_path()?;
        std::fs::read(&path).with_context(|| format!("failed to read component {}", path.display()))
    }
}

/// The newest modification time among the folder's files, skipping build output and VCS folders.
fn newest_source(dir: &Path, exclude: &Path) -> Option<SystemTime> {
    const SKIP: &[&str] = &["target", "node_modules", ".git", "__pycache__"];
    let mut newest = None;
    let mut stack = vec![dir.to_path_buf()];
    let mut seen = 0;
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            seen += 1;
            if seen > 10_000 {
                return newest;
            }
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                if !SKIP.contains(&name.as_ref()) && !name.starts_with('.') {
                    stack.push(path);
                }
            } else if path != exclude
                && let Ok(modified) = meta.modified()
            {
                newest = newest.max(Some(modified));
            }
        }
    }
    newest
}
