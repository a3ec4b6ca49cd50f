//! The switch of a connection to the secure channel: the secure hello's handshake (over the
//! pairing code on offer when the sender asked to pair), after which the connection's reader
//! and writer are the channel's halves and everything else runs unchanged.

use std::io::BufReader;
use std::time::Instant;

use super::connection::{ConnEnd, Connection};
use super::lock;
use crate::events::{Event, ServerEvent};
use crate::protocol;
use crate::secure::SecureError;
use crate::transfer::TransferError;
use crate::transfer::wire::{Hello, Incoming, Outgoing, Pace, secure_receiver};

impl Connection<'_> {
    /// The sender asked for encryption with the hello whose frame `body` was read (its
    /// fields decoded as `pairing`, `ciphers`, `serves_on`): the handshake (over the pairing
    /// code on offer when it asked to pair), then everything goes through the secure channel.
    pub(super) fn go_secure(
        &mut self,
        body: &[u8],
        pairing: bool,
        ciphers: &[String],
        serves_on: Option<u16>,
    ) -> Result<(), ConnEnd> {
        let hello = Hello {
            body,
            pairing,
            ciphers,
            serves_on,
        };
        self.serves_on = serves_on;
        let shared = self.shared;
        let socket = self
            .writer
            .socket()
            .try_clone()
            .map_err(TransferError::Io)?;
        let placeholder = BufReader::new(Incoming::Plain(
            socket.try_clone().map_err(TransferError::Io)?,
        ));
        let reader = std::mem::replace(&mut self.reader, placeholder);
        let writer = std::mem::replace(&mut self.writer, Outgoing::plain(socket));
        let Some(writer) = writer.into_plain() else {
            return Err(TransferError::Unexpected("a second secure hello".into()).into());
        };
        let keyring = shared.config.keyring.as_ref();
        let pace = Pace {
            record: shared.config.header_deadline,
            idle: shared.config.idle_timeout,
        };
        // The code this try used: only that code is used up by its success (a code started
        // meanwhile stays fresh).
        let mut tried = None;
        let secured = secure_receiver(reader, writer, keyring, hello, pace, || {
            let code = match lock(&shared.pairing).as_mut() {
                Some(pairing) => pairing.begin_try(Instant::now()),
                None => Err(SecureError::Handshake(
                    "this receiver is not pairing now (start pairing on it first)".into(),
                )),
            };
            tried = code.as_ref().ok().cloned();
            code
        });
        let _ = self
            .writer
            .socket()
            .set_read_timeout(Some(shared.config.idle_timeout));
        let secured = match secured {
            Ok(secured) => secured,
            Err((error, device)) => {
                let name = device.map_or_else(String::new, |d| {
                    format!(" ({})", protocol::escape_line(&d.name))
                });
                log::warn!("{}{name}: secure handshake failed: {error}", self.peer);
                return Err(error.into());
            }
        };
        if secured.peer.paired {
            if let Some(pairing) = lock(&shared.pairing).as_mut()
                && tried.as_ref() == Some(pairing.code())
            {
                pairing.succeeded();
            }
            shared.sink.emit(Event::Server(ServerEvent::Paired {
                peer: self.peer,
                device: secured.peer.name.clone(),
                fingerprint: secured.peer.fingerprint(),
            }));
        }
        if let Some(keyring) = keyring {
            self.security = secured.security(keyring);
        }
        log::info!(
            "{}: encrypted, device {:?} ({}){}",
            self.peer,
            protocol::escape_line(&secured.peer.name),
            secured.peer.fingerprint(),
            if secured.trusted { ", trusted" } else { "" }
        );
        self.reader = BufReader::with_capacity(64 * 1024, secured.incoming);
        self.writer = secured.outgoing;
        self.device = Some(secured.peer);
        Ok(())
    }
}
