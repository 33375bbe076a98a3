//! A function's config space in a snapshot: its bytes and the INTx level the device
//! asserts. Restoring takes only what a guest or the device could have changed: the
//! guest-writable and write-1-to-clear bits come from the saved bytes, every other
//! bit (IDs, BAR type bits, capability layout) stays as the freshly built function
//! has it, so a state file cannot turn a BAR into another kind or move a capability.
//! The status register's interrupt bit and the INTx line follow the restored level.

use serde::{Deserialize, Serialize};

use super::PciConfig;
use crate::snapshot::state::{ensure, StateError};

/// What a snapshot keeps of a [`PciConfig`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PciConfigState {
    data: Vec<u8>,
    intx_level: bool,
}

impl PciConfig {
    /// The config space's state now.
    pub fn save_state(&self) -> PciConfigState {
        PciConfigState {
            data: self.data.clone(),
            intx_level: self.intx_level,
        }
    }

    /// Checks `s` against this function (same config space size).
    pub fn check_state(&self, s: &PciConfigState) -> Result<(), StateError> {
        ensure(s.data.len() == self.data.len(), || {
            format!(
                "a {}-byte config space for a {}-byte one",
                s.data.len(),
                self.data.len()
            )
        })
    }

    /// Puts the config space back as [`Self::save_state`] saw it, then drives INTx to
    /// the restored level (unless INTx Disable is set).
    pub fn restore_state(&mut self, s: &PciConfigState) -> Result<(), StateError> {
        self.check_state(s)?;
        for (i, &saved) in s.data.iter().enumerate() {
            let (Some(cur), Some(&wm), Some(&wc)) =
                (self.data.get_mut(i), self.wmask.get(i), self.w1c.get(i))
            else {
                continue;
            };
            let mutable = wm | wc;
            *cur = (*cur & !mutable) | (saved & mutable);
        }
        self.intx_level = s.intx_level;
        self.update_intx();
        Ok(())
    }
}
