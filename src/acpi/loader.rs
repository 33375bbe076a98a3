//! QEMU's ACPI table-loader protocol (`etc/table-loader`), as SeaBIOS
//! (`romfile_loader.c`) and OVMF execute it: a sequence of 128-byte commands that
//! allocate fw_cfg files in guest memory, patch pointers between them and fix
//! checksums.
//!
//! | command          | u32 | fields (little endian, file names NUL-padded to 56 bytes)      |
//! |------------------|-----|----------------------------------------------------------------|
//! | ALLOCATE         | 1   | file[56], align u32, zone u8 (1 = high memory, 2 = F-segment)  |
//! | ADD_POINTER      | 2   | dest file[56], src file[56], offset u32, size u8                |
//! | ADD_CHECKSUM     | 3   | file[56], result offset u32, start u32, length u32              |
//!
//! ADD_POINTER adds the address where `src` was allocated to the `size`-byte integer
//! at `offset` in `dest` (which holds an offset into `src`). ADD_CHECKSUM subtracts the
//! byte sum of `[start, start + length)` from the byte at `offset`, so a range whose
//! sum was zero before patching sums to zero after it.

/// Length of one command.
pub const COMMAND_LEN: usize = 128;
/// fw_cfg file names are at most 55 bytes plus a NUL.
pub const FILE_NAME_LEN: usize = 56;

pub const ZONE_HIGH: u8 = 1;
pub const ZONE_FSEG: u8 = 2;

/// One loader command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Allocate {
        file: String,
        align: u32,
        zone: u8,
    },
    AddPointer {
        dest: String,
        src: String,
        offset: u32,
        size: u8,
    },
    AddChecksum {
        file: String,
        offset: u32,
        start: u32,
        length: u32,
    },
}

fn put_name(cmd: &mut [u8], at: usize, name: &str) {
    let n = name.len().min(FILE_NAME_LEN - 1);
    cmd[at..at + n].copy_from_slice(&name.as_bytes()[..n]);
}

impl Command {
    /// The 128-byte encoding.
    pub fn encode(&self) -> [u8; COMMAND_LEN] {
        let mut c = [0u8; COMMAND_LEN];
        match self {
            Command::Allocate { file, align, zone } => {
                c[0..4].copy_from_slice(&1u32.to_le_bytes());
                put_name(&mut c, 4, file);
                c[60..64].copy_from_slice(&align.to_le_bytes());
                c[64] = *zone;
            }
            Command::AddPointer {
                dest,
                src,
                offset,
                size,
            } => {
                c[0..4].copy_from_slice(&2u32.to_le_bytes());
                put_name(&mut c, 4, dest);
                put_name(&mut c, 60, src);
                c[116..120].copy_from_slice(&offset.to_le_bytes());
                c[120] = *size;
            }
            Command::AddChecksum {
                file,
                offset,
                start,
                length,
            } => {
                c[0..4].copy_from_slice(&3u32.to_le_bytes());
                put_name(&mut c, 4, file);
                c[60..64].copy_from_slice(&offset.to_le_bytes());
                c[64..68].copy_from_slice(&start.to_le_bytes());
                c[68..72].copy_from_slice(&length.to_le_bytes());
            }
        }
        c
    }
}

/// Encodes a command list as the contents of `etc/table-loader`.
pub fn encode(commands: &[Command]) -> Vec<u8> {
    commands.iter().flat_map(|c| c.encode()).collect()
}

/// Runs `commands` the way firmware does over `files` (name, contents, the address
/// the file is placed at), patching the contents in place. Tests use it to check that
/// the loader script, executed, gives the same bytes as a direct placement.
pub fn execute(
    commands: &[Command],
    files: &mut [(&str, Vec<u8>, u64)],
) -> Result<(), &'static str> {
    let find = |files: &[(&str, Vec<u8>, u64)], n: &str| {
        files.iter().position(|f| f.0 == n).ok_or("unknown file")
    };
    for c in commands {
        match c {
            Command::Allocate { file, .. } => {
                find(files, file)?;
            }
            Command::AddPointer {
                dest,
                src,
                offset,
                size,
            } => {
                let addr = files[find(files, src)?].2;
                let d = &mut files[find(files, dest)?].1;
                let (o, s) = (*offset as usize, *size as usize);
                let field = d.get_mut(o..o + s).ok_or("pointer out of range")?;
                let mut v = [0u8; 8];
                v[..s].copy_from_slice(field);
                let p = u64::from_le_bytes(v).wrapping_add(addr);
                field.copy_from_slice(&p.to_le_bytes()[..s]);
            }
            Command::AddChecksum {
                file,
                offset,
                start,
                length,
            } => {
                let d = &mut files[find(files, file)?].1;
                let r = *start as usize..(*start + *length) as usize;
                let sum = d
                    .get(r)
                    .ok_or("checksum range out of range")?
                    .iter()
                    .fold(0u8, |a, b| a.wrapping_add(*b));
                let b = d.get_mut(*offset as usize).ok_or("checksum out of range")?;
                *b = b.wrapping_sub(sum);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings() {
        let a = Command::Allocate {
            file: "etc/acpi/rsdp".into(),
            align: 16,
            zone: ZONE_FSEG,
        }
        .encode();
        assert_eq!(&a[0..4], &[1, 0, 0, 0]);
        assert_eq!(&a[4..17], b"etc/acpi/rsdp");
        assert_eq!(a[17], 0);
        assert_eq!(&a[60..65], &[16, 0, 0, 0, 2]);
        let p = Command::AddPointer {
            dest: "etc/acpi/rsdp".into(),
            src: "etc/acpi/tables".into(),
            offset: 24,
            size: 8,
        }
        .encode();
        assert_eq!(&p[60..75], b"etc/acpi/tables");
        assert_eq!(&p[116..121], &[24, 0, 0, 0, 8]);
        let c = Command::AddChecksum {
            file: "x".into(),
            offset: 9,
            start: 0,
            length: 36,
        }
        .encode();
        assert_eq!(&c[60..72], &[9, 0, 0, 0, 0, 0, 0, 0, 36, 0, 0, 0]);
        assert_eq!(
            encode(&[Command::Allocate {
                file: "f".into(),
                align: 1,
                zone: 1
            }])
            .len(),
            128
        );
    }
}
