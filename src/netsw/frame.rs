//! Frame buffers for the switch's queues, recycled so that moving frames allocates
//! nothing once the pool has warmed up: a queued frame borrows a buffer from the
//! [`Pool`] and gives it back when it is sent or dropped.

/// Buffers up to this size are pooled together; larger frames (jumbo, up to 64 KiB)
/// use a second pool.
pub const SMALL: usize = 2048;
pub const LARGE: usize = 65536;
/// Free buffers kept per size; more are freed.
const KEEP_SMALL: usize = 8192;
const KEEP_LARGE: usize = 64;

/// One Ethernet frame owned by a queue.
#[derive(Debug)]
pub struct Frame(Vec<u8>);

impl Frame {
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[derive(Debug, Default)]
pub struct Pool {
    small: Vec<Vec<u8>>,
    large: Vec<Vec<u8>>,
    /// Buffers ever allocated (a figure for status and tests).
    pub allocated: u64,
}

impl Pool {
    /// A copy of `data` (cut to [`LARGE`] bytes) in a recycled buffer.
    pub fn copy(&mut self, data: &[u8]) -> Frame {
        let data = &data[..data.len().min(LARGE)];
        let (list, cap) = if data.len() <= SMALL {
            (&mut self.small, SMALL)
        } else {
            (&mut self.large, LARGE)
        };
        let mut buf = list.pop().unwrap_or_else(|| {
            self.allocated += 1;
            Vec::with_capacity(cap)
        });
        buf.clear();
        buf.extend_from_slice(data);
        Frame(buf)
    }

    /// Takes a frame's buffer back.
    pub fn give(&mut self, f: Frame) {
        let buf = f.0;
        let (list, keep) = if buf.capacity() <= SMALL {
            (&mut self.small, KEEP_SMALL)
        } else {
            (&mut self.large, KEEP_LARGE)
        };
        if list.len() < keep {
            list.push(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_recycled() {
        let mut p = Pool::default();
        let a = p.copy(&[1; 60]);
        let b = p.copy(&[2; 9000]);
        assert_eq!((a.bytes(), b.len()), (&[1u8; 60][..], 9000));
        p.give(a);
        p.give(b);
        for _ in 0..100 {
            let f = p.copy(&[3; 1514]);
            let g = p.copy(&[4; 5000]);
            p.give(f);
            p.give(g);
        }
        assert_eq!(p.allocated, 2);
        assert_eq!(p.copy(&[0; 70000]).len(), LARGE);
    }
}
