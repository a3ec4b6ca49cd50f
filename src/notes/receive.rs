//! The notes socket's receive thread: every datagram becomes a note (plain text, or a sealed
//! note that opened) or a refusal, queued in a bounded [`NoteQueue`] and handed on to the
//! event channel only as fast as it is read (see the module doc of [`super`]).

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::SystemTime;

use super::sealed::{self, Sealing};
use super::{
    FORWARD_RETRY_INTERVAL, MAX_EVENTS_IN_FLIGHT, NoteQueue, QueuedNote, RECV_BUF_LEN,
    RECV_ERROR_BACKOFF, RECV_POLL_INTERVAL,
};
use crate::events::{Event, EventSink, NoteEvent, Security};
use crate::protocol::decode_note;
use crate::secure::note::NoteOpener;

/// What the receive loop does about a failed `recv_from`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RecvFailure {
    /// Nothing arrived within the read timeout, or a signal interrupted the call.
    Idle,
    /// The ICMP port-unreachable from an earlier send: UDP promised nothing, carry on.
    PeerUnreachable,
    /// Anything else: logged, then the loop carries on after a short pause.
    Unexpected,
}

fn classify(error: &io::Error) -> RecvFailure {
    match error.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted => {
            RecvFailure::Idle
        }
        // Linux reports ECONNREFUSED, Windows WSAECONNRESET.
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset => {
            RecvFailure::PeerUnreachable
        }
        _ => RecvFailure::Unexpected,
    }
}

/// Hands waiting notes to the consumer while it has fewer than [`MAX_EVENTS_IN_FLIGHT`]
/// events to read; a count of dropped notes goes first, where the gap is.
fn forward(queue: &mut NoteQueue, sink: &EventSink) {
    while sink.queued() < MAX_EVENTS_IN_FLIGHT {
        let dropped = queue.take_dropped();
        if dropped > 0 {
            log::info!("notes: dropped {dropped} notes: they arrived faster than they were shown");
            if sink
                .try_emit(Event::Note(NoteEvent::Dropped { count: dropped }))
                .is_err()
            {
                queue.restore_dropped(dropped);
                return;
            }
            continue;
        }
        let Some(note) = queue.pop() else { return };
        let QueuedNote {
            from,
            text,
            at,
            security,
        } = note;
        let event = NoteEvent::Received {
            from,
            text,
            at,
            security,
        };
        if let Err(event) = sink.try_emit(Event::Note(event)) {
            if let Event::Note(NoteEvent::Received {
                from,
                text,
                at,
                security,
            }) = *event
            {
                queue.unpop(QueuedNote {
                    from,
                    text,
                    at,
                    security,
                });
            }
            return;
        }
    }
}

/// A sealed datagram that did not open: logged, and reported in its place among the notes
/// when the consumer keeps up (otherwise counted with the dropped notes, so a flood of them
/// stays bounded like any other).
fn refuse(queue: &mut NoteQueue, sink: &EventSink, from: SocketAddr, reason: String) {
    log::info!("notes: refused a sealed note from {from}: {reason}");
    if !queue.is_empty() || sink.queued() >= MAX_EVENTS_IN_FLIGHT {
        queue.restore_dropped(1);
        return;
    }
    let at = SystemTime::now();
    if sink
        .try_emit(Event::Note(NoteEvent::Refused { from, reason, at }))
        .is_err()
    {
        queue.restore_dropped(1);
    }
}

/// What one datagram is: a note to show, or a sealed one refused (with the reason).
fn receive_one(
    datagram: &[u8],
    from: SocketAddr,
    sealing: Option<&Sealing>,
    opener: &mut Option<NoteOpener>,
) -> Result<(String, Security), String> {
    if !sealed::is_sealed(datagram) {
        return Ok((decode_note(datagram), Security::Plain));
    }
    let Some(sealing) = sealing else {
        return Err("encrypted, but this Ferry has no device identity (plain notes only)".into());
    };
    let opener = opener.get_or_insert_with(|| sealing.opener());
    sealing.open(opener, from, datagram)
}

pub(super) fn receive_loop(
    socket: &UdpSocket,
    stop: &AtomicBool,
    sealing: Option<&Sealing>,
    sink: &EventSink,
) {
    let mut buf = vec![0u8; RECV_BUF_LEN];
    let mut queue = NoteQueue::default();
    let mut opener = None;
    let mut retrying = false;
    while !stop.load(Ordering::SeqCst) {
        // While notes wait for the consumer, wake often to hand them on; otherwise only to
        // look at the stop flag.
        let notes_waiting = !queue.is_empty();
        if notes_waiting != retrying {
            retrying = notes_waiting;
            let timeout = if retrying {
                FORWARD_RETRY_INTERVAL
            } else {
                RECV_POLL_INTERVAL
            };
            if let Err(e) = socket.set_read_timeout(Some(timeout)) {
                log::warn!("notes: cannot change the read timeout: {e}");
            }
        }
        match socket.recv_from(&mut buf) {
            Ok((len, from)) => {
                // Checked again so the wake-up datagram from `shutdown` is not shown.
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let at = SystemTime::now();
                match receive_one(&buf[..len], from, sealing, &mut opener) {
                    Ok((text, security)) => queue.push(QueuedNote {
                        from,
                        text,
                        at,
                        security,
                    }),
                    Err(reason) => refuse(&mut queue, sink, from, reason),
                }
            }
            Err(e) => match classify(&e) {
                RecvFailure::Idle => {}
                RecvFailure::PeerUnreachable => {
                    log::debug!("notes: an earlier note found no listener ({e}); still receiving");
                }
                RecvFailure::Unexpected => {
                    log::warn!("notes: receive failed: {e}; still receiving");
                    thread::sleep(RECV_ERROR_BACKOFF);
                }
            },
        }
        forward(&mut queue, sink);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_and_unreachable_peers_do_not_stop_the_loop() {
        for kind in [
            io::ErrorKind::WouldBlock,
            io::ErrorKind::TimedOut,
            io::ErrorKind::Interrupted,
        ] {
            assert_eq!(
                classify(&io::Error::from(kind)),
                RecvFailure::Idle,
                "{kind:?}"
            );
        }
        assert_eq!(
            classify(&io::Error::from(io::ErrorKind::ConnectionRefused)),
            RecvFailure::PeerUnreachable
        );
        // ECONNREFUSED as Linux reports it, so the test covers the real mapping.
        #[cfg(target_os = "linux")]
        assert_eq!(
            classify(&io::Error::from_raw_os_error(111)),
            RecvFailure::PeerUnreachable
        );
        assert_eq!(
            classify(&io::Error::from(io::ErrorKind::ConnectionReset)),
            RecvFailure::PeerUnreachable
        );
        assert_eq!(classify(&io::Error::other("boom")), RecvFailure::Unexpected);
    }
}
