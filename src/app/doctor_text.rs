//! The doctor's findings ("Why can't I see my device?") in the window's language. The
//! engine reports [`Finding`]s; `ferry doctor` prints their English lines, the window words
//! each one from the translation table (its English entries are those same lines).

use crate::events::{BeaconPath, Finding, IgnoredWhy};

use super::i18n::{T, Tr};

/// One finding as a line of the window's report.
pub fn finding(tr: Tr, finding: &Finding) -> String {
    match finding {
        Finding::NoInterfaces => tr.get(T::DoctorNoInterfaces).to_owned(),
        Finding::Used { name, net, own } if own.is_empty() => {
            tr.fill(T::DoctorUsedNotHeard, &[name, net])
        }
        Finding::Used { name, net, own } => {
            // Our own beacon back by unicast is plain "unicast" (see `Finding`'s Display).
            let paths: Vec<&str> = own
                .iter()
                .map(|p| match p {
                    BeaconPath::Probe => tr.get(T::PathUnicast),
                    other => path(tr, *other),
                })
                .collect();
            tr.fill(
                T::DoctorUsedHeard,
                &[name, net, &paths.join(tr.get(T::DoctorAnd))],
            )
        }
        Finding::Ignored { name, net, why } => {
            tr.fill(T::DoctorIgnored, &[name, net, &ignored(tr, *why)])
        }
        Finding::JoinFailed { name, reason } => tr.fill(T::DoctorJoinFailed, &[name, reason]),
        Finding::NoOthersHeard => tr.get(T::DoctorNoOthersHeard).to_owned(),
        Finding::OthersHeard => tr.get(T::DoctorOthersHeard).to_owned(),
        Finding::Heard {
            name,
            path: by,
            count,
        } => tr.fill(T::DoctorHeard, &[name, count, &path(tr, *by)]),
        Finding::Isolated { name } => tr.fill(T::DoctorIsolated, &[name]),
        Finding::NoSuchInterface { name } => tr.fill(T::DoctorNoSuchInterface, &[name]),
        Finding::InSubnet { ip, name } => tr.fill(T::DoctorInSubnet, &[ip, name]),
        Finding::Loopback { ip } => tr.fill(T::DoctorLoopback, &[ip]),
        Finding::OtherNetwork { ip } => tr.fill(T::DoctorOtherNetwork, &[ip]),
        Finding::Answers { addr } => tr.fill(T::DoctorAnswers, &[addr]),
        Finding::Refused { addr } => tr.fill(T::DoctorRefused, &[addr, &addr.port()]),
        Finding::TimedOut { addr } => tr.fill(T::DoctorTimedOut, &[addr]),
        Finding::ConnectFailed { addr, reason } => tr.fill(T::DoctorConnectFailed, &[addr, reason]),
        Finding::Ufw { tcp_port, udp_port } => tr.fill(T::DoctorUfw, &[tcp_port, udp_port]),
        Finding::Firewalld { tcp_port, udp_port } => {
            tr.fill(T::DoctorFirewalld, &[tcp_port, udp_port])
        }
        Finding::CannotResolve { target, reason } => {
            tr.fill(T::DoctorCannotResolve, &[target, reason])
        }
        Finding::NoIpv4 { target } => tr.fill(T::DoctorNoIpv4, &[target]),
    }
}

fn path(tr: Tr, path: BeaconPath) -> &'static str {
    tr.get(match path {
        BeaconPath::Multicast => T::PathMulticast,
        BeaconPath::Broadcast => T::PathBroadcast,
        BeaconPath::Probe => T::PathProbe,
        BeaconPath::Mdns => T::PathMdns,
    })
}

fn ignored(tr: Tr, why: IgnoredWhy) -> &'static str {
    tr.get(match why {
        IgnoredWhy::NotTheBoundAddress => T::IgnoredNotBound,
        IgnoredWhy::Down => T::IgnoredDown,
        IgnoredWhy::NotChosen => T::IgnoredNotChosen,
        IgnoredWhy::Loopback => T::IgnoredLoopback,
        IgnoredWhy::PointToPoint => T::IgnoredPointToPoint,
        IgnoredWhy::Virtual => T::IgnoredVirtual,
        IgnoredWhy::LinkLocalWithoutBroadcast => T::IgnoredLinkLocal,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::i18n::Lang;

    /// One of every finding (every reason, every path), for the tests of both languages.
    fn every_finding() -> Vec<Finding> {
        let addr: std::net::SocketAddr = "10.0.0.9:8080".parse().unwrap();
        let ip = addr.ip();
        let (name, net) = ("wlan0".to_owned(), "10.0.0.5/24".to_owned());
        let mut all = vec![
            Finding::NoInterfaces,
            Finding::Used {
                name: name.clone(),
                net: net.clone(),
                own: Vec::new(),
            },
            Finding::Used {
                name: name.clone(),
                net: net.clone(),
                own: vec![BeaconPath::Broadcast, BeaconPath::Mdns],
            },
            Finding::Used {
                name: name.clone(),
                net: net.clone(),
                own: vec![BeaconPath::Multicast, BeaconPath::Probe],
            },
            Finding::JoinFailed {
                name: name.clone(),
                reason: "No such device (os error 19)".into(),
            },
            Finding::NoOthersHeard,
            Finding::OthersHeard,
            Finding::Isolated { name: name.clone() },
            Finding::NoSuchInterface { name: name.clone() },
            Finding::InSubnet {
                ip,
                name: name.clone(),
            },
            Finding::Loopback { ip },
            Finding::OtherNetwork { ip },
            Finding::Answers { addr },
            Finding::Refused { addr },
            Finding::TimedOut { addr },
            Finding::ConnectFailed {
                addr,
                reason: "Network is unreachable (os error 101)".into(),
            },
            Finding::Ufw {
                tcp_port: 8080,
                udp_port: 53318,
            },
            Finding::Firewalld {
                tcp_port: 8080,
                udp_port: 53318,
            },
            Finding::CannotResolve {
                target: "nas".into(),
                reason: "failed to lookup address information".into(),
            },
            Finding::NoIpv4 {
                target: "nas".into(),
            },
        ];
        for by in [
            BeaconPath::Multicast,
            BeaconPath::Broadcast,
            BeaconPath::Probe,
            BeaconPath::Mdns,
        ] {
            all.push(Finding::Heard {
                name: name.clone(),
                path: by,
                count: 3,
            });
        }
        for why in [
            IgnoredWhy::NotTheBoundAddress,
            IgnoredWhy::Down,
            IgnoredWhy::NotChosen,
            IgnoredWhy::Loopback,
            IgnoredWhy::PointToPoint,
            IgnoredWhy::Virtual,
            IgnoredWhy::LinkLocalWithoutBroadcast,
        ] {
            all.push(Finding::Ignored {
                name: name.clone(),
                net: net.clone(),
                why,
            });
        }
        all
    }

    /// The window's English is the CLI's line, word for word.
    #[test]
    fn english_findings_are_the_cli_lines() {
        for f in every_finding() {
            assert_eq!(finding(Tr(Lang::En), &f), f.to_string());
        }
    }

    /// Every finding has its own Chinese line: no English sentence left in it.
    #[test]
    fn every_finding_is_worded_in_chinese() {
        for f in every_finding() {
            let zh = finding(Tr(Lang::ZhCn), &f);
            assert_ne!(zh, f.to_string(), "{f:?}");
            assert!(
                zh.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c)),
                "{zh}"
            );
        }
    }
}
