//! Sending to a LocalSend device: `prepare-upload` (our info and the files: id, fileName,
//! size, fileType; no sha256, as LocalSend's own CLI), then one streamed
//! `upload?sessionId&fileId&token` per file the device wants, reporting the usual transfer
//! events with [`Security::LocalSend`]. A [`CancelToken`] is honoured while the device
//! decides and mid-file (then `cancel?sessionId` tells the device). A text message is one
//! `text/plain` file whose text is in `preview` (answered 204: nothing to upload).
//!
//! The device's certificate is pinned to the fingerprint it announced; ours is presented as
//! the client certificate. A device whose encryption is turned off speaks plain HTTP
//! ([`LocalSendProtocol::Http`], carried by the [`LocalSendTarget`]): it is sent to only when
//! the user agreed ([`LocalSendSender::send_unencrypted`]), else the send is refused before
//! anything goes out ([`LocalSendSendError::EncryptionOff`]); and even then only once the
//! device has shown it speaks no TLS (a device that answers in TLS is not the one that
//! announced encryption off: [`LocalSendSendError::AnswersTls`], nothing in the clear).
//! Blocking API: each call runs a small tokio runtime of its own.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::StatusCode;

use super::body::{FileBody, encode, mime_of};
use super::client::{Answer, Link, post, post_json, speaks_tls};
use super::devices::LocalSendDevice;
use super::folder::LocalSendBatch;
use super::identity::CertIdentity;
pub use super::send_error::LocalSendSendError;
use super::wire::{DeviceInfo, FileDto, PROTOCOL_VERSION, PrepareResponse, PrepareUpload};
use super::{LOCALSEND_PORT, LocalSendError, LocalSendProtocol};
use crate::events::{
    CancelToken, Direction, EventSink, Failure, FailureKind, Security, TransferEvent,
};
use crate::protocol::Mode;
use crate::transfer::{FileOutcome, OutgoingFile, OutgoingItem};

pub(super) const API: &str = "/api/localsend/v2/";
/// How often a wait checks the cancel token.
const CANCEL_POLL: Duration = Duration::from_millis(50);
/// How long telling the device about a cancel may take.
const CANCEL_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a device with encryption off has to show it speaks no TLS (one connection and
/// a hello answered: it answers register probes within half a second).
const PLAIN_CHECK_TIMEOUT: Duration = Duration::from_secs(10);
/// "No timeout" for a person deciding (a century; a cancel still ends it).
const FOREVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Where a LocalSend device listens, how it speaks and who it must prove to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalSendTarget {
    pub addr: SocketAddr,
    /// SHA-256 of its certificate, upper-case hex: the server must present exactly it (over
    /// plain HTTP only the id it announced: nothing is checked).
    pub fingerprint: String,
    pub alias: String,
    pub device_type: String,
    /// How it speaks, as it announced: every request to it goes this way, and only this way.
    pub protocol: LocalSendProtocol,
}

impl From<&LocalSendDevice> for LocalSendTarget {
    fn from(device: &LocalSendDevice) -> Self {
        Self {
            addr: device.addr,
            fingerprint: device.fingerprint.clone(),
            alias: device.alias.clone(),
            device_type: device.device_type.clone(),
            protocol: device.protocol,
        }
    }
}

/// Who we are to LocalSend devices, and how we send.
#[derive(Debug, Clone)]
pub struct LocalSendSender {
    pub identity: CertIdentity,
    pub alias: String,
    /// `desktop` (the window) or `headless` (the CLI).
    pub device_type: String,
    /// The PIN the device asks for, if any.
    pub pin: Option<String>,
    /// How long `prepare-upload` may wait for the person (`None`: as long as it takes,
    /// like LocalSend; a cancel still ends it).
    pub decision_timeout: Option<Duration>,
    /// The user agreed to send unencrypted to a device whose encryption is turned off (plain
    /// HTTP). A device that speaks HTTPS is still spoken to over HTTPS.
    pub send_unencrypted: bool,
    /// The port our own LocalSend receiver listens on (with this identity), which a
    /// register body and an offer tell the device: it lists us there. LocalSend's default
    /// unless set; a sender with no receiver running has nothing truer to say (the
    /// protocol has no way to say "none").
    pub port: u16,
}

impl LocalSendSender {
    pub fn new(identity: CertIdentity, alias: &str) -> Self {
        Self {
            identity,
            alias: alias.to_owned(),
            device_type: "headless".to_owned(),
            pin: None,
            decision_timeout: None,
            send_unencrypted: false,
            port: LOCALSEND_PORT,
        }
    }

    /// How requests to `target` travel: HTTPS pinned to its fingerprint, or plain HTTP to a
    /// device with encryption off when the user agreed (refused otherwise).
    fn link<'a>(&'a self, target: &'a LocalSendTarget) -> Result<Link<'a>, LocalSendSendError> {
        match target.protocol {
            LocalSendProtocol::Https => Ok(Link::Tls {
                identity: &self.identity,
                expected: Some(&target.fingerprint),
                shaken: None,
            }),
            LocalSendProtocol::Http if self.send_unencrypted => Ok(Link::Plain),
            LocalSendProtocol::Http => Err(LocalSendSendError::EncryptionOff {
                alias: target.alias.clone(),
            }),
        }
    }

    pub(super) fn info(&self) -> DeviceInfo {
        DeviceInfo {
            alias: self.alias.clone(),
            version: PROTOCOL_VERSION.to_owned(),
            device_model: Some("Ferry".to_owned()),
            device_type: Some(self.device_type.clone()),
            fingerprint: self.identity.fingerprint().to_owned(),
            port: Some(self.port),
            protocol: Some(LocalSendProtocol::Https.as_str().to_owned()),
            download: false,
            announce: None,
        }
    }

    /// Sends `files` in order and reports each file's outcome, in order. Every file gets a
    /// `Finished`, `Failed` or `Cancelled` event. `Err` when nothing could be sent at all
    /// (the device declined, was busy, wants a PIN, cannot be reached, ...).
    pub fn send_files(
        &self,
        target: &LocalSendTarget,
        files: &[OutgoingFile],
        sink: &EventSink,
        cancel: &CancelToken,
    ) -> Result<Vec<FileOutcome>, LocalSendSendError> {
        let items: Vec<OutgoingItem> = files.iter().cloned().map(OutgoingItem::File).collect();
        self.send_batch(target, &LocalSendBatch::of(&items), sink, cancel)
    }

    /// [`LocalSendSender::send_files`] for files under the names a [`LocalSendBatch`] gave
    /// them (a folder's files by their relative paths).
    pub fn send_batch(
        &self,
        target: &LocalSendTarget,
        batch: &LocalSendBatch,
        sink: &EventSink,
        cancel: &CancelToken,
    ) -> Result<Vec<FileOutcome>, LocalSendSendError> {
        let files = &batch.files;
        let result = self.try_send_files(target, files, sink, cancel);
        if let Err(e) = &result {
            for (file, _) in files {
                sink.transfer(match e {
                    LocalSendSendError::Cancelled => TransferEvent::Cancelled {
                        id: file.id,
                        by_peer: false,
                    },
                    e => TransferEvent::Failed {
                        id: file.id,
                        failure: e.failure(),
                    },
                });
            }
        }
        result
    }

    fn try_send_files(
        &self,
        target: &LocalSendTarget,
        files: &[(OutgoingFile, String)],
        sink: &EventSink,
        cancel: &CancelToken,
    ) -> Result<Vec<FileOutcome>, LocalSendSendError> {
        // Refused before anything is read or sent.
        let link = self.link(target)?;
        let mut listed = Vec::with_capacity(files.len());
        let mut dtos = HashMap::with_capacity(files.len());
        for (file, name) in files {
            let local = |source| LocalSendSendError::LocalFile {
                path: file.path.clone(),
                source,
            };
            let metadata = std::fs::metadata(&file.path).map_err(local)?;
            if !metadata.is_file() {
                return Err(local(std::io::Error::other("not a regular file")));
            }
            let name = name.clone();
            let id = file.id.to_string();
            dtos.insert(
                id.clone(),
                FileDto {
                    id,
                    file_name: name.clone(),
                    size: metadata.len(),
                    file_type: mime_of(&name).to_owned(),
                    sha256: None,
                    preview: None,
                },
            );
            listed.push((file, name, metadata.len()));
        }
        let runtime = runtime()?;
        let accepted = runtime.block_on(self.prepare(link, target, dtos, cancel))?;
        let Some(accepted) = accepted else {
            return Err(LocalSendSendError::NothingWanted);
        };
        let security = Security::LocalSend {
            alias: target.alias.clone(),
            device_type: target.device_type.clone(),
            fingerprint: target.fingerprint.clone(),
            encrypted: target.protocol.is_encrypted(),
        };
        let mut outcomes = Vec::with_capacity(files.len());
        let mut stopped_by_peer = None;
        for (file, name, size) in listed {
            if cancel.is_cancelled() {
                sink.transfer(TransferEvent::Cancelled {
                    id: file.id,
                    by_peer: false,
                });
                outcomes.push(FileOutcome::Cancelled);
                continue;
            }
            if let Some(reason) = &stopped_by_peer {
                sink.transfer(TransferEvent::Cancelled {
                    id: file.id,
                    by_peer: true,
                });
                outcomes.push(FileOutcome::CancelledByPeer {
                    reason: String::clone(reason),
                });
                continue;
            }
            let Some(token) = accepted.files.get(&file.id.to_string()) else {
                let reason = "the device did not want this file".to_owned();
                sink.transfer(TransferEvent::Failed {
                    id: file.id,
                    failure: Failure::new(FailureKind::Declined, reason.clone()),
                });
                outcomes.push(FileOutcome::Declined { reason });
                continue;
            };
            sink.transfer(TransferEvent::Started {
                id: file.id,
                direction: Direction::Outgoing,
                peer: target.addr,
                name,
                saved_as: None,
                bytes_total: size,
                mode: Mode::Plain,
                msg: String::new(),
                security: security.clone(),
            });
            let body = match FileBody::open(file, size, sink.clone(), cancel.clone()) {
                Ok(body) => body,
                // This side's file (gone, unreadable, or replaced since the folder was
                // read): nothing went out for it.
                Err(e) => {
                    let why = format!("cannot send {}: {e}", file.path.display());
                    outcomes.push(failed(sink, file.id, FailureKind::LocalFile, why));
                    continue;
                }
            };
            let query = upload_query(&accepted, &file.id.to_string(), token);
            let content_type = "application/octet-stream";
            let answer =
                runtime.block_on(post_to(link, target, &query, content_type, body, cancel));
            // A cancel makes the body fail too: whichever the upload saw first, it was
            // cancelled unless the device had it all.
            let answer = match answer {
                Some(Ok(answer)) if answer.status == StatusCode::OK => Some(Ok(answer)),
                _ if cancel.is_cancelled() => None,
                other => other,
            };
            let outcome = match answer {
                None => {
                    runtime.block_on(cancel_session(link, target, &accepted.session_id));
                    sink.transfer(TransferEvent::Cancelled {
                        id: file.id,
                        by_peer: false,
                    });
                    FileOutcome::Cancelled
                }
                Some(Ok(answer)) if answer.status == StatusCode::OK => {
                    sink.transfer(TransferEvent::Progress {
                        id: file.id,
                        bytes_done: size,
                    });
                    sink.transfer(TransferEvent::Finished {
                        id: file.id,
                        verified: false,
                        saved_as: None,
                        path: None,
                    });
                    FileOutcome::SentUnverified
                }
                Some(Ok(answer)) => {
                    let message = message_of(&answer);
                    if answer.status == StatusCode::FORBIDDEN {
                        // The session is gone: the device cancelled (or it timed out).
                        stopped_by_peer = Some(message.clone());
                        sink.transfer(TransferEvent::Cancelled {
                            id: file.id,
                            by_peer: true,
                        });
                        FileOutcome::CancelledByPeer { reason: message }
                    } else {
                        let why = format!("{}: {message}", answer.status.as_u16());
                        failed(sink, file.id, FailureKind::ReceiverFailed, why)
                    }
                }
                Some(Err(e)) => failed(
                    sink,
                    file.id,
                    FailureKind::Interrupted { kept_bytes: None },
                    e.to_string(),
                ),
            };
            outcomes.push(outcome);
        }
        Ok(outcomes)
    }

    /// Sends a text message (one `text/plain` file with the text in `preview`).
    pub fn send_text(
        &self,
        target: &LocalSendTarget,
        text: &str,
        cancel: &CancelToken,
    ) -> Result<(), LocalSendSendError> {
        let link = self.link(target)?;
        let id = "text".to_owned();
        let mut dtos = HashMap::new();
        dtos.insert(
            id.clone(),
            FileDto {
                id: id.clone(),
                file_name: "message.txt".to_owned(),
                size: text.len() as u64,
                file_type: "text/plain".to_owned(),
                sha256: None,
                preview: Some(text.to_owned()),
            },
        );
        let runtime = runtime()?;
        let Some(accepted) = runtime.block_on(self.prepare(link, target, dtos, cancel))? else {
            return Ok(()); // 204: the text was shown, nothing to upload
        };
        // A device that wants the text as a file gets it as one.
        let Some(token) = accepted.files.get(&id) else {
            return Ok(());
        };
        let body = Full::new(Bytes::from(text.as_bytes().to_vec()));
        let query = upload_query(&accepted, &id, token);
        let answer = runtime
            .block_on(post_to(link, target, &query, "text/plain", body, cancel))
            .ok_or(LocalSendSendError::Cancelled)?
            .map_err(|source| LocalSendSendError::Unreachable {
                addr: target.addr,
                source,
            })?;
        if answer.status == StatusCode::OK {
            Ok(())
        } else {
            Err(LocalSendSendError::Status {
                status: answer.status.as_u16(),
                message: message_of(&answer),
            })
        }
    }

    /// Before the first request in the clear: the device must not speak TLS (see
    /// [`speaks_tls`]); refused with [`LocalSendSendError::AnswersTls`] if it does.
    async fn confirm_plain(
        &self,
        target: &LocalSendTarget,
        cancel: &CancelToken,
    ) -> Result<(), LocalSendSendError> {
        let unreachable = |source| LocalSendSendError::Unreachable {
            addr: target.addr,
            source,
        };
        let check =
            tokio::time::timeout(PLAIN_CHECK_TIMEOUT, speaks_tls(&self.identity, target.addr));
        match with_cancel(cancel, check).await {
            None => Err(LocalSendSendError::Cancelled),
            Some(Err(_)) => Err(unreachable(LocalSendError::Timeout)),
            Some(Ok(Err(source))) => Err(unreachable(source)),
            Some(Ok(Ok(true))) => Err(LocalSendSendError::AnswersTls {
                alias: target.alias.clone(),
                addr: target.addr,
            }),
            Some(Ok(Ok(false))) => Ok(()),
        }
    }

    /// `prepare-upload`: `Some` with the session and the tokens of the files wanted, `None`
    /// for 204 (nothing to upload).
    async fn prepare(
        &self,
        link: Link<'_>,
        target: &LocalSendTarget,
        files: HashMap<String, FileDto>,
        cancel: &CancelToken,
    ) -> Result<Option<PrepareResponse>, LocalSendSendError> {
        if let Link::Plain = link {
            self.confirm_plain(target, cancel).await?;
        }
        let body = PrepareUpload {
            info: self.info(),
            files,
        };
        let body = serde_json::to_vec(&body)
            .map_err(|e| LocalSendSendError::BadAnswer(format!("cannot encode: {e}")))?;
        let mut path = format!("{API}prepare-upload");
        if let Some(pin) = &self.pin {
            path.push_str("?pin=");
            path.push_str(&encode(pin));
        }
        let request = post_json(
            link,
            target.addr,
            &path,
            body,
            self.decision_timeout.unwrap_or(FOREVER),
        );
        let answer = with_cancel(cancel, request)
            .await
            .ok_or(LocalSendSendError::Cancelled)?
            .map_err(|source| LocalSendSendError::Unreachable {
                addr: target.addr,
                source,
            })?;
        match answer.status {
            StatusCode::OK => serde_json::from_slice::<PrepareResponse>(&answer.body)
                .map(Some)
                .map_err(|e| LocalSendSendError::BadAnswer(e.to_string())),
            StatusCode::NO_CONTENT => Ok(None),
            StatusCode::UNAUTHORIZED if self.pin.is_some() => Err(LocalSendSendError::WrongPin),
            StatusCode::UNAUTHORIZED => Err(LocalSendSendError::PinRequired),
            StatusCode::FORBIDDEN => Err(LocalSendSendError::Declined),
            StatusCode::CONFLICT => Err(LocalSendSendError::Busy),
            StatusCode::TOO_MANY_REQUESTS => Err(LocalSendSendError::TooManyPinTries),
            status => Err(LocalSendSendError::Status {
                status: status.as_u16(),
                message: message_of(&answer),
            }),
        }
    }
}

/// POSTs `body` to `target` over `link` (its certificate pinned, or plain HTTP when the user
/// agreed: see [`LocalSendSender::link`]); `None` when `cancel` came first.
async fn post_to<B>(
    link: Link<'_>,
    target: &LocalSendTarget,
    path_and_query: &str,
    content_type: &str,
    body: B,
    cancel: &CancelToken,
) -> Option<Result<Answer, LocalSendError>>
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let request = post(link, target.addr, path_and_query, content_type, body);
    with_cancel(cancel, request).await
}

/// Tells the device the session is over (best effort: it also times out on its own).
async fn cancel_session(link: Link<'_>, target: &LocalSendTarget, session_id: &str) {
    let path = format!("{API}cancel?sessionId={}", encode(session_id));
    if let Err(e) = post_json(link, target.addr, &path, Vec::new(), CANCEL_TIMEOUT).await {
        log::debug!("LocalSend cancel at {}: {e}", target.addr);
    }
}

pub(super) fn runtime() -> Result<tokio::runtime::Runtime, LocalSendSendError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(LocalSendSendError::Runtime)
}

/// The upload of one file (`file_id`, with the `token` the device gave it) in the session a
/// prepare answer (`accepted`) opened.
fn upload_query(accepted: &PrepareResponse, file_id: &str, token: &str) -> String {
    format!(
        "{API}upload?sessionId={}&fileId={}&token={}",
        encode(&accepted.session_id),
        encode(file_id),
        encode(token)
    )
}

/// Runs `work` until it ends (`Some`) or `cancel` is set (`None`; `work` is dropped, which
/// closes its connection).
async fn with_cancel<T>(cancel: &CancelToken, work: impl Future<Output = T>) -> Option<T> {
    let cancelled = async {
        while !cancel.is_cancelled() {
            tokio::time::sleep(CANCEL_POLL).await;
        }
    };
    tokio::select! {
        done = work => Some(done),
        () = cancelled => None,
    }
}

/// File `id` failed for `detail`: said to the window, and its outcome.
fn failed(
    sink: &EventSink,
    id: crate::events::TransferId,
    kind: FailureKind,
    detail: String,
) -> FileOutcome {
    let failure = Failure::new(kind, detail);
    sink.transfer(TransferEvent::Failed {
        id,
        failure: failure.clone(),
    });
    FileOutcome::Failed(failure)
}

/// The device's words: its JSON `message`, else the body as text (clipped).
pub(super) fn message_of(answer: &Answer) -> String {
    let text = serde_json::from_slice::<serde_json::Value>(&answer.body)
        .ok()
        .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(&answer.body).into_owned());
    crate::protocol::clip(&text, 200)
}
