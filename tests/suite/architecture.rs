//! The architecture, checked by reading the source (as rust-analyzer's tidy tests do): the
//! layers of ARCHITECTURE.md point one way, the simulator never imports the client, no two
//! files import each other (directly or around a circle), and no source file grows past 700
//! lines. Each failure names the file and the import.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Layers, lowest first; a module may import its own layer and those below, never above.
const LAYERS: &[(&str, &[&str])] = &[
    ("shared", &["size"]),
    ("config", &["config"]),
    ("api / store", &["api", "store"]),
    ("jobs", &["jobs"]),
    ("ingress / engine", &["ingress", "engine"]),
    (
        "face",
        &[
            "cli", "daemon", "notify", "demo", "bench", "logging", "chart",
        ],
    ),
];

/// The simulator stands beside the layers: it may use only shared utilities and plain types.
const SIM_MAY_IMPORT: &[&str] = &["size"];

const MAX_LINES: usize = 700;

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|(_, ms)| ms.contains(&module))
}

/// Every `.rs` file under `src/`, with its module path (`store::jobs` for `src/store/jobs.rs`,
/// `sim::aksk` for `src/sim/aksk.rs`; the crate root is the empty path).
fn source_files() -> Vec<(PathBuf, Vec<String>)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("read src") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&src, &mut files);
    files.sort();
    files
        .into_iter()
        .map(|f| {
            let rel = f.strip_prefix(&src).unwrap().with_extension("");
            let mut path: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if matches!(
                path.last().map(String::as_str),
                Some("mod" | "lib" | "main")
            ) {
                path.pop();
            }
            (f, path)
        })
        .collect()
}

/// The source without comments and string literals (so doc text and test strings that merely
/// name a path are not imports).
fn code_of(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '"' => {
                let mut escaped = false;
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                    }
                    if escaped {
                        escaped = false;
                    } else if c == '\\' {
                        escaped = true;
                    } else if c == '"' {
                        break;
                    }
                }
                out.push_str("\"\"");
            }
            // A char literal such as '"' or '{' must not open a string or a group; a
            // lifetime (`'a`) is left alone.
            '\'' if text_peek2(&chars).is_some_and(|(_, q)| q == '\'') => {
                chars.next();
                chars.next();
                out.push_str("' '");
            }
            '\'' if chars.peek() == Some(&'\\') => {
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                }
                out.push_str("' '");
            }
            c => out.push(c),
        }
    }
    out
}

fn text_peek2(chars: &std::iter::Peekable<std::str::Chars<'_>>) -> Option<(char, char)> {
    let mut it = chars.clone();
    Some((it.next()?, it.next()?))
}

/// The paths a file imports, each resolved to an absolute module path: `crate::a::b`,
/// grouped `crate::{a::b, c}`, and `super::`/`self::` chains.
fn imports(code: &str, here: &[String]) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let bytes: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        let rest: String = bytes[i..bytes.len().min(i + 16)].iter().collect();
        let starts_word = i == 0 || !(bytes[i - 1].is_alphanumeric() || bytes[i - 1] == '_');
        let base: Option<(Vec<String>, usize)> = if starts_word && rest.starts_with("crate::") {
            Some((Vec::new(), "crate::".len()))
        } else if starts_word && (rest.starts_with("super::") || rest.starts_with("self::")) {
            // `here` is the file's own module (`sim::aksk` for sim/aksk.rs, `sim` for
            // sim/mod.rs): `super` is one segment up, `self` stays.
            let mut module = here.to_vec();
            let mut j = i;
            loop {
                let r: String = bytes[j..bytes.len().min(j + 7)].iter().collect();
                if r.starts_with("super::") {
                    module.pop();
                    j += "super::".len();
                } else if r.starts_with("self::") {
                    j += "self::".len();
                } else {
                    break;
                }
            }
            Some((module, j - i))
        } else {
            None
        };
        let Some((prefix, skip)) = base else {
            i += 1;
            continue;
        };
        let (paths, used) = parse_tree(&bytes[i + skip..]);
        for p in paths {
            let mut full = prefix.clone();
            full.extend(p);
            found.push(full);
        }
        i += skip + used.max(1);
    }
    found
}

/// Parses `a::b::{c, d::e}`, `{a, b::c}` or a single path into the list of paths it names.
fn parse_tree(s: &[char]) -> (Vec<Vec<String>>, usize) {
    let mut i = 0;
    let mut segs = Vec::new();
    loop {
        if i < s.len() && s[i] == '{' {
            // A group: each member is a tree of its own, after this prefix.
            i += 1;
            let mut out = Vec::new();
            loop {
                while i < s.len() && (s[i].is_whitespace() || s[i] == ',') {
                    i += 1;
                }
                if i >= s.len() || s[i] == '}' {
                    i += 1;
                    break;
                }
                let (inner, used) = parse_tree(&s[i..]);
                for p in inner {
                    let mut full = segs.clone();
                    full.extend(p);
                    out.push(full);
                }
                i += used.max(1);
                // Skip an `as name` (anything up to the next comma or the group's end).
                while i < s.len() && s[i] != ',' && s[i] != '}' {
                    i += 1;
                }
            }
            return (out, i);
        }
        let start = i;
        while i < s.len() && (s[i].is_alphanumeric() || s[i] == '_') {
            i += 1;
        }
        if i > start {
            segs.push(s[start..i].iter().collect::<String>());
        }
        if i > start && i + 1 < s.len() && s[i] == ':' && s[i + 1] == ':' {
            i += 2;
            continue;
        }
        return (vec![segs], i);
    }
}

struct Source {
    file: String,
    module: Vec<String>,
    imports: Vec<Vec<String>>,
    lines: usize,
}

fn sources() -> Vec<Source> {
    source_files()
        .into_iter()
        .map(|(f, module)| {
            let text = std::fs::read_to_string(&f).expect("read source");
            let code = code_of(&text);
            let file = f
                .strip_prefix(env!("CARGO_MANIFEST_DIR"))
                .unwrap()
                .display()
                .to_string();
            let mut imports = imports(&code, &module);
            imports.retain(|p| !p.is_empty());
            Source {
                file,
                module,
                imports,
                lines: text.lines().count(),
            }
        })
        .collect()
}

#[test]
fn layers_point_one_way_and_the_simulator_never_imports_the_client() {
    let mut bad = Vec::new();
    for s in sources() {
        let Some(top) = s.module.first().cloned() else {
            continue; // lib.rs and main.rs sit above everything
        };
        for p in &s.imports {
            let target = &p[0];
            if *target == top || layer_of(target).is_none() && target != "sim" {
                continue; // own module, or a crate-root item (JobId, Source, now_ms, ...)
            }
            if top == "sim" {
                if !SIM_MAY_IMPORT.contains(&target.as_str()) {
                    bad.push(format!(
                        "{}: the simulator imports crate::{} (it may use only {:?})",
                        s.file,
                        p.join("::"),
                        SIM_MAY_IMPORT
                    ));
                }
                continue;
            }
            if target == "sim" {
                if layer_of(&top) != layer_of("cli") {
                    bad.push(format!(
                        "{}: crate::{} — only the face (cli, demo, bench) starts the simulator",
                        s.file,
                        p.join("::")
                    ));
                }
                continue;
            }
            let (Some(from), Some(to)) = (layer_of(&top), layer_of(target)) else {
                bad.push(format!("{}: module {top} is in no layer", s.file));
                continue;
            };
            if to > from {
                bad.push(format!(
                    "{}: layer {:?} imports crate::{} from the higher layer {:?}",
                    s.file,
                    LAYERS[from].0,
                    p.join("::"),
                    LAYERS[to].0
                ));
            }
        }
    }
    assert!(bad.is_empty(), "layering broken:\n{}", bad.join("\n"));
}

#[test]
fn no_file_imports_one_that_imports_it_back() {
    let sources = sources();
    let by_module: BTreeMap<Vec<String>, String> = sources
        .iter()
        .map(|s| (s.module.clone(), s.file.clone()))
        .collect();
    // An import names the file of its longest path prefix that is a module with a file.
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for s in &sources {
        let edges = graph.entry(s.file.clone()).or_default();
        for p in &s.imports {
            let target = (1..=p.len())
                .rev()
                .find_map(|n| by_module.get(&p[..n].to_vec()));
            if let Some(t) = target {
                if *t != s.file {
                    edges.insert(t.clone());
                }
            }
        }
    }
    // A folder's `mod.rs` declares its children and re-exports their items; a child using the
    // shared types its parent defines is the usual direction. Those parent-to-child edges are
    // declarations, not imports that make a circle.
    for (file, edges) in graph.iter_mut() {
        edges.retain(|t| !is_declaring_parent(file, t));
    }
    let mut cycles = Vec::new();
    for start in graph.keys() {
        let mut stack = vec![(start.clone(), vec![start.clone()])];
        let mut seen = BTreeSet::new();
        while let Some((node, path)) = stack.pop() {
            for next in graph.get(&node).into_iter().flatten() {
                if next == start {
                    let mut c = path.clone();
                    c.push(start.clone());
                    cycles.push(c.join(" -> "));
                } else if seen.insert(next.clone()) {
                    let mut p = path.clone();
                    p.push(next.clone());
                    stack.push((next.clone(), p));
                }
            }
        }
    }
    cycles.sort();
    cycles.dedup();
    assert!(
        cycles.is_empty(),
        "files that import each other:\n{}",
        cycles.join("\n")
    );
}

/// True when `parent` is the `mod.rs` (or lib.rs) of the folder `child` lives in.
fn is_declaring_parent(parent: &str, child: &str) -> bool {
    let p = Path::new(parent);
    let c = Path::new(child);
    let declares = p
        .file_name()
        .is_some_and(|n| n == "mod.rs" || n == "lib.rs");
    declares
        && c.parent()
            .is_some_and(|d| d.starts_with(p.parent().unwrap()))
}

#[test]
fn no_source_file_is_over_700_lines() {
    let long: Vec<String> = sources()
        .into_iter()
        .filter(|s| s.lines > MAX_LINES)
        .map(|s| format!("{} has {} lines", s.file, s.lines))
        .collect();
    assert!(
        long.is_empty(),
        "files over {MAX_LINES} lines (split them by concern):\n{}",
        long.join("\n")
    );
}

#[test]
fn the_import_reader_sees_grouped_nested_and_relative_paths() {
    let here = vec!["sim".to_string(), "aksk".to_string()];
    let code = code_of(
        "use crate::{config::Config, store::{Store, jobs::JobRow}};\n\
         // use crate::engine::Engine;\n\
         let s = \"crate::api::x\";\n\
         use super::super::api::signer;\n\
         use super::state::SimState;\n",
    );
    let got = imports(&code, &here);
    let got: Vec<String> = got.iter().map(|p| p.join("::")).collect();
    assert_eq!(
        got,
        vec![
            "config::Config",
            "store::Store",
            "store::jobs::JobRow",
            "api::signer",
            "sim::state::SimState"
        ]
    );
}
