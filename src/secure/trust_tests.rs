//! Tests of [`super`] (trust.rs), kept apart so the module stays within its size.
use super::*;

/// Seen at its server's address.
fn server(addr: &str) -> Option<SeenAt> {
    Some(SeenAt::Server(addr.parse().unwrap()))
}

#[test]
fn pin_check_rename_forget_and_reload() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("ferry");
    let mut store = TrustStore::load(&conf).unwrap();
    let (ka, kb) = ([1u8; 32], [2u8; 32]);
    assert_eq!(store.check("laptop", &ka).unwrap(), Verdict::Unknown);
    store
        .pin("laptop", &ka, server("10.0.0.2:7878"), 100)
        .unwrap();
    store.pin("laptop", &ka, None, 200).unwrap();
    store.save().unwrap();

    let mut store = TrustStore::load(&conf).unwrap();
    let d = store.by_name("laptop").unwrap().clone();
    assert_eq!((d.first_seen_unix_secs, d.last_seen_unix_secs), (100, 200));
    assert_eq!(d.last_address.as_deref(), Some("10.0.0.2:7878"));
    assert_eq!(d.key(), Some(ka));
    assert!(matches!(
        store.check("laptop", &ka).unwrap(),
        Verdict::Trusted(_)
    ));
    // Same name, other key: refused, and pinning it is refused too.
    assert!(matches!(
        store.check("laptop", &kb),
        Err(SecureError::KeyChanged { .. })
    ));
    assert!(matches!(
        store.pin("laptop", &kb, None, 300),
        Err(SecureError::KeyChanged { .. })
    ));
    assert_eq!(
        store.by_name("laptop").unwrap().key(),
        Some(ka),
        "never re-pinned"
    );

    assert!(store.rename("laptop", "work laptop"));
    assert!(store.by_key(&ka).is_some_and(|d| d.name == "work laptop"));
    assert!(store.forget("work laptop"));
    assert!(!store.forget("work laptop"));
    assert_eq!(store.check("laptop", &kb).unwrap(), Verdict::Unknown);
}

#[cfg(unix)]
#[test]
fn the_file_is_private_and_a_readable_one_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let mut store = TrustStore::load(dir.path()).unwrap();
    store.pin("a", &[3; 32], None, 1).unwrap();
    store.save().unwrap();
    let path = dir.path().join(TRUST_FILE);
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(matches!(
        TrustStore::load(dir.path()),
        Err(SecureError::KeyFile { .. })
    ));
}

#[test]
fn a_book_sees_changes_another_process_saved() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("ferry");
    let book = TrustBook::open(&conf).unwrap();
    assert!(book.devices().is_empty());
    // Another process pins a device and saves.
    let mut other = TrustStore::load(&conf).unwrap();
    other.pin("phone", &[7u8; 32], None, 5).unwrap();
    other.save().unwrap();
    assert_eq!(book.devices().len(), 1);
    assert!(matches!(
        book.check("phone", &[7u8; 32]),
        Ok(Verdict::Trusted(_))
    ));
    assert!(matches!(
        book.check("phone", &[8u8; 32]),
        Err(SecureError::KeyChanged { .. })
    ));
    // And this book's changes are on disk for the others.
    book.pin("laptop", &[9u8; 32], server("10.0.0.3:8080"))
        .unwrap();
    assert_eq!(TrustStore::load(&conf).unwrap().devices().len(), 2);
    // A lookalike of a trusted name is refused as that name.
    assert!(matches!(
        book.check("Pho\u{200B}ne", &[10u8; 32]),
        Err(SecureError::LooksLikeTrusted { .. })
    ));
    // Touch never brings a forgotten device back.
    assert!(book.forget("phone").unwrap());
    book.touch(&[7u8; 32], server("10.0.0.9:8080")).unwrap();
    assert!(book.by_key(&[7u8; 32]).is_none());
    assert!(book.forget("laptop").unwrap());
    assert!(book.pin("phone", &[7u8; 32], None).is_ok());
    assert!(book.forget("phone").unwrap());
    assert!(!book.forget("phone").unwrap());
    assert_eq!(TrustStore::load(&conf).unwrap().devices().len(), 0);
}

/// Where a proven key was seen moves the device: a port said sets its address, an IP alone
/// keeps the address at that IP (its port stays) and drops one at another IP (stale: the
/// device moved), and the IP is kept either way (IPv4-mapped IPv6 is the same IPv4).
#[test]
fn a_proven_ip_without_a_port_keeps_the_port_at_that_ip_and_drops_an_address_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = TrustStore::load(dir.path()).unwrap();
    let key = [4u8; 32];
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let at = |store: &TrustStore| {
        let d = store.by_key(&key).unwrap();
        (d.last_address.clone(), d.last_ip)
    };
    // A handshake from `from` that said no port.
    let sent_from = |store: &mut TrustStore, from: &str, now| {
        let seen = Some(SeenAt::Ip(ip(from)));
        store.pin("laptop", &key, seen, now).unwrap();
    };
    // First seen sending, no port said: the IP only.
    sent_from(&mut store, "10.0.0.2", 1);
    assert_eq!(at(&store), (None, Some(ip("10.0.0.2"))));
    // Its server seen: that address.
    store
        .pin("laptop", &key, server("10.0.0.2:7878"), 2)
        .unwrap();
    let home = (Some("10.0.0.2:7878".to_owned()), Some(ip("10.0.0.2")));
    assert_eq!(at(&store), home);
    // Sending again from that IP (as IPv4-mapped IPv6 too): the port stays.
    for from in ["10.0.0.2", "::ffff:10.0.0.2"] {
        sent_from(&mut store, from, 3);
        assert_eq!(at(&store), home, "{from}");
    }
    // Sending from another network: the old address is stale, the new IP is kept.
    sent_from(&mut store, "192.168.5.9", 4);
    assert_eq!(at(&store), (None, Some(ip("192.168.5.9"))));
    // Kept across a reload; nothing seen changes nothing.
    store.save().unwrap();
    let mut store = TrustStore::load(dir.path()).unwrap();
    store.pin("laptop", &key, None, 5).unwrap();
    assert_eq!(at(&store).1, Some(ip("192.168.5.9")));
    // A link-local server address keeps its interface.
    store
        .pin("laptop", &key, server("[fe80::1%2]:8080"), 6)
        .unwrap();
    assert_eq!(at(&store).0.as_deref(), Some("[fe80::1%2]:8080"));
    // A server address seen elsewhere sets both.
    store
        .pin("laptop", &key, server("[::ffff:10.0.0.7]:8080"), 6)
        .unwrap();
    assert_eq!(
        at(&store),
        (Some("10.0.0.7:8080".to_owned()), Some(ip("10.0.0.7")))
    );
}

/// The trust book's touch (a trusted device's later handshakes) follows the same rules, and
/// saves when where the device is changed.
#[test]
fn touch_drops_a_stale_address_and_keeps_the_new_ip() {
    let dir = tempfile::tempdir().unwrap();
    let book = TrustBook::open(dir.path()).unwrap();
    let key = [5u8; 32];
    book.pin("laptop", &key, server("10.0.0.2:7878")).unwrap();
    book.touch(&key, Some(SeenAt::Ip("10.0.0.2".parse().unwrap())))
        .unwrap();
    let d = TrustStore::load(dir.path()).unwrap().devices()[0].clone();
    assert_eq!(d.last_address.as_deref(), Some("10.0.0.2:7878"));
    book.touch(&key, Some(SeenAt::Ip("10.9.9.9".parse().unwrap())))
        .unwrap();
    let d = TrustStore::load(dir.path()).unwrap().devices()[0].clone();
    assert_eq!(
        (d.last_address, d.last_ip),
        (None, Some("10.9.9.9".parse().unwrap()))
    );
}

/// The file stays version 1: one written before `last_ip` existed loads (no IP: discovery
/// probes its address's), fields a later Ferry may add are ignored, and a device with no IP known
/// is written as before (no `last_ip` key for older readers to meet).
#[test]
fn older_and_newer_trust_files_load() {
    let dir = tempfile::tempdir().unwrap();
    let key = hex(&[6u8; 32]);
    let old = format!(
        r#"{{"version":1,"devices":[{{"name":"laptop","public_key":"{key}","device_id":"x","last_address":"10.0.0.2:7878","first_seen_unix_secs":1,"last_seen_unix_secs":2}}]}}"#
    );
    let newer = format!(
        r#"{{"version":1,"later":true,"devices":[{{"name":"laptop","public_key":"{key}","device_id":"x","last_address":null,"last_ip":"10.0.0.3","nickname":"L","first_seen_unix_secs":1,"last_seen_unix_secs":2}}]}}"#
    );
    for (text, want) in [
        (old, (Some("10.0.0.2:7878"), None)),
        (newer, (None, Some("10.0.0.3"))),
    ] {
        write_private_file(&dir.path().join(TRUST_FILE), text.as_bytes()).unwrap();
        let store = TrustStore::load(dir.path()).unwrap();
        let d = &store.devices()[0];
        let want_ip = want.1.map(|ip| ip.parse::<IpAddr>().unwrap());
        assert_eq!(
            (d.last_address.as_deref(), d.last_ip),
            (want.0, want_ip),
            "{text}"
        );
    }
    let mut store = TrustStore::load(dir.path()).unwrap();
    store.pin("phone", &[7u8; 32], None, 3).unwrap();
    store.save().unwrap();
    let text = std::fs::read_to_string(dir.path().join(TRUST_FILE)).unwrap();
    assert_eq!(text.matches("last_ip").count(), 1, "{text}");
    assert!(text.contains(r#""version": 1"#), "{text}");
}

/// `last_ip` is only a probe hint: one this Ferry cannot read (a later Ferry may keep a
/// link-local IP's interface, as `last_address` does, or write another shape) is taken as
/// unknown, and never makes the whole file, with every pinned key in it, unreadable.
#[test]
fn a_last_ip_this_ferry_cannot_read_is_unknown_and_the_file_still_loads() {
    let dir = tempfile::tempdir().unwrap();
    let (ka, kb, kc) = (hex(&[8u8; 32]), hex(&[9u8; 32]), hex(&[10u8; 32]));
    let device = |name: &str, key: &str, last_ip: &str| {
        format!(
            r#"{{"name":"{name}","public_key":"{key}","device_id":"x","last_address":null,"last_ip":{last_ip},"first_seen_unix_secs":1,"last_seen_unix_secs":2}}"#
        )
    };
    let text = format!(
        r#"{{"version":1,"devices":[{},{},{}]}}"#,
        device("scoped", &ka, r#""fe80::1%2""#),
        device("shaped", &kb, r#"{"ip":"10.0.0.4","scope":null}"#),
        device("plain", &kc, r#""10.0.0.5""#),
    );
    write_private_file(&dir.path().join(TRUST_FILE), text.as_bytes()).unwrap();
    let store = TrustStore::load(dir.path()).expect("the file loads");
    let ips: Vec<_> = store
        .devices()
        .iter()
        .map(|d| (d.name.as_str(), d.last_ip))
        .collect();
    assert_eq!(
        ips,
        [
            ("scoped", None),
            ("shaped", None),
            ("plain", Some("10.0.0.5".parse().unwrap()))
        ]
    );
}

/// "Looks alike" is not transitive (equal whatever the case, or equal glyph for glyph): a
/// new name that looks like the device's old one may still look like *another* trusted
/// device's, and must be refused for it.
#[test]
fn a_rename_is_refused_when_the_new_name_looks_like_another_device() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = TrustStore::load(dir.path()).unwrap();
    store.pin("PC-1", &[1; 32], None, 1).unwrap();
    store.pin("pc-i", &[2; 32], None, 1).unwrap();
    // "PC-I" is "pc-i" in another case, and "PC-1" glyph for glyph.
    assert!(!store.rename("pc-i", "PC-I"));
    assert!(store.by_name("pc-i").is_some());
    // Its own name in another case is still fine.
    assert!(store.rename("pc-i", "PC-i"));
    assert!(store.rename("PC-1", "pc-1"));
}
