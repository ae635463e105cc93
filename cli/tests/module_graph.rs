//! Keeps each crate's modules a one-way graph, as the `//!` header of its root draws it: reads
//! `worker/src`, `gateway/src`, `cluster/src` and `cli/src`, collects every `crate::`, `super::` and `self::`
//! path in the code, and fails on an import cycle between modules, on an import of the crate
//! root (the root only declares and re-exports), and on a module the root's header does not
//! name.
//!
//! A module with code of its own and the modules in its folder count as one (`function.rs` with
//! `function/p2.rs`): children implement their parent and may use it. A module that only
//! declares others (`trigger/mod.rs`) is a folder, and its children stand on their own.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module path below the crate root: `["trigger", "amqp"]`.
type ModPath = Vec<String>;

/// One crate's modules: each one's path and code (comments removed).
struct Crate {
    modules: BTreeMap<ModPath, String>,
    /// Modules whose files declare other modules and hold nothing else.
    folders: BTreeSet<ModPath>,
}

impl Crate {
    fn read(src: &Path) -> Crate {
        let mut files = Vec::new();
        collect(src, &mut files);
        let mut modules = BTreeMap::new();
        let mut folders = BTreeSet::new();
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            let path = module_path(src, &file);
            let code = strip_comments(&text);
            if !path.is_empty() && only_declares(&code) {
                folders.insert(path.clone());
            }
            modules.insert(path, code);
        }
        Crate { modules, folders }
    }

    /// The unit `module` counts as part of: its outermost ancestor with code of its own.
    fn unit(&self, module: &[String]) -> ModPath {
        for len in 1..module.len() {
            let prefix = module[..len].to_vec();
            if !self.folders.contains(&prefix) {
                return prefix;
            }
        }
        module.to_vec()
    }

    /// The longest known module `path` starts with (the rest names an item in it).
    fn resolve(&self, path: &[String]) -> ModPath {
        (0..=path.len())
            .rev()
            .map(|len| path[..len].to_vec())
            .find(|prefix| self.modules.contains_key(prefix))
            .unwrap_or_default()
    }

    /// Unit -> units it imports, and the modules that import the crate root.
    fn graph(&self) -> (BTreeMap<ModPath, BTreeSet<ModPath>>, Vec<String>) {
        let mut edges: BTreeMap<ModPath, BTreeSet<ModPath>> = BTreeMap::new();
        let mut root_importers = Vec::new();
        for (module, code) in &self.modules {
            let from = self.unit(module);
            edges.entry(from.clone()).or_default();
            for path in imported_paths(module, code) {
                let target = self.resolve(&path);
                if target.is_empty() {
                    if !module.is_empty() {
                        root_importers.push(format!(
                            "{} -> crate::{}",
                            name(module),
                            path.join("::")
                        ));
                    }
                    continue;
                }
                let to = self.unit(&target);
                if to != from && !module.is_empty() {
                    edges.entry(from.clone()).or_default().insert(to);
                }
            }
        }
        (edges, root_importers)
    }
}

fn name(module: &[String]) -> String {
    if module.is_empty() {
        "crate".to_string()
    } else {
        module.join("::")
    }
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

fn module_path(src: &Path, file: &Path) -> ModPath {
    let relative = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: ModPath = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The code without its line comments (doc comments and their links included). Comments after
/// code on the same line are kept: wafer's style does not put imports there.
fn strip_comments(text: &str) -> String {
    let mut out = String::new();
    let mut in_tests = false;
    for line in text.lines() {
        let trimmed = line.trim_start();
        // Unit tests may use what they like of their module's parent.
        if trimmed.starts_with("#[cfg(test)]") {
            in_tests = true;
        }
        if in_tests || trimmed.starts_with("//") {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Whether the code only declares modules (and re-exports nothing, defines nothing).
fn only_declares(code: &str) -> bool {
    code.lines().map(str::trim).all(|line| {
        line.is_empty()
            || (line.ends_with(';')
                && (line.starts_with("mod ")
                    || line.starts_with("pub mod ")
                    || line.starts_with("pub(crate) mod ")))
    })
}

/// Every module path the code names through `crate::`, `super::` or `self::`, made absolute.
fn imported_paths(module: &[String], code: &str) -> Vec<ModPath> {
    let mut paths = Vec::new();
    for (keyword, base) in [
        ("crate::", Vec::new()),
        ("self::", module.to_vec()),
        ("super::", module[..module.len().saturating_sub(1)].to_vec()),
    ] {
        let mut rest = code;
        while let Some(at) = rest.find(keyword) {
            let before = rest[..at].chars().last();
            rest = &rest[at + keyword.len()..];
            // `$crate::`, `wafer_worker::crate_x::` and the like are not this crate's paths.
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$' || c == ':') {
                continue;
            }
            let mut base = base.clone();
            let mut tail = rest;
            while let Some(next) = tail.strip_prefix("super::") {
                base.pop();
                tail = next;
            }
            tree(&base, tail, &mut paths);
        }
    }
    paths
}

/// Expands a use tree (`a::{b, c::d}`) at the start of `text` into paths under `base`.
fn tree(base: &[String], text: &str, out: &mut Vec<ModPath>) {
    let text = text.trim_start();
    if let Some(group) = text.strip_prefix('{') {
        let mut depth = 0;
        let mut start = 0;
        for (i, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => {
                    tree(base, &group[start..i], out);
                    return;
                }
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    tree(base, &group[start..i], out);
                    start = i + 1;
                }
                _ => {}
            }
        }
        return;
    }
    let ident: String = text
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    if ident.is_empty() || ident == "self" {
        out.push(base.to_vec());
        return;
    }
    let mut path = base.to_vec();
    path.push(ident.clone());
    match text[ident.len()..].strip_prefix("::") {
        Some(more) => tree(&path, more, out),
        None => out.push(path),
    }
}

/// The cycles of a graph (its strongly connected components of more than one unit).
fn cycles(edges: &BTreeMap<ModPath, BTreeSet<ModPath>>) -> Vec<Vec<String>> {
    // Kosaraju: order by finish time, then collect components on the reversed graph.
    fn visit<'a>(
        n: &'a ModPath,
        edges: &'a BTreeMap<ModPath, BTreeSet<ModPath>>,
        seen: &mut BTreeSet<&'a ModPath>,
        order: &mut Vec<&'a ModPath>,
    ) {
        if !seen.insert(n) {
            return;
        }
        for m in edges.get(n).into_iter().flatten() {
            visit(m, edges, seen, order);
        }
        order.push(n);
    }
    let mut seen = BTreeSet::new();
    let mut order = Vec::new();
    for n in edges.keys() {
        visit(n, edges, &mut seen, &mut order);
    }
    let mut reversed: BTreeMap<&ModPath, Vec<&ModPath>> = BTreeMap::new();
    for (from, tos) in edges {
        for to in tos {
            reversed.entry(to).or_default().push(from);
        }
    }
    let mut assigned = BTreeSet::new();
    let mut found = Vec::new();
    for n in order.into_iter().rev() {
        if assigned.contains(n) {
            continue;
        }
        let mut component = Vec::new();
        let mut stack = vec![n];
        while let Some(m) = stack.pop() {
            if !assigned.insert(m) {
                continue;
            }
            component.push(name(m));
            stack.extend(reversed.get(m).into_iter().flatten().copied());
        }
        if component.len() > 1 {
            component.sort();
            found.push(component);
        }
    }
    found
}

/// What is wrong with the crate at `src`, as lines a reader can act on.
fn problems(src: &Path) -> Vec<String> {
    let krate = Crate::read(src);
    let (edges, root_importers) = krate.graph();
    let mut problems: Vec<String> = cycles(&edges)
        .into_iter()
        .map(|c| format!("import cycle between {}", c.join(", ")))
        .collect();
    problems.extend(
        root_importers
            .into_iter()
            .map(|i| format!("imports the crate root (re-export it from its module instead): {i}")),
    );
    let header: String = std::fs::read_to_string(src.join("lib.rs"))
        .or_else(|_| std::fs::read_to_string(src.join("main.rs")))
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("//!"))
        .collect();
    for module in krate.modules.keys().filter(|m| m.len() == 1) {
        if !header.contains(&format!("`{}`", module[0])) {
            problems.push(format!(
                "the crate's `//!` module map does not name `{}`",
                module[0]
            ));
        }
    }
    problems
}

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

#[test]
fn every_crate_is_a_one_way_graph() {
    let mut all = Vec::new();
    for krate in ["worker", "gateway", "cluster", "cli"] {
        let src = repository().join(krate).join("src");
        all.extend(problems(&src).into_iter().map(|p| format!("{krate}: {p}")));
    }
    assert!(
        all.is_empty(),
        "the module graph is not one-way:\n{}",
        all.join("\n")
    );
}

#[test]
fn the_checker_finds_what_it_guards_against() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    let write = |path: &str, text: &str| {
        let path = src.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write(
        "lib.rs",
        "//! `a`, `b`, `c`, `f`, `ns`\nmod a;\nmod b;\nmod c;\nmod f;\nmod ns;\npub use a::A;\n",
    );
    write("a.rs", "use crate::b::B;\npub struct A;\n");
    // A cycle through a use group, and one through a parent and its child.
    write("b.rs", "use crate::{c::{C, self}};\npub struct B;\n");
    write(
        "c.rs",
        "/// [`crate::f`] in a doc link is not an import.\npub fn c() -> crate::a::A { crate::a::A }\npub struct C;\n",
    );
    write("f.rs", "mod child;\npub struct F;\n");
    write("f/child.rs", "use super::F;\nuse crate::ns::x::X;\n");
    // A folder's children stand alone: x -> f does not make ns and f one cycle with y.
    write("ns/mod.rs", "pub mod x;\npub mod y;\n");
    write("ns/x.rs", "pub struct X;\n");
    write(
        "ns/y.rs",
        "use crate::f::F;\npub fn y() -> crate::Root { todo!() }\n",
    );
    let found = problems(src);
    assert!(
        found.iter().any(|p| p == "import cycle between a, b, c"),
        "{found:?}"
    );
    assert!(
        found.iter().any(|p| p.contains("ns::y -> crate::Root")),
        "{found:?}"
    );
    assert_eq!(found.len(), 2, "{found:?}");

    // A parent's own child importing a sibling of the parent, which imports the parent back,
    // closes a cycle.
    write("ns/x.rs", "use crate::f::F;\npub struct X;\n");
    let found = problems(src);
    assert!(
        found.iter().any(|p| p == "import cycle between f, ns::x"),
        "{found:?}"
    );
    // A module the header leaves out is named.
    write(
        "lib.rs",
        "//! `a`, `b`\nmod a;\nmod b;\nmod c;\nmod f;\nmod ns;\n",
    );
    let found = problems(src);
    assert!(
        found.iter().any(|p| p.contains("does not name `c`")),
        "{found:?}"
    );
}
