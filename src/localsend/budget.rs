//! The budgets that bound what LocalSend discovery sends on its own: HTTPS registers that
//! answer announcements, and checks of a device listed where another was just claimed. A
//! datagram costs its sender nothing, so a flood of announcements (fresh fingerprints,
//! spoofed addresses) must not turn Ferry into a scanner or an amplifier: registers go only
//! to LAN addresses, once per address per window, and a bounded number per window.

use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Answers (outbound HTTPS registers) allowed per window, in all and per address: an
/// announcement costs its sender one datagram and us a TLS connection, so a flood with fresh
/// fingerprints or spoofed addresses must not turn Ferry into a scanner or amplifier.
const ANSWERS_PER_WINDOW: u32 = 16;
const ANSWER_WINDOW: Duration = Duration::from_secs(10);

/// Outbound registers allowed per [`ANSWER_WINDOW`]: only to addresses on a LAN (private,
/// link-local, loopback, unique-local), once per address per window, and at most
/// [`ANSWERS_PER_WINDOW`] in all per window.
pub(super) struct Budget(std::sync::Mutex<Spent>);

struct Spent {
    window_start: Option<Instant>,
    spent: u32,
    answered: std::collections::BTreeSet<IpAddr>,
}

/// Answers to announcements.
pub(super) static ANSWERS: Budget = Budget::new();
/// Checks of a device listed where another one was just claimed (kept apart from answers:
/// the claim's own answer must not use up its check).
pub(super) static CHECKS: Budget = Budget::new();

impl Budget {
    const fn new() -> Self {
        Budget(std::sync::Mutex::new(Spent {
            window_start: None,
            spent: 0,
            answered: std::collections::BTreeSet::new(),
        }))
    }

    /// Whether a register to `ip` may go out now (and counts it).
    pub(super) fn allow(&self, ip: IpAddr, now: Instant) -> bool {
        let lan = match ip {
            IpAddr::V4(v4) => v4.is_private() || v4.is_link_local() || v4.is_loopback(),
            IpAddr::V6(v6) => {
                v6.is_loopback() || v6.is_unicast_link_local() || v6.is_unique_local()
            }
        };
        if !lan {
            return false;
        }
        let mut budget = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if budget
            .window_start
            .is_none_or(|start| now.saturating_duration_since(start) >= ANSWER_WINDOW)
        {
            budget.window_start = Some(now);
            budget.spent = 0;
            budget.answered.clear();
        }
        if budget.spent >= ANSWERS_PER_WINDOW || !budget.answered.insert(ip) {
            return false;
        }
        budget.spent += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_go_only_to_lan_addresses_once_each_and_within_a_budget() {
        let t = Instant::now() + Duration::from_secs(3600);
        assert!(
            !ANSWERS.allow("8.8.8.8".parse().unwrap(), t),
            "not on a LAN"
        );
        // No register (answer or check) ever goes to an address no one host has.
        for forged in [
            "0.0.0.0",
            "224.0.0.167",
            "255.255.255.255",
            "::",
            "ff12::fd3a:e420",
        ] {
            let ip = forged.parse().unwrap();
            assert!(!ANSWERS.allow(ip, t) && !CHECKS.allow(ip, t), "{forged}");
        }
        assert!(ANSWERS.allow("10.9.0.1".parse().unwrap(), t));
        assert!(
            !ANSWERS.allow("10.9.0.1".parse().unwrap(), t),
            "once per window"
        );
        let granted = (2..=40u8)
            .filter(|i| ANSWERS.allow(IpAddr::from([192, 168, 77, *i]), t))
            .count();
        assert_eq!(
            granted as u32,
            ANSWERS_PER_WINDOW - 1,
            "a budget per window"
        );
        // The next window starts afresh.
        let next = t + ANSWER_WINDOW;
        assert!(ANSWERS.allow("10.9.0.1".parse().unwrap(), next));
        // IPv6: link-local and unique-local are LANs, a global address is not.
        assert!(ANSWERS.allow("fe80::1".parse().unwrap(), next));
        assert!(ANSWERS.allow("fd12:3456::5".parse().unwrap(), next));
        assert!(!ANSWERS.allow("2001:db8::1".parse().unwrap(), next));
        assert!(
            !ANSWERS.allow("fe80::1".parse().unwrap(), next),
            "once per window"
        );
    }
}
