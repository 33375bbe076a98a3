//! The probe guest: a small C + assembly PVH image built from `firmware/` by
//! `build.rs` and embedded in the binary. Booted in a machine, it reports over
//! COM1 what the machine looks like from inside; the line format is the
//! contract documented in `firmware/README.md`.

/// The probe as an ELF64 image with a PVH (`XEN_ELFNOTE_PHYS32_ENTRY`) note,
/// linked to load at 1 MiB.
pub const PROBE_ELF: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/probe.elf"));

/// The embedded probe ELF image.
pub fn probe_elf() -> &'static [u8] {
    PROBE_ELF
}

/// The probe's command line for `spec`: what it needs to know of the machine (how
/// many CPUs to expect, where to power off, the virtio-mmio windows to scan), then the
/// machine's own `[boot] cmdline`, which holds the probe's options when it boots.
pub fn cmdline(spec: &crate::spec::MachineSpec) -> String {
    use crate::spec::DeviceKind;
    let mut c = format!("cpus={}", spec.cpus.count());
    if let Some((pm, layout)) = spec.pm() {
        if let Some(base) = pm.io_base() {
            c += &format!(" pm={:#x} s5={}", u32::from(base) + 4, layout.s5_typ);
        }
    }
    // virtio-mmio windows: the first and how many 0x200-byte slots to scan.
    let bases: Vec<u64> = (spec.devices.iter())
        .filter(|d| matches!(d.kind, DeviceKind::Disk { .. } | DeviceKind::Nic { .. }))
        .filter(|d| d.pci.is_none())
        .filter_map(|d| d.mmio.first().map(|m| m.base))
        .collect();
    if let (Some(lo), Some(hi)) = (bases.iter().min(), bases.iter().max()) {
        c += &format!(
            " virtio_mmio={lo:#x} virtio_mmio_n={}",
            (hi - lo) / 0x200 + 1
        );
    }
    if !spec.boot.cmdline.is_empty() {
        c.push(' ');
        c.push_str(&spec.boot.cmdline);
    }
    c
}

/// Why a `PROBE` line could not be split into words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeParseError {
    #[error("line {line}: unterminated quoted string")]
    UnterminatedQuote { line: usize },
    #[error("line {line}: bad escape sequence in quoted string")]
    BadEscape { line: usize },
}

/// One report line: `PROBE <tag words> key=value... flag...`.
///
/// The tag is the run of bare words before the first `key=value` or quoted word
/// (`"timer ok"`, `"cpu"`, `"option unknown"`); bare words after it are flags
/// (`ok`, `bsp`, `mismatch`). Quoted values are unescaped.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProbeLine {
    pub tag: String,
    pub fields: Vec<(String, String)>,
    pub flags: Vec<String>,
    /// Quoted words that are not a `key=` value (`cmdline "..."`, `echo "..."`).
    pub quoted: Vec<String>,
}

impl ProbeLine {
    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `key` as a number (`0x` hexadecimal or decimal).
    pub fn get_u64(&self, key: &str) -> Option<u64> {
        let v = self.get(key)?;
        match v.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16).ok(),
            None => v.parse().ok(),
        }
    }

    /// Whether the bare word `flag` follows the fields.
    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }
}

enum Word {
    Bare(String),
    Quoted(String),
    Field(String, String),
}

/// Splits a line into words on spaces outside quotes, unescaping quoted text.
fn split_words(text: &str, line: usize) -> Result<Vec<Word>, ProbeParseError> {
    let mut words = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek() == Some(&' ') {
            chars.next();
        }
        let Some(&first) = chars.peek() else { break };
        let mut key = String::new();
        if first != '"' {
            while let Some(&c) = chars.peek() {
                if c == ' ' || c == '"' {
                    break;
                }
                key.push(c);
                chars.next();
            }
            if chars.peek() != Some(&'"') {
                words.push(match key.split_once('=') {
                    Some((k, v)) => Word::Field(k.to_string(), v.to_string()),
                    None => Word::Bare(key),
                });
                continue;
            }
        }
        chars.next(); // opening quote
        let mut value = String::new();
        loop {
            match chars.next() {
                None => return Err(ProbeParseError::UnterminatedQuote { line }),
                Some('"') => break,
                Some('\\') => match chars.next() {
                    Some(c @ ('"' | '\\')) => value.push(c),
                    Some('x') => {
                        let hex: String = chars.by_ref().take(2).collect();
                        let byte = u8::from_str_radix(&hex, 16)
                            .map_err(|_| ProbeParseError::BadEscape { line })?;
                        value.push(char::from(byte));
                    }
                    _ => return Err(ProbeParseError::BadEscape { line }),
                },
                Some(c) => value.push(c),
            }
        }
        words.push(match key.strip_suffix('=') {
            Some(k) => Word::Field(k.to_string(), value),
            None => Word::Quoted(value),
        });
    }
    Ok(words)
}

/// Parses one line of serial output; `None` if it holds no `PROBE ` line.
/// Text before `PROBE ` (firmware output without a newline) is ignored.
pub fn parse_line(text: &str, line: usize) -> Result<Option<ProbeLine>, ProbeParseError> {
    let text = text.trim_end_matches(['\r', '\n']);
    let Some(at) = text.find("PROBE ") else {
        return Ok(None);
    };
    let mut out = ProbeLine::default();
    let mut in_tag = true;
    for word in split_words(&text[at + "PROBE ".len()..], line)? {
        match word {
            Word::Bare(w) if in_tag => {
                if !out.tag.is_empty() {
                    out.tag.push(' ');
                }
                out.tag.push_str(&w);
            }
            Word::Bare(w) => out.flags.push(w),
            Word::Quoted(q) => {
                in_tag = false;
                out.quoted.push(q);
            }
            Word::Field(k, v) => {
                in_tag = false;
                out.fields.push((k, v));
            }
        }
    }
    Ok(Some(out))
}

/// Parses a whole serial log, keeping only the `PROBE` lines, in order.
pub fn parse_report(log: &str) -> Result<Vec<ProbeLine>, ProbeParseError> {
    let mut lines = Vec::new();
    for (n, text) in log.lines().enumerate() {
        if let Some(l) = parse_line(text, n + 1)? {
            lines.push(l);
        }
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u16_at(b: &[u8], off: usize) -> u16 {
        u16::from_le_bytes(b[off..off + 2].try_into().unwrap())
    }
    fn u32_at(b: &[u8], off: usize) -> u32 {
        u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
    }
    fn u64_at(b: &[u8], off: usize) -> u64 {
        u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
    }

    #[test]
    fn is_elf64_x86_64_executable() {
        let elf = probe_elf();
        assert_eq!(&elf[..4], b"\x7fELF");
        assert_eq!(elf[4], 2, "ELFCLASS64");
        assert_eq!(elf[5], 1, "little endian");
        assert_eq!(u16_at(elf, 16), 2, "ET_EXEC");
        assert_eq!(u16_at(elf, 18), 62, "EM_X86_64");
    }

    /// Walks the program headers: PT_LOAD segments start at 1 MiB and a
    /// PT_NOTE holds the Xen PVH entry note pointing into the first segment.
    #[test]
    fn has_pvh_entry_note_and_loads_at_1mib() {
        let elf = probe_elf();
        let phoff = u64_at(elf, 32) as usize;
        let phentsize = u16_at(elf, 54) as usize;
        let phnum = u16_at(elf, 56) as usize;
        let mut lowest_load = u64::MAX;
        let mut pvh_entry = None;
        for i in 0..phnum {
            let ph = &elf[phoff + i * phentsize..phoff + (i + 1) * phentsize];
            let (p_type, offset, paddr, filesz) = (
                u32_at(ph, 0),
                u64_at(ph, 8) as usize,
                u64_at(ph, 24),
                u64_at(ph, 32) as usize,
            );
            if p_type == 1 {
                lowest_load = lowest_load.min(paddr);
            }
            if p_type == 4 {
                let notes = &elf[offset..offset + filesz];
                let mut at = 0;
                while at + 12 <= notes.len() {
                    let namesz = u32_at(notes, at) as usize;
                    let descsz = u32_at(notes, at + 4) as usize;
                    let n_type = u32_at(notes, at + 8);
                    let name = &notes[at + 12..at + 12 + namesz];
                    let desc_at = at + 12 + namesz.div_ceil(4) * 4;
                    if name == b"Xen\0" && n_type == 18 {
                        pvh_entry = Some(match descsz {
                            4 => u32_at(notes, desc_at) as u64,
                            _ => u64_at(notes, desc_at),
                        });
                    }
                    at = desc_at + descsz.div_ceil(4) * 4;
                }
            }
        }
        assert_eq!(lowest_load, 0x10_0000);
        let entry = pvh_entry.expect("XEN_ELFNOTE_PHYS32_ENTRY note");
        assert!(
            (0x10_0000..0x1_0000_0000).contains(&entry),
            "entry {entry:#x}"
        );
    }

    #[test]
    fn parses_tags_fields_flags_and_quotes() {
        let log = "SeaBIOS\r\nBooting from ROM..PROBE hello version=1\r\n\
                   PROBE cmdline \"cpus=2 a=\\\"q\\\" \\x01\"\r\n\
                   PROBE cpus count=2 expected=2 ok trampoline=0x8000 us=10676\r\n\
                   PROBE timer ok path=ioapic pin=2 ticks=9\r\n\
                   PROBE cpuid vendor=\"GenuineIntel\" max=0x16\r\n\
                   noise\n";
        let lines = parse_report(log).unwrap();
        assert_eq!(lines.len(), 5);
        assert_eq!(lines[0].tag, "hello");
        assert_eq!(lines[0].get_u64("version"), Some(1));
        assert_eq!(lines[1].tag, "cmdline");
        assert_eq!(lines[1].quoted, vec!["cpus=2 a=\"q\" \u{1}".to_string()]);
        assert_eq!(lines[2].tag, "cpus");
        assert_eq!(lines[2].get_u64("count"), Some(2));
        assert_eq!(lines[2].get_u64("trampoline"), Some(0x8000));
        assert!(lines[2].has_flag("ok"));
        assert!(!lines[2].has_flag("mismatch"));
        assert_eq!(lines[3].tag, "timer ok");
        assert_eq!(lines[3].get("path"), Some("ioapic"));
        assert_eq!(lines[4].get("vendor"), Some("GenuineIntel"));
        assert_eq!(lines[4].get_u64("max"), Some(0x16));
        assert_eq!(lines[4].get_u64("missing"), None);
    }

    #[test]
    fn rejects_broken_quotes() {
        assert_eq!(
            parse_line("PROBE echo \"abc", 3),
            Err(ProbeParseError::UnterminatedQuote { line: 3 })
        );
        assert_eq!(
            parse_line("PROBE echo \"a\\qb\"", 4),
            Err(ProbeParseError::BadEscape { line: 4 })
        );
        assert_eq!(parse_line("no probe here", 1), Ok(None));
    }
}
