//! The crate's layers point down only (see the picture in `src/lib.rs`): this test reads
//! every source file and fails on a `crate::` path that reaches a layer the file's own layer
//! may not use, so an upward import is caught the moment it is written.

use std::path::Path;

/// What each top-level module may use besides itself. `defaults` is a leaf every layer may
/// read; the two faces (`app`, `cli`) are siblings and never use each other.
const ALLOWED: &[(&str, &[&str])] = &[
    ("protocol", &[]),
    ("defaults", &[]),
    ("events", &["protocol", "defaults"]),
    ("secure", &["protocol", "defaults"]),
    ("transfer", &["protocol", "events", "secure", "defaults"]),
    ("notes", &["protocol", "events", "secure", "defaults"]),
    ("discovery", &["protocol", "events", "secure", "defaults"]),
    (
        "localsend",
        &["protocol", "events", "secure", "transfer", "defaults"],
    ),
    (
        "worker",
        &[
            "protocol",
            "events",
            "secure",
            "transfer",
            "notes",
            "discovery",
            "localsend",
            "defaults",
        ],
    ),
    (
        "app",
        &[
            "protocol",
            "events",
            "secure",
            "transfer",
            "notes",
            "discovery",
            "localsend",
            "worker",
            "defaults",
        ],
    ),
    (
        "cli",
        &[
            "protocol",
            "events",
            "secure",
            "transfer",
            "notes",
            "discovery",
            "localsend",
            "worker",
            "defaults",
        ],
    ),
];

/// The top-level modules a file's code reaches, each with its line number (1-based):
/// through `crate::NAME`, `crate::{NAME, ...}` groups (across lines and nested), and chains
/// of `super::` long enough to climb out of the file's own top-level module.
/// `module_path`: the file's module path (`transfer/server/mod.rs` is `["transfer",
/// "server"]`). Comments are skipped.
fn reached_modules(text: &str, module_path: &[&str]) -> Vec<(usize, String)> {
    let code: Vec<char> = text
        .lines()
        .map(|line| line.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
        .chars()
        .collect();
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let line_at = |at: usize| code[..at].iter().filter(|c| **c == '\n').count() + 1;
    let starts_with = |at: usize, word: &str| {
        word.chars()
            .enumerate()
            .all(|(i, c)| code.get(at + i) == Some(&c))
    };
    let mut found = Vec::new();
    let mut at = 0;
    while at < code.len() {
        let fresh = at == 0 || !(is_ident(code[at - 1]) || code[at - 1] == ':');
        // Where the path names a top-level module, if it does.
        let mut root = None;
        if fresh && starts_with(at, "crate::") {
            root = Some(at + "crate::".len());
        } else if fresh && starts_with(at, "super::") {
            let mut end = at;
            let mut climbs = 0;
            while starts_with(end, "super::") {
                end += "super::".len();
                climbs += 1;
            }
            if climbs >= module_path.len() {
                root = Some(end);
            }
            at = end - 1;
        }
        if let Some(mut next) = root {
            while code.get(next).is_some_and(|c| c.is_whitespace()) {
                next += 1;
            }
            if code.get(next) == Some(&'{') {
                // A group: the first name of each element at depth 1.
                let mut depth = 0;
                let mut element_start = true;
                while let Some(&c) = code.get(next) {
                    match c {
                        '{' => {
                            depth += 1;
                            element_start = depth == 1;
                        }
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        ',' if depth == 1 => element_start = true,
                        c if is_ident(c) && element_start => {
                            let name: String =
                                code[next..].iter().take_while(|c| is_ident(**c)).collect();
                            found.push((line_at(next), name.clone()));
                            next += name.len() - 1;
                            element_start = false;
                        }
                        _ => {}
                    }
                    next += 1;
                }
            } else {
                let name: String = code[next..].iter().take_while(|c| is_ident(**c)).collect();
                if !name.is_empty() {
                    found.push((line_at(next), name));
                }
            }
        }
        at += 1;
    }
    found
}

/// The module path of a file below `src/`, as `reached_modules` wants it.
fn module_path(relative: &Path) -> Vec<String> {
    let mut path: Vec<String> = relative
        .components()
        .map(|c| {
            c.as_os_str()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_owned()
        })
        .collect();
    if path.last().is_some_and(|last| last == "mod") {
        path.pop();
    }
    path
}

fn visit(dir: &Path, files: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            visit(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

#[test]
fn no_module_uses_a_layer_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    visit(&src, &mut files);
    let mut checked = 0;
    let mut upward = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&src).unwrap();
        let top = relative
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_str()
            .unwrap()
            .trim_end_matches(".rs")
            .to_owned();
        let Some((_, allowed)) = ALLOWED.iter().find(|(layer, _)| *layer == top) else {
            // lib.rs and main.rs sit above everything.
            assert!(
                top == "lib" || top == "main",
                "{} is in no layer: add it to ALLOWED",
                relative.display()
            );
            continue;
        };
        checked += 1;
        let text = std::fs::read_to_string(file).unwrap();
        let path = module_path(relative);
        let path: Vec<&str> = path.iter().map(String::as_str).collect();
        for (number, used) in reached_modules(&text, &path) {
            let is_layer = ALLOWED.iter().any(|(layer, _)| *layer == used);
            if is_layer && used != top && !allowed.contains(&used.as_str()) {
                upward.push(format!(
                    "{}:{number}: {top} uses {used}: {}",
                    relative.display(),
                    text.lines().nth(number - 1).unwrap_or("").trim()
                ));
            }
        }
    }
    assert!(checked > 30, "only {checked} files were checked");
    assert!(
        upward.is_empty(),
        "imports against the layers:\n{}",
        upward.join("\n")
    );
}

#[test]
fn the_checker_sees_plain_and_grouped_paths() {
    let reached = |text: &str, path: &[&str]| -> Vec<String> {
        reached_modules(text, path)
            .into_iter()
            .map(|(_, name)| name)
            .collect()
    };
    assert_eq!(reached("use crate::worker::Command;", &["a"]), ["worker"]);
    assert_eq!(
        reached("use crate::{events::Event, app::x};", &["a"]),
        ["events", "app"]
    );
    assert!(reached("// see crate::app", &["a"]).is_empty());
    // rustfmt writes a long group over several lines; nested groups name only their root.
    assert_eq!(
        reached_modules(
            "use crate::{\n    events::{Event, X},\n    // app::no\n    worker::y,\n};",
            &["transfer"]
        ),
        [(2, "events".to_owned()), (4, "worker".to_owned())]
    );
    // `super::` chains: only one that climbs out of the top-level module names a layer.
    assert_eq!(
        reached("use super::super::worker::X;", &["transfer", "server"]),
        ["worker"]
    );
    assert_eq!(
        reached("use super::super::{app::A, cli};", &["transfer", "server"]),
        ["app", "cli"]
    );
    assert!(reached("use super::pump::X;", &["transfer", "server"]).is_empty());
    assert!(reached("use super::super::Mode;", &["protocol", "session", "batch"]).is_empty());
    assert_eq!(
        module_path(Path::new("transfer/server/mod.rs")),
        ["transfer", "server"]
    );
    assert_eq!(module_path(Path::new("events.rs")), ["events"]);
}
