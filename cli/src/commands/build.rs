//! `wafer build`: run a function's build command (from its manifest), showing its output.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use crate::project::Project;

#[derive(clap::Args)]
pub struct Build {
    /// A manifest, or a folder holding wafer.toml [default: the current folder].
    path: Option<PathBuf>,
}

impl Build {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let project = Project::load(self.path.as_deref().unwrap_or(".".as_ref()))?;
        let started = Instant::now();
        project.build()?;
        let component = project.component_path()?;
        let size = std::fs::metadata(&component)?.len();
        eprintln!(
            "built {} ({:.1} MB) in {:.1}s",
            component.display(),
            size as f64 / 1e6,
            started.elapsed().as_secs_f64()
        );
        Ok(ExitCode::SUCCESS)
    }
}
