//! Unit tests of the LocalSend device table (`devices.rs`): one device per fingerprint and
//! family, what a claim may and may not change, proofs, eviction and forgetting.

use super::*;

fn info(alias: &str, fingerprint: &str) -> DeviceInfo {
    serde_json::from_value(serde_json::json!({
        "alias": alias, "version": "2.2", "deviceType": "mobile",
        "fingerprint": fingerprint, "port": 53317, "protocol": "https"
    }))
    .expect("device info")
}

fn addr(text: &str) -> SocketAddr {
    text.parse().expect("address")
}

#[test]
fn a_register_is_due_once_per_address_so_a_moved_or_second_family_address_is_asked() {
    let mut table = DeviceTable::default();
    let (home, moved, v6) = (
        addr("10.0.0.7:1"),
        addr("10.0.0.9:1"),
        addr("[fe80::7%2]:1"),
    );
    table.heard_proven_at(info("Phone", "AB-12"), home, "answer", Instant::now());
    let yes = || true;
    // The answer budget said no: not counted, so the next announcement there is answered.
    assert!(!table.register_due("ab-12", home, || false));
    assert!(table.register_due("ab-12", home, yes));
    let asked = std::cell::Cell::new(false);
    let ask = || {
        asked.set(true);
        true
    };
    assert!(
        !table.register_due("AB-12", home, ask),
        "not again there so soon"
    );
    assert!(!asked.get(), "nor is the budget asked (or spent) for it");
    assert!(table.register_due("AB-12", v6, yes), "its other family");
    assert!(table.register_due("AB-12", moved, yes), "where it moved");
    assert!(!table.register_due("CD-34", home, yes), "an unknown device");
}

#[test]
fn a_claim_from_elsewhere_never_moves_or_renames_a_proven_device() {
    let mut table = DeviceTable::default();
    let t0 = Instant::now();
    let home = addr("10.0.0.7:53317");
    table.heard_proven_at(info("Phone", "AB-12"), home, "answer", t0);
    let phone = |t: &DeviceTable| t.list().into_iter().find(|d| d.fingerprint == "AB-12");
    assert!(phone(&table).is_some_and(|d| d.proven));

    let t1 = t0 + Duration::from_secs(1);
    table.heard_at(
        info("Evil", "AB-12"),
        addr("10.0.0.66:53317"),
        "multicast",
        t1,
    );
    table.heard_at(
        info("Evil", "AB-12"),
        addr("[fe80::66%2]:53317"),
        "register",
        t1,
    );
    let listed = phone(&table).expect("listed");
    assert_eq!((listed.addr, listed.addr_v6), (home, None));
    assert_eq!(listed.alias, "Phone");
    assert_eq!(
        listed.last_seen, t0,
        "a claim from elsewhere is not a sign of life"
    );

    // Its own announcement, from where it is, says it is still there.
    let t2 = t0 + Duration::from_secs(2);
    table.heard_at(info("Phone", "AB-12"), home, "multicast", t2);
    let listed = phone(&table).expect("listed");
    assert_eq!((listed.addr, listed.last_seen), (home, t2));
    assert!(listed.how.contains(&"multicast"), "{:?}", listed.how);

    // Proven contact at a new address (its answer after it moved) moves it.
    let moved = addr("10.0.0.9:53317");
    table.heard_proven_at(info("Phone 2", "AB-12"), moved, "answer", t2);
    let listed = phone(&table).expect("listed");
    assert_eq!((listed.addr, listed.alias.as_str()), (moved, "Phone 2"));
}

#[test]
fn a_flood_of_claimed_fingerprints_never_evicts_a_device_that_proved_its_own() {
    let mut table = DeviceTable::default();
    let t0 = Instant::now();
    table.heard_proven_at(info("Phone", "AB-12"), addr("10.0.0.7:53317"), "answer", t0);
    // Heard once more later, by a claim: it stays proven.
    table.heard_at(
        info("Phone", "AB-12"),
        addr("10.0.0.7:53317"),
        "multicast",
        t0,
    );
    for i in 0..3 * MAX_DEVICES {
        let at = t0 + Duration::from_millis(1 + i as u64);
        let fake = format!("FAKE-{i}");
        table.heard_at(
            info("Fake", &fake),
            addr("10.0.0.66:53317"),
            "multicast",
            at,
        );
    }
    let listed = table.list();
    assert_eq!(listed.len(), MAX_DEVICES);
    assert!(
        listed.iter().any(|d| d.alias == "Phone"),
        "the proven device stays"
    );
    // The newest claims are kept, the oldest went first.
    let last = format!("FAKE-{}", 3 * MAX_DEVICES - 1);
    assert!(listed.iter().any(|d| d.fingerprint == last));
    assert!(!listed.iter().any(|d| d.fingerprint == "FAKE-0"));
    // Registers, each with a fresh certificate of its own, outrank claims but not a
    // device reached at its address.
    for i in 0..3 * MAX_DEVICES {
        let at = t0 + Duration::from_secs(1) + Duration::from_millis(i as u64);
        let fake = format!("CERT-{i}");
        let from = addr("10.0.0.67:53317");
        table.record(
            info("Cert", &fake),
            from,
            "register",
            at,
            Proof::Certificate,
        );
    }
    let listed = table.list();
    assert_eq!(listed.len(), MAX_DEVICES);
    assert!(listed.iter().any(|d| d.alias == "Phone"), "reached: stays");
    assert!(listed.iter().all(|d| d.proven), "the claims went first");
    // A table of proven devices only still makes room (the oldest goes).
    let mut proven = DeviceTable::default();
    for i in 0..=MAX_DEVICES {
        let at = t0 + Duration::from_millis(i as u64);
        let fp = format!("REAL-{i}");
        proven.heard_proven_at(info("Real", &fp), addr("10.0.0.8:53317"), "answer", at);
    }
    let listed = proven.list();
    assert_eq!(listed.len(), MAX_DEVICES);
    assert!(!listed.iter().any(|d| d.fingerprint == "REAL-0"));
}

#[test]
fn a_sweep_forgets_only_devices_it_asked_that_were_not_heard_while_it_ran() {
    let mut table = DeviceTable::default();
    let t0 = Instant::now();
    let (gone, back, elsewhere, v6_too) = (
        addr("192.168.1.10:53317"),
        addr("192.168.1.11:53317"),
        addr("192.168.1.12:9000"),
        addr("192.168.1.13:53317"),
    );
    table.heard_at(info("Gone", "AA-01"), gone, "multicast", t0);
    table.heard_at(info("Back", "AA-02"), back, "multicast", t0);
    table.heard_at(info("Elsewhere", "AA-03"), elsewhere, "multicast", t0);
    table.heard_at(info("Both", "AA-04"), v6_too, "multicast", t0);
    let swept_at = t0 + Duration::from_secs(10);
    table.heard_at(info("Back", "AA-02"), back, "sweep", swept_at);
    // Silent at its IPv4 address, but it announced over IPv6 while the sweep ran.
    let v6 = addr("[fe80::1%2]:53317");
    table.heard_at(info("Both", "AA-04"), v6, "multicast", swept_at);
    let asked: HashSet<SocketAddr> = [gone, back, v6_too, addr("192.168.1.99:53317")]
        .into_iter()
        .collect();

    // What it would forget is asked again first (see `sweep`): that one address.
    assert_eq!(table.silent(&asked, swept_at, 8), [gone]);
    assert_eq!(table.forget_silent(&asked, swept_at), 1);
    assert!(table.silent(&asked, swept_at, 8).is_empty());
    let mut left: Vec<String> = table.list().into_iter().map(|d| d.alias).collect();
    left.sort();
    assert_eq!(left, ["Back", "Both", "Elsewhere"]);
    // A sweep that began before the device was last heard forgets nothing.
    assert_eq!(table.forget_silent(&asked, t0), 0);
}

#[test]
fn a_device_heard_over_both_families_is_one_device_listed_at_its_ipv4_address() {
    let mut table = DeviceTable::default();
    let t0 = Instant::now();
    table.heard_at(
        info("Phone", "ab12"),
        addr("10.0.0.7:53317"),
        "multicast",
        t0,
    );
    let v6 = addr("[fe80::7%2]:53317");
    table.heard_at(
        info("Phone", "AB12"),
        v6,
        "register",
        t0 + Duration::from_secs(1),
    );
    let list = table.list();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0].addr, addr("10.0.0.7:53317"));
    assert_eq!(list[0].addr_v6, Some(v6));
    // The scope survives: a link-local address is useless without it.
    assert!(matches!(list[0].addr_v6, Some(SocketAddr::V6(a)) if a.scope_id() == 2));
    assert_eq!(list[0].how, vec!["multicast", "register"]);
}

#[test]
fn a_plain_http_claim_never_turns_an_https_device_plain_but_the_other_way_is_fine() {
    let mut table = DeviceTable::default();
    let t0 = Instant::now();
    let phone = addr("10.0.0.7:53317");
    table.heard_at(info("Phone", "AB12"), phone, "multicast", t0);
    let mut lie = info("Phone", "ab12");
    lie.protocol = Some("http".to_owned());
    table.heard_at(lie, addr("10.0.0.66:53317"), "multicast", t0);
    let list = table.list();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0].protocol, LocalSendProtocol::Https);
    assert_eq!(list[0].addr, phone, "the claim moved nothing");
    // A device first heard over HTTP whose owner turns Encryption on is HTTPS from then.
    let mut plain = info("Laptop", "CD34");
    plain.protocol = Some("http".to_owned());
    table.heard_at(plain, addr("10.0.0.8:53317"), "multicast", t0);
    let laptop = |t: &DeviceTable| t.list().into_iter().find(|d| d.alias == "Laptop");
    assert_eq!(
        laptop(&table).map(|d| d.protocol),
        Some(LocalSendProtocol::Http)
    );
    table.heard_at(
        info("Laptop", "CD34"),
        addr("10.0.0.8:53317"),
        "multicast",
        t0,
    );
    assert_eq!(
        laptop(&table).map(|d| d.protocol),
        Some(LocalSendProtocol::Https)
    );
}

#[test]
fn a_probe_proving_https_wins_over_a_plain_claim_and_never_the_other_way() {
    let mut table = DeviceTable::default();
    let t0 = Instant::now();
    let mut claim = info("Laptop", "CD34");
    claim.protocol = Some("http".to_owned());
    table.heard_at(claim, addr("10.0.0.66:53317"), "multicast", t0);
    let mut listed = table.list();
    // As `probe` makes it over HTTPS: the certificate had the fingerprint.
    let proven = LocalSendDevice {
        protocol: LocalSendProtocol::Https,
        addr: addr("10.0.0.8:53317"),
        how: vec!["probe"],
        proven: true,
        ..listed[0].clone()
    };
    add_probed(&mut listed, proven.clone());
    assert_eq!(listed, vec![proven.clone()]);
    let plain = LocalSendDevice {
        protocol: LocalSendProtocol::Http,
        addr: addr("10.0.0.66:53317"),
        proven: false,
        ..proven.clone()
    };
    add_probed(&mut listed, plain);
    assert_eq!(listed, vec![proven], "a plain claim changes nothing");
}

#[test]
fn a_probe_proving_a_device_wins_over_an_https_claim_from_elsewhere_but_not_over_a_proof() {
    let mut table = DeviceTable::default();
    let t0 = Instant::now();
    // A forged announcement put the phone's fingerprint at the attacker's address.
    table.heard_at(
        info("Phone", "AB12"),
        addr("10.0.0.66:53317"),
        "multicast",
        t0,
    );
    let mut listed = table.list();
    let probed = LocalSendDevice {
        addr: addr("10.0.0.7:53317"),
        how: vec!["probe"],
        proven: true,
        ..listed[0].clone()
    };
    add_probed(&mut listed, probed.clone());
    assert_eq!(listed, vec![probed.clone()], "the probe's proof wins");

    // Once the table has proof of its own (say a newer pinned answer), it stays.
    table.heard_proven_at(info("Phone", "AB12"), addr("10.0.0.9:53317"), "answer", t0);
    let mut listed = table.list();
    add_probed(&mut listed, probed);
    assert_eq!(listed[0].addr, addr("10.0.0.9:53317"));
}

#[test]
fn no_device_is_listed_at_an_unspecified_multicast_or_broadcast_address() {
    let mut table = DeviceTable::default();
    let t0 = Instant::now();
    for (i, forged) in [
        "0.0.0.0:53317",
        "224.0.0.167:53317",
        "255.255.255.255:53317",
        "[::]:53317",
        "[ff12::fd3a:e420]:53317",
        "[::ffff:0.0.0.0]:53317",
    ]
    .into_iter()
    .enumerate()
    {
        table.heard_at(
            info("Forged", &format!("F{i}")),
            addr(forged),
            "multicast",
            t0,
        );
        table.heard_proven_at(
            info("Forged", &format!("P{i}")),
            addr(forged),
            "register",
            t0,
        );
    }
    assert!(table.list().is_empty(), "{:?}", table.list());
}

#[test]
fn a_claimed_fingerprint_that_is_no_printable_ascii_lists_no_device() {
    // Over plain HTTP nothing proves the id, and it is printed: a terminal escape in it
    // never gets into the table.
    let mut table = DeviceTable::default();
    let t0 = Instant::now();
    for hostile in ["AB\u{1b}]0;OWNED\u{7}", "AB CD", "指纹", "AB\n12", "  "] {
        let mut plain = info("Sneaky", hostile);
        plain.protocol = Some("http".to_owned());
        table.heard_at(plain, addr("10.0.0.9:53317"), "multicast", t0);
    }
    assert!(table.list().is_empty(), "{:?}", table.list());
    table.heard_at(
        info("Fine", " ab-12 "),
        addr("10.0.0.9:53317"),
        "register",
        t0,
    );
    assert_eq!(table.list()[0].fingerprint, "AB-12");
}

#[test]
fn the_ipv6_address_is_listed_first_only_when_the_ipv4_one_is_stale() {
    let mut table = DeviceTable::default();
    let t0 = Instant::now();
    let v4 = addr("192.168.1.9:53317");
    let v6 = addr("[fd00::9]:53317");
    table.heard_at(info("Laptop", "CD34"), v6, "multicast", t0);
    assert_eq!(table.list()[0].addr, v6, "only IPv6 heard so far");
    table.heard_at(info("Laptop", "CD34"), v4, "multicast", t0);
    assert_eq!(table.list()[0].addr, v4);
    let soon = t0 + Duration::from_secs(1);
    table.heard_at(info("Laptop", "CD34"), v6, "multicast", soon);
    assert_eq!(
        table.list()[0].addr,
        v4,
        "a newer IPv6 address alone does not win"
    );
    let later = t0 + FAMILY_STALE + Duration::from_secs(1);
    table.heard_at(info("Laptop", "CD34"), v6, "multicast", later);
    assert_eq!(table.list()[0].addr, v6, "the IPv4 address went quiet");
    table.heard_at(info("Laptop", "CD34"), v4, "multicast", later);
    assert_eq!(table.list()[0].addr, v4);
    assert_eq!(table.list().len(), 1);
}

#[test]
fn a_proven_devices_own_announcements_keep_its_families_current() {
    let mut table = DeviceTable::default();
    let t0 = Instant::now();
    let v4 = addr("192.168.1.9:53317");
    let v6 = addr("[fd00::9]:53317");
    table.heard_proven_at(info("Laptop", "CD34"), v4, "answer", t0);
    table.heard_proven_at(info("Laptop", "CD34"), v6, "answer", t0);
    assert_eq!(table.list()[0].addr, v4);
    // Only its IPv6 announcements come on (claims, from the address listed for IPv6).
    let later = t0 + FAMILY_STALE + Duration::from_secs(1);
    table.heard_at(info("Laptop", "CD34"), v6, "multicast", later);
    let listed = &table.list()[0];
    assert_eq!(
        (listed.addr, listed.last_seen),
        (v6, later),
        "the IPv4 one went quiet"
    );
    assert!(listed.proven);
}

#[test]
fn a_claim_at_an_https_devices_address_names_it_for_a_check_that_may_forget_it() {
    let mut table = DeviceTable::default();
    let t0 = Instant::now();
    let (home, other_port) = (addr("10.0.0.7:53317"), addr("10.0.0.7:53318"));
    table.heard_proven_at(info("Phone", "OLD-1"), home, "answer", t0);
    table.heard_at(info("Elsewhere", "ELSE-2"), other_port, "multicast", t0);
    let mut plain = info("Phone", "PLAIN-3");
    plain.protocol = Some("http".into());
    // Not listed (yet): nothing to check.
    assert!(table.https_others_at(home, "PLAIN-3").is_empty());
    table.heard_at(plain, home, "multicast", t0 + Duration::from_secs(1));
    assert_eq!(table.https_others_at(home, "plain-3"), ["OLD-1"]);
    // The plain device is never the one checked, nor one at another port.
    assert!(table.https_others_at(home, "OLD-1").is_empty());
    assert!(table.https_others_at(other_port, "ELSE-2").is_empty());

    // Checks are counted apart from answers: one just given does not put one off.
    assert!(table.register_due("OLD-1", home, || true));
    assert!(table.check_due("OLD-1", home, || true));
    assert!(
        !table.check_due("OLD-1", home, || true),
        "not again so soon"
    );

    // A device heard since the check began stays; one not heard goes.
    let checked = t0 + Duration::from_secs(2);
    table.heard_proven_at(info("Phone", "OLD-1"), home, "answer", checked);
    assert!(!table.forget_at("OLD-1", home, checked));
    assert!(!table.forget_at("OLD-1", other_port, checked + Duration::from_secs(1)));
    assert!(table.forget_at("old-1", home, checked + Duration::from_secs(1)));
    let left: Vec<String> = table.list().into_iter().map(|d| d.fingerprint).collect();
    assert_eq!(left.len(), 2);
    assert!(!left.contains(&"OLD-1".to_owned()), "{left:?}");
}

#[test]
fn the_silent_asked_again_are_proven_ones_first_then_the_newest_each_address_once() {
    let mut table = DeviceTable::default();
    let t0 = Instant::now();
    let at = |host: u8| addr(&format!("192.168.1.{host}:53317"));
    let later = |ms: u64| t0 + Duration::from_millis(ms);
    table.heard_proven_at(info("Proven", "PR-01"), at(10), "answer", t0);
    table.heard_at(info("Claimed old", "CL-02"), at(11), "multicast", later(1));
    table.heard_at(info("Claimed new", "CL-03"), at(12), "multicast", later(2));
    // Two at one address: asked once.
    table.heard_at(info("Newest", "CL-04"), at(13), "multicast", later(3));
    table.heard_at(info("Newest too", "CL-05"), at(13), "multicast", later(4));
    let asked: HashSet<SocketAddr> = (10..=13).map(at).collect();
    let since = later(10);
    assert_eq!(table.silent(&asked, since, 3), [at(10), at(13), at(12)]);
    assert_eq!(
        table.silent(&asked, since, 9),
        [at(10), at(13), at(12), at(11)]
    );
}

#[test]
fn a_failed_check_forgets_only_that_address_of_a_device_listed_at_both_families() {
    let mut table = DeviceTable::default();
    let t0 = Instant::now();
    let (v4, v6) = (addr("192.168.1.9:53317"), addr("[fd00::9]:53317"));
    table.heard_proven_at(info("Laptop", "CD34"), v4, "answer", t0);
    table.heard_proven_at(info("Laptop", "CD34"), v6, "answer", t0);
    let checked = t0 + Duration::from_secs(1);
    // Another device now holds its IPv4 address: it did not answer there.
    assert!(table.forget_at("cd34", v4, checked));
    let listed = table.list();
    assert_eq!(
        listed.len(),
        1,
        "its IPv6 address is still current: {listed:?}"
    );
    assert_eq!((listed[0].addr, listed[0].addr_v6), (v6, Some(v6)));
    assert!(listed[0].proven);
    assert!(
        !table.forget_at("CD34", v4, checked),
        "no longer listed there"
    );
    // Heard over IPv6 since the check began: that address stays.
    table.heard_at(info("Laptop", "CD34"), v6, "multicast", checked);
    assert!(!table.forget_at("CD34", v6, checked));
    // Silent at its last address too: forgotten.
    assert!(table.forget_at("CD34", v6, checked + Duration::from_secs(1)));
    assert!(table.list().is_empty());
}

#[test]
fn a_device_that_proves_itself_without_an_answer_counts_as_heard_only_where_it_is_listed() {
    let mut table = DeviceTable::default();
    let t0 = Instant::now();
    let (home, other) = (addr("10.0.0.7:53317"), addr("10.0.0.8:53317"));
    table.heard_proven_at(info("Phone", "AB-12"), home, "answer", t0);
    let mut plain = info("Laptop", "PLAIN-1");
    plain.protocol = Some("http".into());
    table.heard_at(plain, other, "multicast", t0);
    table.heard_at(info("Tablet", "EF-56"), other, "multicast", t0);
    let seen = |t: &DeviceTable, fp: &str| {
        t.list()
            .into_iter()
            .find(|d| d.fingerprint == fp)
            .map(|d| (d.addr, d.last_seen))
    };

    let t1 = t0 + Duration::from_secs(1);
    // Its certificate at another address: nothing moves, nothing is heard.
    table.reached_at_time(other, Some("AB-12"), t1);
    assert_eq!(seen(&table, "AB-12"), Some((home, t0)));
    // Its certificate where it is listed: heard there.
    table.reached_at_time(home, Some("ab-12"), t1);
    assert_eq!(seen(&table, "AB-12"), Some((home, t1)));
    // A status over plain HTTP: the plain devices listed there, not the HTTPS one.
    let t2 = t0 + Duration::from_secs(2);
    table.reached_at_time(other, None, t2);
    assert_eq!(seen(&table, "PLAIN-1"), Some((other, t2)));
    assert_eq!(seen(&table, "EF-56"), Some((other, t0)));
    let asked: HashSet<SocketAddr> = [home, other].into_iter().collect();
    assert_eq!(
        table.silent(&asked, t1, 8),
        [other],
        "only the tablet stayed silent"
    );
    assert_eq!(table.forget_silent(&asked, t1), 1);
    assert_eq!(table.list().len(), 2);
}

#[test]
fn a_device_kept_at_its_ipv6_address_by_a_failed_check_still_leaves_with_a_silent_sweep() {
    let mut table = DeviceTable::default();
    let t0 = Instant::now();
    let (v4, v6) = (addr("192.168.1.9:53317"), addr("[fd00::9]:53317"));
    table.heard_proven_at(info("Laptop", "CD34"), v4, "answer", t0);
    table.heard_proven_at(info("Laptop", "CD34"), v6, "answer", t0);
    // Another device announced from its IPv4 address; asked there, it did not answer.
    assert!(table.forget_at("CD34", v4, t0 + Duration::from_secs(1)));
    assert_eq!(table.list().len(), 1, "kept at its IPv6 address");
    // A sweep of that address, then: still not heard at all (its IPv6 address is asked by
    // no sweep), so it is gone, as a device listed at both families would be.
    let swept = t0 + Duration::from_secs(2);
    let asked: HashSet<SocketAddr> = [v4].into_iter().collect();
    assert_eq!(
        table.silent(&asked, swept, 8),
        [v4],
        "asked there once more"
    );
    assert_eq!(table.forget_silent(&asked, swept), 1);
    assert!(table.list().is_empty(), "{:?}", table.list());

    // Heard again over IPv4 after such a check: that address counts, the one lost does not.
    table.heard_proven_at(info("Laptop", "CD34"), v4, "answer", swept);
    table.heard_proven_at(info("Laptop", "CD34"), v6, "answer", swept);
    assert!(table.forget_at("CD34", v4, swept + Duration::from_secs(1)));
    let moved = addr("192.168.1.10:53317");
    table.heard_proven_at(info("Laptop", "CD34"), moved, "answer", swept);
    let asked: HashSet<SocketAddr> = [v4].into_iter().collect();
    assert_eq!(
        table.forget_silent(&asked, swept + Duration::from_secs(2)),
        0
    );
    let asked: HashSet<SocketAddr> = [moved].into_iter().collect();
    assert_eq!(
        table.forget_silent(&asked, swept + Duration::from_secs(2)),
        1
    );
}
