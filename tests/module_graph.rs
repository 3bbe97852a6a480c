//! The core's modules form a layered graph: each imports only what is below
//! it. This reads `src/` (the edge shell and test modules aside), collects
//! every `crate::<module>` a module names, and fails on a cycle, printing it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The top-level module a source file belongs to (`providers/openai.rs` is
/// `providers`), or `None` for the crate root and the edge shell.
fn module_of(rel: &str) -> Option<String> {
    let rel = rel.strip_suffix(".rs")?;
    let first = rel.split('/').next()?;
    match first {
        "lib" | "edge" => None,
        m => Some(m.to_owned()),
    }
}

/// The code of a file without its `#[cfg(test)]` module (tests may reach
/// anywhere) and without comments.
fn code_of(text: &str) -> String {
    let cut = ["#[cfg(test)]\nmod tests", "#[cfg(test)]\npub(crate) mod"]
        .iter()
        .filter_map(|p| text.find(p))
        .min()
        .unwrap_or(text.len());
    text[..cut].lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n")
}

/// Every module named as `crate::<name>` (also inside `use crate::{a, b}`).
fn imports(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name: String = item.trim().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                if !name.is_empty() {
                    out.insert(name);
                }
            }
        } else {
            let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

fn walk(dir: &Path, root: &Path, graph: &mut BTreeMap<String, BTreeSet<String>>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            walk(&path, root, graph);
            continue;
        }
        let rel = path.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/");
        let Some(module) = module_of(&rel) else { continue };
        let code = code_of(&std::fs::read_to_string(&path).unwrap());
        let deps = graph.entry(module.clone()).or_default();
        for d in imports(&code) {
            if d != module {
                deps.insert(d);
            }
        }
    }
}

fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit(
        n: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        marks: &mut BTreeMap<String, Mark>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match marks.get(n) {
            Some(Mark::Done) => return None,
            Some(Mark::Open) => {
                let start = path.iter().position(|p| p == n).unwrap_or(0);
                let mut cycle = path[start..].to_vec();
                cycle.push(n.to_owned());
                return Some(cycle);
            }
            None => {}
        }
        marks.insert(n.to_owned(), Mark::Open);
        path.push(n.to_owned());
        for d in graph.get(n).into_iter().flatten() {
            if let Some(c) = visit(d, graph, marks, path) {
                return Some(c);
            }
        }
        path.pop();
        marks.insert(n.to_owned(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for n in graph.keys() {
        if let Some(c) = visit(n, graph, &mut marks, &mut Vec::new()) {
            return Some(c);
        }
    }
    None
}

#[test]
fn the_core_import_graph_has_no_cycle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph = BTreeMap::new();
    walk(&root, &root, &mut graph);
    assert!(graph.len() > 20, "read {} modules", graph.len());
    assert!(graph["chat"].contains("dispatch"), "the reader sees imports: {:?}", graph["chat"]);
    if let Some(cycle) = find_cycle(&graph) {
        panic!("import cycle in the core: {}", cycle.join(" -> "));
    }
}

#[test]
fn config_is_at_the_bottom() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph = BTreeMap::new();
    walk(&root, &root, &mut graph);
    // Leaves config may use: helpers that import nothing of the gateway's.
    let allowed: BTreeSet<String> = ["json_path", "text"].iter().map(|s| s.to_string()).collect();
    let extra: Vec<&String> = graph["config"].difference(&allowed).collect();
    assert!(extra.is_empty(), "config imports {extra:?}");
    assert!(graph["text"].is_empty(), "text imports {:?}", graph["text"]);
}
