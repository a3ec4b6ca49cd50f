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

/// The top-level module names a line reaches through `crate::NAME` (comments skipped).
fn crate_paths(line: &str) -> Vec<String> {
    let code = line.split("//").next().unwrap_or("");
    let mut found = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let after = &rest[at + "crate::".len()..];
        let name: String = after
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            found.push(name);
        }
        rest = after;
    }
    // `use crate::{a, b::c}` groups.
    if let Some(group) = code.split("crate::{").nth(1) {
        for part in group.split(',') {
            let name: String = part
                .trim()
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.push(name);
            }
        }
    }
    found
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
        for (number, line) in text.lines().enumerate() {
            for used in crate_paths(line) {
                if used != top && !allowed.contains(&used.as_str()) {
                    upward.push(format!(
                        "{}:{}: {top} uses {used}: {}",
                        relative.display(),
                        number + 1,
                        line.trim()
                    ));
                }
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
    assert_eq!(crate_paths("use crate::worker::Command;"), ["worker"]);
    assert_eq!(
        crate_paths("use crate::{events::Event, app::x};"),
        ["events", "app"]
    );
    assert!(crate_paths("// see crate::app").is_empty());
}
