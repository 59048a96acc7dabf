//! No import cycles between the agent's files: a file-level module graph is built from the
//! `crate::…` paths each source file names (tests excluded) and must have no cycle; the core
//! (`model`) names nothing else; and the stages (sources, policy, actions, channels, sinks)
//! import only the stages before them.
use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
};

/// Module path of a source file relative to `src/` (`policy/dns.rs` → `policy::dns`).
fn module_of(relative: &Path) -> String {
    let mut parts: Vec<String> = relative
        .with_extension("")
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts.join("::")
}

fn sources(dir: &Path, root: &Path, into: &mut BTreeMap<String, String>) {
    for entry in std::fs::read_dir(dir).expect("read src").flatten() {
        let path = entry.path();
        if path.is_dir() && !path.ends_with("bin") {
            sources(&path, root, into);
        } else if path.extension().is_some_and(|e| e == "rs")
            && !path.to_string_lossy().ends_with("_tests.rs")
        {
            let text = std::fs::read_to_string(&path).expect("read source");
            // Unit tests may import anything; only the code itself counts.
            let code = text.split("#[cfg(test)]").next().unwrap_or("").to_string();
            let relative = path.strip_prefix(root).expect("under src");
            into.insert(module_of(relative), code);
        }
    }
}

/// Every `crate::a::b…` path in `code`, with `use crate::{a::{b, c}, d}` groups expanded.
fn crate_paths(code: &str) -> Vec<String> {
    let mut paths = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        expand("", rest, &mut paths);
    }
    paths
}

/// Read one path (or brace group) at the start of `text` after `prefix`.
fn expand(prefix: &str, text: &str, into: &mut Vec<String>) {
    let head: String = text
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
        .collect();
    let after = &text[head.len()..];
    // `crate::{a, b}` (empty head) and `crate::a::{b, c}` are both groups.
    if (head.is_empty() || head.ends_with("::")) && after.starts_with('{') {
        let mut depth = 0;
        let mut item = String::new();
        for c in after[1..].chars() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => break,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    expand(&format!("{prefix}{head}"), item.trim(), into);
                    item.clear();
                    continue;
                }
                _ => {}
            }
            item.push(c);
        }
        expand(&format!("{prefix}{head}"), item.trim(), into);
    } else if !head.is_empty() {
        into.push(format!("{prefix}{}", head.trim_end_matches(':')));
    }
}

fn has_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|n| n == node) {
            return Some(stack[at..].to_vec());
        }
        if !done.insert(node.to_string()) {
            return None;
        }
        stack.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, stack, done) {
                return Some(cycle);
            }
        }
        stack.pop();
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

/// File-level graph: each module and the modules of ours it names.
fn file_graph() -> BTreeMap<String, BTreeSet<String>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut modules = BTreeMap::new();
    sources(&root, &root, &mut modules);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, code) in &modules {
        graph.entry(module.clone()).or_default();
        for path in crate_paths(code) {
            let parts: Vec<&str> = path.split("::").collect();
            // The longest prefix of the path that is a module of ours.
            let target = (1..=parts.len())
                .rev()
                .map(|n| parts[..n].join("::"))
                .find(|candidate| modules.contains_key(candidate));
            if let Some(target) = target.filter(|t| t != module) {
                graph.entry(module.clone()).or_default().insert(target);
            }
        }
    }
    assert!(
        graph.len() > 20,
        "the scan found too few modules: {graph:?}"
    );
    graph
}

#[test]
fn no_file_imports_a_file_that_imports_it_back() {
    assert_eq!(
        has_cycle(&file_graph()),
        None,
        "an import cycle between files"
    );
}

#[test]
fn the_model_depends_on_nothing_else() {
    let graph = file_graph();
    let model: Vec<_> = graph.keys().filter(|m| m.starts_with("model")).collect();
    assert!(!model.is_empty(), "no model module found");
    for module in model {
        let outside: Vec<_> = graph[module]
            .iter()
            .filter(|t| !t.starts_with("model"))
            .collect();
        assert!(outside.is_empty(), "{module} imports {outside:?}");
    }
}

/// Data flows one way: model ← sources ← policy ← events ← actions ← channels ← sinks. Each stage
/// names only the stages before it (the channels are the Docker-side sources that judge and
/// act on their own, so they come after actions).
#[test]
fn the_stages_import_only_earlier_stages() {
    const STAGES: [&str; 7] = [
        "model", "sources", "policy", "events", "actions", "channels", "sinks",
    ];
    let stage = |module: &str| {
        let top = module.split("::").next().unwrap_or(module);
        STAGES.iter().position(|s| *s == top)
    };
    let mut wrong = Vec::new();
    for (module, targets) in file_graph() {
        let Some(from) = stage(&module) else {
            continue;
        };
        for target in targets {
            if stage(&target).is_some_and(|to| to > from) {
                wrong.push(format!("{module} -> {target}"));
            }
        }
    }
    assert!(wrong.is_empty(), "imports against the flow: {wrong:#?}");
}
