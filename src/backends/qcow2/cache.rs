//! A small least-recently-used cache of one-cluster tables (L2 tables, refcount
//! blocks) keyed by host offset. Dirty tables are never dropped: the owner writes
//! them out (in the order crash safety needs) and marks them clean.

/// One cached table.
pub struct Table<T> {
    /// Host offset of the cluster it came from (or goes to).
    pub off: u64,
    pub data: T,
    /// Changed in memory, not yet written.
    pub dirty: bool,
    /// Some on-disk pointer (L1 entry) already leads here; a table not yet linked can
    /// be written before the data it points to is durable.
    pub linked: bool,
}

pub struct Lru<T> {
    /// Most recently used last.
    items: Vec<Table<T>>,
    cap: usize,
}

impl<T> Lru<T> {
    pub fn new(cap: usize) -> Self {
        Self {
            items: Vec::new(),
            cap: cap.max(2),
        }
    }

    pub fn cap(&self) -> usize {
        self.cap
    }

    /// The index of the table at `off`, made most recent.
    pub fn find(&mut self, off: u64) -> Option<usize> {
        let pos = self.items.iter().position(|t| t.off == off)?;
        let t = self.items.remove(pos);
        self.items.push(t);
        Some(self.items.len() - 1)
    }

    /// Adds a table (most recent) and drops the least recent clean ones past the
    /// capacity; returns its index.
    pub fn insert(&mut self, t: Table<T>) -> usize {
        while self.items.len() >= self.cap {
            match self.items.iter().position(|t| !t.dirty) {
                Some(pos) => {
                    self.items.remove(pos);
                }
                None => break,
            }
        }
        self.items.push(t);
        self.items.len() - 1
    }

    pub fn get(&self, i: usize) -> &Table<T> {
        &self.items[i]
    }

    pub fn get_mut(&mut self, i: usize) -> &mut Table<T> {
        &mut self.items[i]
    }

    pub fn dirty_count(&self) -> usize {
        self.items.iter().filter(|t| t.dirty).count()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Table<T>> {
        self.items.iter_mut()
    }
}
