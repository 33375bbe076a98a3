//! A LAN's MAC address table: which port a source address was last seen on, forgotten
//! after the ageing time (300 s by default, as IEEE 802.1D), at most [`MAX_ENTRIES`]
//! addresses (beyond that new addresses are not learned and their frames are flooded).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::time::Duration;

pub const MAX_ENTRIES: usize = 8192;
pub const DEFAULT_AGEING: Duration = Duration::from_secs(300);

/// A MAC address as the low 48 bits.
pub fn key(mac: &[u8]) -> u64 {
    mac.iter().take(6).fold(0, |k, &b| k << 8 | u64::from(b))
}

pub fn text(k: u64) -> String {
    let b = k.to_be_bytes();
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        b[2], b[3], b[4], b[5], b[6], b[7]
    )
}

/// Hashes the one u64 key with a multiply: cheap, and keys are not attacker-chosen in
/// a way that matters (the table is bounded).
#[derive(Default)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn write_u64(&mut self, k: u64) {
        self.0 = (k ^ (k >> 29)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    port: usize,
    seen: Duration,
}

#[derive(Debug)]
pub struct MacTable {
    map: HashMap<u64, Entry, BuildHasherDefault<KeyHasher>>,
    ageing: Duration,
    /// Addresses not learned because the table was full.
    pub overflow: u64,
}

impl MacTable {
    pub fn new(ageing: Duration) -> Self {
        let mut map = HashMap::default();
        map.reserve(MAX_ENTRIES);
        Self {
            map,
            ageing,
            overflow: 0,
        }
    }

    /// Records that `mac` (a unicast source) is behind `port` at `now`.
    pub fn learn(&mut self, mac: u64, port: usize, now: Duration) {
        if let Some(e) = self.map.get_mut(&mac) {
            *e = Entry { port, seen: now };
        } else if self.map.len() < MAX_ENTRIES {
            self.map.insert(mac, Entry { port, seen: now });
        } else {
            self.overflow += 1;
        }
    }

    /// The port `mac` was last seen on, unless that was longer ago than the ageing time.
    pub fn lookup(&self, mac: u64, now: Duration) -> Option<usize> {
        self.map
            .get(&mac)
            .filter(|e| now.saturating_sub(e.seen) <= self.ageing)
            .map(|e| e.port)
    }

    /// Forgets aged entries.
    pub fn sweep(&mut self, now: Duration) {
        let ageing = self.ageing;
        self.map.retain(|_, e| now.saturating_sub(e.seen) <= ageing);
    }

    /// Forgets what was learned on `port` (its link went down).
    pub fn flush_port(&mut self, port: usize) {
        self.map.retain(|_, e| e.port != port);
    }

    /// (address, port, age) of every live entry, sorted by address.
    pub fn entries(&self, now: Duration) -> Vec<(u64, usize, Duration)> {
        let mut v: Vec<_> = self
            .map
            .iter()
            .map(|(&k, e)| (k, e.port, now.saturating_sub(e.seen)))
            .filter(|&(_, _, age)| age <= self.ageing)
            .collect();
        v.sort_unstable();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn learns_moves_ages_and_flushes() {
        let mut t = MacTable::new(10 * S);
        let a = key(&[0x52, 0x54, 0, 0, 0, 1]);
        assert_eq!(text(a), "52:54:00:00:00:01");
        assert_eq!(t.lookup(a, S), None);
        t.learn(a, 3, S);
        assert_eq!(t.lookup(a, 5 * S), Some(3));
        t.learn(a, 4, 6 * S); // the station moved
        assert_eq!(t.lookup(a, 16 * S), Some(4));
        assert_eq!(t.lookup(a, 17 * S), None); // aged out
        t.sweep(17 * S);
        assert!(t.entries(17 * S).is_empty());
        t.learn(a, 1, S);
        t.flush_port(1);
        assert_eq!(t.lookup(a, S), None);
        for k in 0..MAX_ENTRIES as u64 + 5 {
            t.learn(k, 0, S);
        }
        assert_eq!(t.overflow, 5);
    }
}
