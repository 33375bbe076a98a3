//! The Bochs/QEMU debug console, usually at port 0x402 (0xE9 on Bochs): every byte the
//! guest writes goes to a host writer, and a read returns 0xE9, the signature SeaBIOS
//! and OVMF look for to decide the port is there.

use std::io::Write;

use super::{BusDevice, VmEvent};

/// What a read of the port returns (QEMU's default `readback`).
pub const DEBUGCON_SIGNATURE: u8 = 0xE9;

/// The debug console: a write-only byte sink with a presence signature.
pub struct DebugCon {
    out: Box<dyn Write + Send>,
    tx_errors: u64,
}

impl DebugCon {
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        DebugCon { out, tx_errors: 0 }
    }

    /// Writes the host writer refused (the bytes are dropped).
    pub fn tx_errors(&self) -> u64 {
        self.tx_errors
    }
}

impl BusDevice for DebugCon {
    fn read(&mut self, _region: usize, _offset: u64, data: &mut [u8]) {
        data.fill(DEBUGCON_SIGNATURE);
    }

    fn write(&mut self, _region: usize, _offset: u64, data: &[u8]) -> Option<VmEvent> {
        if self
            .out
            .write_all(data)
            .and_then(|_| self.out.flush())
            .is_err()
        {
            self.tx_errors += 1;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn bytes_out_signature_in() {
        let sink = Sink::default();
        let mut d = DebugCon::new(Box::new(sink.clone()));
        for &b in b"SeaBIOS\n" {
            assert_eq!(d.write(0, 0, &[b]), None);
        }
        assert_eq!(&*sink.0.lock().unwrap(), b"SeaBIOS\n");
        let mut b = [0u8; 1];
        d.read(0, 0, &mut b);
        assert_eq!(b[0], 0xE9);
        assert_eq!(d.tx_errors(), 0);
    }
}
