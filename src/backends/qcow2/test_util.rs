//! What the qcow2 tests share: temp paths, qemu-img / qemu-io runs (missing tools
//! skip the test, or fail it under CI=true), blank in-memory images, and a checker
//! that recounts every cluster's references the way `qemu-img check` does.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::create::{blank_image, Blank};
use super::header::{be64, Header};
use super::refcount::get_entry;
use super::{COMPRESSED, COPIED, OFFSET_MASK};

pub fn tmp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("vmrun-qcow2-{}-{name}", std::process::id()))
}

/// Runs `tool args`, asserting success; None (the test skips) when it is missing.
pub fn tool(tool: &str, args: &[&str]) -> Option<Output> {
    match Command::new(tool).args(args).output() {
        Err(_) => {
            let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
            assert!(!ci, "{tool} not found (install qemu-utils) under CI=true");
            eprintln!("skipped: {tool} not found (install qemu-utils)");
            None
        }
        Ok(o) => {
            assert!(o.status.success(), "{tool} {args:?}: {o:?}");
            Some(o)
        }
    }
}

/// `qemu-img create -f qcow2 -o OPTS` of `size`, then each qemu-io command.
pub fn make(name: &str, opts: &str, size: &str, io: &[&str]) -> Option<PathBuf> {
    let p = tmp(name);
    let _ = std::fs::remove_file(&p);
    let ps = p.to_str().unwrap();
    let mut args = vec!["create", "-q", "-f", "qcow2"];
    if !opts.is_empty() {
        args.extend(["-o", opts]);
    }
    args.extend([ps, size]);
    tool("qemu-img", &args)?;
    for c in io {
        tool("qemu-io", &["-f", "qcow2", "-c", c, ps])?;
    }
    Some(p)
}

/// `qemu-img check`: (corruptions, leaks), with its report for messages.
pub fn qemu_check(p: &Path) -> Option<(u64, u64, String)> {
    let o = Command::new("qemu-img")
        .args(["check", "--output=json", p.to_str().unwrap()])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    let v: serde_json::Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("qemu-img check output ({e}): {text} {o:?}"));
    let n = |k: &str| v.get(k).and_then(|x| x.as_u64()).unwrap_or(0);
    assert_eq!(n("check-errors"), 0, "{text}");
    let report = format!("{text}{}", String::from_utf8_lossy(&o.stderr));
    Some((n("corruptions"), n("leaks"), report))
}

/// `qemu-img check` finds nothing at all.
pub fn assert_clean(p: &Path) {
    if let Some((c, l, report)) = qemu_check(p) {
        assert_eq!((c, l), (0, 0), "{}: {report}", p.display());
    }
}

/// qemu-io `read -P pattern off len` on the image: whether the bytes match.
pub fn qemu_reads(p: &Path, fmt: &str, pattern: u8, off: u64, len: u64) -> bool {
    let cmd = format!("read -P {pattern:#x} {off} {len}");
    let o = Command::new("qemu-io")
        .args(["-r", "-f", fmt, "-c", &cmd, p.to_str().unwrap()])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    o.status.success() && !out.contains("verification failed") && out.contains("read ")
}

/// A blank image in memory (version 2 needs `order` 4; `backing` is (name, format)).
pub fn blank(
    version: u32,
    size: u64,
    cluster_bits: u32,
    order: u32,
    backing: Option<(&str, &str)>,
) -> Vec<u8> {
    blank_image(&Blank {
        size,
        cluster_bits,
        version,
        refcount_order: order,
        backing,
    })
}

/// The refcount `img` gives the cluster at host offset `off` (0 where it has none).
pub fn refcount_at(img: &[u8], off: u64) -> u64 {
    let Ok(hdr) = Header::parse(&img[..img.len().min(2 << 20)], img.len() as u64) else {
        return 0;
    };
    let cl = 1u64 << hdr.cluster_bits;
    let per_block = (cl * 8) >> hdr.refcount_order;
    let c = off / cl;
    if c / per_block >= u64::from(hdr.refcount_table_clusters) * cl / 8 {
        return 0;
    }
    let at = hdr.refcount_table_offset + 8 * (c / per_block);
    let b = usize::try_from(at)
        .ok()
        .and_then(|a| img.get(a..a + 8))
        .map_or(0, |w| be64(w, 0) & !0x1ff);
    match usize::try_from(b)
        .ok()
        .and_then(|b| img.get(b..b + cl as usize))
    {
        Some(block) if b != 0 => get_entry(block, hdr.refcount_order, (c % per_block) as usize),
        _ => 0,
    }
}

/// What [`refcheck`] found.
#[derive(Debug, Default)]
pub struct Report {
    /// Clusters counted lower than they are used, COPIED flags that lie, tables
    /// outside the file: what `qemu-img check` calls corruption.
    pub errors: Vec<String>,
    /// Clusters counted but not (or less) used.
    pub leaks: u64,
}

/// Recounts the references of every cluster of `img` (no snapshots) and compares
/// them with its refcounts.
pub fn refcheck(img: &[u8]) -> Report {
    let len = img.len() as u64;
    let hdr = Header::parse(&img[..img.len().min(2 << 20)], len).expect("header");
    let cl = 1u64 << hdr.cluster_bits;
    let mut rep = Report::default();
    let mut refs: HashMap<u64, u64> = HashMap::new();
    let mut add = |off: u64, n: u64| {
        for c in off / cl..(off + n).div_ceil(cl) {
            *refs.entry(c).or_default() += 1;
        }
    };
    let word = |off: u64| -> Option<u64> {
        let o = usize::try_from(off).ok()?;
        img.get(o..o + 8).map(|b| be64(b, 0))
    };
    add(0, cl);
    add(hdr.l1_offset, u64::from(hdr.l1_size) * 8);
    add(
        hdr.refcount_table_offset,
        u64::from(hdr.refcount_table_clusters) * cl,
    );
    let rt_len = u64::from(hdr.refcount_table_clusters) * cl / 8;
    let rt: Vec<u64> = (0..rt_len)
        .map(|i| word(hdr.refcount_table_offset + 8 * i).unwrap_or(0))
        .collect();
    for &b in rt.iter().filter(|&&b| b != 0) {
        if b + cl > len.next_multiple_of(cl) {
            rep.errors
                .push(format!("refcount block {b:#x} outside the image"));
        }
        add(b, cl);
    }
    let per_block = (cl * 8) >> hdr.refcount_order;
    let refcount = |c: u64| -> u64 {
        let b = rt.get((c / per_block) as usize).copied().unwrap_or(0);
        if b == 0 || b + cl > len {
            return 0;
        }
        get_entry(
            &img[b as usize..(b + cl) as usize],
            hdr.refcount_order,
            (c % per_block) as usize,
        )
    };
    // (host cluster, COPIED flag) of every L1 and standard L2 entry.
    let mut copied: Vec<(u64, bool)> = Vec::new();
    let x = 62 - (hdr.cluster_bits - 8);
    for i in 0..u64::from(hdr.l1_size) {
        let l1e = word(hdr.l1_offset + 8 * i).unwrap_or(0);
        let t = l1e & OFFSET_MASK;
        if t == 0 {
            continue;
        }
        add(t, cl);
        copied.push((t / cl, l1e & COPIED != 0));
        if t + cl > len {
            rep.errors
                .push(format!("L2 table {t:#x} outside the image"));
            continue;
        }
        for j in 0..cl / 8 {
            let e = word(t + 8 * j).unwrap_or(0);
            if e & COMPRESSED != 0 {
                let off = e & ((1 << x) - 1);
                let sectors = ((e & ((1 << 62) - 1)) >> x) + 1;
                add(off & !511, sectors * 512);
            } else if e & OFFSET_MASK != 0 {
                let h = e & OFFSET_MASK;
                add(h, cl);
                copied.push((h / cl, e & COPIED != 0));
                if h >= len {
                    rep.errors
                        .push(format!("data cluster {h:#x} outside the image"));
                }
            }
        }
    }
    let last = refs
        .keys()
        .copied()
        .max()
        .unwrap_or(0)
        .max(len.div_ceil(cl));
    for c in 0..=last {
        let (want, have) = (refs.get(&c).copied().unwrap_or(0), refcount(c));
        if have < want {
            rep.errors
                .push(format!("cluster {c}: refcount {have}, {want} references"));
        } else if have > want && c < len.div_ceil(cl) {
            rep.leaks += 1;
        }
    }
    for (c, flag) in copied {
        if flag != (refcount(c) == 1) {
            rep.errors.push(format!(
                "cluster {c}: COPIED flag {flag}, refcount {}",
                refcount(c)
            ));
        }
    }
    rep
}
