//! HTTPS requests to another LocalSend device: our certificate as the client certificate,
//! theirs pinned to the fingerprint they announced. One request per connection (LocalSend
//! devices answer register within half a second; prepare-upload waits for a person; an
//! upload streams a whole file).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Body;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;

use super::LocalSendError;
use super::identity::CertIdentity;

/// Largest answer body read.
const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// An answer: status, body, and the fingerprint the server's certificate had.
#[derive(Debug)]
pub(super) struct Answer {
    pub status: StatusCode,
    pub body: Bytes,
    pub fingerprint: Option<String>,
}

/// `POST https://addr{path_and_query}` with a JSON body, all within `timeout`.
pub(super) async fn post_json(
    identity: &CertIdentity,
    addr: SocketAddr,
    expected: Option<&str>,
    path_and_query: &str,
    body: Vec<u8>,
    timeout: Duration,
) -> Result<Answer, LocalSendError> {
    tokio::time::timeout(
        timeout,
        post(
            identity,
            addr,
            expected,
            path_and_query,
            "application/json",
            Full::new(Bytes::from(body)),
        ),
    )
    .await
    .map_err(|_| LocalSendError::Timeout)?
}

/// `POST https://addr{path_and_query}` with any body (a file streams through it), with no
/// time limit of its own: the caller bounds it (a timeout, a cancel).
pub(super) async fn post<B>(
    identity: &CertIdentity,
    addr: SocketAddr,
    expected: Option<&str>,
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
        identity,
        addr,
        expected,
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
    identity: &CertIdentity,
    addr: SocketAddr,
    expected: Option<&str>,
    path_and_query: &str,
    content_type: &str,
    body: B,
    max_answer_bytes: usize,
) -> Result<Answer, LocalSendError>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let seen = Arc::new(Mutex::new(None));
    let config = super::tls::client_config(identity, expected, Arc::clone(&seen))?;
    let connector = tokio_rustls::TlsConnector::from(config);
    let tls = connector
        .connect(ServerName::IpAddress(addr.ip().into()), tcp)
        .await
        .map_err(|e| LocalSendError::Tls(e.to_string()))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| LocalSendError::Http(e.to_string()))?;
    // Ended however this request ends (a timeout or cancel drops this future mid-way).
    let _driver = AbortOnDrop(tokio::spawn(connection));
    let request = Request::builder()
        .method(Method::POST)
        .uri(path_and_query)
        .header(hyper::header::HOST, host_header(addr))
        .header(hyper::header::CONTENT_TYPE, content_type)
        .body(body)
        .map_err(|e| LocalSendError::Http(e.to_string()))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| LocalSendError::Http(error_chain(&e)))?;
    let status = response.status();
    let body = Limited::new(response.into_body(), max_answer_bytes)
        .collect()
        .await
        .map_err(|e| LocalSendError::Http(e.to_string()))?
        .to_bytes();
    let fingerprint = seen
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    Ok(Answer {
        status,
        body,
        fingerprint,
    })
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
