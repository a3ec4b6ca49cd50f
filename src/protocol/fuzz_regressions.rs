//! Inputs the fuzz targets in `fuzz/` broke the protocol with, kept as plain unit tests so
//! `cargo test` guards them without cargo-fuzz or a nightly toolchain.
//!
//! Each test gives the input exactly as the target read it (for `sanitize_name`: the first
//! byte picks `n` for `numbered(n)`, the rest is the name, decoded lossily), where it came
//! from, and the property it broke. The properties are restated here, independently of
//! `name.rs`, from `fuzz/fuzz_targets/sanitize_name.rs`.

use std::path::Path;

use super::*;

/// Reads a `sanitize_name` fuzz input the way the target does.
fn sanitize_input(input: &[u8]) -> (u32, SafeName) {
    let (n, raw) = match input.split_first() {
        Some((&255, rest)) => (u32::MAX, rest),
        Some((&n, rest)) => (u32::from(n), rest),
        None => (0, input),
    };
    (n, sanitize_file_name(&String::from_utf8_lossy(raw)))
}

/// What `sanitize_file_name` promises of every name it returns (and `numbered` of its own,
/// with `max_bytes` raised by the ` (n)` suffix).
fn assert_safe(name: &str, max_bytes: usize) {
    assert!(!name.is_empty() && name != "." && name != "..", "{name:?}");
    assert!(name.len() <= max_bytes, "{} bytes: {name:?}", name.len());
    assert!(
        !name
            .chars()
            .any(|c| c.is_control() || matches!(c, '/' | '\\')),
        "{name:?}"
    );
    assert!(
        !name.ends_with(['.', ' ']),
        "trailing dot or space: {name:?}"
    );
    assert!(!is_device_name(name), "Windows device name: {name:?}");
    let dir = Path::new("/d");
    assert_eq!(dir.join(name).parent(), Some(dir), "{name:?}");
    assert_eq!(sanitize_file_name(name).as_str(), name, "not a fixed point");
}

/// Windows device names: the part before the first dot, trailing spaces ignored, any case;
/// `COM`/`LPT` take a digit or a superscript ¹ ² ³.
fn is_device_name(name: &str) -> bool {
    let base = name
        .split('.')
        .next()
        .unwrap_or("")
        .trim_end_matches(' ')
        .to_uppercase();
    let numbered = |prefix: &str| {
        base.strip_prefix(prefix).is_some_and(|d| {
            let mut chars = d.chars();
            matches!((chars.next(), chars.next()),
                (Some(c), None) if c.is_ascii_digit() || matches!(c, '¹' | '²' | '³'))
        })
    };
    ["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"].contains(&base.as_str())
        || numbered("COM")
        || numbered("LPT")
}

fn check(input: &[u8]) -> String {
    let (n, safe) = sanitize_input(input);
    assert_safe(safe.as_str(), MAX_NAME_BYTES);
    let numbered = safe.numbered(n.max(1));
    assert_safe(&numbered, MAX_NAME_BYTES + format!(" ({})", n.max(1)).len());
    safe.as_str().to_owned()
}

/// `sanitize_name`, from a seed written to probe the trailing trim: `"café .. ."` came out as
/// `"café .."`. Trimming dots, then spaces, left a dot behind a space.
/// Fixed in `name.rs`: dots and whitespace are trimmed from the end together.
#[test]
fn trailing_dots_and_spaces_are_trimmed_together() {
    assert_eq!(check(b"\x01cafe\xcc\x81 .. ."), "caf\u{e9}");
    assert_eq!(check(b"\x01a. ."), "a");
    assert_eq!(check("\x01a .\u{3000}.".as_bytes()), "a");
}

/// `sanitize_name`, found by the fuzzer (with the `COM\xc2\xb9` dictionary entry) within
/// seconds: `"COM¹.a…"` passed as an ordinary name. Windows treats the superscript digits
/// ¹ ² ³ like 1 2 3 in `COM`/`LPT` device names.
/// Fixed in `name.rs`: `is_windows_device_name` accepts them.
#[test]
fn superscript_com_and_lpt_are_device_names() {
    let name = check(b"\t COM\xc2\xb9.a\xd1\x8b\x9eaaa\xff\xcc\x81\xff\xffr.gzaar.gxrc");
    assert!(name.starts_with("_COM\u{b9}.a"), "{name:?}");
    assert_eq!(check("\x01COM\u{b9}.txt".as_bytes()), "_COM\u{b9}.txt");
    assert_eq!(check("\x01lpt\u{b3}".as_bytes()), "_lpt\u{b3}");
    assert_eq!(
        check("\x01COM\u{b9}\u{b9}.txt".as_bytes()),
        "COM\u{b9}\u{b9}.txt"
    );
}

/// `sanitize_name`, found reviewing the first two findings and confirmed by the target: the
/// device check ran before truncation, and cutting `"CON" + 250 spaces + "x.txt"` to 200
/// bytes trims the spaces and leaves `"CON.txt"`.
/// Fixed in `name.rs`: the device check runs after truncation.
#[test]
fn truncation_cannot_make_a_device_name() {
    let input = [b"\x01CON".as_slice(), &[b' '; 250], b"x.txt"].concat();
    assert_eq!(check(&input), "_CON.txt");
}

/// `sanitize_name`, found like the previous one: truncation trimmed only `.` and ` ` from the
/// cut stem, so a cut inside U+3000 (ideographic space) left trailing whitespace that a
/// second pass removes: the result was not a fixed point.
/// Fixed in `name.rs`: truncation trims the same characters as the first pass.
#[test]
fn truncated_names_are_fixed_points() {
    let raw = format!(
        "\x01{}{}.{}",
        "a".repeat(190),
        "\u{3000}".repeat(10),
        "x".repeat(20)
    );
    assert_eq!(check(raw.as_bytes()), "a".repeat(190));
}

/// `decode_frame`: the edge its round-trip check allows. A plain header that fills the frame
/// limit and omits `msg` decodes, but re-encoding adds `"msg":""` and must be refused as too
/// long, never truncated or framed with a wrong length.
#[test]
fn reencoding_a_full_frame_is_refused_not_truncated() {
    let skeleton = r#"{"file_name":"","file_size":1}"#.len();
    let body = format!(
        r#"{{"file_name":"{}","file_size":1}}"#,
        "a".repeat(MAX_FRAME_LEN - skeleton)
    );
    assert_eq!(body.len(), MAX_FRAME_LEN);
    let msg = decode_sender_msg(body.as_bytes()).unwrap();
    assert!(matches!(
        encode_sender_msg(&msg),
        Err(MessageError::TooLong(len)) if len > MAX_FRAME_LEN
    ));
}
