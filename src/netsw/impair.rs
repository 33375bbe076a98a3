//! Impairment of the frames a port receives from the switch, netem-like: loss,
//! duplication, corruption (one flipped bit), delay with jitter, reordering, and a rate
//! limit that is a real token bucket.
//!
//! A frame towards an impaired port goes through two queues:
//! 1. the delay line: each frame is ready `delay ± jitter` (uniform) after it arrived,
//!    but never before the frame ahead of it, so jitter does not reorder; a frame
//!    picked by `reorder` (only meaningful with a delay) skips the line and so overtakes
//!    the delayed frames before it;
//! 2. the shaper: frames leave in the order they became ready, each once the bucket
//!    holds as many tokens (bytes) as the frame is long (or the whole bucket for frames
//!    larger than it); tokens refill at `rate` up to `burst` bytes (default: 1 ms at
//!    the rate, at least 1514 bytes). Rates count frame bytes (no preamble, FCS or gap).
//!
//! Both queues together hold at most `limit` frames (1000 by default, as netem); more
//! are dropped. Random choices come from a [`Rng`] seeded per port, so a seeded switch
//! impairs the same frames every run.

use std::collections::VecDeque;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::counters::{PortCounters, Reason};
use super::frame::{Frame, Pool};
use super::rng::Rng;
use super::units::{self, UnitError};

pub const DEFAULT_LIMIT: usize = 1000;
const MIN_BURST: u64 = 1514;

/// An impairment as written in configs, the lab file and control requests
/// (`{ delay = "20ms", loss = "1%", rate = "10Mbit" }`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImpairConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicate: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reorder: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corrupt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

/// A parsed impairment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Impair {
    pub delay: Duration,
    pub jitter: Duration,
    pub loss: f64,
    pub duplicate: f64,
    pub reorder: f64,
    pub corrupt: f64,
    /// Bits per second.
    pub rate: Option<u64>,
    /// Bucket size in bytes; `None`: 1 ms at the rate, at least 1514 bytes.
    pub burst: Option<u64>,
    pub limit: usize,
}

impl Default for Impair {
    fn default() -> Self {
        Self {
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            corrupt: 0.0,
            rate: None,
            burst: None,
            limit: DEFAULT_LIMIT,
        }
    }
}

fn opt<T>(v: &Option<String>, f: fn(&str) -> Result<T, UnitError>) -> Result<Option<T>, UnitError> {
    v.as_deref().map(f).transpose()
}

impl ImpairConfig {
    pub fn parse(&self) -> Result<Impair, UnitError> {
        let d = Impair::default();
        let rate = opt(&self.rate, units::rate)?;
        let burst = opt(&self.burst, units::size)?.map(|b| b.max(1));
        Ok(Impair {
            delay: opt(&self.delay, units::duration)?.unwrap_or(d.delay),
            jitter: opt(&self.jitter, units::duration)?.unwrap_or(d.jitter),
            loss: opt(&self.loss, units::percent)?.unwrap_or(0.0),
            duplicate: opt(&self.duplicate, units::percent)?.unwrap_or(0.0),
            reorder: opt(&self.reorder, units::percent)?.unwrap_or(0.0),
            corrupt: opt(&self.corrupt, units::percent)?.unwrap_or(0.0),
            rate,
            burst,
            limit: self.limit.unwrap_or(DEFAULT_LIMIT).max(1),
        })
    }
}

impl Impair {
    /// Whether this impairment changes nothing.
    pub fn is_none(&self) -> bool {
        let d = Impair::default();
        self.delay == d.delay
            && self.jitter == d.jitter
            && self.loss == 0.0
            && self.duplicate == 0.0
            && self.reorder == 0.0
            && self.corrupt == 0.0
            && self.rate.is_none()
    }

    /// The bucket size in bytes.
    pub fn bucket(&self) -> u64 {
        self.burst.unwrap_or_else(|| {
            self.rate
                .map_or(MIN_BURST, |r| (r / 8 / 1000).max(MIN_BURST))
        })
    }

    /// Back to the written form (for status and for the lab, whose impairments are
    /// this type).
    pub fn to_config(&self) -> ImpairConfig {
        let pct = |p: f64| (p > 0.0).then(|| format!("{}%", p * 100.0));
        let dur = |d: Duration| (!d.is_zero()).then(|| units::duration_text(d));
        ImpairConfig {
            delay: dur(self.delay),
            jitter: dur(self.jitter),
            loss: pct(self.loss),
            duplicate: pct(self.duplicate),
            reorder: pct(self.reorder),
            corrupt: pct(self.corrupt),
            rate: self.rate.map(|r| format!("{r}bit")),
            burst: self.burst.map(|b| b.to_string()),
            limit: Some(self.limit),
        }
    }
}

/// The two queues of one impaired port.
#[derive(Debug)]
pub struct Shaper {
    spec: Impair,
    rng: Rng,
    /// (ready time, frame), ready times ascending.
    delay_q: VecDeque<(Duration, Frame)>,
    /// (departure time, frame), departures ascending.
    rate_q: VecDeque<(Duration, Frame)>,
    last_ready: Duration,
    tokens: f64,
    tokens_at: Duration,
}

impl Shaper {
    pub fn new(spec: Impair, seed: u64) -> Self {
        let cap = spec.limit.min(4096);
        Self {
            tokens: spec.bucket() as f64,
            spec,
            rng: Rng::new(seed),
            delay_q: VecDeque::with_capacity(cap),
            rate_q: VecDeque::with_capacity(cap),
            last_ready: Duration::ZERO,
            tokens_at: Duration::ZERO,
        }
    }

    pub fn spec(&self) -> &Impair {
        &self.spec
    }

    /// A new impairment for frames from now on; queued frames keep their times.
    pub fn set(&mut self, spec: Impair) {
        self.tokens = self.tokens.min(spec.bucket() as f64);
        self.spec = spec;
    }

    pub fn len(&self) -> usize {
        self.delay_q.len() + self.rate_q.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes a frame that arrived at `now` (loss, duplication, corruption happen here).
    pub fn push(&mut self, data: &[u8], now: Duration, pool: &mut Pool, c: &mut PortCounters) {
        if self.rng.chance(self.spec.loss) {
            c.tx_dropped.add(Reason::ImpairLoss, 1);
            return;
        }
        let copies = if self.rng.chance(self.spec.duplicate) {
            c.duplicated += 1;
            2
        } else {
            1
        };
        self.advance(now);
        for _ in 0..copies {
            if self.len() >= self.spec.limit {
                c.tx_dropped.add(Reason::ImpairLimit, 1);
                continue;
            }
            let mut f = pool.copy(data);
            if !f.is_empty() && self.rng.chance(self.spec.corrupt) {
                let i = self.rng.below(f.len());
                f.bytes_mut()[i] ^= 1 << self.rng.below(8);
                c.corrupted += 1;
            }
            let delayed = !self.spec.delay.is_zero() || !self.spec.jitter.is_zero();
            if delayed && self.rng.chance(self.spec.reorder) {
                if !self.delay_q.is_empty() {
                    c.reordered += 1;
                }
                self.shape(now, f);
            } else {
                let ready = self.ready_time(now).max(self.last_ready);
                self.last_ready = ready;
                self.delay_q.push_back((ready, f));
                self.advance(now);
            }
        }
    }

    fn ready_time(&mut self, now: Duration) -> Duration {
        let j = self.spec.jitter.as_nanos() as f64;
        let off = self.spec.delay.as_nanos() as f64 + (self.rng.unit() * 2.0 - 1.0) * j;
        now + Duration::from_nanos(off.max(0.0) as u64)
    }

    /// Puts a frame ready at `ready` into the shaper, departing when the bucket allows.
    fn shape(&mut self, ready: Duration, f: Frame) {
        let Some(rate) = self.spec.rate else {
            self.rate_q.push_back((ready, f));
            return;
        };
        let bytes_per_ns = rate as f64 / 8e9;
        let burst = self.spec.bucket() as f64;
        let mut t = ready.max(self.tokens_at);
        let refill = (t - self.tokens_at).as_nanos() as f64 * bytes_per_ns;
        self.tokens = (self.tokens + refill).min(burst);
        let need = (f.len() as f64).min(burst);
        if self.tokens < need {
            t += Duration::from_nanos(((need - self.tokens) / bytes_per_ns).ceil() as u64);
            self.tokens = need;
        }
        self.tokens -= f.len() as f64;
        self.tokens_at = t;
        self.rate_q.push_back((t, f));
    }

    /// Moves frames whose delay is over into the shaper.
    fn advance(&mut self, now: Duration) {
        while self.delay_q.front().is_some_and(|(t, _)| *t <= now) {
            if let Some((t, f)) = self.delay_q.pop_front() {
                self.shape(t, f);
            }
        }
    }

    /// When the next frame may leave (a little early is possible, never late).
    pub fn next_due(&self) -> Option<Duration> {
        let a = self.delay_q.front().map(|(t, _)| *t);
        let b = self.rate_q.front().map(|(t, _)| *t);
        match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether a frame may leave at `now`.
    pub fn due(&mut self, now: Duration) -> bool {
        self.advance(now);
        self.rate_q.front().is_some_and(|(t, _)| *t <= now)
    }

    /// The next frame that may leave at `now` (call [`Shaper::due`] first).
    pub fn pop(&mut self) -> Option<Frame> {
        self.rate_q.pop_front().map(|(_, f)| f)
    }

    /// Drops every queued frame (the link went down); returns how many.
    pub fn flush(&mut self, pool: &mut Pool) -> u64 {
        let n = self.len() as u64;
        for (_, f) in self.delay_q.drain(..).chain(self.rate_q.drain(..)) {
            pool.give(f);
        }
        n
    }
}

#[cfg(test)]
#[path = "impair_tests.rs"]
mod tests;
