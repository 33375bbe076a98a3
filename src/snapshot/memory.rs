//! `memory.bin`: guest RAM, region after region, as a sparse file. Only pages that are
//! not all zero are written; the rest stay holes, so a 1 GiB guest that touched 20 MiB
//! takes 20 MiB on disk. Restoring maps the file `MAP_PRIVATE`: nothing is read until
//! the guest touches a page, and the guest's writes never reach the file.
//!
//! The digest is sha256 over every non-zero page as (file offset, u64 LE) followed by
//! its 4096 bytes, in file order: the same whether computed while writing or by
//! scanning the file later, and never reading a hole.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;

use sha2::{Digest, Sha256};
use thiserror::Error;
use vm_memory::{
    FileOffset, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion,
    GuestRegionMmap, MmapRegion,
};

use super::manifest::{hex, MemRegion, Part};

const PAGE: usize = 4096;

#[derive(Debug, Error)]
pub enum MemoryFileError {
    #[error("cannot write memory.bin")]
    Write(#[source] std::io::Error),
    #[error("cannot read memory.bin")]
    Read(#[source] std::io::Error),
    #[error("memory.bin is {found} bytes; the manifest's regions need {want}")]
    Size { found: u64, want: u64 },
    #[error("the manifest's memory regions are not contiguous in memory.bin or not page-aligned")]
    Layout,
    #[error("cannot map memory.bin")]
    Map(String),
}

fn is_zero(page: &[u8]) -> bool {
    let (head, words, tail) = {
        // SAFETY: u64 has no invalid bit patterns; align_to only reinterprets.
        unsafe { page.align_to::<u64>() }
    };
    head.iter().all(|&b| b == 0) && words.iter().all(|&w| w == 0) && tail.iter().all(|&b| b == 0)
}

/// Which pages of `[ptr, ptr + len)` may hold data: those resident (mincore), plus,
/// for a mapping of `file` at `file_off`, those the file has data for.
fn candidates(ptr: *mut u8, len: usize, file: Option<(&File, u64)>) -> Vec<bool> {
    let pages = len / PAGE;
    let mut vec = vec![0u8; pages];
    // SAFETY: `ptr..ptr+len` is one live, page-aligned mapping; `vec` has one byte per page.
    let r = unsafe { libc::mincore(ptr.cast(), len, vec.as_mut_ptr()) };
    let mut out: Vec<bool> = if r == 0 {
        vec.iter().map(|b| b & 1 != 0).collect()
    } else {
        vec![true; pages]
    };
    if let Some((f, off)) = file {
        for (s, e) in data_extents(f, off, off + len as u64) {
            let first = ((s - off) as usize) / PAGE;
            let last = ((e - off) as usize).div_ceil(PAGE).min(pages);
            out[first..last].iter_mut().for_each(|c| *c = true);
        }
    }
    out
}

/// The data extents of `f` within `[start, end)`, by SEEK_DATA / SEEK_HOLE (the whole
/// range if the filesystem cannot tell).
fn data_extents(f: &File, start: u64, end: u64) -> Vec<(u64, u64)> {
    let fd = f.as_raw_fd();
    let mut out = Vec::new();
    let mut pos = start;
    while pos < end {
        // SAFETY: lseek on an open fd; no memory is involved.
        let data = unsafe { libc::lseek(fd, pos as i64, libc::SEEK_DATA) };
        if data < 0 {
            if std::io::Error::last_os_error().raw_os_error() != Some(libc::ENXIO) {
                out.push((pos, end));
            }
            break;
        }
        let data = (data as u64).max(pos);
        if data >= end {
            break;
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(fd, data as i64, libc::SEEK_HOLE) };
        let hole = if hole < 0 {
            end
        } else {
            (hole as u64).min(end)
        };
        out.push((data, hole));
        pos = hole;
    }
    out
}

/// Writes every RAM region of `mem` to `out` (an empty file), sparse. Returns the
/// digest part and the layout.
pub fn save(mem: &GuestMemoryMmap, out: &File) -> Result<(Part, Vec<MemRegion>), MemoryFileError> {
    let mut hash = Sha256::new();
    let mut layout = Vec::new();
    let mut offset = 0u64;
    for region in mem.iter() {
        let len = region.len() as usize;
        let ptr = region.as_ptr();
        let backing = region.file_offset().map(|f| (f.file(), f.start()));
        let cand = candidates(ptr, len, backing);
        // SAFETY: the region's mapping is live for `len` bytes while `mem` is borrowed;
        // the vCPUs are paused, so nothing writes it while we read.
        let bytes = unsafe { std::slice::from_raw_parts(ptr as *const u8, len) };
        let mut run: Option<usize> = None;
        let flush = |from: usize, to: usize| -> Result<(), MemoryFileError> {
            out.write_all_at(&bytes[from..to], offset + from as u64)
                .map_err(MemoryFileError::Write)
        };
        for (i, &c) in cand.iter().enumerate() {
            let page = &bytes[i * PAGE..(i + 1) * PAGE];
            if c && !is_zero(page) {
                hash.update((offset + (i * PAGE) as u64).to_le_bytes());
                hash.update(page);
                run.get_or_insert(i * PAGE);
            } else if let Some(from) = run.take() {
                flush(from, i * PAGE)?;
            }
        }
        if let Some(from) = run {
            flush(from, len)?;
        }
        layout.push(MemRegion {
            base: region.start_addr().0,
            size: len as u64,
            offset,
        });
        offset += len as u64;
    }
    out.set_len(offset).map_err(MemoryFileError::Write)?;
    let part = Part {
        sha256: hex(&hash.finalize()),
        size: offset,
    };
    Ok((part, layout))
}

/// The digest of `memory.bin` as [`save`] computes it, scanning only its data.
pub fn digest(f: &File) -> Result<String, MemoryFileError> {
    let len = f.metadata().map_err(MemoryFileError::Read)?.len();
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    for (s, e) in data_extents(f, 0, len) {
        let mut pos = s - s % PAGE as u64;
        while pos < e {
            let n = ((e - pos) as usize).min(buf.len()).next_multiple_of(PAGE);
            let chunk = &mut buf[..n];
            chunk.fill(0);
            let got = f.read_at(chunk, pos).map_err(MemoryFileError::Read)?;
            for (k, page) in chunk[..got.next_multiple_of(PAGE).min(n)]
                .chunks(PAGE)
                .enumerate()
            {
                if !is_zero(page) {
                    hash.update((pos + (k * PAGE) as u64).to_le_bytes());
                    hash.update(page);
                }
            }
            pos += n as u64;
        }
    }
    Ok(hex(&hash.finalize()))
}

/// Checks the layout against the file: regions page-aligned, back to back from
/// offset 0, and exactly as long as the file.
pub fn check_layout(regions: &[MemRegion], file_len: u64) -> Result<(), MemoryFileError> {
    let mut want = 0u64;
    for r in regions {
        let aligned = r.base % PAGE as u64 == 0 && r.size % PAGE as u64 == 0 && r.size > 0;
        if !aligned || r.offset != want || r.base.checked_add(r.size).is_none() {
            return Err(MemoryFileError::Layout);
        }
        want = want.checked_add(r.size).ok_or(MemoryFileError::Layout)?;
    }
    if want != file_len {
        return Err(MemoryFileError::Size {
            found: file_len,
            want,
        });
    }
    Ok(())
}

/// Guest RAM mapped copy-on-write from `file` with the given layout.
pub fn map(file: &File, regions: &[MemRegion]) -> Result<GuestMemoryMmap, MemoryFileError> {
    let len = file.metadata().map_err(MemoryFileError::Read)?.len();
    check_layout(regions, len)?;
    let mut out = Vec::with_capacity(regions.len());
    for r in regions {
        let fo = FileOffset::new(file.try_clone().map_err(MemoryFileError::Read)?, r.offset);
        let mmap = MmapRegion::build(
            Some(fo),
            r.size as usize,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_NORESERVE,
        )
        .map_err(|e| MemoryFileError::Map(e.to_string()))?;
        let region = GuestRegionMmap::new(mmap, GuestAddress(r.base))
            .ok_or_else(|| MemoryFileError::Map("region wraps around".into()))?;
        out.push(region);
    }
    GuestMemoryMmap::from_regions(out).map_err(|e| MemoryFileError::Map(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::Bytes;

    #[test]
    fn sparse_save_digest_and_map_agree() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[
            (GuestAddress(0), 64 * PAGE),
            (GuestAddress(1 << 32), 16 * PAGE),
        ])
        .unwrap();
        mem.write_slice(b"hello", GuestAddress(5 * PAGE as u64 + 7))
            .unwrap();
        mem.write_slice(&[0xab; PAGE * 2], GuestAddress((1 << 32) + PAGE as u64))
            .unwrap();
        let dir = std::env::temp_dir().join(format!("vmrun-memtest-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("memory.bin");
        let f = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        let (part, layout) = save(&mem, &f).unwrap();
        assert_eq!(part.size, 80 * PAGE as u64);
        assert_eq!(digest(&f).unwrap(), part.sha256);
        let back = map(&f, &layout).unwrap();
        let mut buf = [0u8; 5];
        back.read_slice(&mut buf, GuestAddress(5 * PAGE as u64 + 7))
            .unwrap();
        assert_eq!(&buf, b"hello");
        // Guest writes to the restored copy never reach the file.
        back.write_slice(b"XXXXX", GuestAddress(5 * PAGE as u64 + 7))
            .unwrap();
        assert_eq!(digest(&f).unwrap(), part.sha256);
        let mut bad = layout.clone();
        bad[1].offset += 4096;
        assert!(map(&f, &bad).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
