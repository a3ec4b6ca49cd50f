//! Asking one address who it is with `POST /register` (a typed `--localsend-probe`, a
//! favourite, each host of the sweep): over HTTPS first, the certificate taken on first
//! contact and a body claiming another fingerprint refused; and, when the host answered the
//! TLS hello in plain text, once more over plain HTTP (a LocalSend whose owner turned
//! Encryption off). Such a device has no certificate: its fingerprint is only the id its
//! body claims, it is listed as [`LocalSendProtocol::Http`], and nothing is sent to it
//! unless the user agrees to send unencrypted.
//!
//! Both tries read at most the caller's bound of answer, and the whole probe runs within
//! the caller's time.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;

use super::LocalSendError;
use super::client::{Answer, Link, post_over};
use super::devices::LocalSendDevice;
use super::identity::CertIdentity;
use super::send::{API, LocalSendSendError, LocalSendSender, message_of, runtime};
use super::wire::DeviceInfo;
use super::{LocalSendProtocol, MAX_FINGERPRINT_CHARS, claimed_fingerprint};

/// Largest register answer a probe reads.
const MAX_PROBE_ANSWER_BYTES: usize = 64 * 1024;

/// `POST /register` with `body` to `addr`, over HTTPS, else (the host speaks no TLS) over
/// plain HTTP; each connection must be accepted within `connect_timeout`. The answer, and
/// the protocol it came over. `shaken` is called with the fingerprint of the certificate
/// the host showed as soon as the TLS handshake completed (see [`Link::Tls`]).
pub(super) async fn register(
    identity: &CertIdentity,
    addr: SocketAddr,
    body: Vec<u8>,
    connect_timeout: Duration,
    max_answer_bytes: usize,
    shaken: Option<&(dyn Fn(&str) + Sync)>,
) -> Result<(Answer, LocalSendProtocol), LocalSendError> {
    let tls = Link::Tls {
        identity,
        expected: None,
        shaken,
    };
    let ask = |link| register_over(link, addr, &body, connect_timeout, max_answer_bytes);
    match ask(tls).await {
        Ok(answer) => Ok((answer, LocalSendProtocol::Https)),
        Err(LocalSendError::NotTls(why)) => {
            log::debug!("LocalSend register at {addr}: no TLS ({why}); trying plain HTTP");
            Ok((ask(Link::Plain).await?, LocalSendProtocol::Http))
        }
        Err(e) => Err(e),
    }
}

/// One `POST /register` over `link` on a connection of its own.
async fn register_over(
    link: Link<'_>,
    addr: SocketAddr,
    body: &[u8],
    connect_timeout: Duration,
    max_answer_bytes: usize,
) -> Result<Answer, LocalSendError> {
    let tcp = tokio::time::timeout(connect_timeout, tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| LocalSendError::Timeout)??;
    let body = Full::new(Bytes::from(body.to_vec()));
    let path = format!("{API}register");
    post_over(
        tcp,
        link,
        addr,
        &path,
        "application/json",
        body,
        max_answer_bytes,
    )
    .await
}

/// The device a register answer describes, or why it is none: over HTTPS its body must
/// claim its certificate's fingerprint; over plain HTTP the claim is all there is (bounded).
pub(super) fn device_of(
    answer: &Answer,
    protocol: LocalSendProtocol,
) -> Result<DeviceInfo, String> {
    let mut info: DeviceInfo = serde_json::from_slice(&answer.body).map_err(|e| e.to_string())?;
    match protocol {
        LocalSendProtocol::Https => {
            let certified = answer.fingerprint.clone().unwrap_or_default();
            if !info.fingerprint.eq_ignore_ascii_case(&certified) {
                return Err("its fingerprint is not its certificate's".to_owned());
            }
            info.fingerprint = certified;
        }
        LocalSendProtocol::Http => {
            info.fingerprint = claimed_fingerprint(&info.fingerprint).ok_or_else(|| {
                format!(
                    "its id is empty, longer than {MAX_FINGERPRINT_CHARS} bytes or not \
                     printable ASCII"
                )
            })?;
        }
    }
    // The answer has no port or protocol: the address probed is where it listens, so.
    info.port = None;
    info.protocol = Some(protocol.as_str().to_owned());
    Ok(info)
}

impl LocalSendSender {
    /// Asks `addr` who it is with `POST /register` (LocalSend's fallback to multicast, and
    /// the way to reach a device multicast does not). First contact: no fingerprint is
    /// known, so the one its certificate shows is taken, and a body claiming another is
    /// refused; a host that speaks no TLS is asked again over plain HTTP (see the module
    /// doc).
    pub fn probe(
        &self,
        addr: SocketAddr,
        timeout: Duration,
    ) -> Result<LocalSendDevice, LocalSendSendError> {
        let body = serde_json::to_vec(&self.info())
            .map_err(|e| LocalSendSendError::BadAnswer(format!("cannot encode: {e}")))?;
        let unreachable = |source| LocalSendSendError::Unreachable { addr, source };
        let asked = register(
            &self.identity,
            addr,
            body,
            timeout,
            MAX_PROBE_ANSWER_BYTES,
            None,
        );
        let (answer, protocol) = runtime()?
            .block_on(async { tokio::time::timeout(timeout, asked).await })
            .map_err(|_| unreachable(LocalSendError::Timeout))?
            .map_err(unreachable)?;
        if answer.status != hyper::StatusCode::OK {
            return Err(LocalSendSendError::Status {
                status: answer.status.as_u16(),
                message: message_of(&answer),
            });
        }
        let info = device_of(&answer, protocol).map_err(LocalSendSendError::BadAnswer)?;
        Ok(LocalSendDevice {
            alias: info.label(),
            device_type: info.kind().to_owned(),
            device_model: info.device_model.map(|m| crate::protocol::clip(&m, 64)),
            fingerprint: info.fingerprint.to_ascii_uppercase(),
            addr,
            addr_v6: addr.is_ipv6().then_some(addr),
            protocol,
            how: vec!["probe"],
            last_seen: std::time::Instant::now(),
            // Over HTTPS `device_of` checked the fingerprint against the certificate.
            proven: protocol == LocalSendProtocol::Https,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(body: &str) -> Answer {
        Answer {
            status: hyper::StatusCode::OK,
            body: Bytes::from(body.to_owned()),
            fingerprint: None,
        }
    }

    #[test]
    fn a_plain_http_register_answer_needs_an_id_of_printable_ascii() {
        let hostile = r#"{"alias":"x","version":"2.1","fingerprint":"AB\u001b]0;OWNED\u0007"}"#;
        let refused = device_of(&answer(hostile), LocalSendProtocol::Http);
        assert!(refused.is_err(), "{refused:?}");
        let fine = r#"{"alias":"x","version":"2.1","fingerprint":"3f2a-c0de"}"#;
        let info = device_of(&answer(fine), LocalSendProtocol::Http).expect("a device");
        assert_eq!(info.fingerprint, "3F2A-C0DE");
        assert_eq!(info.protocol.as_deref(), Some("http"));
    }
}
