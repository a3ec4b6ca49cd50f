//! The pieces of a LocalSend upload that are not the conversation: a local file as a
//! streamed HTTP body (exactly the size announced, progress, cancel), query values
//! percent-encoded, and a MIME type by extension. Kept apart from `send` so each stays short.

use std::io::Read;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};

use crate::events::{CancelToken, EventSink, ProgressThrottle, TransferId};
use crate::transfer::OutgoingFile;

/// Bytes read from a file per body chunk.
const CHUNK_BYTES: usize = 64 * 1024;

/// Percent-encodes a query value (everything but RFC 3986's unreserved characters).
pub(super) fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A MIME type by extension, as LocalSend shows an icon by it (anything else is
/// `application/octet-stream`).
pub(super) fn mime_of(name: &str) -> &'static str {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "mp4" => "video/mp4",
        "mov" => "video/quicktime",
        "mp3" => "audio/mpeg",
        "pdf" => "application/pdf",
        "zip" => "application/zip",
        "apk" => "application/vnd.android.package-archive",
        "txt" => "text/plain",
        _ => "application/octet-stream",
    }
}

/// A file's bytes as an HTTP body: exactly the size announced (a file that shrank is an
/// error; one that grew is cut at the size), progress reported as it goes, a cancel ending
/// it at the next chunk.
pub(super) struct FileBody {
    id: TransferId,
    file: std::fs::File,
    left: u64,
    done: u64,
    buf: Vec<u8>,
    sink: EventSink,
    throttle: ProgressThrottle,
    cancel: CancelToken,
}

impl FileBody {
    pub(super) fn open(
        file: &OutgoingFile,
        size: u64,
        sink: EventSink,
        cancel: CancelToken,
    ) -> std::io::Result<Self> {
        let (opened, now) = file.open_sized()?;
        if now != size {
            return Err(std::io::Error::other("it changed since it was offered"));
        }
        Ok(Self {
            id: file.id,
            file: opened,
            left: size,
            done: 0,
            buf: vec![0; CHUNK_BYTES],
            sink,
            throttle: ProgressThrottle::default(),
            cancel,
        })
    }
}

impl Body for FileBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = self.get_mut();
        if this.left == 0 {
            return Poll::Ready(None);
        }
        if this.cancel.is_cancelled() {
            return Poll::Ready(Some(Err(std::io::Error::other("cancelled"))));
        }
        // A local file: a short blocking read on this runtime's own thread.
        let want = usize::try_from(this.left)
            .unwrap_or(usize::MAX)
            .min(this.buf.len());
        let read = match this.file.read(&mut this.buf[..want]) {
            Ok(0) => Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the file shrank while it was sent",
            )),
            Ok(n) => Ok(n),
            Err(e) => Err(e),
        };
        Poll::Ready(Some(read.map(|n| {
            this.left -= n as u64;
            this.done += n as u64;
            this.throttle.report(&this.sink, this.id, this.done);
            Frame::data(Bytes::copy_from_slice(&this.buf[..n]))
        })))
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.left)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(encode("abc-123_~."), "abc-123_~.");
        assert_eq!(encode("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
    }

    #[test]
    fn mime_types_by_extension() {
        assert_eq!(mime_of("IMG.JPG"), "image/jpeg");
        assert_eq!(mime_of("notes.txt"), "text/plain");
        assert_eq!(mime_of("noext"), "application/octet-stream");
    }
}
