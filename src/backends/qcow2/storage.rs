//! Where an image's bytes live: a file, or memory (read-only `Vec<u8>`, and the
//! crash-simulating [`Mem`] of the tests).

use std::io;

/// A random-access byte store: the image file, or memory in tests.
pub trait Storage: Send + Sync {
    /// Fills `buf` from `offset` (an error if the store ends first).
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Writes all of `buf` at `offset`, growing the store if needed.
    fn write_all_at(&self, offset: u64, buf: &[u8]) -> io::Result<()>;
    /// Everything written so far is durable (`fdatasync`).
    fn sync_data(&self) -> io::Result<()>;
    /// Length in bytes.
    fn byte_len(&self) -> io::Result<u64>;
}

impl Storage for std::fs::File {
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(self, buf, offset)
    }
    fn write_all_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        std::os::unix::fs::FileExt::write_all_at(self, buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        std::fs::File::sync_data(self)
    }
    fn byte_len(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }
}

/// Bytes in memory, read only.
impl Storage for Vec<u8> {
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        read_slice(self, offset, buf)
    }
    fn write_all_at(&self, _: u64, _: &[u8]) -> io::Result<()> {
        Err(io::Error::from_raw_os_error(libc::EROFS))
    }
    fn sync_data(&self) -> io::Result<()> {
        Ok(())
    }
    fn byte_len(&self) -> io::Result<u64> {
        Ok(self.len() as u64)
    }
}

fn read_slice(v: &[u8], offset: u64, buf: &mut [u8]) -> io::Result<()> {
    let src = usize::try_from(offset)
        .ok()
        .and_then(|start| v.get(start..start.checked_add(buf.len())?))
        .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
    buf.copy_from_slice(src);
    Ok(())
}

/// A writable in-memory store that remembers what reached "stable storage": the
/// state at the last sync and the writes since, so a test can build the image a
/// crash would leave (the synced bytes plus any subset of the later writes).
#[cfg(test)]
#[derive(Default)]
pub struct Mem {
    inner: std::sync::Mutex<MemInner>,
}

#[cfg(test)]
#[derive(Default, Clone)]
pub struct MemInner {
    pub data: Vec<u8>,
    pub durable: Vec<u8>,
    /// Writes since the last sync, in order.
    pub pending: Vec<(u64, Vec<u8>)>,
    /// Every write ever made (offset, length).
    pub log: Vec<(u64, usize)>,
    pub syncs: u64,
    /// Writes fail with EIO once this many more succeeded (None: never).
    pub fail_after: Option<u64>,
}

#[cfg(test)]
impl Mem {
    pub fn new(bytes: Vec<u8>) -> Self {
        let inner = MemInner {
            durable: bytes.clone(),
            data: bytes,
            ..MemInner::default()
        };
        Self {
            inner: std::sync::Mutex::new(inner),
        }
    }

    /// A copy of the whole state.
    pub fn snapshot(&self) -> MemInner {
        self.inner.lock().unwrap().clone()
    }

    pub fn set_fail_after(&self, n: Option<u64>) {
        self.inner.lock().unwrap().fail_after = n;
    }
}

#[cfg(test)]
fn apply(v: &mut Vec<u8>, offset: u64, buf: &[u8]) {
    let start = offset as usize;
    if v.len() < start + buf.len() {
        v.resize(start + buf.len(), 0);
    }
    v[start..start + buf.len()].copy_from_slice(buf);
}

#[cfg(test)]
impl MemInner {
    /// What a crash now could leave: the synced bytes plus the pending writes that
    /// `keep` selects (by index), applied in order.
    pub fn crashed(&self, keep: impl Fn(usize) -> bool) -> Vec<u8> {
        let mut v = self.durable.clone();
        for (i, (off, b)) in self.pending.iter().enumerate() {
            if keep(i) {
                apply(&mut v, *off, b);
            }
        }
        v
    }
}

#[cfg(test)]
impl Storage for Mem {
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        read_slice(&self.inner.lock().unwrap().data, offset, buf)
    }
    fn write_all_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        let mut m = self.inner.lock().unwrap();
        if let Some(n) = m.fail_after {
            if n == 0 {
                return Err(io::Error::from_raw_os_error(libc::EIO));
            }
            m.fail_after = Some(n - 1);
        }
        if offset
            .checked_add(buf.len() as u64)
            .is_none_or(|e| e > 1 << 40)
        {
            return Err(io::Error::from_raw_os_error(libc::EFBIG));
        }
        apply(&mut m.data, offset, buf);
        m.pending.push((offset, buf.to_vec()));
        m.log.push((offset, buf.len()));
        Ok(())
    }
    fn sync_data(&self) -> io::Result<()> {
        let mut m = self.inner.lock().unwrap();
        m.durable = m.data.clone();
        m.pending.clear();
        m.syncs += 1;
        Ok(())
    }
    fn byte_len(&self) -> io::Result<u64> {
        Ok(self.inner.lock().unwrap().data.len() as u64)
    }
}
