//! Fixes from the ninth review: a file another program holds a write lease on (Samba's
//! oplocks, an NFS server's delegations) is still sent once the lease is let go, as it was
//! before every file was opened non-blocking.

use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use ferry::transfer::OutgoingFile;

/// Linux's `F_SETSIG` (fcntl.h), which the libc crate does not export.
const F_SETSIG: libc::c_int = 10;

#[test]
fn a_file_under_a_write_lease_is_opened_once_the_lease_is_let_go() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("共享.txt");
    std::fs::write(&path, "shared").unwrap();
    let holder = std::fs::File::open(&path).unwrap();
    let fd = holder.as_raw_fd();
    // The lease break is signalled with SIGWINCH, which is ignored, instead of SIGIO,
    // which would end the test process.
    assert_eq!(unsafe { libc::fcntl(fd, F_SETSIG, libc::SIGWINCH) }, 0);
    if unsafe { libc::fcntl(fd, libc::F_SETLEASE, libc::F_WRLCK) } != 0 {
        let e = std::io::Error::last_os_error();
        eprintln!("SKIPPED: no write lease here: {e}");
        return;
    }
    let (tx, rx) = crossbeam_channel::bounded(1);
    let file = OutgoingFile::new(&path);
    std::thread::spawn(move || tx.send(file.open().map(|_| ())));
    // The holder is asked to let go (its lease shows the type it must go down to), and does.
    let deadline = Instant::now() + Duration::from_secs(10);
    while unsafe { libc::fcntl(fd, libc::F_GETLEASE) } == libc::F_WRLCK {
        assert!(Instant::now() < deadline, "the lease was never asked back");
        if let Ok(early) = rx.try_recv() {
            panic!("the open ended before the lease was let go: {early:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(
        unsafe { libc::fcntl(fd, libc::F_SETLEASE, libc::F_UNLCK) },
        0
    );
    let opened = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the open ends once the lease is let go");
    opened.expect("the file opens once the lease is let go");
}
