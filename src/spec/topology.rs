//! The bus tree: the board's root buses plus the bridges and root ports the machine
//! file declares. Checks parents, kinds and cycles; numbers PCI buses depth-first in
//! address order, as firmware does when it enumerates them.

use super::{BusKind, BusSpec};
use crate::board::{Board, BoardKind};
use crate::config::model::{BusCfg, Machine};
use crate::config::source::{did_you_mean, Diagnostic, Loc};

/// A bus while the spec is being built.
#[derive(Debug, Clone)]
pub struct Bus {
    pub spec: BusSpec,
    /// Where a declared bus was written (None for the board's roots).
    pub cfg: Option<BusCfg>,
}

/// Rejected buses' ids are added to `broken`, so devices on them are not reported again.
pub fn resolve(
    m: &Machine,
    board: &Board,
    broken: &mut Vec<String>,
    diags: &mut Vec<Diagnostic>,
) -> Vec<Bus> {
    let mut buses: Vec<Bus> = board
        .root_buses()
        .into_iter()
        .map(|(id, _)| {
            let kind = match id {
                "sysbus" => BusKind::Sysbus,
                "isa" => BusKind::Isa,
                _ if board.pci.as_ref().is_some_and(|p| p.express) => BusKind::PcieRoot,
                _ => BusKind::PciRoot,
            };
            let number = kind.is_pci().then_some(0);
            Bus {
                spec: BusSpec {
                    id: id.into(),
                    kind,
                    parent: None,
                    addr: None,
                    number,
                    port: None,
                },
                cfg: None,
            }
        })
        .collect();
    let root_pci = board.pci.as_ref().map(|p| p.id);

    for b in &m.buses {
        if let Some(root) = buses
            .iter()
            .find(|r| r.spec.id == b.id.value && r.cfg.is_none())
        {
            diags.push(
                Diagnostic::new(
                    &b.id.loc,
                    format!(
                        "bus id `{}` is taken by the board's {} bus",
                        b.id.value,
                        root.spec.kind.name()
                    ),
                )
                .label("choose another id"),
            );
            continue;
        }
        let kind = match b.kind.value.as_str() {
            "pcie-root-port" => BusKind::PcieRootPort,
            _ => BusKind::PciBridge,
        };
        let Some(root) = root_pci else {
            diags.push(
                Diagnostic::new(
                    &b.kind.loc,
                    format!(
                        "board {} has no PCI, so it can't have a {}",
                        board.name, b.kind.value
                    ),
                )
                .label("needs a PCI board (pc or q35)"),
            );
            broken.push(b.id.value.clone());
            continue;
        };
        if kind == BusKind::PcieRootPort && m.board.value != BoardKind::Q35 {
            diags.push(
                Diagnostic::new(
                    &b.kind.loc,
                    format!(
                        "a pcie-root-port needs PCI Express; board {} is conventional PCI",
                        board.name
                    ),
                )
                .label("use board = \"q35\", or kind = \"pci-bridge\""),
            );
            broken.push(b.id.value.clone());
            continue;
        }
        let parent = b
            .parent
            .as_ref()
            .map_or(root.to_string(), |p| p.value.clone());
        buses.push(Bus {
            spec: BusSpec {
                id: b.id.value.clone(),
                kind,
                parent: Some(parent),
                addr: None,
                number: None,
                port: None,
            },
            cfg: Some(b.clone()),
        });
    }

    // Parents: they must exist, be PCI, and not lead round in a circle.
    let mut bad = vec![false; buses.len()];
    for i in 0..buses.len() {
        let (Some(cfg), Some(parent)) = (&buses[i].cfg, &buses[i].spec.parent) else {
            continue;
        };
        let loc = cfg.parent.as_ref().map_or(&cfg.loc, |p| &p.loc);
        let Some(p) = buses.iter().find(|b| &b.spec.id == parent) else {
            let ids: Vec<&str> = buses.iter().map(|b| b.spec.id.as_str()).collect();
            let mut d = Diagnostic::new(
                loc,
                format!("bus `{}` sits on unknown bus `{parent}`", buses[i].spec.id),
            );
            d = match did_you_mean(parent, ids.iter().copied()) {
                Some(s) => d.label(format!("did you mean `{s}`?")),
                None => d.label("no such bus"),
            };
            diags.push(d.note(format!("buses: {}", ids.join(", "))));
            bad[i] = true;
            continue;
        };
        if !p.spec.kind.is_pci() {
            diags.push(
                Diagnostic::new(
                    loc,
                    format!(
                        "bus `{}` is a PCI bridge; it can't sit on the {} bus `{parent}`",
                        buses[i].spec.id,
                        p.spec.kind.name()
                    ),
                )
                .label("not a PCI bus"),
            );
            bad[i] = true;
        } else if buses[i].spec.kind == BusKind::PcieRootPort && p.spec.kind != BusKind::PcieRoot {
            diags.push(
                Diagnostic::new(loc, format!("PCIe root port `{}` must sit on the root complex `pcie.0`, not on `{parent}`", buses[i].spec.id))
                    .label("root ports plug into the root complex"),
            );
            bad[i] = true;
        }
    }
    for i in 0..buses.len() {
        if bad[i] || buses[i].cfg.is_none() {
            continue;
        }
        if let Some(cycle) = find_cycle(&buses, i) {
            let loc = buses[i]
                .cfg
                .as_ref()
                .map(|c| c.loc.clone())
                .unwrap_or_else(|| m.anchor.clone());
            diags.push(
                Diagnostic::new(&loc, format!("buses form a cycle: {}", cycle.join(" → ")))
                    .label("a bridge can't sit behind itself"),
            );
            for b in buses
                .iter()
                .enumerate()
                .filter(|(_, b)| cycle.contains(&b.spec.id))
                .map(|(j, _)| j)
                .collect::<Vec<_>>()
            {
                bad[b] = true;
            }
        }
    }
    broken.extend(
        buses
            .iter()
            .zip(&bad)
            .filter(|(_, b)| **b)
            .map(|(x, _)| x.spec.id.clone()),
    );
    let mut i = 0;
    buses.retain(|_| {
        i += 1;
        !bad[i - 1]
    });
    buses
}

/// The chain of parents from bus `i` back to itself, if there is one.
fn find_cycle(buses: &[Bus], i: usize) -> Option<Vec<String>> {
    let mut seen = vec![buses[i].spec.id.clone()];
    let mut cur = buses[i].spec.parent.clone()?;
    for _ in 0..=buses.len() {
        if cur == buses[i].spec.id {
            seen.push(cur);
            return Some(seen);
        }
        let b = buses.iter().find(|b| b.spec.id == cur)?;
        seen.push(cur);
        cur = b.spec.parent.clone()?;
    }
    None
}

/// The buses as the spec keeps them: the roots, then the bridges in bus-number order
/// (so a bridge always comes after its parent), PCIe root ports numbered in that order.
pub fn finish(buses: Vec<Bus>) -> Vec<BusSpec> {
    let mut out: Vec<BusSpec> = buses.into_iter().map(|b| b.spec).collect();
    out.sort_by_key(|b| (b.parent.is_some(), b.number));
    let mut port = 0u8;
    for b in out.iter_mut().filter(|b| b.kind == BusKind::PcieRootPort) {
        b.port = Some(port);
        port = port.wrapping_add(1);
    }
    out
}

/// Numbers bridges' secondary buses depth-first, children in (slot, function) order.
/// Returns false (with an error) when there are more than 255 bridges.
pub fn number_buses(buses: &mut [Bus], anchor: &Loc, diags: &mut Vec<Diagnostic>) {
    let mut next = 1u32;
    let roots: Vec<String> = buses
        .iter()
        .filter(|b| b.spec.number == Some(0))
        .map(|b| b.spec.id.clone())
        .collect();
    for r in roots {
        number_below(buses, &r, &mut next);
    }
    if next > 256 {
        diags.push(
            Diagnostic::new(
                anchor,
                format!("{} PCI buses are more than the 256 PCI allows", next),
            )
            .label("too many bridges"),
        );
    }
}

fn number_below(buses: &mut [Bus], parent: &str, next: &mut u32) {
    let mut kids: Vec<(crate::config::reader::PciAddr, usize)> = buses
        .iter()
        .enumerate()
        .filter(|(_, b)| b.spec.parent.as_deref() == Some(parent))
        .filter_map(|(i, b)| b.spec.addr.map(|a| (a, i)))
        .collect();
    kids.sort();
    for (_, i) in kids {
        buses[i].spec.number = Some((*next).min(255) as u8);
        *next += 1;
        let id = buses[i].spec.id.clone();
        number_below(buses, &id, next);
    }
}

/// Swizzles interrupt pin `pin` (1 = INTA) of a device at `slot` on `bus` up through
/// the bridges; returns (root-bus slot, pin at the root).
pub fn swizzle_to_root(buses: &[Bus], bus: &str, slot: u8, pin: u8) -> (u8, u8) {
    let (mut bus, mut slot, mut pin) = (bus.to_string(), slot, pin);
    for _ in 0..=buses.len() {
        let Some(b) = buses.iter().find(|b| b.spec.id == bus) else {
            break;
        };
        let (Some(parent), Some(addr)) = (&b.spec.parent, b.spec.addr) else {
            break;
        };
        // The PCI-to-PCI bridge specification's rule: INTx of device D behind the
        // bridge appears as INT((x + D) mod 4) on the bridge's own pin.
        pin = ((pin - 1 + slot) % 4) + 1;
        slot = addr.slot;
        bus = parent.clone();
    }
    (slot, pin)
}
