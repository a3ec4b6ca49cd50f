//! LocalSend v2's JSON bodies, and the checks every one that arrives must pass before it is
//! used: a body is hostile until [`validate_prepare`] turned it into a [`ValidOffer`] with
//! bounded counts, lengths and sizes and file names that are safe to save under.
//!
//! Unknown fields are ignored (LocalSend adds some, like a file's `metadata`), missing
//! optional ones default; wrong types, negative sizes or anything past the bounds is a
//! [`WireError`] that the server answers with 400 and its text.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::protocol::{SafeName, clip, sanitize_file_name};

/// Protocol version we speak and announce.
pub const PROTOCOL_VERSION: &str = "2.1";
/// Files one prepare-upload may list.
pub const MAX_FILES: usize = 10_000;
/// Longest file id or token, in bytes.
pub const MAX_ID_BYTES: usize = 128;
/// Longest `fileName` (a relative path for folders), in bytes.
pub const MAX_PATH_BYTES: usize = 4096;
/// Most `/`-separated components in a `fileName` (the Ferry folder receiver's limit).
pub const MAX_PATH_DEPTH: usize = crate::protocol::MAX_FOLDER_DEPTH;
/// Largest size one file may announce (1 PiB): more is a lie or a bug.
pub const MAX_FILE_BYTES: u64 = 1 << 50;
/// Longest text kept from a text message (`preview`), in bytes.
pub const MAX_TEXT_BYTES: usize = 64 * 1024;
/// Longest alias shown, in bytes.
const MAX_LABEL_CHARS: usize = 64;

/// A device as LocalSend describes itself (announcement, register, `info`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceInfo {
    pub alias: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub device_model: Option<String>,
    #[serde(default)]
    pub device_type: Option<String>,
    #[serde(default)]
    pub fingerprint: String,
    /// Missing in register answers (LocalSend 1.18): taken from the announcement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(default)]
    pub download: bool,
    /// Only in multicast datagrams: `true` asks hearers to answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub announce: Option<bool>,
}

impl DeviceInfo {
    /// The alias as shown: clipped, never empty.
    pub fn label(&self) -> String {
        let alias = clip(self.alias.trim(), MAX_LABEL_CHARS);
        if alias.is_empty() {
            "unnamed LocalSend device".to_owned()
        } else {
            alias
        }
    }

    /// `mobile`, `desktop`, `web`, `headless`, `server` (unknown ones fall back to `desktop`,
    /// as LocalSend does).
    pub fn kind(&self) -> &'static str {
        match self.device_type.as_deref() {
            Some("mobile") => "mobile",
            Some("web") => "web",
            Some("headless") => "headless",
            Some("server") => "server",
            _ => "desktop",
        }
    }
}

/// One file as `prepare-upload` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileDto {
    pub id: String,
    pub file_name: String,
    pub size: u64,
    #[serde(default)]
    pub file_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview: Option<String>,
}

/// The body of `POST /api/localsend/v2/prepare-upload`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrepareUpload {
    pub info: DeviceInfo,
    pub files: HashMap<String, FileDto>,
}

/// The answer to an accepted `prepare-upload`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrepareResponse {
    pub session_id: String,
    pub files: HashMap<String, String>,
}

/// Why a body was refused (the server answers 400 with this text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("invalid JSON: {0}")]
    Json(String),
    #[error("no files listed")]
    NoFiles,
    #[error("too many files: {count} (at most {MAX_FILES})")]
    TooManyFiles { count: usize },
    #[error("file id longer than {MAX_ID_BYTES} bytes or empty")]
    BadId,
    #[error("file id {0:?} does not match its key")]
    IdMismatch(String),
    #[error(
        "file name longer than {MAX_PATH_BYTES} bytes, deeper than {MAX_PATH_DEPTH} folders, or empty"
    )]
    BadName,
    #[error("file size {size} is larger than {MAX_FILE_BYTES}")]
    TooLarge { size: u64 },
}

/// A file of a validated offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidFile {
    pub id: String,
    /// The name as the sender wrote it (hostile: for display, escape it).
    pub offered: String,
    /// The folders it goes in, outermost first, each sanitised like a file name (empty for
    /// a file on its own; the first names the session's root folder: see [`safe_path`]).
    pub folders: Vec<String>,
    /// The name it is saved under, inside `folders`.
    pub safe: SafeName,
    pub size: u64,
    pub file_type: String,
}

/// What a validated `prepare-upload` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValidOffer {
    /// A text message: one `text/plain` file whose text is in `preview`; nothing to upload.
    Text { text: String },
    /// Files, sorted by name (so prompts and rows list them in a stable order).
    Files { files: Vec<ValidFile>, bytes: u64 },
}

/// Parses and checks a `prepare-upload` body.
pub fn validate_prepare(body: &[u8]) -> Result<(DeviceInfo, ValidOffer), WireError> {
    let request: PrepareUpload =
        serde_json::from_slice(body).map_err(|e| WireError::Json(e.to_string()))?;
    let count = request.files.len();
    if count == 0 {
        return Err(WireError::NoFiles);
    }
    if count > MAX_FILES {
        return Err(WireError::TooManyFiles { count });
    }
    if count == 1
        && let Some(file) = request.files.values().next()
        && let (true, Some(text)) = (is_text(&file.file_type), &file.preview)
    {
        let text = clip_bytes(text, MAX_TEXT_BYTES);
        return Ok((request.info, ValidOffer::Text { text }));
    }
    let mut files = Vec::with_capacity(count);
    let mut bytes = 0u64;
    for (key, file) in request.files {
        if file.id.is_empty() || file.id.len() > MAX_ID_BYTES {
            return Err(WireError::BadId);
        }
        if key != file.id {
            return Err(WireError::IdMismatch(clip(&file.id, 40)));
        }
        if file.size > MAX_FILE_BYTES {
            return Err(WireError::TooLarge { size: file.size });
        }
        let (folders, safe) = safe_path(&file.file_name).ok_or(WireError::BadName)?;
        bytes = bytes.saturating_add(file.size);
        files.push(ValidFile {
            id: file.id,
            offered: file.file_name,
            folders,
            safe,
            size: file.size,
            file_type: clip(&file.file_type, 128),
        });
    }
    files.sort_by(|a, b| a.offered.cmp(&b.offered).then(a.id.cmp(&b.id)));
    Ok((request.info, ValidOffer::Files { files, bytes }))
}

/// LocalSend marks a text message with a `text/*` MIME type (`text/plain`, with or without
/// parameters such as `; charset=utf-8`, `text/markdown`, ...; older versions: `text`): like
/// LocalSend, any of them with a `preview` is a message.
fn is_text(file_type: &str) -> bool {
    let essence = file_type.split(';').next().unwrap_or("").trim();
    let text_type = essence
        .split_once('/')
        .is_some_and(|(kind, sub)| kind.eq_ignore_ascii_case("text") && !sub.trim().is_empty());
    text_type || essence.eq_ignore_ascii_case("text")
}

/// The first `max` bytes of `text`, cut on a character boundary.
fn clip_bytes(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

impl ValidFile {
    /// Where it goes relative to the folder it is saved in (`photos/2024/a.jpg`), as
    /// offered once sanitised: for prompts.
    pub fn relative(&self) -> String {
        let mut parts = self.folders.clone();
        parts.push(self.safe.as_str().to_owned());
        parts.join("/")
    }
}

/// A `/`-separated relative path (a folder's file, or `\`-separated from Windows) as the
/// folders it goes in and its file name: empty, `.` and `..` components are dropped (so
/// `/abs/x` is `abs/x` and `a/../../x` is `a/x`), and every remaining component is
/// sanitised like a file name (no leading dot, no reserved names or characters). Nothing
/// can name a place outside the folder it is saved in. `None` for an empty path, or one
/// longer or deeper than the Ferry folder receiver allows ([`MAX_PATH_BYTES`],
/// [`MAX_PATH_DEPTH`]).
pub fn safe_path(file_name: &str) -> Option<(Vec<String>, SafeName)> {
    if file_name.is_empty() || file_name.len() > MAX_PATH_BYTES {
        return None;
    }
    // Counted before dropping anything: `../../..` repeated is as deep as it looks.
    if file_name.split(['/', '\\']).count() > MAX_PATH_DEPTH {
        return None;
    }
    let mut components: Vec<&str> = file_name
        .split(['/', '\\'])
        .filter(|c| !c.is_empty() && *c != "." && *c != "..")
        .collect();
    let leaf = components.pop()?;
    let folders = components
        .iter()
        .map(|c| sanitize_file_name(c).as_str().to_owned())
        .collect();
    Some((folders, sanitize_file_name(leaf)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(files: &str) -> Vec<u8> {
        format!(
            r#"{{"info":{{"alias":"Phone","version":"2.0","deviceModel":null,"deviceType":"mobile","fingerprint":"AB","port":53317,"protocol":"https","download":false}},"files":{files}}}"#
        )
        .into_bytes()
    }

    fn files(body_bytes: &[u8]) -> Vec<ValidFile> {
        match validate_prepare(body_bytes) {
            Ok((_, ValidOffer::Files { files, .. })) => files,
            other => panic!("expected files, got {other:?}"),
        }
    }

    #[test]
    fn a_documented_request_is_accepted_with_unknown_fields_ignored() {
        let b = body(
            r#"{"a":{"id":"a","fileName":"my image.png","size":324242,"fileType":"image/jpeg","sha256":null,"preview":null,"metadata":{"modified":"x"}}}"#,
        );
        let got = files(&b);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].safe.as_str(), "my image.png");
        assert_eq!(got[0].size, 324_242);
    }

    #[test]
    fn path_components_never_leave_the_folder_nor_hide_a_file() {
        for (raw, want) in [
            ("../x", "x"),
            ("/etc/passwd", "etc/passwd"),
            (".bashrc", "_bashrc"),
            ("a/../../b/.c", "a/b/_c"),
            ("photos/2024/a.jpg", "photos/2024/a.jpg"),
            ("..\\..\\win.ini", "win.ini"),
            ("dir/.hidden/x", "dir/_hidden/x"),
            ("相册/2024/照片.jpg", "相册/2024/照片.jpg"),
            ("CON/x", "_CON/x"),
        ] {
            let (folders, safe) = safe_path(raw).unwrap_or_else(|| panic!("{raw} refused"));
            let got = [folders.clone(), vec![safe.as_str().to_owned()]].concat();
            for part in &got {
                assert!(
                    !part.is_empty() && !part.contains(['/', '\\']) && !part.starts_with('.'),
                    "{raw}: {part:?}"
                );
            }
            assert_eq!(got.join("/"), want, "{raw}");
        }
        assert_eq!(safe_path(""), None);
        assert_eq!(safe_path("../.."), None);
        assert_eq!(safe_path(&"d/".repeat(MAX_PATH_DEPTH)), None);
        assert!(safe_path(&"d/".repeat(MAX_PATH_DEPTH - 1)).is_some());
        assert_eq!(safe_path(&"a".repeat(MAX_PATH_BYTES + 1)), None);
    }

    #[test]
    fn bounds_and_bad_json_are_clear_errors() {
        assert!(matches!(
            validate_prepare(b"{not json"),
            Err(WireError::Json(_))
        ));
        assert!(matches!(
            validate_prepare(&body(r#"{"a":{"id":"a","fileName":"x","size":-1}}"#)),
            Err(WireError::Json(_))
        ));
        assert_eq!(validate_prepare(&body("{}")), Err(WireError::NoFiles));
        let huge = format!(
            r#"{{"a":{{"id":"a","fileName":"x","size":{}}}}}"#,
            MAX_FILE_BYTES + 1
        );
        assert_eq!(
            validate_prepare(&body(&huge)),
            Err(WireError::TooLarge {
                size: MAX_FILE_BYTES + 1
            })
        );
        assert!(matches!(
            validate_prepare(&body(r#"{"a":{"id":"b","fileName":"x","size":1}}"#)),
            Err(WireError::IdMismatch(_))
        ));
        let many: Vec<String> = (0..=MAX_FILES)
            .map(|i| format!(r#""{i}":{{"id":"{i}","fileName":"f{i}","size":1}}"#))
            .collect();
        assert_eq!(
            validate_prepare(&body(&format!("{{{}}}", many.join(",")))),
            Err(WireError::TooManyFiles {
                count: MAX_FILES + 1
            })
        );
    }

    #[test]
    fn a_single_text_file_with_a_preview_is_a_text_message() {
        let b = body(
            r#"{"t":{"id":"t","fileName":"x.txt","size":5,"fileType":"text/plain","preview":"hello"}}"#,
        );
        assert_eq!(
            validate_prepare(&b).map(|(_, offer)| offer),
            Ok(ValidOffer::Text {
                text: "hello".into()
            })
        );
        // Without a preview it is a file like any other.
        let b = body(r#"{"t":{"id":"t","fileName":"x.txt","size":5,"fileType":"text/plain"}}"#);
        assert_eq!(files(&b).len(), 1);
    }

    #[test]
    fn every_text_type_is_a_message_and_others_are_files() {
        for text in [
            "text/plain; charset=utf-8",
            "text/markdown",
            "TEXT/HTML",
            "text",
        ] {
            assert!(is_text(text), "{text}");
        }
        for other in [
            "image/png",
            "text/",
            "textual/plain",
            "application/text",
            "",
        ] {
            assert!(!is_text(other), "{other}");
        }
    }

    #[test]
    fn device_info_without_port_or_protocol_parses() {
        let info: DeviceInfo = serde_json::from_str(
            r#"{"alias":"cli","version":"2.2","deviceModel":null,"deviceType":"headless","fingerprint":"AA","download":false}"#,
        )
        .expect("parses");
        assert_eq!(info.port, None);
        assert_eq!(info.kind(), "headless");
        assert_eq!(info.label(), "cli");
    }
}
