//! Eager small files through both machines without sockets: the receiver refuses eager
//! offers it never allowed or over its limit, drops a declined one's data to its end or
//! cancel, and the sender attributes late accepts, declines and verdicts to the right files.

use super::*;
use crate::protocol::{CancelCode, Chunk, Header, Mode, ReceiverMsg, SenderMsg};

fn header(name: &str, size: u64, eager: bool) -> Header {
    Header {
        file_name: name.into(),
        file_size: size,
        msg: String::new(),
        resume_key: None,
        eager,
    }
}

fn accept(eager_max: Option<u64>) -> ReceiverMsg {
    ReceiverMsg::Accept {
        offset: 0,
        saved_as: "f".into(),
        prefix_blake3: None,
        eager_max,
    }
}

/// A receiver that took one ordinary file, announcing `eager_max` 100 in its accept.
fn receiver_after_first_file() -> ReceiverSession {
    let mut rx = ReceiverSession::new(100);
    rx.take_eager(100);
    rx.on_frame(SenderMsg::Offer(header("a", 1, false)))
        .unwrap();
    let answer = rx.accept(0, "a".into(), None).unwrap();
    assert!(matches!(
        answer,
        Some(ReceiverMsg::Accept {
            eager_max: Some(100),
            ..
        })
    ));
    rx.on_chunk_header(Chunk::Data(1)).unwrap();
    rx.on_data(1).unwrap();
    rx.data_complete([1; 32]).unwrap();
    assert_eq!(
        rx.on_frame(SenderMsg::End { blake3: [1; 32] }),
        Ok(FrameStep::Verified)
    );
    rx
}

#[test]
fn a_receiver_refuses_eager_offers_it_never_announced_or_over_its_limit() {
    // Never announced: not even with take_eager, before an accept said so.
    let mut rx = ReceiverSession::new(100);
    rx.take_eager(100);
    let early = rx.on_frame(SenderMsg::Offer(header("x", 1, true)));
    assert_eq!(early, Err(SessionError::EagerNotAnnounced));
    assert_eq!(rx.expect(), Expect::Nothing);
    assert_eq!(rx.mode(), Some(Mode::Ferry), "a Ferry sender is told why");
    // A receiver that does not take eager offers never announces them.
    let mut rx = ReceiverSession::new(100);
    rx.on_frame(SenderMsg::Offer(header("a", 1, false)))
        .unwrap();
    let answer = rx.accept(0, "a".into(), None).unwrap();
    assert!(matches!(
        answer,
        Some(ReceiverMsg::Accept {
            eager_max: None,
            ..
        })
    ));
    // Over the limit.
    let mut rx = receiver_after_first_file();
    let big = rx.on_frame(SenderMsg::Offer(header("x", 101, true)));
    assert_eq!(
        big,
        Err(SessionError::EagerTooLarge {
            size: 101,
            max: 100
        })
    );
    // At the limit, fine; and an eager offer never resumes.
    let mut rx = receiver_after_first_file();
    rx.on_frame(SenderMsg::Offer(header("x", 100, true)))
        .unwrap();
    assert!(rx.accept(50, "x".into(), Some([0; 32])).is_err());
}

#[test]
fn a_declined_eager_files_data_is_read_to_its_end_and_answered_with_nothing() {
    let mut rx = receiver_after_first_file();
    rx.on_frame(SenderMsg::Offer(header("x", 10, true)))
        .unwrap();
    assert!(matches!(
        rx.decline("no".into(), false),
        Ok(ReceiverMsg::Decline { .. })
    ));
    assert!(rx.discarding());
    assert_eq!(rx.expect(), Expect::ChunkHeader);
    // Never more than offered.
    let mut too_much = rx.clone();
    assert_eq!(
        too_much.on_chunk_header(Chunk::Data(11)),
        Err(SessionError::TooMuchData)
    );
    rx.on_chunk_header(Chunk::Data(10)).unwrap();
    assert_eq!(rx.expect(), Expect::Data(10));
    rx.on_data(10).unwrap();
    rx.data_complete([0; 32]).unwrap();
    assert_eq!(
        rx.on_frame(SenderMsg::End { blake3: [9; 32] }),
        Ok(FrameStep::Discarded)
    );
    assert!(!rx.discarding() && rx.at_boundary());
    // The next eager file is an ordinary one again.
    rx.on_frame(SenderMsg::Offer(header("y", 1, true))).unwrap();
    rx.accept(0, "y".into(), None).unwrap();
    assert!(!rx.discarding());
    // And a declined one its sender cancels ends with the cancel.
    let mut rx = receiver_after_first_file();
    rx.on_frame(SenderMsg::Offer(header("z", 10, true)))
        .unwrap();
    rx.decline("no".into(), false).unwrap();
    rx.on_chunk_header(Chunk::Data(4)).unwrap();
    rx.on_data(4).unwrap();
    rx.on_chunk_header(Chunk::Cancel).unwrap();
    let cancel = SenderMsg::Cancel {
        code: CancelCode::User,
        reason: String::new(),
    };
    assert!(matches!(
        rx.on_frame(cancel),
        Ok(FrameStep::Cancelled { .. })
    ));
    assert!(!rx.discarding() && rx.at_boundary());
}

/// A sender that sent one ordinary file (accepted with `eager_max` 100, verdict owed).
fn sender_after_first_file() -> SenderSession {
    let mut tx = SenderSession::new(Mode::Ferry);
    assert!(!tx.may_send_eager(1), "nothing announced yet");
    tx.offer(header("a", 1, false)).unwrap();
    tx.on_answer(accept(Some(100))).unwrap();
    tx.sent(1).unwrap();
    tx.end([0; 32]).unwrap();
    tx
}

/// Sends a whole eager file of `size` bytes.
fn send_eager(tx: &mut SenderSession, size: u64) {
    let offer = tx.offer_eager(header("e", size, false)).unwrap();
    assert!(matches!(
        offer,
        SenderMsg::Offer(Header {
            eager: true,
            resume_key: None,
            ..
        })
    ));
    tx.sent(size).unwrap();
    tx.end([0; 32]).unwrap();
}

#[test]
fn a_sender_attributes_late_answers_to_its_eager_files_in_order() {
    let mut tx = sender_after_first_file();
    assert_eq!(tx.eager_max(), Some(100));
    assert!(!tx.may_send_eager(101));
    send_eager(&mut tx, 10);
    send_eager(&mut tx, 20);
    assert_eq!((tx.accepts_owed(), tx.verdicts_owed()), (2, 1));
    // No ordinary offer and no folder while eager answers are owed.
    assert!(tx.clone().offer(header("big", 1000, false)).is_err());
    assert!(tx.clone().folder("d", &[], None, "").is_err());
    // The first file's verdict, then the eager ones' answers, interleaved.
    let verified = |name: &str| ReceiverMsg::Verified {
        saved_as: name.into(),
    };
    assert!(matches!(
        tx.on_answer(verified("a")),
        Ok(Answer::Verified { .. })
    ));
    assert!(matches!(
        tx.on_answer(accept(None)),
        Ok(Answer::EagerAccepted { .. })
    ));
    assert_eq!((tx.accepts_owed(), tx.verdicts_owed()), (1, 1));
    assert!(matches!(
        tx.on_answer(ReceiverMsg::Decline {
            reason: "n".into(),
            offer_again: false
        }),
        Ok(Answer::EagerDeclined { .. })
    ));
    assert_eq!((tx.accepts_owed(), tx.verdicts_owed()), (0, 1));
    assert!(matches!(
        tx.on_answer(verified("e")),
        Ok(Answer::Verified { .. })
    ));
    // Nothing owed: a verdict now is a protocol error; an ordinary offer may go again.
    assert!(tx.clone().on_answer(verified("x")).is_err());
    tx.offer(header("big", 1000, false)).unwrap();
}

#[test]
fn an_eager_file_answered_while_it_is_still_going_out_owes_its_verdict_after_its_end() {
    let mut tx = sender_after_first_file();
    tx.offer_eager(header("e", 10, false)).unwrap();
    tx.sent(4).unwrap();
    // Accepted mid-data: nothing owed until its end.
    assert!(matches!(
        tx.on_answer(accept(None)),
        Ok(Answer::EagerAccepted { .. })
    ));
    assert_eq!((tx.accepts_owed(), tx.verdicts_owed()), (0, 1));
    tx.sent(6).unwrap();
    tx.end([0; 32]).unwrap();
    assert_eq!(tx.verdicts_owed(), 2);
    // Declined mid-data, then cancelled here: nothing owed, the connection goes on.
    tx.offer_eager(header("f", 10, false)).unwrap();
    tx.sent(4).unwrap();
    assert!(matches!(
        tx.on_answer(ReceiverMsg::Decline {
            reason: "n".into(),
            offer_again: false
        }),
        Ok(Answer::EagerDeclined { .. })
    ));
    tx.cancel(CancelCode::User, String::new()).unwrap();
    assert_eq!((tx.accepts_owed(), tx.verdicts_owed()), (0, 2));
    // Cancelled before its answer, then accepted: still no verdict owed for it.
    tx.offer_eager(header("g", 10, false)).unwrap();
    tx.sent(4).unwrap();
    tx.cancel(CancelCode::User, String::new()).unwrap();
    tx.on_answer(accept(None)).unwrap();
    assert_eq!((tx.accepts_owed(), tx.verdicts_owed()), (0, 2));
}

#[test]
fn a_failed_with_eager_answers_owed_and_no_verdict_owed_is_the_receiver_giving_up() {
    let mut tx = sender_after_first_file();
    tx.on_answer(ReceiverMsg::Verified {
        saved_as: "a".into(),
    })
    .unwrap();
    send_eager(&mut tx, 10);
    let failed = ReceiverMsg::Failed {
        reason: "gone".into(),
    };
    assert_eq!(
        tx.on_answer(failed),
        Ok(Answer::Failed {
            reason: "gone".into()
        })
    );
    assert!(!tx.at_boundary(), "the connection is over");
    // An eager file's accept with an offset breaks the protocol.
    let mut tx = sender_after_first_file();
    send_eager(&mut tx, 10);
    let resume = ReceiverMsg::Accept {
        offset: 4,
        saved_as: "e".into(),
        prefix_blake3: Some(blake3::hash(b"abcd").to_hex().to_string()),
        eager_max: None,
    };
    assert!(tx.on_answer(resume).is_err());
}

#[test]
fn a_huge_eager_max_does_not_make_large_files_go_unasked() {
    let mut tx = SenderSession::new(Mode::Ferry);
    tx.offer(header("a", 1, false)).unwrap();
    tx.on_answer(accept(Some(u64::MAX / 2))).unwrap();
    tx.sent(1).unwrap();
    tx.end([0; 32]).unwrap();
    assert!(tx.may_send_eager(EAGER_WINDOW_BYTES));
    assert!(!tx.may_send_eager(EAGER_WINDOW_BYTES + 1));
    assert!(
        tx.offer_eager(header("b", EAGER_WINDOW_BYTES + 1, false))
            .is_err()
    );
}
