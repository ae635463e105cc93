//! `wafer new`: scaffold a function folder (manifest, source, build command) that builds and
//! deploys as it is. The JavaScript and Python templates are the repository's own `hello-js`
//! and `hello-py` examples, so what is scaffolded is what the tests build.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use wafer_gateway::manifest::validate_name;

#[derive(Clone, Copy, clap::ValueEnum)]
enum Lang {
    Rust,
    Js,
    Python,
}

#[derive(clap::Args)]
pub struct New {
    /// The function's name (also the folder's, unless --dir): a-z, 0-9 and '-'.
    name: String,
    /// The language to write it in.
    #[arg(long, value_enum, default_value = "rust")]
    lang: Lang,
    /// Where to create it [default: ./NAME].
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// WASI WIT the JavaScript and Python toolchains build against (the repository's `wit/`).
const WIT: &[(&str, &str)] = &[
    ("world.wit", include_str!("../../../wit/world.wit")),
    ("deps/cli.wit", include_str!("../../../wit/deps/cli.wit")),
    (
        "deps/clocks.wit",
        include_str!("../../../wit/deps/clocks.wit"),
    ),
    (
        "deps/filesystem.wit",
        include_str!("../../../wit/deps/filesystem.wit"),
    ),
    ("deps/http.wit", include_str!("../../../wit/deps/http.wit")),
    ("deps/io.wit", include_str!("../../../wit/deps/io.wit")),
    (
        "deps/random.wit",
        include_str!("../../../wit/deps/random.wit"),
    ),
    (
        "deps/sockets.wit",
        include_str!("../../../wit/deps/sockets.wit"),
    ),
];

impl New {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        validate_name(&self.name)?;
        let dir = self
            .dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(&self.name));
        if dir.exists()
            && dir
                .read_dir()
                .map(|mut d| d.next().is_some())
                .unwrap_or(true)
        {
            bail!("{} already exists and is not empty", dir.display());
        }
        let files = match self.lang {
            Lang::Rust => rust(&self.name),
            Lang::Js => js(&self.name),
            Lang::Python => python(&self.name),
        };
        for (path, contents) in &files {
            write(&dir.join(path), contents)?;
        }
        #[cfg(unix)]
        if matches!(self.lang, Lang::Python) {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.join("build.sh"), std::fs::Permissions::from_mode(0o755))?;
        }
        println!("created {} in {}", self.name, dir.display());
        println!(
            "next: cd {} && wafer deploy   (builds it first)",
            dir.display()
        );
        Ok(ExitCode::SUCCESS)
    }
}

fn write(path: &Path, contents: &str) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("failed to create {}", parent.display()))?;
    }
    std::fs::write(path, contents).with_context(|| format!("failed to write {}", path.display()))
}

fn with_wit(mut files: Vec<(String, String)>) -> Vec<(String, String)> {
    files.extend(
        WIT.iter()
            .map(|(path, text)| (format!("wit/{path}"), text.to_string())),
    );
    files
}

/// The SDK: from this wafer's own source tree when it is there (wafer is not on crates.io yet).
fn sdk_dependency() -> String {
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk");
    match sdk.canonicalize() {
        Ok(path) => format!("wafer-sdk = {{ path = {:?} }}", path.display().to_string()),
        Err(_) => format!("wafer-sdk = \"{}\"", env!("CARGO_PKG_VERSION")),
    }
}

fn rust(name: &str) -> Vec<(String, String)> {
    let crate_name = name.replace('-', "_");
    let cargo = format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
{sdk}
serde = {{ version = "1", features = ["derive"] }}

[profile.release]
opt-level = "s"
lto = true
strip = true

# A workspace of its own, even when created inside another one.
[workspace]
"#,
        sdk = sdk_dependency()
    );
    let manifest = format!(
        r#"# A wafer function: `wafer deploy` builds and deploys it. Every key: wafer's README.
name = "{name}"
component = "target/wasm32-wasip2/release/{crate_name}.wasm"
build = "rustup target add wasm32-wasip2 && cargo build --release --target wasm32-wasip2 --target-dir target"
"#
    );
    vec![
        ("Cargo.toml".into(), cargo),
        (
            "src/lib.rs".into(),
            include_str!("../../templates/rust/lib.rs").into(),
        ),
        ("wafer.toml".into(), manifest),
        (".gitignore".into(), "/target\n".into()),
    ]
}

fn js(name: &str) -> Vec<(String, String)> {
    let package = include_str!("../../../examples/hello-js/package.json")
        .replace("\"hello-js\"", &format!("{name:?}"))
        .replace(
            "wafer's hello/echo function in JavaScript",
            "a wafer function",
        )
        .replace("WIT_DIR=../../wit ", "");
    let manifest = format!(
        r#"# A wafer function: `wafer deploy` builds and deploys it. Every key: wafer's README.
name = "{name}"
component = "{name}.wasm"
build = "npm install --no-audit --no-fund --prefer-offline && npm run --silent build"

[scaling]
# componentize-js `fetch` handlers serve one request per instance.
reuse = 1
"#
    );
    let lock = include_str!("../../../examples/hello-js/package-lock.json")
        .replace("\"name\": \"hello-js\"", &format!("\"name\": {name:?}"));
    with_wit(vec![
        ("package.json".into(), package),
        ("package-lock.json".into(), lock),
        (
            "app.js".into(),
            include_str!("../../../examples/hello-js/app.js").into(),
        ),
        (
            "build.mjs".into(),
            include_str!("../../../examples/hello-js/build.mjs").into(),
        ),
        ("wafer.toml".into(), manifest),
        (
            ".gitignore".into(),
            format!("/node_modules\n/build\n/{name}.wasm\n"),
        ),
    ])
}

fn python(name: &str) -> Vec<(String, String)> {
    let manifest = format!(
        r#"# A wafer function: `wafer deploy` builds and deploys it. Every key: wafer's README.
name = "{name}"
component = "{name}.wasm"
build = "./build.sh {name}.wasm"
"#
    );
    with_wit(vec![
        (
            "app.py".into(),
            include_str!("../../../examples/hello-py/app.py").into(),
        ),
        (
            "requirements.txt".into(),
            include_str!("../../../examples/hello-py/requirements.txt").into(),
        ),
        (
            "build.sh".into(),
            include_str!("../../../examples/hello-py/build.sh").into(),
        ),
        ("wafer.toml".into(), manifest),
        (
            ".gitignore".into(),
            format!("/.venv\n/{name}.wasm\n__pycache__\n"),
        ),
    ])
}
