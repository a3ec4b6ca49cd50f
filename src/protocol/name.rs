//! Turning an untrusted received file name into one safe path component.
//!
//! The result never contains a path separator, is never `.`/`..`/empty, has no control,
//! bidirectional-control or line-separator character (see [`super::escape_line`]), no
//! character Windows forbids, no trailing dot or space, is not a Windows device name, is in
//! Unicode NFC and is at most [`MAX_NAME_BYTES`] long. Joined to a folder it therefore always
//! names a file directly inside that folder.
//!
//! It never starts with a dot either, so a peer cannot plant a hidden file (`.bash_profile`
//! in a home folder runs at the next login). The rule: **every leading dot becomes `_`**
//! (`.bash_profile` -> `_bash_profile`, `...x` -> `___x`, `..x..txt` -> `__x..txt`); a name
//! of dots only is no name at all (`unnamed`). The replacement keeps the byte length, and the
//! stem always starts with a character that is neither a dot nor whitespace, so no later step
//! (trimming, truncating to the extension, a device-name prefix) can expose a dot at the front.

use unicode_normalization::UnicodeNormalization;

use super::text::is_unsafe_char;
use super::{MAX_NAME_BYTES, PART_SUFFIX};

/// The name used when nothing usable is left of the offered one.
const FALLBACK_NAME: &str = "unnamed";

/// A file name that is safe to join to the download folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafeName {
    name: String,
    changed: bool,
}

impl SafeName {
    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// True when the name differs from what the sender offered (the user is told).
    pub fn was_changed(&self) -> bool {
        self.changed
    }

    /// The `n`th alternative for a taken name: `report.pdf` -> `report (n).pdf`,
    /// `data.tar.gz` -> `data (n).tar.gz`. Stays within [`MAX_NAME_BYTES`] plus the suffix.
    pub fn numbered(&self, n: u32) -> String {
        if n == 0 {
            return self.name.clone();
        }
        let (stem, ext) = split_extension(&self.name);
        format!("{stem} ({n}){ext}")
    }
}

impl std::fmt::Display for SafeName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

/// Reduces an untrusted name to one safe path component (see the module docs).
pub fn sanitize_file_name(raw: &str) -> SafeName {
    let normalized: String = raw.nfc().collect();
    // Keep only the last real component of whatever path the sender sent.
    let last = normalized
        .split(['/', '\\'])
        .rev()
        .find(|part| !part.is_empty() && *part != "." && *part != "..")
        .unwrap_or("");
    let mut name: String = last
        .chars()
        .map(|c| if is_forbidden(c) { '_' } else { c })
        .collect();
    // Dots and spaces alternate at the end of "a. ." : trim them together, not in turn.
    name = name
        .trim_start_matches(char::is_whitespace)
        .trim_end_matches(is_trailing_junk)
        .to_owned();
    if name.chars().all(|c| c == '.') {
        name.clear();
    }
    name = replace_leading_dots(&name);
    // Truncating can make a device name ("CON" + 200 spaces + "x.txt" -> "CON.txt"), so the
    // check comes after it; the `_` it adds may need one more byte cut.
    name = truncate_keeping_extension(&name, MAX_NAME_BYTES);
    if is_windows_device_name(&name) {
        name.insert(0, '_');
        name = truncate_keeping_extension(&name, MAX_NAME_BYTES);
    }
    // A received file must never look like one of Ferry's own partial files.
    if name.to_lowercase().ends_with(PART_SUFFIX) {
        name.push('_');
        name = truncate_keeping_extension(&name, MAX_NAME_BYTES);
    }
    if name.is_empty() {
        name = FALLBACK_NAME.to_owned();
    }
    // Nothing above can bring a dot to the front (see the module docs); kept as a last guard
    // because a hidden file is the one outcome that must never happen.
    let name = replace_leading_dots(&name);
    SafeName {
        changed: name != raw,
        name,
    }
}

/// `...x` -> `___x`: each leading dot becomes `_` (same byte length).
fn replace_leading_dots(name: &str) -> String {
    let rest = name.trim_start_matches('.');
    let dots = name.len() - rest.len();
    format!("{}{rest}", "_".repeat(dots))
}

fn is_forbidden(c: char) -> bool {
    // Controls, bidirectional controls (they make "exe.txt" display as "txt.exe") and line
    // separators: whatever a terminal or a label must not get raw.
    is_unsafe_char(c) || matches!(c, '<' | '>' | ':' | '"' | '|' | '?' | '*')
}

fn is_windows_device_name(name: &str) -> bool {
    let stem = name
        .split('.')
        .next()
        .unwrap_or("")
        .trim_end()
        .to_ascii_uppercase();
    match stem.as_str() {
        "CON" | "PRN" | "AUX" | "NUL" | "CONIN$" | "CONOUT$" => true,
        // COM0-9 and LPT0-9, and Windows also counts the superscripts ¹ ² ³ as digits here.
        s => s
            .strip_prefix("COM")
            .or_else(|| s.strip_prefix("LPT"))
            .is_some_and(|digit| {
                let mut chars = digit.chars();
                matches!((chars.next(), chars.next()),
                    (Some(d), None) if d.is_ascii_digit() || matches!(d, '¹' | '²' | '³'))
            }),
    }
}

/// What may not end a name: Windows drops trailing dots and spaces, and trailing whitespace
/// of any kind is invisible to the user.
fn is_trailing_junk(c: char) -> bool {
    c == '.' || c.is_whitespace()
}

/// Splits `name` into stem and extension (with its dot); `.tar.*` counts as one extension and
/// a leading dot (`.bashrc`) is part of the stem.
fn split_extension(name: &str) -> (&str, &str) {
    match name.rfind('.') {
        Some(0) | None => (name, ""),
        Some(dot) => {
            let stem = &name[..dot];
            let tar = stem.len().saturating_sub(4);
            match stem.get(tar..) {
                Some(ending) if tar > 0 && ending.eq_ignore_ascii_case(".tar") => {
                    name.split_at(tar)
                }
                _ => name.split_at(dot),
            }
        }
    }
}

fn truncate_keeping_extension(name: &str, max_bytes: usize) -> String {
    if name.len() <= max_bytes {
        return name.to_owned();
    }
    let (stem, ext) = split_extension(name);
    let ext = if ext.len() <= 16 { ext } else { "" };
    let mut budget = max_bytes - ext.len();
    while !stem.is_char_boundary(budget.min(stem.len())) {
        budget -= 1;
    }
    let stem = stem[..budget.min(stem.len())].trim_end_matches(is_trailing_junk);
    format!("{stem}{ext}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clean(raw: &str) -> String {
        sanitize_file_name(raw).name
    }

    #[test]
    fn keeps_ordinary_and_chinese_names() {
        assert_eq!(clean("report.pdf"), "report.pdf");
        assert_eq!(clean("计算机五大.txt"), "计算机五大.txt");
        assert!(!sanitize_file_name("计算机五大.txt").was_changed());
    }

    #[test]
    fn no_name_starts_with_a_dot() {
        assert_eq!(clean(".bashrc"), "_bashrc");
        assert_eq!(clean(".bash_profile"), "_bash_profile");
        assert_eq!(clean("...x"), "___x");
        assert_eq!(clean("..x..txt"), "__x..txt");
        assert_eq!(clean("  .ssh"), "_ssh");
        assert_eq!(clean("home/.profile"), "_profile");
        assert_eq!(clean(".CON"), "_CON");
        assert!(sanitize_file_name(".bashrc").was_changed());
        // 300 dots and x.txt: once trimming could leave ".txt".
        let dots = format!("{}x.txt", ".".repeat(300));
        let out = clean(&dots);
        assert!(out.starts_with('_') && out.ends_with(".txt"), "{out}");
        assert!(out.len() <= MAX_NAME_BYTES);
        // A long name cut right after a dot, with a long extension dropped.
        let cut = format!("{}.{}", ".".repeat(250), "e".repeat(30));
        assert!(!clean(&cut).starts_with('.'), "{}", clean(&cut));
        // Dots and spaces at the front of a name that is then truncated.
        let mixed = format!(". . .{}.txt", " ".repeat(300));
        assert!(!clean(&mixed).starts_with('.'), "{}", clean(&mixed));
    }

    #[test]
    fn strips_paths_and_traversal() {
        assert_eq!(clean("../../x"), "x");
        assert_eq!(clean("/etc/passwd"), "passwd");
        assert_eq!(clean("C:\\x"), "x");
        assert_eq!(clean("a\\..\\b"), "b");
        assert_eq!(clean("dir/"), "dir");
        assert_eq!(clean("C:x"), "C_x");
        assert!(sanitize_file_name("../../x").was_changed());
    }

    #[test]
    fn empty_and_dot_names_get_a_fallback() {
        for raw in ["", ".", "..", "/", "...", "  ", "../..", "\\"] {
            assert_eq!(clean(raw), FALLBACK_NAME, "{raw:?}");
        }
    }

    #[test]
    fn control_reserved_and_bidi_characters_are_replaced() {
        assert_eq!(clean("a\0b"), "a_b");
        assert_eq!(clean("a\nb\tc"), "a_b_c");
        assert_eq!(clean("what?.txt"), "what_.txt");
        assert_eq!(clean("evil\u{202E}txt.exe"), "evil_txt.exe");
    }

    #[test]
    fn windows_device_names_and_trailing_dots() {
        assert_eq!(clean("CON"), "_CON");
        assert_eq!(clean("aux.txt"), "_aux.txt");
        assert_eq!(clean("com1.log"), "_com1.log");
        assert_eq!(clean("console.txt"), "console.txt");
        assert_eq!(clean("name. "), "name");
        assert_eq!(clean("name..."), "name");
    }

    #[test]
    fn long_names_are_bounded_on_a_char_boundary_keeping_the_extension() {
        let long = format!("{}.txt", "a".repeat(300));
        let out = clean(&long);
        assert!(out.len() <= MAX_NAME_BYTES);
        assert!(out.ends_with(".txt"));
        let chinese = format!("{}.txt", "计".repeat(100)); // 300 bytes
        let out = clean(&chinese);
        assert!(
            out.len() <= MAX_NAME_BYTES && out.ends_with(".txt"),
            "{out}"
        );
    }

    #[test]
    fn a_name_never_ends_like_a_ferry_partial() {
        assert_eq!(clean("x.ferry.part"), "x.ferry.part_");
        assert_eq!(clean("X.FERRY.PART"), "X.FERRY.PART_");
        assert_eq!(
            clean("a.txt.part"),
            "a.txt.part",
            "a browser's .part is an ordinary name"
        );
    }

    #[test]
    fn nfc_normalization() {
        // "é" as e + combining acute becomes the single code point.
        assert_eq!(clean("cafe\u{301}.txt"), "caf\u{e9}.txt");
    }

    #[test]
    fn numbered_alternatives() {
        let n = sanitize_file_name("a.txt");
        assert_eq!(n.numbered(0), "a.txt");
        assert_eq!(n.numbered(1), "a (1).txt");
        assert_eq!(
            sanitize_file_name("data.tar.gz").numbered(2),
            "data (2).tar.gz"
        );
        assert_eq!(sanitize_file_name(".bashrc").numbered(1), "_bashrc (1)");
        // A leading dot (never produced, but the helper must not split on it) is stem.
        assert_eq!(split_extension(".bashrc"), (".bashrc", ""));
        assert_eq!(sanitize_file_name("noext").numbered(3), "noext (3)");
    }
}
