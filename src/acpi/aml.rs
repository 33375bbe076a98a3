//! A small AML (ACPI Machine Language) encoder: the subset a static DSDT needs.
//!
//! Terms are built as byte vectors by plain functions (`name`, `device`, `scope`,
//! `package`, ...) that nest by taking already-encoded children, so a DSDT reads like
//! its ASL. Resource templates (`_CRS`) are built with [`ResourceTemplate`].
//! Encodings follow the ACPI 6.5 specification, chapter 20 (AML grammar) and section
//! 6.4 (resource data types).

/// Encodes a PkgLength for a body of `body_len` bytes (the length counts itself).
pub fn pkg_length(body_len: usize) -> Vec<u8> {
    // One byte holds up to 63; n-byte forms hold 4 + 8 * (n - 1) bits.
    let total = |n: usize| body_len + n;
    if total(1) <= 0x3f {
        return vec![total(1) as u8];
    }
    let n = if total(2) < 1 << 12 {
        2
    } else if total(3) < 1 << 20 {
        3
    } else {
        4
    };
    let len = total(n);
    let mut v = vec![(((n - 1) as u8) << 6) | (len & 0xf) as u8];
    for i in 0..n - 1 {
        v.push((len >> (4 + 8 * i)) as u8);
    }
    v
}

/// A 4-character name segment, padded with `_` (e.g. "PCI0", "_S5", "ISA").
fn name_seg(s: &str) -> [u8; 4] {
    let mut seg = [b'_'; 4];
    for (d, c) in seg.iter_mut().zip(s.bytes()) {
        *d = c;
    }
    seg
}

/// Encodes a NameString: an optional `\` root prefix or `^` parent prefixes, then
/// segments separated by dots (`\_SB.PCI0`, `_HID`, `^ISA`).
pub fn name_string(path: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = path;
    if let Some(r) = rest.strip_prefix('\\') {
        out.push(b'\\');
        rest = r;
    }
    while let Some(r) = rest.strip_prefix('^') {
        out.push(b'^');
        rest = r;
    }
    let segs: Vec<&str> = rest.split('.').filter(|s| !s.is_empty()).collect();
    match segs.len() {
        0 => out.push(0x00), // NullName
        1 => {}
        2 => out.push(0x2e), // DualNamePrefix
        n => {
            out.push(0x2f); // MultiNamePrefix
            out.push(n as u8);
        }
    }
    for s in segs {
        out.extend_from_slice(&name_seg(s));
    }
    out
}

/// An integer constant in its shortest encoding.
pub fn integer(v: u64) -> Vec<u8> {
    match v {
        0 => vec![0x00],                 // ZeroOp
        1 => vec![0x01],                 // OneOp
        u64::MAX => vec![0xff],          // OnesOp
        2..=0xff => vec![0x0a, v as u8], // BytePrefix
        0x100..=0xffff => {
            let mut b = vec![0x0b];
            b.extend_from_slice(&(v as u16).to_le_bytes());
            b
        }
        0x1_0000..=0xffff_ffff => {
            let mut b = vec![0x0c];
            b.extend_from_slice(&(v as u32).to_le_bytes());
            b
        }
        _ => {
            let mut b = vec![0x0e];
            b.extend_from_slice(&v.to_le_bytes());
            b
        }
    }
}

/// A DWordConst, always 4 bytes of payload (how ASL encodes EisaId).
fn dword_const(v: u32) -> Vec<u8> {
    let mut b = vec![0x0c];
    b.extend_from_slice(&v.to_le_bytes());
    b
}

/// A string constant (ASCII, NUL-terminated in AML).
pub fn string(s: &str) -> Vec<u8> {
    let mut b = vec![0x0d];
    b.extend(s.bytes().filter(|c| (1..0x80).contains(c)));
    b.push(0);
    b
}

/// Compresses a 7-character EISA ID ("PNP0A03") into its 32-bit form.
pub fn eisa_id_value(id: &str) -> u32 {
    let b = id.as_bytes();
    let ch = |i: usize| u32::from(b.get(i).copied().unwrap_or(b'@').wrapping_sub(0x40) & 0x1f);
    let hex = |i: usize| {
        b.get(i)
            .and_then(|c| (*c as char).to_digit(16))
            .unwrap_or(0)
    };
    let v = (ch(0) << 26)
        | (ch(1) << 21)
        | (ch(2) << 16)
        | (hex(3) << 12)
        | (hex(4) << 8)
        | (hex(5) << 4)
        | hex(6);
    v.swap_bytes()
}

/// `EisaId("PNP0A03")` as a data object.
pub fn eisa_id(id: &str) -> Vec<u8> {
    dword_const(eisa_id_value(id))
}

/// Wraps `body` as `op PkgLength body`.
fn with_pkg(op: &[u8], body: &[u8]) -> Vec<u8> {
    let mut v = op.to_vec();
    v.extend(pkg_length(body.len()));
    v.extend_from_slice(body);
    v
}

/// `Name (path, data)`.
pub fn name(path: &str, data: Vec<u8>) -> Vec<u8> {
    let mut v = vec![0x08];
    v.extend(name_string(path));
    v.extend(data);
    v
}

/// `Scope (path) { terms }`.
pub fn scope(path: &str, terms: &[Vec<u8>]) -> Vec<u8> {
    let mut body = name_string(path);
    body.extend(terms.concat());
    with_pkg(&[0x10], &body)
}

/// `Device (path) { terms }`.
pub fn device(path: &str, terms: &[Vec<u8>]) -> Vec<u8> {
    let mut body = name_string(path);
    body.extend(terms.concat());
    with_pkg(&[0x5b, 0x82], &body)
}

/// `Method (path, args, NotSerialized) { terms }`.
pub fn method(path: &str, args: u8, terms: &[Vec<u8>]) -> Vec<u8> {
    let mut body = name_string(path);
    body.push(args & 7);
    body.extend(terms.concat());
    with_pkg(&[0x14], &body)
}

/// `Return (data)`.
pub fn ret(data: Vec<u8>) -> Vec<u8> {
    let mut v = vec![0xa4];
    v.extend(data);
    v
}

/// `Package () { elements }` (at most 255 elements).
pub fn package(elements: &[Vec<u8>]) -> Vec<u8> {
    let mut body = vec![elements.len().min(255) as u8];
    body.extend(elements.concat());
    with_pkg(&[0x12], &body)
}

/// `Buffer () { bytes }`.
pub fn buffer(bytes: &[u8]) -> Vec<u8> {
    let mut body = integer(bytes.len() as u64);
    body.extend_from_slice(bytes);
    with_pkg(&[0x11], &body)
}

/// Address space resource type (section 6.4.3.5).
#[derive(Clone, Copy)]
enum Space {
    Memory = 0,
    Io = 1,
    Bus = 2,
}

/// Builds the bytes of a `ResourceTemplate () { ... }`.
#[derive(Default)]
pub struct ResourceTemplate {
    bytes: Vec<u8>,
}

/// Address descriptor general flags: a bridge window that produces the range, with
/// fixed minimum and maximum (ResourceProducer, PosDecode, MinFixed, MaxFixed).
const PRODUCER_FIXED: u8 = 0x0c;

impl ResourceTemplate {
    pub fn new() -> Self {
        Self::default()
    }

    /// `IO (Decode16, base, base, 1, len)`.
    pub fn io(mut self, base: u16, len: u8) -> Self {
        self.bytes.extend([0x47, 0x01]);
        self.bytes.extend(base.to_le_bytes());
        self.bytes.extend(base.to_le_bytes());
        self.bytes.extend([1, len]);
        self
    }

    /// `IRQNoFlags () { irq }` (ISA IRQs 0-15: edge, active high).
    pub fn irq_no_flags(mut self, irq: u8) -> Self {
        let mask: u16 = 1 << (irq & 15);
        self.bytes.push(0x22);
        self.bytes.extend(mask.to_le_bytes());
        self
    }

    /// `Memory32Fixed (ReadWrite, base, len)`.
    pub fn memory32_fixed(mut self, base: u32, len: u32) -> Self {
        self.bytes.extend([0x86, 9, 0, 1]);
        self.bytes.extend(base.to_le_bytes());
        self.bytes.extend(len.to_le_bytes());
        self
    }

    /// `Interrupt (ResourceConsumer, Level|Edge, ActiveHigh, Exclusive) { gsi }`.
    pub fn interrupt(mut self, gsi: u32, level: bool) -> Self {
        // Flags: bit 0 consumer, bit 1 edge (0 = level), bit 2 active low, bit 3 shared.
        let flags = 0x01 | if level { 0 } else { 0x02 };
        self.bytes.extend([0x89, 6, 0, flags, 1]);
        self.bytes.extend(gsi.to_le_bytes());
        self
    }

    fn word(mut self, space: Space, tflags: u8, min: u16, max: u16) -> Self {
        self.bytes
            .extend([0x88, 13, 0, space as u8, PRODUCER_FIXED, tflags]);
        let len = u32::from(max) - u32::from(min) + 1;
        for v in [0u16, min, max, 0, len as u16] {
            self.bytes.extend(v.to_le_bytes());
        }
        self
    }

    /// `WordBusNumber (ResourceProducer, MinFixed, MaxFixed, PosDecode, 0, min, max, 0, n)`.
    pub fn word_bus(self, min: u8, max: u8) -> Self {
        self.word(Space::Bus, 0, min.into(), max.into())
    }

    /// `WordIO (ResourceProducer, MinFixed, MaxFixed, PosDecode, EntireRange, ...)`.
    pub fn word_io(self, min: u16, max: u16) -> Self {
        self.word(Space::Io, 0x03, min, max)
    }

    /// `DWordMemory (ResourceProducer, PosDecode, MinFixed, MaxFixed, Cacheable,
    /// ReadWrite, 0, min, max, 0, len)`.
    pub fn dword_memory(mut self, min: u32, max: u32) -> Self {
        self.bytes
            .extend([0x87, 23, 0, Space::Memory as u8, PRODUCER_FIXED, 0x03]);
        for v in [0u32, min, max, 0, max - min + 1] {
            self.bytes.extend(v.to_le_bytes());
        }
        self
    }

    /// `QWordMemory (ResourceProducer, PosDecode, MinFixed, MaxFixed, Cacheable,
    /// ReadWrite, 0, min, max, 0, len)`.
    pub fn qword_memory(mut self, min: u64, max: u64) -> Self {
        self.bytes
            .extend([0x8a, 43, 0, Space::Memory as u8, PRODUCER_FIXED, 0x03]);
        for v in [0u64, min, max, 0, max - min + 1] {
            self.bytes.extend(v.to_le_bytes());
        }
        self
    }

    /// The template as a Buffer object, with its end tag.
    pub fn build(mut self) -> Vec<u8> {
        self.bytes.extend([0x79, 0x00]);
        buffer(&self.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkg_length_forms() {
        assert_eq!(pkg_length(0), vec![1]);
        assert_eq!(pkg_length(62), vec![63]);
        // 63 + 2 = 65 = 0x41: two bytes, low nibble 1, then 0x04.
        assert_eq!(pkg_length(63), vec![0x41, 0x04]);
        assert_eq!(pkg_length(0xffd), vec![0x4f, 0xff]);
        // 0xffe + 3 = 0x1001: three bytes.
        assert_eq!(pkg_length(0xffe), vec![0x81, 0x00, 0x01]);
        let l = pkg_length(0x10_0000);
        assert_eq!(l.len(), 4);
        assert_eq!(l[0] >> 6, 3);
    }

    #[test]
    fn names() {
        assert_eq!(name_string("_HID"), b"_HID".to_vec());
        assert_eq!(name_string("_S5"), b"_S5_".to_vec());
        assert_eq!(name_string("\\_SB"), b"\\_SB_".to_vec());
        assert_eq!(name_string("\\_SB.PCI0"), b"\\\x2e_SB_PCI0".to_vec());
        assert_eq!(name_string("A.B.C"), b"\x2f\x03A___B___C___".to_vec());
        assert_eq!(name_string("^ISA"), b"^ISA_".to_vec());
    }

    #[test]
    fn integers() {
        assert_eq!(integer(0), vec![0]);
        assert_eq!(integer(1), vec![1]);
        assert_eq!(integer(7), vec![0x0a, 7]);
        assert_eq!(integer(0x3f8), vec![0x0b, 0xf8, 0x03]);
        assert_eq!(integer(0x1_ffff), vec![0x0c, 0xff, 0xff, 1, 0]);
        assert_eq!(integer(1 << 32), vec![0x0e, 0, 0, 0, 0, 1, 0, 0, 0]);
        assert_eq!(integer(u64::MAX), vec![0xff]);
    }

    #[test]
    fn eisa_ids() {
        assert_eq!(eisa_id_value("PNP0A03"), 0x030a_d041);
        assert_eq!(eisa_id_value("PNP0501"), 0x0105_d041);
        assert_eq!(eisa_id("PNP0B00"), vec![0x0c, 0x41, 0xd0, 0x0b, 0x00]);
    }

    #[test]
    fn terms() {
        assert_eq!(
            name("_S5", package(&[integer(0), integer(7)])),
            b"\x08_S5_\x12\x05\x02\x00\x0a\x07".to_vec()
        );
        assert_eq!(string("ab"), b"\x0dab\x00".to_vec());
        let d = device("COM1", &[name("_UID", integer(1))]);
        assert_eq!(d[..3], [0x5b, 0x82, (d.len() - 2) as u8]);
        let m = method("_STA", 0, &[ret(integer(0xf))]);
        assert_eq!(m, b"\x14\x09_STA\x00\xa4\x0a\x0f".to_vec());
    }

    #[test]
    fn resource_template() {
        let rt = ResourceTemplate::new().io(0x3f8, 8).irq_no_flags(4).build();
        // Buffer, PkgLength, BufferSize (byte 13), IO(8) + IRQ(3) + end tag(2).
        assert_eq!(
            rt,
            vec![0x11, 0x10, 0x0a, 13, 0x47, 1, 0xf8, 3, 0xf8, 3, 1, 8, 0x22, 0x10, 0, 0x79, 0]
        );
        let w = ResourceTemplate::new().word_bus(0, 255).build();
        // WordBusNumber length field says 256.
        assert_eq!(&w[w.len() - 4..w.len() - 2], &[0, 1]);
    }
}
