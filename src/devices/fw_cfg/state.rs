//! fw_cfg's snapshot state: the cursor only (selected item, offset in it, the DMA
//! address's high half). The items are rebuilt from the same spec by the restoring
//! process, so the cursor points into the same bytes.

use serde::{Deserialize, Serialize};

use super::FwCfg;
use crate::snapshot::state::{decode, encode, ensure, StateError, Stateful};

#[derive(Serialize, Deserialize)]
struct FwCfgState {
    selector: u16,
    offset: u64,
    dma_high: u32,
}

impl Stateful for FwCfg {
    fn save_state(&self) -> Result<Vec<u8>, StateError> {
        encode(&FwCfgState {
            selector: self.selector,
            offset: self.offset,
            dma_high: self.dma_high,
        })
    }

    fn restore_state(&mut self, bytes: &[u8]) -> Result<(), StateError> {
        let s: FwCfgState = decode(bytes)?;
        let len = self.items.get(s.selector).map_or(0, |d| d.len() as u64);
        ensure(s.offset <= len, || {
            format!(
                "offset {} past item {:#x} ({len} bytes)",
                s.offset, s.selector
            )
        })?;
        self.selector = s.selector;
        self.offset = s.offset;
        self.dma_high = s.dma_high;
        Ok(())
    }
}
