//! A `--to` word that cannot be a host name (`客厅`, `My Laptop`) is looked for as a
//! device's name only, and the system resolver is never asked about it. What a resolver
//! does with such a word depends on the system: glibc's DNS module refuses it, but musl,
//! `getent`'s IDN conversion (`xn--imrr2q`), systemd-resolved (LLMNR, on the LAN) or an
//! `/etc/hosts` line may send it on or answer for it; a DNS server that does not answer
//! costs the resolver's whole timeout before the search starts, and it learns the names of
//! the user's devices. Each test gives a sending host a `resolv.conf` naming a name server
//! in its own namespace (its own address, where nothing listens, so a query is refused at
//! once) and an `/etc/hosts` answering for `客厅` with an address no device has (the
//! resolver that answers: asked, it would win over the device on the LAN), and counts with
//! nftables every packet to port 53 while the real `ferry` runs there. Needs root, `ip`
//! and `nft`; skips with a line where they are missing.

use std::path::Path;

use crate::netns::{Net, can_make_namespaces, have_nft, stdout};

/// A net with `h1` (10.77.0.1) and `h2` (10.77.0.2): h2's resolver asks 10.77.0.2, its
/// `/etc/hosts` says `客厅` is 10.77.0.9 (no device), and every packet h2 sends to port 53
/// is counted in `inet dns c_dns`; `None` after a skip line.
fn net_counting_dns() -> Option<(Net, String, String)> {
    if !(can_make_namespaces() && have_nft()) {
        return None;
    }
    let mut net = Net::new().expect("network namespaces");
    let h1 = net.host("h1", 1).unwrap();
    let h2 = net.host("h2", 2).unwrap();
    net.etc_file(
        &h2,
        "resolv.conf",
        "nameserver 10.77.0.2\noptions timeout:1 attempts:1\n",
    );
    net.etc_file(&h2, "hosts", "127.0.0.1 localhost\n10.77.0.9 客厅\n");
    net.nft(
        &h2,
        "table inet dns { counter c_dns { } chain out { type filter hook output priority 0; policy accept; udp dport 53 counter name c_dns; tcp dport 53 counter name c_dns; } } ",
    );
    Some((net, h1, h2))
}

/// Runs `ferry ARGS` in `ns`; returns its exit code, its stdout and stderr together, and
/// the packets it sent to port 53.
fn run_counting(
    net: &Net,
    ns: &str,
    args: &[&str],
    file: Option<&Path>,
) -> (Option<i32>, String, u64) {
    let before = net.counted(ns, "dns", "c_dns");
    let out = net.ferry(ns).args(args).args(file).output().unwrap();
    let words = format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
    (
        out.status.code(),
        words,
        net.counted(ns, "dns", "c_dns") - before,
    )
}

#[test]
fn a_device_name_that_cannot_be_a_host_name_is_found_without_asking_the_resolver() {
    let Some((net, h1, h2)) = net_counting_dns() else {
        return;
    };
    let inbox = tempfile::tempdir().unwrap();
    let _server = net.serve(&h1, "客厅", inbox.path());
    let src = tempfile::tempdir().unwrap();
    let file = src.path().join("名单.txt");
    std::fs::write(&file, "到客厅去").unwrap();

    // The control first: a word that could be a host name is still given to the resolver
    // (the counter sees its queries), and when it is no device either, both readings are
    // named.
    let (code, words, dns) = run_counting(
        &net,
        &h2,
        &[
            "send",
            "--to",
            "desk-1.lan",
            "--localsend-wait",
            "1",
            "--no-localsend-sweep",
        ],
        Some(&file),
    );
    assert_eq!(code, Some(1), "{words}");
    assert!(
        dns > 0,
        "no DNS query for a host name: is the counter counting? {words}"
    );
    assert!(
        words.contains("no device named \"desk-1.lan\" found")
            && words.contains("as a host name: cannot resolve host \"desk-1.lan\""),
        "{words}"
    );

    // `客厅` is found on the LAN and gets the file (the resolver, asked, would have given
    // the `/etc/hosts` address, where nothing answers), and not one packet goes to port 53.
    let (code, words, dns) = run_counting(
        &net,
        &h2,
        &["send", "--to", "客厅", "--no-localsend-sweep"],
        Some(&file),
    );
    assert_eq!(code, Some(0), "{words}");
    assert!(
        words.contains("looking for a device named \"客厅\" on the LAN..."),
        "{words}"
    );
    assert_eq!(dns, 0, "`send --to 客厅` asked the DNS server: {words}");
    assert_eq!(
        std::fs::read_to_string(inbox.path().join("名单.txt")).unwrap(),
        "到客厅去"
    );

    // One that is not there is said to be missing, as a device's name only.
    let args = [
        "send",
        "--to",
        "Desk (2)",
        "--localsend-wait",
        "1",
        "--no-localsend-sweep",
    ];
    let (code, words, dns) = run_counting(&net, &h2, &args, Some(&file));
    assert_eq!(code, Some(1), "{words}");
    assert_eq!(
        dns, 0,
        "`send --to \"Desk (2)\"` asked the DNS server: {words}"
    );
    assert!(
        words.contains("no device named \"Desk (2)\" found on the LAN or among trusted devices")
            && words.contains("no LocalSend device is called \"Desk (2)\" either"),
        "{words}"
    );
    assert!(!words.contains("resolve"), "{words}");

    // The speed test finds it the same way.
    let (code, words, dns) =
        run_counting(&net, &h2, &["bench", "--to", "客厅", "--secs", "0.5"], None);
    assert_eq!(code, Some(0), "{words}");
    assert_eq!(dns, 0, "`bench --to 客厅` asked the DNS server: {words}");
}

#[test]
fn a_note_to_a_name_with_spaces_or_chinese_asks_no_resolver_and_says_so_plainly() {
    let Some((net, _h1, h2)) = net_counting_dns() else {
        return;
    };
    let note_to = |name: &str| {
        let args = [
            "note",
            "--to",
            name,
            "--localsend-wait",
            "1",
            "--no-localsend-sweep",
            "hi",
        ];
        run_counting(&net, &h2, &args, None)
    };
    // No LocalSend device has either name, and no trusted device: a note goes nowhere (the
    // resolver, asked, would have sent `客厅`'s to the `/etc/hosts` address).
    for name in ["客厅", "My Laptop"] {
        let (code, words, dns) = note_to(name);
        assert_eq!(code, Some(1), "{words}");
        assert_eq!(dns, 0, "`note --to {name}` asked the DNS server: {words}");
        assert!(
            words.contains(&format!("no trusted device is named {name:?}"))
                && words.contains(&format!("no LocalSend device is called {name:?} either")),
            "{words}"
        );
        assert!(!words.contains("resolve"), "{words}");
    }
    // The control: a host-name word is asked about.
    let (code, words, dns) = note_to("desk");
    assert_eq!(code, Some(1), "{words}");
    assert!(
        dns > 0,
        "no DNS query for a host name: is the counter counting? {words}"
    );
}
