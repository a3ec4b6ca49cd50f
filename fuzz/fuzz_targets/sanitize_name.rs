//! Fuzz target: the received-file-name sanitizer on arbitrary text from a hostile peer.
//!
//! Input: the first byte picks `n` for `numbered(n)`, the rest is the offered name (invalid
//! UTF-8 is replaced, as a lossy peer would; JSON strings are always valid UTF-8 anyway).
//!
//! The result must be one safe path component as `protocol/name.rs`'s module doc promises:
//! non-empty, not `.`/`..`, never starting with a dot (no hidden files), no separator, no control, bidi-override or Windows-forbidden
//! character, no trailing dot or space, not a Windows device name, NFC, at most
//! `MAX_NAME_BYTES` bytes; joined to a folder it names a file directly inside that folder;
//! sanitizing it again changes nothing. `numbered(n)` keeps all of that except the length,
//! which it may exceed by exactly its ` (n)` suffix.

#![no_main]

use std::ffi::OsStr;
use std::path::Path;

use ferry_fuzz::protocol::{MAX_NAME_BYTES, sanitize_file_name};
use libfuzzer_sys::fuzz_target;
use unicode_normalization::is_nfc;

fuzz_target!(|data: &[u8]| {
    let (n, raw) = match data.split_first() {
        Some((&255, rest)) => (u32::MAX, rest),
        Some((&n, rest)) => (u32::from(n), rest),
        None => (0, data),
    };
    let raw = String::from_utf8_lossy(raw);
    let safe = sanitize_file_name(&raw);
    let name = safe.as_str();

    assert_safe_component(name, MAX_NAME_BYTES);
    assert_eq!(safe.was_changed(), name != raw, "{raw:?} -> {name:?}");
    assert_eq!(safe.to_string(), name);
    let again = sanitize_file_name(name);
    assert_eq!(
        again.as_str(),
        name,
        "not a fixed point: {raw:?} -> {name:?}"
    );
    assert!(!again.was_changed());

    assert_eq!(safe.numbered(0), name);
    for k in [1, n.max(1), n.saturating_add(1)] {
        let numbered = safe.numbered(k);
        let suffix = format!(" ({k})");
        assert_safe_component(&numbered, MAX_NAME_BYTES + suffix.len());
        assert_ne!(
            numbered, name,
            "numbered({k}) of {name:?} is the name itself"
        );
        assert!(numbered.contains(&suffix), "{numbered:?}");
        assert_eq!(numbered.len(), name.len() + suffix.len());
    }
    if n < u32::MAX {
        assert_ne!(safe.numbered(n.max(1)), safe.numbered(n.max(1) + 1));
    }
});

/// The promises of `sanitize_file_name`, checked independently of its implementation.
fn assert_safe_component(name: &str, max_bytes: usize) {
    assert!(!name.is_empty());
    assert!(name != "." && name != "..", "{name:?}");
    assert!(!name.chars().all(|c| c == '.'), "{name:?}");
    assert!(!name.starts_with('.'), "hidden file: {name:?}");
    assert!(name.len() <= max_bytes, "{} bytes: {name:?}", name.len());
    for c in name.chars() {
        assert!(
            !matches!(c, '/' | '\\' | '\0'),
            "separator {c:?} in {name:?}"
        );
        assert!(!c.is_control(), "control {c:?} in {name:?}");
        assert!(
            !matches!(c, '<' | '>' | ':' | '"' | '|' | '?' | '*'),
            "{c:?} in {name:?}"
        );
        assert!(
            !matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'),
            "bidi {c:?} in {name:?}"
        );
    }
    assert!(
        !name.ends_with(['.', ' ']),
        "trailing dot or space: {name:?}"
    );
    assert!(!is_windows_device_name(name), "device name: {name:?}");
    assert!(is_nfc(name), "not NFC: {name:?}");

    let dir = Path::new("/d");
    let joined = dir.join(name);
    assert_eq!(joined.parent(), Some(dir), "{name:?}");
    assert_eq!(joined.file_name(), Some(OsStr::new(name)), "{name:?}");
    assert_eq!(joined.components().count(), 3, "{name:?}");
}

/// Windows device names, as Microsoft's "Naming Files, Paths, and Namespaces" lists them:
/// the part before the first dot, trailing spaces ignored, in any case. Written here
/// independently of `name.rs` so the two can disagree.
fn is_windows_device_name(name: &str) -> bool {
    let base = name.split('.').next().unwrap_or("").trim_end_matches(' ');
    let upper = base.to_uppercase();
    if ["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"].contains(&upper.as_str()) {
        return true;
    }
    let mut chars = upper.chars();
    let prefix: String = chars.by_ref().take(3).collect();
    let digit: Vec<char> = chars.collect();
    (prefix == "COM" || prefix == "LPT")
        && matches!(digit.as_slice(), [d] if d.is_ascii_digit() || matches!(d, '¹' | '²' | '³'))
}
