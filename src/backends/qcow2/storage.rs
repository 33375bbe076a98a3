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

/// A writable in-memory store that remembers every write and sync, so a test can
/// build what a crash at any moment would leave: everything written before some
/// sync, plus any subset of the writes after it up to the next sync. Clones share
/// the bytes (a test keeps one to look at the store after the image is dropped).
#[cfg(test)]
#[derive(Default, Clone)]
pub struct Mem {
    inner: std::sync::Arc<std::sync::Mutex<MemInner>>,
}

#[cfg(test)]
#[derive(Default)]
pub struct MemInner {
    pub data: Vec<u8>,
    base: Vec<u8>,
    /// Every write (offset, bytes), in order.
    pub writes: Vec<(u64, Vec<u8>)>,
    /// How many writes had been made at each sync.
    syncs: Vec<usize>,
    /// Writes fail with EIO once this many more succeeded (None: never).
    pub fail_after: Option<u64>,
}

#[cfg(test)]
impl Mem {
    pub fn new(bytes: Vec<u8>) -> Self {
        let inner = MemInner {
            base: bytes.clone(),
            data: bytes,
            ..MemInner::default()
        };
        Self {
            inner: std::sync::Arc::new(std::sync::Mutex::new(inner)),
        }
    }

    /// Looks at the state (under the store's lock).
    pub fn with<R>(&self, f: impl FnOnce(&mut MemInner) -> R) -> R {
        f(&mut self.inner.lock().unwrap())
    }

    /// The current bytes.
    pub fn bytes(&self) -> Vec<u8> {
        self.with(|m| m.data.clone())
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
    /// Syncs so far.
    pub fn epochs(&self) -> usize {
        self.syncs.len()
    }

    /// Writes since sync `k` (0: since the start) up to the next one.
    pub fn epoch_writes(&self, k: usize) -> usize {
        let start = if k == 0 { 0 } else { self.syncs[k - 1] };
        let end = self.syncs.get(k).copied().unwrap_or(self.writes.len());
        end - start
    }

    /// What a crash after `k` syncs could leave: every write before the k-th sync,
    /// then the writes of the epoch after it that `keep` picks (by index in it).
    pub fn crashed_at(&self, k: usize, keep: impl Fn(usize) -> bool) -> Vec<u8> {
        let start = if k == 0 { 0 } else { self.syncs[k - 1] };
        let mut v = self.base.clone();
        for (off, b) in &self.writes[..start] {
            apply(&mut v, *off, b);
        }
        for (i, (off, b)) in self.writes[start..start + self.epoch_writes(k)]
            .iter()
            .enumerate()
        {
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
            .is_none_or(|e| e > 1 << 32)
        {
            return Err(io::Error::from_raw_os_error(libc::EFBIG));
        }
        apply(&mut m.data, offset, buf);
        m.writes.push((offset, buf.to_vec()));
        Ok(())
    }
    fn sync_data(&self) -> io::Result<()> {
        let mut m = self.inner.lock().unwrap();
        let n = m.writes.len();
        m.syncs.push(n);
        Ok(())
    }
    fn byte_len(&self) -> io::Result<u64> {
        Ok(self.inner.lock().unwrap().data.len() as u64)
    }
}
