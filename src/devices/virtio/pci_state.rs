//! The virtio-pci transport's snapshot state: the function's config space (BAR0, the
//! command register, the MSI-X enable and mask bits), the common virtio state, the
//! MSI-X table and pending bits, and the configuration and queue vectors. Restoring
//! re-derives the interrupt mode from the config space as a guest's config write does,
//! drives INTx if the ISR holds bits in INTx mode, and sends what became deliverable.

use serde::{Deserialize, Serialize};

use super::{lock, VirtioPci, NO_VECTOR};
use crate::devices::pci::PciConfigState;
use crate::devices::virtio::common::CommonState;
use crate::snapshot::state::{decode, encode, ensure, StateError, Stateful};

#[derive(Serialize, Deserialize)]
struct VirtioPciState {
    cfg: PciConfigState,
    common: CommonState,
    /// (address, data, masked) per vector.
    table: Vec<(u64, u32, bool)>,
    pending: Vec<bool>,
    config_vector: u16,
    queue_vectors: Vec<u16>,
}

impl Stateful for VirtioPci {
    fn save_state(&self) -> Result<Vec<u8>, StateError> {
        let irq = lock(&self.irq);
        encode(&VirtioPciState {
            cfg: self.cfg.save_state(),
            common: self.common.save_state()?,
            table: irq.table.clone(),
            pending: irq.pending.clone(),
            config_vector: irq.config_vector,
            queue_vectors: irq.queue_vectors.clone(),
        })
    }

    fn restore_state(&mut self, bytes: &[u8]) -> Result<(), StateError> {
        let s: VirtioPciState = decode(bytes)?;
        self.cfg.check_state(&s.cfg)?;
        {
            let irq = lock(&self.irq);
            let nvec = irq.table.len();
            ensure(s.table.len() == nvec && s.pending.len() == nvec, || {
                format!("an MSI-X table of {} entries for {nvec}", s.table.len())
            })?;
            ensure(s.queue_vectors.len() == irq.queue_vectors.len(), || {
                "queue vectors".into()
            })?;
            let vector_ok = |v: u16| v == NO_VECTOR || usize::from(v) < nvec;
            ensure(
                vector_ok(s.config_vector) && s.queue_vectors.iter().all(|&v| vector_ok(v)),
                || "an MSI-X vector outside the table".into(),
            )?;
        }
        self.cfg.restore_state(&s.cfg)?;
        {
            let mut irq = lock(&self.irq);
            irq.table = s.table;
            irq.pending = s.pending;
            irq.config_vector = s.config_vector;
            irq.queue_vectors = s.queue_vectors;
        }
        let interrupt = self.interrupt.clone();
        let r = self.common.restore_state(&s.common, interrupt);
        self.sync_config();
        r
    }
}
