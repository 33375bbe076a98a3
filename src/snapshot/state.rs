//! Device state: each device that holds guest-visible state implements [`Stateful`],
//! saving a plain struct of its own (serde-derived) with [`encode`] and reading one back
//! with [`decode`]. The bytes come from a file a user hands us: decoding never panics
//! and never allocates more than the input justifies, and `restore_state` checks every
//! value it takes (an index into a table, a queue size, a register width) before
//! using it, refusing the section with [`StateError::Invalid`] otherwise.

use std::sync::Mutex;

use serde::{de::DeserializeOwned, Serialize};
use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum StateError {
    #[error("the saved state is truncated or malformed ({0})")]
    Malformed(String),
    #[error("the saved state is not valid: {0}")]
    Invalid(String),
    #[error("cannot save the state: {0}")]
    Save(String),
}

/// A device whose state a snapshot saves and restores.
pub trait Stateful: Send {
    /// The device's state now, encoded with [`encode`].
    fn save_state(&self) -> Result<Vec<u8>, StateError>;
    /// Puts the device back in a state [`Self::save_state`] produced. A device built
    /// from the same spec receives it before any vCPU runs; anything in `bytes` may be
    /// hostile.
    fn restore_state(&mut self, bytes: &[u8]) -> Result<(), StateError>;
}

/// One named section of the state file as the machine registers it: a device behind
/// its bus lock, or anything that locks its own parts (the PCI root).
pub trait Section: Send + Sync {
    fn save(&self) -> Result<Vec<u8>, StateError>;
    fn restore(&self, bytes: &[u8]) -> Result<(), StateError>;
}

impl<T: Stateful> Section for Mutex<T> {
    fn save(&self) -> Result<Vec<u8>, StateError> {
        self.lock().unwrap_or_else(|p| p.into_inner()).save_state()
    }
    fn restore(&self, bytes: &[u8]) -> Result<(), StateError> {
        self.lock()
            .unwrap_or_else(|p| p.into_inner())
            .restore_state(bytes)
    }
}

/// Encodes a device's state struct.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StateError> {
    postcard::to_allocvec(value).map_err(|e| StateError::Save(e.to_string()))
}

/// Decodes a device's state struct; every byte of `bytes` must be used.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StateError> {
    let (value, rest) =
        postcard::take_from_bytes(bytes).map_err(|e| StateError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(StateError::Malformed(format!(
            "{} bytes left over after the state",
            rest.len()
        )));
    }
    Ok(value)
}

/// Checks a restored value: `Err(Invalid(what))` unless `ok`.
pub fn ensure(ok: bool, what: impl FnOnce() -> String) -> Result<(), StateError> {
    if ok {
        Ok(())
    } else {
        Err(StateError::Invalid(what()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct Regs {
        a: u8,
        b: u64,
        fifo: Vec<u8>,
    }

    #[test]
    fn round_trips_and_refuses_garbage() {
        let r = Regs {
            a: 1,
            b: u64::MAX,
            fifo: vec![1, 2, 3],
        };
        let bytes = encode(&r).unwrap();
        assert_eq!(decode::<Regs>(&bytes).unwrap(), r);
        for n in 0..bytes.len() {
            assert!(decode::<Regs>(&bytes[..n]).is_err(), "prefix {n}");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(decode::<Regs>(&long).is_err());
        // A length prefix far beyond the input allocates nothing and fails.
        assert!(decode::<Regs>(&[1, 1, 0xff, 0xff, 0xff, 0xff, 0x0f]).is_err());
    }
}
