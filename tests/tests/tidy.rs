//! Tidy checks: the layering and determinism rules that compilers and clippy do not enforce
//! on their own.
//!
//! 1. `kvtablet-core` and `kvtablet-sim` never depend, even transitively, on tokio or RocksDB.
//! 2. Their sources use no ignored tests, no hash containers (iteration order leaks), no direct
//!    file I/O, clock reads or threads: those go through `kvtablet_core::env`.
// This file reads the workspace's own sources, which is what the rules forbid elsewhere.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// Crates whose dependency closure must stay free of [`FORBIDDEN_DEPENDENCIES`].
const DETERMINISTIC_CRATES: &[&str] = &["kvtablet-core", "kvtablet-sim"];
const FORBIDDEN_DEPENDENCIES: &[&str] = &["tokio", "rocksdb", "librocksdb-sys"];

/// Source directories scanned for [`FORBIDDEN_TOKENS`], relative to the workspace root.
const SCANNED_DIRS: &[&str] = &["core/src", "sim/src"];
const FORBIDDEN_TOKENS: &[&str] = &[
    "#[ignore",
    "HashMap",
    "HashSet",
    "std::fs",
    "Instant::now",
    "SystemTime::now",
    "thread::spawn",
];

fn workspace_root() -> PathBuf {
    let tests_crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    tests_crate_dir.parent().map(Path::to_path_buf).unwrap_or_else(|| tests_crate_dir.to_path_buf())
}

// ---------------------------------------------------------------------------------------------
// Dependency closure

/// The package id and name of every package in the resolved graph, plus its normal
/// (non-dev, non-build) dependencies.
struct ResolveGraph {
    names: BTreeMap<String, String>,
    normal_dependencies: BTreeMap<String, Vec<String>>,
}

fn parse_resolve_graph(metadata: &Value) -> Result<ResolveGraph, String> {
    let packages = metadata["packages"].as_array().ok_or("metadata has no packages")?;
    let mut names = BTreeMap::new();
    for package in packages {
        let id = package["id"].as_str().ok_or("package without id")?;
        let name = package["name"].as_str().ok_or("package without name")?;
        names.insert(id.to_string(), name.to_string());
    }
    let nodes = metadata["resolve"]["nodes"].as_array().ok_or("metadata has no resolve graph")?;
    let mut normal_dependencies = BTreeMap::new();
    for node in nodes {
        let id = node["id"].as_str().ok_or("resolve node without id")?;
        let mut targets = Vec::new();
        for dependency in node["deps"].as_array().ok_or("resolve node without deps")? {
            let kinds = dependency["dep_kinds"].as_array().ok_or("dependency without dep_kinds")?;
            // A normal dependency has `kind: null`; "dev" and "build" do not reach the crate's
            // compiled code.
            if kinds.iter().any(|kind| kind["kind"].is_null()) {
                let target = dependency["pkg"].as_str().ok_or("dependency without pkg")?;
                targets.push(target.to_string());
            }
        }
        normal_dependencies.insert(id.to_string(), targets);
    }
    Ok(ResolveGraph { names, normal_dependencies })
}

/// Every forbidden package reachable from `root_name`, with the path that reaches it.
fn forbidden_paths(graph: &ResolveGraph, root_name: &str) -> Result<Vec<String>, String> {
    let root_id = graph
        .names
        .iter()
        .find(|(_, name)| name.as_str() == root_name)
        .map(|(id, _)| id.clone())
        .ok_or_else(|| format!("{root_name} is not in the workspace metadata"))?;
    let mut violations = Vec::new();
    let mut visited = BTreeSet::new();
    let mut stack = vec![(root_id, vec![root_name.to_string()])];
    while let Some((id, path)) = stack.pop() {
        if !visited.insert(id.clone()) {
            continue;
        }
        for dependency in graph.normal_dependencies.get(&id).into_iter().flatten() {
            let name = graph.names.get(dependency).cloned().unwrap_or_else(|| dependency.clone());
            let mut dependency_path = path.clone();
            dependency_path.push(name.clone());
            if FORBIDDEN_DEPENDENCIES.contains(&name.as_str()) {
                violations.push(dependency_path.join(" -> "));
            }
            stack.push((dependency.clone(), dependency_path));
        }
    }
    violations.sort();
    violations.dedup();
    Ok(violations)
}

#[test]
fn deterministic_crates_do_not_depend_on_tokio_or_rocksdb() {
    let output = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--manifest-path"])
        .arg(workspace_root().join("Cargo.toml"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: Value = serde_json::from_slice(&output.stdout).expect("metadata is JSON");
    let graph = parse_resolve_graph(&metadata).expect("resolve graph");
    let mut violations = Vec::new();
    for crate_name in DETERMINISTIC_CRATES {
        violations.extend(forbidden_paths(&graph, crate_name).expect("crate in metadata"));
    }
    assert!(violations.is_empty(), "forbidden dependencies:\n{}", violations.join("\n"));
    // Self-check on the real graph: prod does use tokio and RocksDB, so a walk that found
    // nothing there would be a walk that cannot see.
    let prod_paths = forbidden_paths(&graph, "kvtablet-prod").expect("prod in metadata");
    for expected in ["kvtablet-prod -> tokio", "kvtablet-prod -> rocksdb"] {
        assert!(
            prod_paths.iter().any(|path| path == expected),
            "walk missed {expected}: {prod_paths:?}"
        );
    }
}

#[test]
fn the_dependency_walk_finds_transitive_normal_dependencies_only() {
    let metadata = serde_json::json!({
        "packages": [
            {"id": "core 0.1", "name": "kvtablet-core"},
            {"id": "helper 1", "name": "helper"},
            {"id": "tokio 1", "name": "tokio"},
            {"id": "rocksdb 1", "name": "rocksdb"},
        ],
        "resolve": {"nodes": [
            {"id": "core 0.1", "deps": [
                {"pkg": "helper 1", "dep_kinds": [{"kind": null, "target": null}]},
                {"pkg": "rocksdb 1", "dep_kinds": [{"kind": "dev", "target": null}]},
            ]},
            {"id": "helper 1", "deps": [
                {"pkg": "tokio 1", "dep_kinds": [{"kind": null, "target": null}]},
            ]},
            {"id": "tokio 1", "deps": []},
            {"id": "rocksdb 1", "deps": []},
        ]},
    });
    let graph = parse_resolve_graph(&metadata).expect("graph");
    assert_eq!(
        forbidden_paths(&graph, "kvtablet-core").expect("walk"),
        ["kvtablet-core -> helper -> tokio"]
    );
}

// ---------------------------------------------------------------------------------------------
// Source scan

/// `source` with every comment replaced by spaces (newlines kept, so line numbers hold).
/// String and character literals are kept: only comments are exempt.
fn strip_comments(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut code = String::with_capacity(source.len());
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    let mut index = 0;
    while index < chars.len() {
        let current = chars[index];
        let next = chars.get(index + 1).copied();
        if current == '/' && next == Some('/') {
            while index < chars.len() && chars[index] != '\n' {
                code.push(' ');
                index += 1;
            }
        } else if current == '/' && next == Some('*') {
            // Block comments nest in Rust.
            let mut depth = 0usize;
            while index < chars.len() {
                let here = chars[index];
                let after = chars.get(index + 1).copied();
                if here == '/' && after == Some('*') {
                    depth += 1;
                    code.push_str("  ");
                    index += 2;
                } else if here == '*' && after == Some('/') {
                    depth -= 1;
                    code.push_str("  ");
                    index += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    code.push(blank(here));
                    index += 1;
                }
            }
        } else if current == 'r'
            && matches!(next, Some('#') | Some('"'))
            && is_raw_string(&chars, index)
        {
            // r"..." or r#"..."#: copied verbatim up to the matching close.
            let mut hashes = 0;
            code.push('r');
            index += 1;
            while chars.get(index) == Some(&'#') {
                hashes += 1;
                code.push('#');
                index += 1;
            }
            code.push('"');
            index += 1;
            while index < chars.len() {
                let closes = chars[index] == '"'
                    && (1..=hashes).all(|offset| chars.get(index + offset) == Some(&'#'));
                if closes {
                    code.push('"');
                    code.extend(std::iter::repeat_n('#', hashes));
                    index += 1 + hashes;
                    break;
                }
                code.push(chars[index]);
                index += 1;
            }
        } else if current == '"' {
            code.push('"');
            index += 1;
            while index < chars.len() {
                let here = chars[index];
                code.push(here);
                index += 1;
                if here == '\\' {
                    if let Some(&escaped) = chars.get(index) {
                        code.push(escaped);
                        index += 1;
                    }
                } else if here == '"' {
                    break;
                }
            }
        } else if current == '\'' {
            // A character literal ('x', '\n', '"') is copied whole so that a quote inside it does
            // not open a string; otherwise this is a lifetime and only the tick is copied.
            let literal_len = if next == Some('\\') {
                // Skip the escaped character itself: in '\'' it is a quote.
                chars
                    .get(index + 3..)
                    .and_then(|rest| rest.iter().position(|&c| c == '\''))
                    .map(|close| close + 4)
            } else if chars.get(index + 2) == Some(&'\'') {
                Some(3)
            } else {
                None
            };
            let literal_len = literal_len.unwrap_or(1);
            for offset in 0..literal_len {
                if let Some(&c) = chars.get(index + offset) {
                    code.push(c);
                }
            }
            index += literal_len;
        } else {
            code.push(current);
            index += 1;
        }
    }
    code
}

/// Whether the `r` at `index` opens a raw string rather than ending an identifier.
fn is_raw_string(chars: &[char], index: usize) -> bool {
    let starts_token =
        index == 0 || !(chars[index - 1].is_alphanumeric() || chars[index - 1] == '_');
    let mut after = index + 1;
    while chars.get(after) == Some(&'#') {
        after += 1;
    }
    starts_token && chars.get(after) == Some(&'"')
}

/// `path:line: token` for every forbidden token outside comments.
fn scan_source(path: &str, source: &str) -> Vec<String> {
    let code = strip_comments(source);
    let mut findings = Vec::new();
    for (line_index, line) in code.lines().enumerate() {
        for token in FORBIDDEN_TOKENS {
            if line.contains(token) {
                findings.push(format!("{path}:{}: {token}", line_index + 1));
            }
        }
    }
    findings
}

fn rust_files_under(dir: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?
        .map(|entry| entry.map(|entry| entry.path()))
        .collect::<Result<_, _>>()?;
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files_under(&path, files)?;
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            files.push(path);
        }
    }
    Ok(())
}

#[test]
fn deterministic_sources_use_no_forbidden_apis() {
    let root = workspace_root();
    let mut findings = Vec::new();
    let mut scanned_files = 0;
    for dir in SCANNED_DIRS {
        let mut files = Vec::new();
        rust_files_under(&root.join(dir), &mut files).expect("source directory readable");
        for file in files {
            let source = std::fs::read_to_string(&file).expect("source file readable");
            let shown = file.strip_prefix(&root).unwrap_or(&file).display().to_string();
            findings.extend(scan_source(&shown, &source));
            scanned_files += 1;
        }
    }
    assert!(scanned_files > 0, "no sources found under {SCANNED_DIRS:?}");
    assert!(findings.is_empty(), "forbidden in deterministic crates:\n{}", findings.join("\n"));
}

#[test]
fn the_scan_flags_code_and_ignores_comments() {
    let bad = r#"
use std::collections::HashMap;
fn f() { let started = std::time::Instant::now(); }
#[test]
#[ignore = "flaky"]
fn g() { std::thread::spawn(|| ()); let _ = std::fs::read("x"); }
fn h() -> u64 { SystemTime::now(); 0 } fn i(_: HashSet<u8>) {}
"#;
    let findings = scan_source("bad.rs", bad);
    assert_eq!(
        findings,
        [
            "bad.rs:2: HashMap",
            "bad.rs:3: Instant::now",
            "bad.rs:5: #[ignore",
            "bad.rs:6: std::fs",
            "bad.rs:6: thread::spawn",
            "bad.rs:7: HashSet",
            "bad.rs:7: SystemTime::now",
        ]
    );

    let fine = r#"
//! Never use HashMap here; std::fs is for prod.
/// Instant::now would break determinism.
fn f<'a>(x: &'a str) -> char { /* thread::spawn /* nested HashSet */ still comment */ '"' }
// #[ignore]
fn g() -> &'static str { "a // not a comment" }
fn q() -> [char; 2] { ['\'', '\n'] } // HashMap after escaped quotes is a comment
"#;
    assert_eq!(scan_source("fine.rs", fine), Vec::<String>::new());

    // Text after a string that contains `//` is still code.
    let sneaky = "fn f() { let _ = \"http://x\"; let _m: HashMap<u8, u8>; }";
    assert_eq!(scan_source("sneaky.rs", sneaky), ["sneaky.rs:1: HashMap"]);
}
