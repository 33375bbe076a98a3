//! Synthetic kernel images for unit tests: bzImage setup headers of any protocol
//! version, ELF64/ELF32 files with or without a PVH note. Only the bytes the loaders read
//! are meaningful; code is a recognisable fill pattern.

/// A bzImage to build; fields are setup header values.
#[derive(Clone, Debug)]
pub struct BzImageSpec {
    pub version: u16,
    pub setup_sects: u8,
    pub loadflags: u8,
    pub xloadflags: u16,
    pub relocatable: bool,
    pub kernel_alignment: u32,
    pub pref_address: u64,
    pub init_size: u32,
    pub cmdline_size: u32,
    pub initrd_addr_max: u32,
    pub payload_len: usize,
}

impl Default for BzImageSpec {
    fn default() -> Self {
        BzImageSpec {
            version: 0x020f,
            setup_sects: 2,
            loadflags: 1,
            xloadflags: 0x1 | 0x2,
            relocatable: true,
            kernel_alignment: 0x20_0000,
            pref_address: 0x100_0000,
            init_size: 0x40_0000,
            cmdline_size: 2047,
            initrd_addr_max: 0x7fff_ffff,
            payload_len: 0x3000,
        }
    }
}

impl BzImageSpec {
    /// The image bytes.
    pub fn build(&self) -> Vec<u8> {
        let sects = if self.setup_sects == 0 {
            4
        } else {
            self.setup_sects as usize
        };
        let setup_len = (sects + 1) * 512;
        let mut img = vec![0u8; setup_len + self.payload_len];
        let put = |img: &mut Vec<u8>, at: usize, v: &[u8]| img[at..at + v.len()].copy_from_slice(v);
        img[0x1f1] = self.setup_sects;
        put(
            &mut img,
            0x1f4,
            &((self.payload_len as u32).div_ceil(16)).to_le_bytes(),
        );
        put(&mut img, 0x1fe, &0xaa55u16.to_le_bytes());
        // jmp short over the header: its length depends on the protocol version.
        let hdr_end = match self.version {
            v if v >= 0x020f => 0x26c,
            v if v >= 0x020a => 0x264,
            v if v >= 0x0206 => 0x23c,
            _ => 0x230,
        };
        img[0x200] = 0xeb;
        img[0x201] = (hdr_end - 0x202) as u8;
        put(&mut img, 0x202, b"HdrS");
        put(&mut img, 0x206, &self.version.to_le_bytes());
        img[0x211] = self.loadflags;
        put(&mut img, 0x214, &0x10_0000u32.to_le_bytes());
        put(&mut img, 0x22c, &self.initrd_addr_max.to_le_bytes());
        if self.version >= 0x0205 {
            put(&mut img, 0x230, &self.kernel_alignment.to_le_bytes());
            img[0x234] = self.relocatable as u8;
        }
        if self.version >= 0x0206 {
            put(&mut img, 0x238, &self.cmdline_size.to_le_bytes());
        }
        if self.version >= 0x020a {
            put(&mut img, 0x258, &self.pref_address.to_le_bytes());
            put(&mut img, 0x260, &self.init_size.to_le_bytes());
        }
        if self.version >= 0x020c {
            put(&mut img, 0x236, &self.xloadflags.to_le_bytes());
        }
        // Bytes past the header belong to setup code: make them visible garbage.
        for b in img.iter_mut().take(setup_len).skip(hdr_end) {
            *b = 0xcc;
        }
        for (i, b) in img.iter_mut().skip(setup_len).enumerate() {
            *b = (i % 251) as u8;
        }
        img
    }
}

/// A loadable segment for [`elf`]: physical address, file bytes, memory size.
pub struct Seg {
    pub paddr: u64,
    pub data: Vec<u8>,
    pub memsz: u64,
}

/// A note for [`elf`]: name (with NUL), type, descriptor.
pub struct Note {
    pub name: Vec<u8>,
    pub n_type: u32,
    pub desc: Vec<u8>,
}

/// The Xen PVH entry note.
pub fn pvh_note(entry: u32) -> Note {
    Note {
        name: b"Xen\0".to_vec(),
        n_type: 18,
        desc: entry.to_le_bytes().to_vec(),
    }
}

fn pad4(v: &mut Vec<u8>) {
    while !v.len().is_multiple_of(4) {
        v.push(0);
    }
}

/// Builds an ELF (64-bit if `is_64`) for `machine` with `segs` and a PT_NOTE of `notes`.
pub fn elf(is_64: bool, machine: u16, entry: u64, segs: &[Seg], notes: &[Note]) -> Vec<u8> {
    let (ehsize, phentsize) = if is_64 { (64usize, 56usize) } else { (52, 32) };
    let phnum = segs.len() + usize::from(!notes.is_empty());
    let mut note_bytes = Vec::new();
    for n in notes {
        note_bytes.extend_from_slice(&(n.name.len() as u32).to_le_bytes());
        note_bytes.extend_from_slice(&(n.desc.len() as u32).to_le_bytes());
        note_bytes.extend_from_slice(&n.n_type.to_le_bytes());
        note_bytes.extend_from_slice(&n.name);
        pad4(&mut note_bytes);
        note_bytes.extend_from_slice(&n.desc);
        pad4(&mut note_bytes);
    }
    let mut data_off = ehsize + phnum * phentsize;
    let mut out = vec![0u8; data_off];
    out[..4].copy_from_slice(b"\x7fELF");
    out[4] = if is_64 { 2 } else { 1 };
    out[5] = 1;
    out[6] = 1;
    out[16..18].copy_from_slice(&2u16.to_le_bytes());
    out[18..20].copy_from_slice(&machine.to_le_bytes());
    out[20..24].copy_from_slice(&1u32.to_le_bytes());
    let mut phdrs: Vec<(u32, u64, u64, u64, u64)> = Vec::new(); // type, off, paddr, filesz, memsz
    let mut payload = Vec::new();
    for s in segs {
        phdrs.push((1, data_off as u64, s.paddr, s.data.len() as u64, s.memsz));
        payload.extend_from_slice(&s.data);
        data_off += s.data.len();
    }
    if !notes.is_empty() {
        phdrs.push((4, data_off as u64, 0, note_bytes.len() as u64, 0));
        payload.extend_from_slice(&note_bytes);
    }
    if is_64 {
        out[24..32].copy_from_slice(&entry.to_le_bytes());
        out[32..40].copy_from_slice(&(ehsize as u64).to_le_bytes());
        out[52..54].copy_from_slice(&(ehsize as u16).to_le_bytes());
        out[54..56].copy_from_slice(&(phentsize as u16).to_le_bytes());
        out[56..58].copy_from_slice(&(phnum as u16).to_le_bytes());
    } else {
        out[24..28].copy_from_slice(&(entry as u32).to_le_bytes());
        out[28..32].copy_from_slice(&(ehsize as u32).to_le_bytes());
        out[40..42].copy_from_slice(&(ehsize as u16).to_le_bytes());
        out[42..44].copy_from_slice(&(phentsize as u16).to_le_bytes());
        out[44..46].copy_from_slice(&(phnum as u16).to_le_bytes());
    }
    for (i, (t, off, paddr, filesz, memsz)) in phdrs.iter().enumerate() {
        let at = ehsize + i * phentsize;
        let ph = &mut out[at..at + phentsize];
        ph[..4].copy_from_slice(&t.to_le_bytes());
        if is_64 {
            ph[8..16].copy_from_slice(&off.to_le_bytes());
            ph[16..24].copy_from_slice(&paddr.to_le_bytes());
            ph[24..32].copy_from_slice(&paddr.to_le_bytes());
            ph[32..40].copy_from_slice(&filesz.to_le_bytes());
            ph[40..48].copy_from_slice(&memsz.to_le_bytes());
        } else {
            ph[4..8].copy_from_slice(&(*off as u32).to_le_bytes());
            ph[8..12].copy_from_slice(&(*paddr as u32).to_le_bytes());
            ph[12..16].copy_from_slice(&(*paddr as u32).to_le_bytes());
            ph[16..20].copy_from_slice(&(*filesz as u32).to_le_bytes());
            ph[20..24].copy_from_slice(&(*memsz as u32).to_le_bytes());
        }
    }
    out.extend_from_slice(&payload);
    out
}
