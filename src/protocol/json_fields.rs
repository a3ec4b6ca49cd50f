//! Readers of a received JSON object's fields, each refusing a wrong type with the field's
//! name (what [`super::message`] decodes peers' frames with). Peer text: bounded only by the
//! frame it came in.

use serde_json::{Map, Value};

use super::MAX_FILE_SIZE;
use super::message::{Header, MAX_RESUME_KEY_LEN, MessageError};

pub(super) fn kind(obj: &Map<String, Value>) -> Result<Option<&str>, MessageError> {
    match obj.get("kind") {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(MessageError::WrongType {
            field: "kind",
            expected: "a string",
        }),
    }
}

pub(super) fn header(obj: &Map<String, Value>) -> Result<Header, MessageError> {
    let file_name = string_field(obj, "file_name")?.to_owned();
    let size = obj
        .get("file_size")
        .ok_or(MessageError::MissingField("file_size"))?;
    let file_size = match size {
        Value::Number(n) => n
            .as_u64()
            .filter(|s| *s <= MAX_FILE_SIZE)
            .ok_or_else(|| MessageError::BadSize(n.to_string()))?,
        _ => {
            return Err(MessageError::WrongType {
                field: "file_size",
                expected: "an integer",
            });
        }
    };
    Ok(Header {
        file_name,
        file_size,
        msg: optional_string(obj, "msg")?,
        resume_key: resume_key(obj)?,
        eager: false,
    })
}

/// An optional `resume_key`: up to [`MAX_RESUME_KEY_LEN`] lowercase hex digits.
pub(super) fn resume_key(obj: &Map<String, Value>) -> Result<Option<String>, MessageError> {
    Ok(match obj.get("resume_key") {
        None | Some(Value::Null) => None,
        Some(Value::String(key))
            if (1..=MAX_RESUME_KEY_LEN).contains(&key.len())
                && key
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
        {
            Some(key.clone())
        }
        Some(_) => {
            return Err(MessageError::WrongType {
                field: "resume_key",
                expected: "up to 64 lowercase hex digits",
            });
        }
    })
}

pub(super) fn u64_field(
    obj: &Map<String, Value>,
    field: &'static str,
) -> Result<u64, MessageError> {
    match obj.get(field) {
        Some(value) => value.as_u64().ok_or(MessageError::WrongType {
            field,
            expected: "a non-negative integer",
        }),
        None => Err(MessageError::MissingField(field)),
    }
}

pub(super) fn size_list(
    obj: &Map<String, Value>,
    field: &'static str,
) -> Result<Vec<u64>, MessageError> {
    let wrong = MessageError::WrongType {
        field,
        expected: "a list of sizes",
    };
    match obj.get(field) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| {
                item.as_u64()
                    .filter(|s| *s <= MAX_FILE_SIZE)
                    .ok_or(wrong.clone())
            })
            .collect(),
        Some(_) => Err(wrong),
    }
}

pub(super) fn string_list(
    obj: &Map<String, Value>,
    field: &'static str,
) -> Result<Vec<String>, MessageError> {
    let wrong = MessageError::WrongType {
        field,
        expected: "a list of strings",
    };
    match obj.get(field) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str().map(str::to_owned).ok_or(wrong.clone()))
            .collect(),
        Some(_) => Err(wrong),
    }
}

pub(super) fn string_field<'a>(
    obj: &'a Map<String, Value>,
    field: &'static str,
) -> Result<&'a str, MessageError> {
    match obj.get(field) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(MessageError::WrongType {
            field,
            expected: "a string",
        }),
        None => Err(MessageError::MissingField(field)),
    }
}

pub(super) fn optional_string(
    obj: &Map<String, Value>,
    field: &'static str,
) -> Result<String, MessageError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(MessageError::WrongType {
            field,
            expected: "a string or null",
        }),
    }
}
