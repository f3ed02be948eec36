//! Connection limits (total and per client IP) and the per-IP back-off after repeated
//! failed logins. Shared by every listener of one process.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::smtp::reply::Reply;

#[derive(Default)]
struct State {
    total: u32,
    per_ip: HashMap<IpAddr, u32>,
    locked_until: HashMap<IpAddr, Instant>,
}

pub struct Limits {
    max_total: u32,
    max_per_ip: u32,
    state: Mutex<State>,
}

/// Holds one connection slot; gives it back when dropped, however the session ends.
pub struct Slot {
    limits: Arc<Limits>,
    ip: IpAddr,
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Slot({})", self.ip)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut s = self.limits.lock();
        s.total = s.total.saturating_sub(1);
        if let Some(n) = s.per_ip.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                s.per_ip.remove(&self.ip);
            }
        }
    }
}

impl Limits {
    pub fn new(max_total: u32, max_per_ip: u32) -> Arc<Limits> {
        Arc::new(Limits {
            max_total,
            max_per_ip,
            state: Mutex::new(State::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state stays consistent even if a holder panicked: every update is one step.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A slot for a new connection from `ip`, or the 421 to send before closing.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Reply> {
        let mut s = self.lock();
        if s.total >= self.max_total {
            return Err(Reply::new(
                421,
                "4.7.0",
                "too many connections to this server; try again later",
            ));
        }
        let n = s.per_ip.get(&ip).copied().unwrap_or(0);
        if n >= self.max_per_ip {
            return Err(Reply::new(
                421,
                "4.7.0",
                format!("too many connections from {ip}; try again later"),
            ));
        }
        s.total += 1;
        s.per_ip.insert(ip, n + 1);
        Ok(Slot {
            limits: Arc::clone(self),
            ip,
        })
    }

    /// Connections currently open.
    pub fn active(&self) -> u32 {
        self.lock().total
    }

    /// Refuses logins from `ip` for `period`.
    pub fn lock_out(&self, ip: IpAddr, period: Duration) {
        let mut s = self.lock();
        let now = Instant::now();
        s.locked_until.retain(|_, until| *until > now);
        s.locked_until.insert(ip, now + period);
    }

    pub fn is_locked_out(&self, ip: IpAddr) -> bool {
        self.lock()
            .locked_until
            .get(&ip)
            .is_some_and(|until| *until > Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_counted_and_returned() {
        let l = Limits::new(3, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let s1 = l.admit(a).unwrap();
        let _s2 = l.admit(a).unwrap();
        assert_eq!(l.admit(a).unwrap_err().code, 421);
        let _s3 = l.admit(b).unwrap();
        assert!(
            l.admit(b)
                .unwrap_err()
                .text
                .contains("too many connections to")
        );
        drop(s1);
        assert!(l.admit(a).is_ok());
    }

    #[test]
    fn lock_out_expires() {
        let l = Limits::new(1, 1);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        l.lock_out(a, Duration::from_millis(30));
        assert!(l.is_locked_out(a));
        std::thread::sleep(Duration::from_millis(40));
        assert!(!l.is_locked_out(a));
    }
}
