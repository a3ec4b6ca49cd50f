//! The sender machine without sockets: every answer at every point, the byte accounting,
//! and whole exchanges (plain, Ferry, resume, cancel, decline), checked against the receiver
//! machine where both take part.

use super::*;
use crate::protocol::{CHUNK_LEN, CancelCode, Header, Mode, ReceiverMsg, SenderMsg, WaitFor};

fn header(size: u64) -> Header {
    Header {
        eager: false,
        file_name: "f".into(),
        file_size: size,
        msg: String::new(),
        resume_key: Some("ab".into()),
    }
}

fn every_answer() -> Vec<ReceiverMsg> {
    vec![
        ReceiverMsg::Waiting {
            waiting_for: WaitFor::Decision,
        },
        ReceiverMsg::Accept {
            eager_max: None,
            offset: 0,
            saved_as: "f".into(),
            prefix_blake3: None,
        },
        ReceiverMsg::Accept {
            eager_max: None,
            offset: 4,
            saved_as: "f".into(),
            prefix_blake3: Some(blake3::hash(b"abcd").to_hex().to_string()),
        },
        ReceiverMsg::Decline {
            reason: "d".into(),
            offer_again: false,
        },
        ReceiverMsg::Verified {
            saved_as: "f".into(),
        },
        ReceiverMsg::Failed { reason: "x".into() },
        ReceiverMsg::Cancel {
            code: CancelCode::User,
            reason: "c".into(),
        },
        ReceiverMsg::Waiting {
            waiting_for: WaitFor::EarlierCopy,
        },
    ]
}

fn states() -> Vec<(&'static str, SenderSession)> {
    let idle = SenderSession::new(Mode::Ferry);
    let mut offered = idle.clone();
    offered.offer(header(10)).unwrap();
    let mut resuming = offered.clone();
    resuming.on_answer(every_answer()[2].clone()).unwrap();
    let mut data = offered.clone();
    data.on_answer(every_answer()[1].clone()).unwrap();
    let mut verdict = data.clone();
    verdict.sent(10).unwrap();
    verdict.end([0; 32]).unwrap();
    let mut offered_owing = verdict.clone();
    offered_owing.offer(header(10)).unwrap();
    let mut data_owing = offered_owing.clone();
    data_owing.on_answer(every_answer()[1].clone()).unwrap();
    let mut broken = idle.clone();
    broken.break_off();
    vec![
        ("idle", idle),
        ("offered", offered),
        ("resuming", resuming),
        ("data", data),
        ("awaiting the verdict", verdict),
        ("offered, a verdict owed", offered_owing),
        ("data, a verdict owed", data_owing),
        ("broken", broken),
    ]
}

fn answer_allowed(state: &str, msg: &ReceiverMsg) -> bool {
    matches!(
        (state, msg),
        (
            "idle"
                | "offered"
                | "resuming"
                | "data"
                | "awaiting the verdict"
                | "offered, a verdict owed"
                | "data, a verdict owed",
            ReceiverMsg::Cancel { .. }
        ) | (
            "offered" | "offered, a verdict owed",
            ReceiverMsg::Waiting { .. } | ReceiverMsg::Accept { .. } | ReceiverMsg::Decline { .. }
        ) | ("offered" | "resuming", ReceiverMsg::Failed { .. })
            | (
                "data" | "data, a verdict owed",
                ReceiverMsg::Decline { .. } | ReceiverMsg::Failed { .. }
            )
            | (
                "awaiting the verdict" | "offered, a verdict owed" | "data, a verdict owed",
                ReceiverMsg::Verified { .. } | ReceiverMsg::Failed { .. }
            )
    )
}

#[test]
fn every_answer_at_every_point_is_taken_or_refused_as_the_spec_says() {
    let mut checked = 0;
    for (name, machine) in states() {
        for msg in every_answer() {
            let result = machine.clone().on_answer(msg.clone());
            assert_eq!(
                result.is_ok(),
                answer_allowed(name, &msg),
                "{name} given {msg:?}: {result:?}"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 8 * 8);
}

/// The next file goes out before the last one's verdict: verdicts are the oldest owed
/// file's, in order, whatever is on offer; with none owed, a `failed` gives up on the file on
/// offer and the connection; and no folder starts while a file's verdict is owed.
#[test]
fn verdicts_owed_are_taken_in_order_while_later_files_go_out() {
    let mut m = SenderSession::new(Mode::Ferry);
    let accept = every_answer()[1].clone();
    for _ in 0..2 {
        m.offer(header(1)).unwrap();
        m.on_answer(accept.clone()).unwrap();
        m.sent(1).unwrap();
        m.end([0; 32]).unwrap();
    }
    assert_eq!(m.verdicts_owed(), 2);
    assert!(
        m.clone().folder("d", &[], None, "").is_err(),
        "verdicts owed"
    );
    m.offer(header(1)).unwrap();
    let failed = ReceiverMsg::Failed { reason: "x".into() };
    assert_eq!(
        m.on_answer(failed.clone()),
        Ok(Answer::Rejected { reason: "x".into() })
    );
    assert_eq!(
        m.on_answer(every_answer()[4].clone()),
        Ok(Answer::Verified {
            saved_as: "f".into()
        })
    );
    assert_eq!(m.verdicts_owed(), 0);
    // The offer is still on: accepted, then a verdict with none owed is out of step.
    m.on_answer(accept).unwrap();
    assert!(m.clone().on_answer(every_answer()[4].clone()).is_err());
    assert_eq!(
        m.on_answer(failed),
        Ok(Answer::Failed { reason: "x".into() })
    );
    assert!(m.offer(header(1)).is_err(), "the receiver gave up");
}

#[test]
fn accepts_that_do_not_fit_the_file_are_refused() {
    let bad = [
        (11, Some(blake3::hash(b"").to_hex().to_string())),
        (4, None),
        (0, Some(blake3::hash(b"").to_hex().to_string())),
        (4, Some("not hex".to_owned())),
    ];
    for (offset, prefix_blake3) in bad {
        let mut m = SenderSession::new(Mode::Ferry);
        m.offer(header(10)).unwrap();
        let accept = ReceiverMsg::Accept {
            eager_max: None,
            offset,
            saved_as: "f".into(),
            prefix_blake3,
        };
        assert!(m.on_answer(accept.clone()).is_err(), "{accept:?}");
        assert!(m.offer(header(1)).is_err(), "broken for good");
    }
}

#[test]
fn bytes_are_counted_in_chunks_and_never_beyond_the_file() {
    let size = 2 * CHUNK_LEN as u64 + 5;
    let mut m = SenderSession::new(Mode::Ferry);
    m.offer(header(size)).unwrap();
    m.on_answer(ReceiverMsg::Accept {
        eager_max: None,
        offset: 0,
        saved_as: "f".into(),
        prefix_blake3: None,
    })
    .unwrap();
    let mut chunks = Vec::new();
    while let Some(n) = m.next_chunk() {
        assert_eq!(
            m.chunk_header(n),
            Some(crate::protocol::encode_chunk_header(n))
        );
        assert!(
            m.clone().end([0; 32]).is_err(),
            "no end before the last byte"
        );
        m.sent(n as u64).unwrap();
        chunks.push(n);
    }
    assert_eq!(chunks, [CHUNK_LEN, CHUNK_LEN, 5]);
    assert!(m.clone().sent(1).is_err(), "nothing beyond the file");
    assert!(
        m.clone().cancel(CancelCode::User, "late".into()).is_err(),
        "no cancel marker once every byte is out: the receiver waits for the end frame"
    );
    assert_eq!(m.end([3; 32]).unwrap(), SenderMsg::End { blake3: [3; 32] });
}

#[test]
fn plain_files_are_never_answered_and_end_with_their_last_byte() {
    let mut m = SenderSession::new(Mode::Plain);
    let frame = m.offer(header(3)).unwrap();
    assert!(matches!(&frame, SenderMsg::Plain(h) if h.resume_key.is_none()));
    assert_eq!(m.chunk_header(3), None, "raw bytes, no chunk headers");
    m.sent(3).unwrap();
    assert!(m.at_boundary());
    assert!(m.clone().end([0; 32]).is_err(), "no end in plain mode");
    // An empty file is complete with its header: the next one may follow at once.
    m.offer(header(0)).unwrap();
    assert!(m.at_boundary(), "an empty plain file needs no data");
    assert_eq!(m.next_chunk(), None);
    m.offer(header(1)).unwrap();
    assert!(
        m.cancel(CancelCode::User, "x".into()).is_err(),
        "a plain peer cannot be told"
    );
}

/// A whole resumed file, both machines talking: the receiver's accept drives the sender's
/// resume, the start drives the receiver, the counts agree, and the hash is checked.
#[test]
fn sender_and_receiver_machines_agree_on_a_resume() {
    let mut tx = SenderSession::new(Mode::Ferry);
    let mut rx = ReceiverSession::new(10);
    let offer = tx.offer(header(10)).unwrap();
    let FrameStep::Offer { .. } = rx.on_frame(offer).unwrap() else {
        panic!()
    };
    let accept = rx
        .accept(4, "f".into(), Some(*blake3::hash(b"abcd").as_bytes()))
        .unwrap()
        .unwrap();
    let Answer::Resume { offset, prefix } = tx.on_answer(accept).unwrap() else {
        panic!()
    };
    assert_eq!((offset, prefix), (4, *blake3::hash(b"abcd").as_bytes()));
    let (start, from) = tx.start(true).unwrap();
    assert_eq!(from, 4);
    assert_eq!(rx.on_frame(start).unwrap(), FrameStep::Resume { offset: 4 });
    let n = tx.next_chunk().unwrap();
    assert_eq!(n, 6);
    rx.on_chunk_header(crate::protocol::Chunk::Data(n)).unwrap();
    rx.on_data(n as u64).unwrap();
    tx.sent(n as u64).unwrap();
    let hash = *blake3::hash(b"abcdefghij").as_bytes();
    rx.data_complete(hash).unwrap();
    assert_eq!(
        rx.on_frame(tx.end(hash).unwrap()).unwrap(),
        FrameStep::Verified
    );
    assert_eq!(
        tx.on_answer(ReceiverMsg::Verified {
            saved_as: "f".into()
        }),
        Ok(Answer::Verified {
            saved_as: "f".into()
        })
    );
    assert!(tx.at_boundary() && rx.at_boundary());
}

#[test]
fn a_cancel_mid_file_keeps_both_machines_in_step() {
    let mut tx = SenderSession::new(Mode::Ferry);
    let mut rx = ReceiverSession::new(10);
    rx.on_frame(tx.offer(header(10)).unwrap()).unwrap();
    tx.on_answer(rx.accept(0, "f".into(), None).unwrap().unwrap())
        .unwrap();
    tx.sent(3).unwrap();
    rx.on_chunk_header(crate::protocol::Chunk::Data(3)).unwrap();
    rx.on_data(3).unwrap();
    let (marker, cancel) = tx.cancel(CancelCode::User, "enough".into()).unwrap();
    assert_eq!(marker, [0; 4]);
    rx.on_chunk_header(crate::protocol::decode_chunk_header(marker).unwrap())
        .unwrap();
    assert_eq!(
        rx.on_frame(cancel).unwrap(),
        FrameStep::Cancelled {
            code: CancelCode::User,
            reason: "enough".into()
        }
    );
    assert!(tx.at_boundary() && rx.at_boundary());
    rx.on_frame(tx.offer(header(0)).unwrap()).unwrap();
}

#[test]
fn batch_frames_list_every_file_within_the_frame_limit() {
    let files: Vec<(String, u64)> = (0..3000)
        .map(|i| (format!("{i:05}-{}", "x".repeat(40)), i))
        .collect();
    let frames = batch_frames(&files);
    assert!(frames.len() > 1);
    let mut listed = Vec::new();
    for frame in &frames {
        let SenderMsg::Batch {
            count,
            bytes,
            names,
            sizes,
        } = frame
        else {
            panic!()
        };
        assert_eq!(*count, 3000);
        assert_eq!(*bytes, (0..3000).sum::<u64>());
        assert_eq!(names.len(), sizes.len());
        assert!(
            crate::protocol::encode_sender_msg(frame).unwrap().len()
                <= crate::protocol::MAX_FRAME_LEN
        );
        listed.extend(names.iter().cloned().zip(sizes.iter().copied()));
    }
    assert_eq!(listed, files);
    // A receiver takes them all.
    let mut rx = ReceiverSession::new(100_000);
    for frame in frames {
        assert_eq!(rx.on_frame(frame).unwrap(), FrameStep::Batch);
    }
    assert_eq!(rx.batch().unwrap().files().len(), 3000);
}
