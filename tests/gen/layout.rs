//! What the generator has handed out so far: ISA ports and COM ports, PCI slots per
//! bus, so that every explicit address it writes is free.

use super::Rng;

/// Ports a generated ISA device may be moved to (none decoded by anything else).
const PORT_POOL: &[u16] = &[
    0x100, 0x108, 0x110, 0x200, 0x208, 0x220, 0x228, 0x240, 0x280, 0x2a0, 0x300, 0x308, 0x340,
    0x500,
];
const COM_PORTS: &[u16] = &[0x3f8, 0x2f8, 0x3e8, 0x2e8];

pub struct Isa {
    used: Vec<(u16, u16)>,
    com_free: Vec<u16>,
}

impl Isa {
    pub fn for_board(_board: &str) -> Self {
        let used = vec![
            (0x20, 2),
            (0xa0, 2),
            (0x4d0, 2),
            (0x40, 4),
            (0x60, 5),
            (0x70, 2),
            (0x80, 1),
            (0xcf8, 8),
            (0x510, 12),
            // The PM block and where the generator may move it.
            (0x600, 0x280),
            (0x402, 1),
            (0x3b0, 0x30),
            (0x1ce, 2),
        ];
        Self {
            used,
            com_free: COM_PORTS.to_vec(),
        }
    }

    fn free(&self, base: u16, len: u16) -> bool {
        let end = base as u32 + len as u32;
        self.used
            .iter()
            .all(|&(b, l)| end <= b as u32 || base as u32 >= b as u32 + l as u32)
    }

    pub fn take(&mut self, base: u16, len: u16) {
        self.used.push((base, len));
    }

    pub fn take_com(&mut self, port: u16) {
        self.com_free.retain(|p| *p != port);
    }

    /// Reserves the COM port an automatic serial port will get; false when none is left.
    pub fn take_any_com(&mut self) -> bool {
        if self.com_free.is_empty() {
            return false;
        }
        self.com_free.remove(0);
        true
    }

    pub fn pick_com(&mut self, rng: &mut Rng) -> Option<u16> {
        if self.com_free.is_empty() {
            return None;
        }
        let i = rng.below(self.com_free.len());
        Some(self.com_free.remove(i))
    }

    pub fn pick_port(&mut self, rng: &mut Rng, len: u16) -> Option<u16> {
        let free: Vec<u16> = PORT_POOL
            .iter()
            .copied()
            .filter(|p| self.free(*p, len))
            .collect();
        if free.is_empty() {
            return None;
        }
        let p = rng.pick(&free);
        self.take(p, len);
        Some(p)
    }
}

pub struct PBus {
    pub id: String,
    pub root_port: bool,
    /// (slot, function) taken by the chipset or an explicit address.
    used: Vec<(u8, u8)>,
    /// Slots whose function 0 the generator placed (candidates for functions 1-7).
    mine: Vec<u8>,
    children: usize,
}

impl PBus {
    fn new(id: &str, root_port: bool, used: Vec<(u8, u8)>) -> Self {
        Self {
            id: id.to_string(),
            root_port,
            used,
            mine: Vec::new(),
            children: 0,
        }
    }

    fn has_room(&self) -> bool {
        if self.root_port {
            self.children == 0
        } else {
            self.children < 20
        }
    }
}

pub struct Pci {
    pub express: bool,
    pub buses: Vec<PBus>,
}

impl Pci {
    pub fn for_board(board: &str) -> Option<Self> {
        let (id, express, used): (&str, bool, Vec<(u8, u8)>) = match board {
            "pc" => ("pci.0", false, vec![(0, 0), (1, 0), (1, 1), (1, 2), (1, 3)]),
            "q35" => (
                "pcie.0",
                true,
                vec![(0, 0), (0x1f, 0), (0x1f, 2), (0x1f, 3)],
            ),
            _ => return None,
        };
        Some(Self {
            express,
            buses: vec![PBus::new(id, false, used)],
        })
    }

    pub fn add_bus(&mut self, id: &str, root_port: bool) {
        self.buses.push(PBus::new(id, root_port, Vec::new()));
    }

    /// A slot taken by a board default at its fixed address.
    pub fn claim(&mut self, bus: usize, slot: u8) {
        self.buses[bus].used.push((slot, 0));
        self.buses[bus].children += 1;
    }

    /// A bus with room for one more function.
    pub fn pick_bus(&self, rng: &mut Rng) -> Option<usize> {
        let room: Vec<usize> = (0..self.buses.len())
            .filter(|&i| self.buses[i].has_room())
            .collect();
        (!room.is_empty()).then(|| rng.pick(&room))
    }

    /// Takes room on `bus`; with `explicit`, returns the TOML value of a free address.
    pub fn place(&mut self, rng: &mut Rng, bus: usize, explicit: bool) -> Option<String> {
        let b = &mut self.buses[bus];
        b.children += 1;
        if !explicit {
            return None;
        }
        if b.root_port {
            b.used.push((0, 0));
            return Some(addr_value(rng, 0, 0));
        }
        if !b.mine.is_empty() && rng.chance(15) {
            let slot = rng.pick(&b.mine);
            if let Some(func) = (1..8).find(|f| !b.used.contains(&(slot, *f))) {
                b.used.push((slot, func));
                return Some(addr_value(rng, slot, func));
            }
        }
        let free: Vec<u8> = (0..32u8)
            .filter(|s| !b.used.iter().any(|(u, _)| u == s))
            .collect();
        let slot = rng.pick(&free);
        b.used.push((slot, 0));
        b.mine.push(slot);
        Some(addr_value(rng, slot, 0))
    }
}

/// The ways a PCI address can be written: "03.0", "03", "3", 3.
fn addr_value(rng: &mut Rng, slot: u8, func: u8) -> String {
    if func != 0 {
        return format!("\"{slot:02x}.{func}\"");
    }
    match rng.below(6) {
        0 => format!("\"{slot:02x}\""),
        1 => format!("\"{slot:x}\""),
        2 => slot.to_string(),
        _ => format!("\"{slot:02x}.0\""),
    }
}
