//! The receiver machine without sockets: every message in every state, every count mismatch,
//! and whole exchanges (plain, Ferry, resume, cancel, decline, batch consent).

use proptest::prelude::*;

use super::*;
use crate::protocol::{CancelCode, Chunk, Header, Mode, ReceiverMsg, SenderMsg};

fn header(name: &str, size: u64) -> Header {
    Header {
        eager: false,
        file_name: name.into(),
        file_size: size,
        msg: String::new(),
        resume_key: None,
    }
}

fn every_msg() -> Vec<SenderMsg> {
    vec![
        SenderMsg::Plain(header("p", 3)),
        SenderMsg::Offer(header("o", 3)),
        SenderMsg::Batch {
            count: 1,
            bytes: 3,
            names: vec!["o".into()],
            sizes: vec![3],
        },
        SenderMsg::Start { offset: 0 },
        SenderMsg::Start { offset: 2 },
        SenderMsg::End { blake3: [0; 32] },
        SenderMsg::Cancel {
            code: CancelCode::User,
            reason: "r".into(),
        },
    ]
}

/// Drives a machine to each reachable state; returns (name, machine).
fn states() -> Vec<(&'static str, ReceiverSession)> {
    let mut out = Vec::new();
    let fresh = ReceiverSession::new(10);
    out.push(("fresh", fresh.clone()));

    let mut offered = fresh.clone();
    offered.on_frame(SenderMsg::Offer(header("a", 10))).unwrap();
    out.push(("ferry offered", offered.clone()));

    let mut plain_offered = fresh.clone();
    plain_offered
        .on_frame(SenderMsg::Plain(header("a", 10)))
        .unwrap();
    out.push(("plain offered", plain_offered.clone()));

    let mut plain_data = plain_offered.clone();
    plain_data.accept(0, "a".into(), None).unwrap();
    out.push(("plain data", plain_data.clone()));

    let mut plain_idle = plain_data.clone();
    plain_idle.on_data(10).unwrap();
    plain_idle.data_complete([0; 32]).unwrap();
    out.push(("plain between files", plain_idle));

    let mut await_start = offered.clone();
    await_start.accept(4, "a".into(), Some([1; 32])).unwrap();
    out.push(("awaiting start", await_start));

    let mut chunk_header = offered.clone();
    chunk_header.accept(0, "a".into(), None).unwrap();
    out.push(("awaiting a chunk header", chunk_header.clone()));

    let mut in_chunk = chunk_header.clone();
    in_chunk.on_chunk_header(Chunk::Data(6)).unwrap();
    out.push(("inside a chunk", in_chunk.clone()));

    let mut complete = in_chunk.clone();
    complete.on_data(6).unwrap();
    complete.on_chunk_header(Chunk::Data(4)).unwrap();
    complete.on_data(4).unwrap();
    out.push(("data complete", complete.clone()));

    let mut await_end = complete.clone();
    await_end.data_complete([9; 32]).unwrap();
    out.push(("awaiting the end", await_end.clone()));

    let mut await_cancel = chunk_header.clone();
    await_cancel.on_chunk_header(Chunk::Cancel).unwrap();
    out.push(("awaiting the cancel", await_cancel));

    let mut ferry_idle = await_end.clone();
    ferry_idle
        .on_frame(SenderMsg::End { blake3: [9; 32] })
        .unwrap();
    out.push(("ferry between files", ferry_idle));

    let mut broken = fresh;
    broken.break_off();
    out.push(("broken", broken));
    out
}

/// Which frames each state takes.
fn frame_allowed(state: &str, msg: &SenderMsg) -> bool {
    matches!(
        (state, msg),
        (
            "fresh",
            SenderMsg::Plain(_) | SenderMsg::Offer(_) | SenderMsg::Batch { .. }
        ) | ("plain between files", SenderMsg::Plain(_))
            | ("ferry between files", SenderMsg::Offer(_))
            | ("awaiting start", SenderMsg::Start { offset: 0 | 4 })
            | (
                "awaiting the end",
                SenderMsg::End { .. } | SenderMsg::Cancel { .. }
            )
            | ("awaiting the cancel", SenderMsg::Cancel { .. })
    )
}

#[test]
fn every_frame_in_every_state_is_taken_or_refused_as_the_spec_says() {
    let mut checked = 0;
    for (name, machine) in states() {
        for msg in every_msg() {
            let mut m = machine.clone();
            let result = m.on_frame(msg.clone());
            assert_eq!(
                result.is_ok(),
                frame_allowed(name, &msg),
                "{name} given {msg:?}: {result:?}"
            );
            if result.is_err() {
                assert_eq!(m.expect(), Expect::Nothing, "an error breaks the session");
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 13 * 7);
}

#[test]
fn chunk_headers_and_data_only_where_data_flows() {
    for (name, machine) in states() {
        let mut m = machine.clone();
        let header = m.on_chunk_header(Chunk::Data(1));
        let takes_header = matches!(name, "awaiting a chunk header");
        assert_eq!(header.is_ok(), takes_header, "{name}: {header:?}");

        let mut m = machine.clone();
        let data = m.on_data(1);
        let takes_data = matches!(name, "plain data" | "inside a chunk");
        assert_eq!(data.is_ok(), takes_data, "{name}: {data:?}");

        let mut m = machine.clone();
        let complete = m.data_complete([0; 32]);
        assert_eq!(complete.is_ok(), name == "data complete", "{name}");

        let mut m = machine.clone();
        let accept = m.accept(0, "a".into(), None);
        assert_eq!(
            accept.is_ok(),
            matches!(name, "ferry offered" | "plain offered"),
            "{name}"
        );
    }
}

#[test]
fn count_mismatches_are_refused() {
    let mut m = ReceiverSession::new(10);
    m.on_frame(SenderMsg::Offer(header("a", 10))).unwrap();
    m.accept(0, "a".into(), None).unwrap();
    // A chunk larger than what is left.
    assert_eq!(
        m.clone().on_chunk_header(Chunk::Data(11)),
        Err(SessionError::TooMuchData)
    );
    m.on_chunk_header(Chunk::Data(8)).unwrap();
    // More bytes than the chunk announced.
    assert_eq!(m.clone().on_data(9), Err(SessionError::TooMuchData));
    m.on_data(8).unwrap();
    assert_eq!(m.expect(), Expect::ChunkHeader);
    // The file is not complete yet.
    assert_eq!(
        m.clone().data_complete([0; 32]),
        Err(SessionError::Incomplete)
    );
    assert_eq!(
        m.clone().on_chunk_header(Chunk::Data(3)),
        Err(SessionError::TooMuchData)
    );
    m.on_chunk_header(Chunk::Data(2)).unwrap();
    assert_eq!(m.expect(), Expect::Data(2));
    m.on_data(2).unwrap();
    assert_eq!(m.expect(), Expect::DataComplete);
    assert_eq!(
        m.clone().on_chunk_header(Chunk::Data(1)),
        Err(SessionError::Unexpected {
            got: "a chunk header",
            expected: "the file's data"
        })
    );

    // A plain file: raw bytes up to its size, never more.
    let mut p = ReceiverSession::new(10);
    p.on_frame(SenderMsg::Plain(header("p", 5))).unwrap();
    assert_eq!(
        p.accept(0, "p".into(), None),
        Ok(None),
        "plain is never answered"
    );
    assert_eq!(p.expect(), Expect::Data(5));
    assert_eq!(p.clone().on_data(6), Err(SessionError::TooMuchData));
    p.on_data(5).unwrap();
    assert_eq!(p.data_complete([0; 32]), Ok(Mode::Plain));
    assert!(p.at_boundary());
}

#[test]
fn a_resume_is_agreed_at_the_offered_offset_or_restarted_at_zero() {
    let offered = || {
        let mut m = ReceiverSession::new(10);
        m.on_frame(SenderMsg::Offer(header("r", 100))).unwrap();
        m
    };
    // A prefix needs its hash, and plain senders cannot resume.
    assert!(offered().accept(40, "r".into(), None).is_err());
    assert!(offered().accept(0, "r".into(), Some([0; 32])).is_err());
    assert!(offered().accept(101, "r".into(), Some([0; 32])).is_err());
    let mut plain = ReceiverSession::new(10);
    plain.on_frame(SenderMsg::Plain(header("r", 100))).unwrap();
    assert!(plain.accept(40, "r".into(), Some([0; 32])).is_err());

    let mut m = offered();
    let accept = m.accept(40, "r (1)".into(), Some([7; 32])).unwrap();
    assert_eq!(
        accept,
        Some(ReceiverMsg::Accept {
            eager_max: None,
            offset: 40,
            saved_as: "r (1)".into(),
            prefix_blake3: Some(blake3::Hash::from_bytes([7; 32]).to_hex().to_string()),
        })
    );
    assert_eq!(
        m.clone().on_frame(SenderMsg::Start { offset: 39 }),
        Err(SessionError::BadStart {
            offered: 40,
            agreed: 39
        })
    );
    let mut restart = m.clone();
    assert_eq!(
        restart.on_frame(SenderMsg::Start { offset: 0 }),
        Ok(FrameStep::Restart)
    );
    assert_eq!(restart.received(), 0);
    assert_eq!(
        m.on_frame(SenderMsg::Start { offset: 40 }),
        Ok(FrameStep::Resume { offset: 40 })
    );
    assert_eq!(m.received(), 40);
    m.on_chunk_header(Chunk::Data(60)).unwrap();
    m.on_data(60).unwrap();
    m.data_complete([1; 32]).unwrap();
    assert_eq!(
        m.on_frame(SenderMsg::End { blake3: [2; 32] }),
        Ok(FrameStep::HashMismatch)
    );
    assert!(
        m.at_boundary(),
        "a mismatch fails the file, not the connection"
    );
}

#[test]
fn cancel_and_decline_keep_a_ferry_connection_going() {
    let mut m = ReceiverSession::new(10);
    m.on_frame(SenderMsg::Offer(header("a", 10))).unwrap();
    assert_eq!(
        m.decline("no".into(), false),
        Ok(ReceiverMsg::Decline {
            reason: "no".into(),
            offer_again: false,
        })
    );
    m.on_frame(SenderMsg::Offer(header("b", 10))).unwrap();
    m.accept(0, "b".into(), None).unwrap();
    m.on_chunk_header(Chunk::Data(3)).unwrap();
    m.on_data(3).unwrap();
    assert_eq!(
        m.on_chunk_header(Chunk::Cancel),
        Ok(ChunkStep::CancelFollows)
    );
    assert_eq!(
        m.on_frame(SenderMsg::Cancel {
            code: CancelCode::FileChanged,
            reason: "stop".into()
        }),
        Ok(FrameStep::Cancelled {
            code: CancelCode::FileChanged,
            reason: "stop".into()
        })
    );
    assert!(m.at_boundary());
    m.on_frame(SenderMsg::Offer(header("c", 0))).unwrap();

    // A plain sender cannot be declined: the connection ends.
    let mut p = ReceiverSession::new(10);
    p.on_frame(SenderMsg::Plain(header("a", 10))).unwrap();
    assert_eq!(
        p.decline("no".into(), false),
        Err(SessionError::PlainRefused)
    );
    assert_eq!(p.expect(), Expect::Nothing);
}

#[test]
fn a_connection_cannot_switch_protocols_or_exceed_its_file_limit() {
    let mut m = ReceiverSession::new(2);
    m.on_frame(SenderMsg::Plain(header("a", 0))).unwrap();
    m.accept(0, "a".into(), None).unwrap();
    m.data_complete([0; 32]).unwrap();
    assert!(
        m.clone()
            .on_frame(SenderMsg::Offer(header("b", 0)))
            .is_err()
    );
    m.on_frame(SenderMsg::Plain(header("b", 0))).unwrap();
    m.accept(0, "b".into(), None).unwrap();
    m.data_complete([0; 32]).unwrap();
    assert_eq!(
        m.on_frame(SenderMsg::Plain(header("c", 0))),
        Err(SessionError::TooManyFiles(2))
    );
}

fn batch(names: &[&str], sizes: &[u64], count: u64, bytes: u64) -> SenderMsg {
    SenderMsg::Batch {
        count,
        bytes,
        names: names.iter().map(|n| n.to_string()).collect(),
        sizes: sizes.to_vec(),
    }
}

#[test]
fn a_yes_to_a_batch_covers_each_listed_file_once() {
    let mut m = ReceiverSession::new(100);
    m.on_frame(batch(&["a", "b"], &[1, 2], 3, 4)).unwrap();
    // A continuation must repeat the totals.
    assert_eq!(
        m.clone().on_frame(batch(&["c"], &[1], 4, 4)),
        Err(SessionError::BatchTotalsChanged)
    );
    m.on_frame(batch(&["a"], &[1], 3, 4)).unwrap();
    assert_eq!(m.batch().unwrap().files().len(), 3);
    assert_eq!(
        m.clone().on_frame(batch(&["x"], &[1], 3, 4)),
        Err(SessionError::BatchTooLong),
        "more names than announced files"
    );
    let offer = |m: &mut ReceiverSession, name: &str, size: u64| {
        let h = header(name, size);
        m.on_frame(SenderMsg::Offer(h.clone())).unwrap();
        m.consent(&h, false)
    };
    // The first listed file asks about the batch; the answer covers the rest of it.
    assert_eq!(offer(&mut m, "a", 1), Consent::Ask { batch: true });
    assert_eq!(m.answered(1, true, true), Consent::Accept { counted: true });
    m.decline("skip".into(), false).unwrap();
    assert_eq!(offer(&mut m, "b", 2), Consent::Accept { counted: true });
    m.decline("skip".into(), false).unwrap();
    // Listed twice, so covered twice; a third time (or another size) is asked anew.
    assert_eq!(offer(&mut m, "a", 1), Consent::Accept { counted: true });
    m.decline("skip".into(), false).unwrap();
    assert_eq!(offer(&mut m, "a", 1), Consent::Ask { batch: false });
    assert_eq!(
        m.answered(1, false, false),
        Consent::Refuse(Refusal::DeclinedByUser)
    );
    m.decline("skip".into(), false).unwrap();
    // The batch answer stays: a listed file is never asked again.
    assert_eq!(offer(&mut m, "zzz", 0), Consent::Ask { batch: false });
    // Auto-accept takes anything without counting it.
    m.decline("skip".into(), false).unwrap();
    assert_eq!(offer(&mut m, "q", 0), Consent::Ask { batch: false });
    assert_eq!(
        m.consent(&header("q", 0), true),
        Consent::Accept { counted: false }
    );
}

#[test]
fn the_consent_rule_table() {
    use Consent::*;
    for mode in [Mode::Plain, Mode::Ferry] {
        for covered in [false, true] {
            for decision in [None, Some(false), Some(true)] {
                assert_eq!(
                    consent(true, mode, covered, decision),
                    Accept { counted: false }
                );
            }
        }
    }
    assert_eq!(
        consent(false, Mode::Plain, true, Some(true)),
        Refuse(Refusal::PlainCannotBeAsked)
    );
    assert_eq!(
        consent(false, Mode::Ferry, false, Some(true)),
        Ask { batch: false }
    );
    assert_eq!(consent(false, Mode::Ferry, true, None), Ask { batch: true });
    assert_eq!(
        consent(false, Mode::Ferry, true, Some(true)),
        Accept { counted: true }
    );
    assert_eq!(
        consent(false, Mode::Ferry, true, Some(false)),
        Refuse(Refusal::DeclinedByUser)
    );
}

/// One step a peer or driver might take, for the property test.
#[derive(Debug, Clone)]
enum Step {
    Frame(SenderMsg),
    ChunkHeader(Chunk),
    Data(u64),
    Complete,
    Accept(u64, bool),
    Decline,
    Consent(bool),
}

fn any_step() -> impl Strategy<Value = Step> {
    let msg = prop_oneof![
        (0u64..50).prop_map(|n| SenderMsg::Plain(header("p", n))),
        (0u64..50).prop_map(|n| SenderMsg::Offer(header("o", n))),
        (0u64..5, 0u64..50).prop_map(|(c, b)| batch(&["o"], &[b], c, b)),
        (0u64..50).prop_map(|offset| SenderMsg::Start { offset }),
        any::<u8>().prop_map(|b| SenderMsg::End { blake3: [b; 32] }),
        Just(SenderMsg::Cancel {
            code: CancelCode::User,
            reason: "r".into(),
        }),
    ];
    prop_oneof![
        msg.prop_map(Step::Frame),
        (0usize..60).prop_map(|n| Step::ChunkHeader(if n == 0 {
            Chunk::Cancel
        } else {
            Chunk::Data(n)
        })),
        (0u64..60).prop_map(Step::Data),
        Just(Step::Complete),
        (0u64..60, any::<bool>()).prop_map(|(o, h)| Step::Accept(o, h)),
        Just(Step::Decline),
        any::<bool>().prop_map(Step::Consent),
    ]
}

proptest! {
    /// Whatever arrives in whatever order, the machine never panics, never counts more data
    /// than a file holds, and once broken stays broken.
    #[test]
    fn arbitrary_sequences_never_break_the_accounting(steps in proptest::collection::vec(any_step(), 0..60)) {
        let mut m = ReceiverSession::new(8);
        let mut broken = false;
        for step in steps {
            let ok = match step {
                Step::Frame(msg) => m.on_frame(msg).is_ok(),
                Step::ChunkHeader(c) => m.on_chunk_header(c).is_ok(),
                Step::Data(n) => {
                    let allowed = match m.expect() {
                        Expect::Data(max) => n <= max,
                        // No bytes is no change while data flows.
                        Expect::ChunkHeader | Expect::DataComplete => n == 0,
                        _ => false,
                    };
                    let ok = m.on_data(n).is_ok();
                    prop_assert_eq!(ok, allowed);
                    ok
                }
                Step::Complete => m.data_complete([0; 32]).is_ok(),
                Step::Accept(o, h) => m.accept(o, "x".into(), h.then_some([0; 32])).is_ok(),
                Step::Decline => m.decline("no".into(), false).is_ok(),
                Step::Consent(auto) => { let _ = m.consent(&header("o", 1), auto); true }
            };
            if broken {
                prop_assert!(!ok || matches!(m.expect(), Expect::Nothing));
            }
            if !ok {
                broken = true;
                prop_assert_eq!(m.expect(), Expect::Nothing);
            }
        }
    }
}

#[test]
fn no_answer_rounds_up_to_whole_seconds() {
    use std::time::Duration;
    let secs = |t| match Refusal::no_answer(t) {
        Refusal::NoAnswer { secs } => secs,
        other => panic!("{other:?}"),
    };
    assert_eq!(secs(Duration::from_millis(300)), 1);
    assert_eq!(secs(Duration::from_secs(300)), 300);
    assert_eq!(secs(Duration::from_millis(300_001)), 301);
}
