//! The state the resolution passes share: who claimed which ports, MMIO ranges, GSIs
//! and PCI addresses, the bus tree, and one plan per device that the passes fill in.

use std::collections::BTreeMap;

use super::resources::{Claims, Owner};
use super::topology::Bus;
use super::{BusKind, IoRange, Kind, MmioRange};
use crate::board::Board;
use crate::config::model::{DeviceCfg, Machine};
use crate::config::reader::{PciAddr, Sp};
use crate::config::source::{Diagnostic, Loc};

pub(super) struct Ctx<'a> {
    pub m: &'a Machine,
    pub board: &'static Board,
    pub io: Claims,
    pub mmio: Claims,
    pub gsis: Claims,
    /// PCI addresses taken on each bus, by bus id.
    pub pci: BTreeMap<String, Vec<(PciAddr, Owner)>>,
    pub buses: Vec<Bus>,
    /// Ids of buses that were rejected (devices on them are not reported again).
    pub broken: Vec<String>,
    /// RAM below and above 4 GiB.
    pub ram: (u64, u64),
    pub diags: Vec<Diagnostic>,
}

/// One device while it is resolved.
pub(super) struct Plan<'a> {
    pub cfg: &'a DeviceCfg,
    pub kind: Kind,
    /// "device `com1`", for messages.
    pub what: String,
    pub bus: Option<String>,
    pub bus_kind: Option<BusKind>,
    pub pci: Option<(String, PciAddr)>,
    /// The base port (ISA devices), explicit or assigned.
    pub io_base: Option<u16>,
    pub io: Vec<IoRange>,
    pub irqs: Vec<u32>,
    pub mmio: Vec<MmioRange>,
    /// The GSI the device's INTA reaches (PCI devices).
    pub pci_gsi: Option<u32>,
}

impl Plan<'_> {
    pub fn on(&self, kind: BusKind) -> bool {
        self.bus_kind == Some(kind)
    }

    pub fn on_pci(&self) -> bool {
        self.bus_kind.is_some_and(BusKind::is_pci)
    }
}

pub(super) fn owner(what: &str, loc: &Loc) -> Owner {
    Owner {
        what: what.to_string(),
        loc: loc.clone(),
        share: None,
    }
}

pub(super) fn loc_of<T>(v: &Option<Sp<T>>, fallback: &Loc) -> Loc {
    v.as_ref()
        .map_or_else(|| fallback.clone(), |s| s.loc.clone())
}

impl Ctx<'_> {
    /// An owner for the board's chipset.
    pub fn chipset(&self, what: &str) -> Owner {
        owner(
            &format!("the {} chipset's {what}", self.board.name),
            &self.m.board.loc,
        )
    }

    /// Claims PCI address `addr` on `bus` for `who`; false (and an error) when taken.
    pub fn take_pci(&mut self, bus: &str, addr: PciAddr, who: Owner) -> bool {
        let list = self.pci.entry(bus.to_string()).or_default();
        if let Some((_, other)) = list.iter().find(|(a, _)| *a == addr) {
            let d = Diagnostic::new(
                &who.loc,
                format!(
                    "PCI address {addr} on bus `{bus}` of {} is taken by {}",
                    who.what, other.what
                ),
            )
            .label("conflict")
            .note_at(&other.loc, format!("{} is here", other.what));
            self.diags.push(d);
            return false;
        }
        list.push((addr, who));
        true
    }

    /// Slots taken on `bus`.
    pub fn used_slots(&self, bus: &str) -> Vec<u8> {
        self.pci
            .get(bus)
            .map(|l| l.iter().map(|(a, _)| a.slot).collect())
            .unwrap_or_default()
    }

    /// Where automatic slot assignment starts on `bus`.
    pub fn first_slot(&self, bus: &str) -> u8 {
        self.board
            .pci
            .as_ref()
            .filter(|r| r.id == bus)
            .map_or(0, |r| r.first_auto_slot)
    }

    /// Whether a location is in one of the user's files (not a board's built-in text).
    pub fn in_user_file(&self, loc: &Loc) -> bool {
        loc.src.0 < self.m.board_src_start
    }
}
