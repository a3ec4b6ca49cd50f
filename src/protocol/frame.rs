//! Length prefixes: the `i32` little-endian frame length and the Ferry data-chunk header.

use super::{MAX_CHUNK_LEN, MAX_FRAME_LEN};

/// Why a length prefix was refused. Always raised before anything is allocated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame length {0} is not positive")]
    NotPositive(i32),
    #[error("frame length {len} exceeds the limit of {max} bytes")]
    TooLong { len: i32, max: usize },
    #[error("data chunk length {0} is negative")]
    NegativeChunk(i32),
    #[error("data chunk length {len} exceeds the limit of {max} bytes")]
    ChunkTooLong { len: i32, max: usize },
}

/// Wraps a JSON body in a frame: `[i32 LE length][body]`.
///
/// Callers only pass bodies they built themselves, which are far below `MAX_FRAME_LEN`;
/// a longer body is a programming error and is reported rather than truncated.
pub fn encode_frame(body: &[u8]) -> Result<Vec<u8>, FrameError> {
    let len = i32::try_from(body.len())
        .ok()
        .filter(|len| (*len as usize) <= MAX_FRAME_LEN)
        .ok_or(FrameError::TooLong {
            len: i32::MAX,
            max: MAX_FRAME_LEN,
        })?;
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(body);
    Ok(out)
}

/// Validates a frame's 4-byte length prefix and returns the body length.
pub fn decode_frame_len(prefix: [u8; 4]) -> Result<usize, FrameError> {
    let len = i32::from_le_bytes(prefix);
    if len <= 0 {
        return Err(FrameError::NotPositive(len));
    }
    // `len` is positive here, so the cast cannot wrap.
    let len_usize = len as usize;
    if len_usize > MAX_FRAME_LEN {
        return Err(FrameError::TooLong {
            len,
            max: MAX_FRAME_LEN,
        });
    }
    Ok(len_usize)
}

/// What a Ferry data-chunk header announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunk {
    /// `n` raw bytes follow.
    Data(usize),
    /// The sender gives up on this file; a `cancel` frame follows.
    Cancel,
}

/// Encodes a data-chunk header; `0` is the cancel marker.
pub fn encode_chunk_header(len: usize) -> [u8; 4] {
    debug_assert!(len <= MAX_CHUNK_LEN);
    // MAX_CHUNK_LEN fits an i32; senders never pass more.
    (len.min(MAX_CHUNK_LEN) as i32).to_le_bytes()
}

/// Validates a data-chunk header.
pub fn decode_chunk_header(prefix: [u8; 4]) -> Result<Chunk, FrameError> {
    let len = i32::from_le_bytes(prefix);
    match len {
        0 => Ok(Chunk::Cancel),
        n if n < 0 => Err(FrameError::NegativeChunk(n)),
        n if n as usize > MAX_CHUNK_LEN => Err(FrameError::ChunkTooLong {
            len: n,
            max: MAX_CHUNK_LEN,
        }),
        n => Ok(Chunk::Data(n as usize)),
    }
}

/// A frame's body and the bytes after it.
pub type Split<'a> = (&'a [u8], &'a [u8]);

/// Splits one frame off the front of `buf`: `Ok(None)` when `buf` holds only part of one.
/// Used by tests and the fuzz target to run the decoder over arbitrary bytes.
pub fn split_frame(buf: &[u8]) -> Result<Option<Split<'_>>, FrameError> {
    let Some((prefix, rest)) = buf.split_first_chunk::<4>() else {
        return Ok(None);
    };
    let len = decode_frame_len(*prefix)?;
    Ok(rest.split_at_checked(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_length_bounds() {
        assert_eq!(decode_frame_len(1i32.to_le_bytes()), Ok(1));
        assert_eq!(
            decode_frame_len((MAX_FRAME_LEN as i32).to_le_bytes()),
            Ok(MAX_FRAME_LEN)
        );
        assert_eq!(
            decode_frame_len(0i32.to_le_bytes()),
            Err(FrameError::NotPositive(0))
        );
        assert_eq!(
            decode_frame_len((-5i32).to_le_bytes()),
            Err(FrameError::NotPositive(-5))
        );
        assert!(matches!(
            decode_frame_len((MAX_FRAME_LEN as i32 + 1).to_le_bytes()),
            Err(FrameError::TooLong { .. })
        ));
        assert!(matches!(
            decode_frame_len(i32::MAX.to_le_bytes()),
            Err(FrameError::TooLong { .. })
        ));
    }

    #[test]
    fn chunk_header_bounds() {
        assert_eq!(decode_chunk_header(0i32.to_le_bytes()), Ok(Chunk::Cancel));
        assert_eq!(decode_chunk_header(7i32.to_le_bytes()), Ok(Chunk::Data(7)));
        assert_eq!(
            decode_chunk_header((-1i32).to_le_bytes()),
            Err(FrameError::NegativeChunk(-1))
        );
        assert!(matches!(
            decode_chunk_header((MAX_CHUNK_LEN as i32 + 1).to_le_bytes()),
            Err(FrameError::ChunkTooLong { .. })
        ));
        assert_eq!(
            decode_chunk_header(encode_chunk_header(MAX_CHUNK_LEN)),
            Ok(Chunk::Data(MAX_CHUNK_LEN))
        );
    }

    #[test]
    fn encode_frame_is_little_endian_length_then_body() {
        assert_eq!(encode_frame(b"{}").unwrap(), vec![2, 0, 0, 0, b'{', b'}']);
        assert!(encode_frame(&vec![b' '; MAX_FRAME_LEN + 1]).is_err());
    }

    #[test]
    fn split_frame_handles_partial_input() {
        assert_eq!(split_frame(&[2, 0]), Ok(None));
        assert_eq!(split_frame(&[2, 0, 0, 0, b'{']), Ok(None));
        assert_eq!(
            split_frame(&[2, 0, 0, 0, b'{', b'}', 9]),
            Ok(Some((&b"{}"[..], &[9u8][..])))
        );
    }
}
