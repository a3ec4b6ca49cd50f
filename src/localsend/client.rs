//! Requests to another LocalSend device, one per connection (LocalSend devices answer
//! register within half a second; prepare-upload waits for a person; an upload streams a
//! whole file). Over HTTPS (LocalSend's default) our certificate is the client certificate
//! and theirs is pinned to the fingerprint they announced; over plain HTTP (a device whose
//! owner turned Encryption off) there is no certificate, nothing is pinned and anyone on the
//! network can read the request. Either way the same request code runs over the stream
//! ([`Link`] says which), with the same bounds on the answer.
//!
//! A peer that speaks the other protocol fails fast with an error that says so
//! ([`LocalSendError::NotTls`], [`LocalSendError::NotPlainHttp`]): an HTTP server answers a
//! TLS hello with text, a TLS server drops a plain request.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Body;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::LocalSendError;
use super::identity::CertIdentity;

/// How a request travels.
#[derive(Clone, Copy)]
pub(super) enum Link<'a> {
    /// HTTPS: `identity` as our client certificate, the server's pinned to `expected` (or, on
    /// first contact, `None`: whatever it shows is reported in [`Answer::fingerprint`]).
    Tls {
        identity: &'a CertIdentity,
        expected: Option<&'a str>,
        /// Called with the fingerprint of the certificate the server showed once the TLS
        /// handshake completed (the server proved it holds that certificate's key),
        /// whatever happens to the request after it.
        shaken: Option<&'a (dyn Fn(&str) + Sync)>,
    },
    /// Plain HTTP: no certificate either way (the user agreed to send unencrypted, or a
    /// register probe of a device that does not speak TLS).
    Plain,
}

/// Largest answer body read.
const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// An answer: status, body, and the fingerprint the server's certificate had (`None` over
/// plain HTTP).
#[derive(Debug)]
pub(super) struct Answer {
    pub status: StatusCode,
    pub body: Bytes,
    pub fingerprint: Option<String>,
}

/// `POST https://addr{path_and_query}` (or `http://`, as `link` says) with a JSON body, all
/// within `timeout`.
pub(super) async fn post_json(
    link: Link<'_>,
    addr: SocketAddr,
    path_and_query: &str,
    body: Vec<u8>,
    timeout: Duration,
) -> Result<Answer, LocalSendError> {
    tokio::time::timeout(
        timeout,
        post(
            link,
            addr,
            path_and_query,
            "application/json",
            Full::new(Bytes::from(body)),
        ),
    )
    .await
    .map_err(|_| LocalSendError::Timeout)?
}

/// `POST https://addr{path_and_query}` (or `http://`) with any body (a file streams through
/// it), with no time limit of its own: the caller bounds it (a timeout, a cancel).
pub(super) async fn post<B>(
    link: Link<'_>,
    addr: SocketAddr,
    path_and_query: &str,
    content_type: &str,
    body: B,
) -> Result<Answer, LocalSendError>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    post_over(
        tcp,
        link,
        addr,
        path_and_query,
        content_type,
        body,
        MAX_ANSWER_BYTES,
    )
    .await
}

/// [`post`] over a connection already made, reading at most `max_answer_bytes` of the
/// answer (the register sweep connects with a timeout of its own and wants little back).
#[allow(clippy::too_many_arguments)] // one request's parts; a struct would only rename them
pub(super) async fn post_over<B>(
    tcp: tokio::net::TcpStream,
    link: Link<'_>,
    addr: SocketAddr,
    path_and_query: &str,
    content_type: &str,
    body: B,
    max_answer_bytes: usize,
) -> Result<Answer, LocalSendError>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let request = Outgoing {
        addr,
        path_and_query,
        content_type,
        max_answer_bytes,
        in_the_clear: matches!(link, Link::Plain),
    };
    match link {
        Link::Tls {
            identity,
            expected,
            shaken,
        } => {
            let (tls, seen) = handshake(identity, expected, addr, tcp).await?;
            if let (Some(shaken), Some(fingerprint)) = (shaken, seen.fingerprint()) {
                shaken(&fingerprint);
            }
            let mut answer = request.over(tls, body).await?;
            answer.fingerprint = seen.fingerprint();
            Ok(answer)
        }
        Link::Plain => request.over(tcp, body).await,
    }
}

/// [`post_json`] over HTTPS, the server's certificate pinned to `expected`; also whether
/// the TLS handshake completed, which holds even when what followed failed (an answer
/// late, cut short or too big): the server then holds that certificate's key, so the
/// device is there, only its answer failed. `on_handshake` is called as soon as it
/// completed (a late answer can take the whole timeout).
pub(super) async fn post_json_pinned(
    identity: &CertIdentity,
    expected: &str,
    addr: SocketAddr,
    path_and_query: &str,
    body: Vec<u8>,
    timeout: Duration,
    on_handshake: &(dyn Fn() + Sync),
) -> (Result<Answer, LocalSendError>, bool) {
    let shaken = AtomicBool::new(false);
    let noted = |_: &str| {
        shaken.store(true, Ordering::SeqCst);
        on_handshake();
    };
    let link = Link::Tls {
        identity,
        expected: Some(expected),
        shaken: Some(&noted),
    };
    let result = post_json(link, addr, path_and_query, body, timeout).await;
    (result, shaken.load(Ordering::SeqCst))
}

/// The fingerprint the server's certificate had, filled in by the TLS handshake.
struct Seen(Arc<Mutex<Option<String>>>);

impl Seen {
    fn fingerprint(&self) -> Option<String> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// The TLS handshake over `tcp`: our certificate as the client's, the server's pinned to
/// `expected` (any, when `None`).
async fn handshake(
    identity: &CertIdentity,
    expected: Option<&str>,
    addr: SocketAddr,
    tcp: tokio::net::TcpStream,
) -> Result<(tokio_rustls::client::TlsStream<tokio::net::TcpStream>, Seen), LocalSendError> {
    let seen = Arc::new(Mutex::new(None));
    let config = super::tls::client_config(identity, expected, Arc::clone(&seen))?;
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(ServerName::IpAddress(addr.ip().into()), tcp)
        .await
        .map_err(tls_error)?;
    Ok((tls, Seen(seen)))
}

/// One request's parts, apart from the stream and the body.
struct Outgoing<'a> {
    addr: SocketAddr,
    path_and_query: &'a str,
    content_type: &'a str,
    max_answer_bytes: usize,
    /// Plain HTTP: a request that gets no HTTP answer met a server that may speak TLS.
    in_the_clear: bool,
}

impl Outgoing<'_> {
    /// The request over `stream` (TLS or not), its answer read up to the bound.
    async fn over<S, B>(&self, stream: S, body: B) -> Result<Answer, LocalSendError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| LocalSendError::Http(e.to_string()))?;
        // Ended however this request ends (a timeout or cancel drops this future mid-way).
        let _driver = AbortOnDrop(tokio::spawn(connection));
        let request = Request::builder()
            .method(Method::POST)
            .uri(self.path_and_query)
            .header(hyper::header::HOST, host_header(self.addr))
            .header(hyper::header::CONTENT_TYPE, self.content_type)
            .body(body)
            .map_err(|e| LocalSendError::Http(e.to_string()))?;
        let response = sender.send_request(request).await.map_err(|e| {
            // A TLS server drops (or alerts on) a request in the clear.
            if self.in_the_clear && (e.is_parse() || e.is_incomplete_message()) {
                LocalSendError::NotPlainHttp(error_chain(&e))
            } else {
                LocalSendError::Http(error_chain(&e))
            }
        })?;
        let status = response.status();
        let body = Limited::new(response.into_body(), self.max_answer_bytes)
            .collect()
            .await
            .map_err(|e| LocalSendError::Http(e.to_string()))?
            .to_bytes();
        Ok(Answer {
            status,
            body,
            fingerprint: None,
        })
    }
}

/// Whether the server at `addr` speaks TLS: it completes our hello (whatever certificate it
/// shows) or answers it in TLS (an alert). `false` when it answers with something that is
/// no TLS (a plain-HTTP server's text) or closes without a word, as a device with
/// encryption off does. Asked before anything goes to a device in the clear: a device
/// announced with encryption off that speaks TLS all the same is not the device the
/// announcement claimed (anyone can announce in another's name), and must not be sent a
/// plaintext request, which would show its file names and PIN to the network.
pub(super) async fn speaks_tls(
    identity: &CertIdentity,
    addr: SocketAddr,
) -> Result<bool, LocalSendError> {
    let config = super::tls::client_config(identity, None, Arc::new(Mutex::new(None)))?;
    let heard = Arc::new(AtomicBool::new(false));
    let tcp = Witness {
        inner: tokio::net::TcpStream::connect(addr).await?,
        heard: Arc::clone(&heard),
    };
    let handshake = tokio_rustls::TlsConnector::from(config)
        .connect(ServerName::IpAddress(addr.ip().into()), tcp)
        .await;
    match handshake {
        Ok(_) => Ok(true),
        // Closed without a word: no TLS server does that to a hello. Closed part way
        // through an answer that was not plainly text: it may have been TLS.
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::UnexpectedEof
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
            ) =>
        {
            Ok(heard.load(Ordering::SeqCst))
        }
        Err(e) => match tls_error(e) {
            LocalSendError::NotTls(_) => Ok(false),
            // An alert, a certificate: an answer in TLS.
            _ => Ok(true),
        },
    }
}

/// A stream that notes whether anything was read from it.
struct Witness<S> {
    inner: S,
    heard: Arc<AtomicBool>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Witness<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.heard.store(true, Ordering::SeqCst);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Witness<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A failed TLS handshake; [`LocalSendError::NotTls`] when the server answered with
/// something that is no TLS at all (a plain-HTTP server's text).
fn tls_error(e: std::io::Error) -> LocalSendError {
    let not_tls = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|tls| matches!(tls, rustls::Error::InvalidMessage(_)));
    if not_tls {
        LocalSendError::NotTls(e.to_string())
    } else {
        LocalSendError::Tls(e.to_string())
    }
}

/// The `Host` header for `addr`: `[ip]:port` for IPv6, without the scope (`%3`), which
/// names our interface and means nothing to the server (and is not valid in a host).
fn host_header(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(v4) => v4.to_string(),
        SocketAddr::V6(v6) => format!("[{}]:{}", v6.ip(), v6.port()),
    }
}

/// An error with its causes (hyper's own text is often just "error sending request").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Aborts a spawned task when dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_header_has_no_ipv6_scope() {
        let scoped: SocketAddr = "[fe80::1%3]:53317".parse().expect("address");
        assert_eq!(host_header(scoped), "[fe80::1]:53317");
        let v4: SocketAddr = "10.0.0.2:53317".parse().expect("address");
        assert_eq!(host_header(v4), "10.0.0.2:53317");
    }
}
