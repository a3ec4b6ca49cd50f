//! The leftovers of the last audit, fixed: files whose size says nothing about their
//! content (`/proc`, `/sys`) are refused rather than sent empty and "verified", and a FIFO
//! put where a file was never blocks the sender.

use std::time::{Duration, Instant};

use ferry::transfer::OutgoingFile;

use crate::util::*;

#[test]
fn a_proc_file_is_refused_by_name_and_the_other_files_still_go() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let regular = src.path().join("报告.txt");
    std::fs::write(&regular, "内容").unwrap();
    let (_serve, addr, lines) = spawn_serve(dst.path(), &[]);
    for plain in [false, true] {
        let out = ferry()
            .args(["send", "/proc/self/status"])
            .arg(&regular)
            .args(["--to", &addr.to_string()])
            .args(plain.then_some("--plain"))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "plain {plain}: {stdout}");
        let refused = stdout
            .lines()
            .find(|l| l.starts_with("/proc/self/status: failed"))
            .unwrap_or_else(|| panic!("plain {plain}: no failure line in {stdout}"));
        assert!(
            refused
                .contains("cannot send /proc/self/status: its size says nothing about its content")
                && refused.contains("copy it to a regular file"),
            "{refused}"
        );
        let went = if plain {
            "报告.txt: sent"
        } else {
            "报告.txt: verified"
        };
        assert!(stdout.contains(went), "plain {plain}: {stdout}");
        // A plain sender is done once its bytes are out: the file is in place only once the
        // server says it received it.
        wait_line(&lines, "received ");
    }
    let mut names = names_in(dst.path());
    names.sort();
    // The regular file twice (the second under a new name), and nothing called "status".
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.iter().all(|n| n.starts_with("报告")), "{names:?}");
}

#[test]
fn only_files_whose_size_tells_their_content_are_sendable() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    std::fs::write(&empty, b"").unwrap();
    let full = dir.path().join("full");
    std::fs::write(&full, b"twelve bytes").unwrap();
    let size = |p: &std::path::Path| OutgoingFile::new(p).open_sized().map(|(_, size)| size);
    assert_eq!(size(&empty).unwrap(), 0);
    assert_eq!(size(&full).unwrap(), 12);
    // procfs says 0 bytes, sysfs 4096: both refused by where they live.
    for made_up in [
        "/proc/self/status",
        "/sys/kernel/mm/transparent_hugepage/enabled",
    ] {
        if !std::path::Path::new(made_up).exists() {
            eprintln!("SKIPPED: {made_up} does not exist here");
            continue;
        }
        let err = size(std::path::Path::new(made_up)).unwrap_err();
        assert!(err.to_string().contains("says nothing"), "{made_up}: {err}");
    }
}

#[test]
fn a_fifo_where_a_file_was_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("a.txt");
    let c_path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    let (tx, rx) = crossbeam_channel::bounded(1);
    let file = OutgoingFile::new(&fifo);
    std::thread::spawn(move || tx.send(file.open().map(|_| ())));
    let started = Instant::now();
    let result = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("opening a FIFO nobody writes to must not block");
    let err = result.unwrap_err();
    assert!(err.to_string().contains("not a regular file"), "{err}");
    eprintln!("refused in {:?}", started.elapsed());
}

/// To a LocalSend device, a made-up file fails as this side's file, by name, and the regular
/// file offered with it still arrives.
#[test]
fn a_proc_file_is_not_sent_empty_to_a_localsend_device() {
    use ferry::events::FailureKind;
    use ferry::localsend::LocalSendBatch;
    use ferry::transfer::{FileOutcome, OutgoingItem};
    let src = tempfile::tempdir().unwrap();
    let regular = src.path().join("笔记.txt");
    std::fs::write(&regular, "你好").unwrap();
    let batch = LocalSendBatch::of(&[
        OutgoingItem::File(OutgoingFile::new("/proc/self/status")),
        OutgoingItem::File(OutgoingFile::new(&regular)),
    ]);
    let dst = tempfile::tempdir().unwrap();
    let outcomes = crate::localsend::send_batch_to_new_server(dst.path(), &batch)
        .expect("the session itself went through");
    assert!(
        matches!(
            &outcomes[..],
            [FileOutcome::Failed(failure), second]
                if failure.kind == FailureKind::LocalFile
                    && failure.detail.as_deref().is_some_and(|d| d.contains("says nothing"))
                    && second.is_success()
        ),
        "{outcomes:?}"
    );
    assert_eq!(
        std::fs::read_to_string(dst.path().join("笔记.txt")).unwrap(),
        "你好"
    );
    assert!(!dst.path().join("status").exists());
}
