//! Internet checksums as the 82540EM's offload engines compute them: the 16-bit ones'
//! complement sum over a byte range (inserted on transmit, verified on receive), the
//! IPv4/TCP/UDP parsing the receive side needs, and the Ethernet FCS.

/// The ones' complement sum of `data` (big-endian 16-bit words, an odd last byte
/// padded with zero) added to `start`, not yet folded.
pub fn add(start: u32, data: &[u8]) -> u32 {
    let mut sum = u64::from(start);
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u64::from(*last) << 8;
    }
    fold64(sum)
}

fn fold64(mut sum: u64) -> u32 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u32
}

/// Folds a sum to 16 bits.
pub fn fold(sum: u32) -> u16 {
    fold64(u64::from(sum)) as u16
}

/// The checksum to insert for the bytes `data[start..=end]` (`end` 0 or past the
/// end: to the end): the complement of their sum, 0 written as 0xFFFF (the same
/// value in ones' complement). Inserted big-endian at `at`; nothing happens when a
/// field lies outside the frame, as the hardware ignores out-of-range offsets.
pub fn insert(data: &mut [u8], start: usize, end: usize, at: usize) {
    let stop = if end == 0 || end >= data.len() {
        data.len()
    } else {
        end + 1
    };
    if start >= stop || at + 2 > data.len() {
        return;
    }
    let mut c = !fold(add(0, &data[start..stop]));
    if c == 0 {
        c = 0xffff;
    }
    data[at..at + 2].copy_from_slice(&c.to_be_bytes());
}

/// Adds `n` into the 16-bit ones' complement field at `at` (the pseudo-header length
/// the hardware adds on TCP segmentation).
pub fn add_to_field(data: &mut [u8], at: usize, n: u32) {
    if let Some(f) = data.get_mut(at..at + 2) {
        let v = fold(u32::from(u16::from_be_bytes([f[0], f[1]])) + n);
        f.copy_from_slice(&v.to_be_bytes());
    }
}

/// What receive checksum offload found in a frame.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RxCheck {
    /// The IPv4 header checksum was checked; `ip_ok` is its verdict.
    pub ip: bool,
    pub ip_ok: bool,
    /// The TCP or UDP checksum was checked; `l4_ok` is its verdict.
    pub l4: bool,
    pub l4_ok: bool,
}

/// Checks the IPv4 header (`ip`) and TCP/UDP (`l4`) checksums of an Ethernet frame
/// (an 802.1Q tag with ethertype `vet` allowed). Fragments, options-free or not, get
/// only the header check; anything else (IPv6, ARP, truncated) gets none.
pub fn check_rx(frame: &[u8], vet: u16, ip: bool, l4: bool) -> RxCheck {
    let mut r = RxCheck::default();
    let be16 = |o: usize| {
        frame
            .get(o..o + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
    };
    let mut l3 = 14;
    let mut ty = be16(12);
    if ty == Some(vet) {
        ty = be16(16);
        l3 = 18;
    }
    if ty != Some(0x0800) {
        return r;
    }
    let Some(&vihl) = frame.get(l3) else {
        return r;
    };
    let ihl = usize::from(vihl & 0xf) * 4;
    let Some(hdr) = frame.get(l3..l3 + ihl) else {
        return r;
    };
    if vihl >> 4 != 4 || ihl < 20 {
        return r;
    }
    if ip {
        r.ip = true;
        r.ip_ok = fold(add(0, hdr)) == 0xffff;
    }
    let total = usize::from(u16::from_be_bytes([hdr[2], hdr[3]]));
    let frag = u16::from_be_bytes([hdr[6], hdr[7]]) & 0x3fff;
    let proto = hdr[9];
    if !l4 || frag != 0 || !(proto == 6 || proto == 17) || total < ihl {
        return r;
    }
    let Some(seg) = frame.get(l3 + ihl..l3 + total) else {
        return r;
    };
    if proto == 17 && seg.get(6..8) == Some(&[0, 0]) {
        return r; // UDP without a checksum
    }
    if seg.len() < if proto == 6 { 20 } else { 8 } {
        return r;
    }
    let pseudo = add(add(0, &hdr[12..20]), &[0, proto]) + seg.len() as u32;
    r.l4 = true;
    r.l4_ok = fold(add(pseudo, seg)) == 0xffff;
    r
}

/// The Ethernet FCS of `frame` as it goes on the wire (little-endian CRC-32).
pub fn fcs(frame: &[u8]) -> [u8; 4] {
    crc32fast::hash(frame).to_le_bytes()
}
