//! Who owns which address range: I/O ports, MMIO and GSIs. The second claimant of an
//! overlapping range gets an error naming both parties.

use crate::config::source::{Diagnostic, Loc};

/// Who claims a resource, for messages.
#[derive(Debug, Clone)]
pub struct Owner {
    /// "device `com1`", "the chipset's PCI configuration ports".
    pub what: String,
    pub loc: Loc,
    /// Several claims with the same share group may overlap (serial ports on one IRQ,
    /// PCI INTx lines).
    pub share: Option<&'static str>,
}

#[derive(Debug, Default)]
pub struct Claims {
    /// "I/O ports", "MMIO", "GSI".
    noun: &'static str,
    items: Vec<(u64, u64, Owner)>,
}

impl Claims {
    pub fn new(noun: &'static str) -> Self {
        Self {
            noun,
            items: Vec::new(),
        }
    }

    fn describe(&self, start: u64, end: u64) -> String {
        if self.noun == "GSI" {
            format!("GSI {start}")
        } else if end - start == 1 {
            format!("{} {start:#x}", self.noun)
        } else {
            format!("{} {start:#x}-{:#x}", self.noun, end - 1)
        }
    }

    /// The owner of anything overlapping `[start, start + len)`.
    pub fn taken(&self, start: u64, len: u64) -> Option<&Owner> {
        let end = start.saturating_add(len);
        self.items
            .iter()
            .find(|(s, e, _)| start < *e && *s < end)
            .map(|(_, _, o)| o)
    }

    /// Claims `[start, start + len)` for `owner`; on overlap records an error at
    /// `owner.loc` with a note at the other party, and returns false.
    pub fn claim(
        &mut self,
        start: u64,
        len: u64,
        owner: Owner,
        diags: &mut Vec<Diagnostic>,
    ) -> bool {
        let end = start.saturating_add(len.max(1));
        for (s, e, other) in &self.items {
            if start < *e && *s < end {
                if owner.share.is_some() && owner.share == other.share {
                    continue;
                }
                diags.push(
                    Diagnostic::new(
                        &owner.loc,
                        format!(
                            "{} of {} overlap {} of {}",
                            self.describe(start, end),
                            owner.what,
                            self.describe(*s, *e),
                            other.what
                        ),
                    )
                    .label("conflict")
                    .note_at(&other.loc, format!("{} is here", other.what)),
                );
                return false;
            }
        }
        self.items.push((start, end, owner));
        true
    }
}
