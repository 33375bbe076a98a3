//! Per-vCPU CPUID: what `KVM_GET_SUPPORTED_CPUID` offers, with the vCPU's APIC ID and
//! the machine's sockets/cores/threads topology written where a guest looks for them.
//!
//! [`vcpu_cpuid`] is a pure function of the supported table, the topology and the vCPU
//! index, so it is tested without `/dev/kvm`. APIC IDs follow the x2APIC topology
//! rules: `apic_id = socket << (core_bits + thread_bits) | core << thread_bits | thread`,
//! each field as wide as it needs to be rounded up to a power of two. The MP table and
//! the MADT must use [`CpuTopology::apic_id`] so that every table agrees.

use kvm_bindings::{kvm_cpuid_entry2, CpuId, KVM_CPUID_FLAG_SIGNIFCANT_INDEX};
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum CpuidError {
    #[error("the supported CPUID table has no leaf 0 (vendor and max leaf)")]
    NoLeaf0,
    #[error("the supported CPUID table has no leaf 1 (features)")]
    NoLeaf1,
    #[error("vCPU index {index} is outside a {total}-CPU topology")]
    BadIndex { index: u32, total: u32 },
    #[error("topology {0:?} has a zero count")]
    EmptyTopology(CpuTopology),
    #[error("the CPUID table would have more than {0} entries")]
    TooManyEntries(usize),
}

/// sockets × cores per socket × threads per core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuTopology {
    pub sockets: u32,
    pub cores: u32,
    pub threads: u32,
}

/// Bits needed to number `n` things (0 for one thing).
fn bits_for(n: u32) -> u32 {
    if n <= 1 {
        0
    } else {
        32 - (n - 1).leading_zeros()
    }
}

impl CpuTopology {
    /// Total number of logical CPUs.
    pub fn count(&self) -> u32 {
        self.sockets * self.cores * self.threads
    }

    /// Width of the SMT field of the APIC ID.
    pub fn thread_bits(&self) -> u32 {
        bits_for(self.threads)
    }

    /// Width of the core field of the APIC ID.
    pub fn core_bits(&self) -> u32 {
        bits_for(self.cores)
    }

    /// (socket, core, thread) of vCPU `index`; vCPUs fill threads, then cores, then sockets.
    pub fn position(&self, index: u32) -> (u32, u32, u32) {
        let threads = self.threads.max(1);
        let cores = self.cores.max(1);
        (
            index / (threads * cores),
            (index / threads) % cores,
            index % threads,
        )
    }

    /// The (x2)APIC ID of vCPU `index`.
    pub fn apic_id(&self, index: u32) -> u32 {
        let (socket, core, thread) = self.position(index);
        let tb = self.thread_bits();
        (socket << (self.core_bits() + tb)) | (core << tb) | thread
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Vendor {
    Intel,
    Amd,
    Other,
}

fn vendor(leaf0: &kvm_cpuid_entry2) -> Vendor {
    let mut v = [0u8; 12];
    v[..4].copy_from_slice(&leaf0.ebx.to_le_bytes());
    v[4..8].copy_from_slice(&leaf0.edx.to_le_bytes());
    v[8..].copy_from_slice(&leaf0.ecx.to_le_bytes());
    match &v {
        b"GenuineIntel" => Vendor::Intel,
        b"AuthenticAMD" | b"HygonGenuine" => Vendor::Amd,
        _ => Vendor::Other,
    }
}

/// "KVMKVMKVM\0\0\0" as EBX, ECX, EDX of leaf 0x4000_0000.
pub const KVM_SIGNATURE: [u32; 3] = [0x4b4d_564b, 0x564b_4d56, 0x0000_004d];
/// Leaf 1 ECX bit 31: running under a hypervisor.
pub const HYPERVISOR_BIT: u32 = 1 << 31;
/// Leaf 1 EDX bit 28: EBX[23:16] holds the logical processor count.
pub const HTT_BIT: u32 = 1 << 28;

const LEVEL_INVALID: u32 = 0;
const LEVEL_SMT: u32 = 1;
const LEVEL_CORE: u32 = 2;

fn entry(function: u32, index: u32, regs: [u32; 4]) -> kvm_cpuid_entry2 {
    kvm_cpuid_entry2 {
        function,
        index,
        flags: KVM_CPUID_FLAG_SIGNIFCANT_INDEX,
        eax: regs[0],
        ebx: regs[1],
        ecx: regs[2],
        edx: regs[3],
        ..Default::default()
    }
}

/// Leaf 0xB / 0x1F subleaves 0 (SMT), 1 (core), 2 (invalid); EDX = x2APIC ID on each.
fn topology_leaves(function: u32, topo: &CpuTopology, apic_id: u32) -> [kvm_cpuid_entry2; 3] {
    let tb = topo.thread_bits();
    let cb = topo.core_bits();
    [
        entry(function, 0, [tb, topo.threads, (LEVEL_SMT << 8), apic_id]),
        entry(
            function,
            1,
            [
                tb + cb,
                topo.threads * topo.cores,
                (LEVEL_CORE << 8) | 1,
                apic_id,
            ],
        ),
        entry(function, 2, [0, 0, (LEVEL_INVALID << 8) | 2, apic_id]),
    ]
}

/// The CPUID table of vCPU `index` in a machine of topology `topo`, from the host's
/// `supported` table.
pub fn vcpu_cpuid(supported: &CpuId, topo: &CpuTopology, index: u32) -> Result<CpuId, CpuidError> {
    if topo.sockets == 0 || topo.cores == 0 || topo.threads == 0 {
        return Err(CpuidError::EmptyTopology(*topo));
    }
    if index >= topo.count() {
        return Err(CpuidError::BadIndex {
            index,
            total: topo.count(),
        });
    }
    let apic_id = topo.apic_id(index);
    let (socket, core, _) = topo.position(index);
    let (tb, cb) = (topo.thread_bits(), topo.core_bits());
    let per_package = topo.cores * topo.threads;
    let addressable = 1u32 << (tb + cb);

    let mut out: Vec<kvm_cpuid_entry2> = supported
        .as_slice()
        .iter()
        .filter(|e| e.function != 0xb && e.function != 0x1f)
        .copied()
        .collect();
    let leaf0 = out
        .iter_mut()
        .find(|e| e.function == 0)
        .ok_or(CpuidError::NoLeaf0)?;
    let vendor = vendor(leaf0);
    // Leaf 0xB must exist for x2APIC topology; raise the max basic leaf if the host's
    // is lower.
    leaf0.eax = leaf0.eax.max(0xb);
    let max_basic = leaf0.eax;
    let has_1f = max_basic >= 0x1f;

    let mut seen_leaf1 = false;
    for e in out.iter_mut() {
        match e.function {
            1 => {
                seen_leaf1 = true;
                e.ebx = (e.ebx & 0x0000_ffff)
                    | ((apic_id & 0xff) << 24)
                    | ((addressable.min(255)) << 16);
                e.ecx |= HYPERVISOR_BIT;
                if per_package > 1 {
                    e.edx |= HTT_BIT;
                } else {
                    e.edx &= !HTT_BIT;
                }
            }
            4 if e.eax & 0x1f != 0 => {
                let level = (e.eax >> 5) & 7;
                let sharing = if level >= 3 { addressable } else { 1 << tb };
                let cores_ids = (1u32 << cb).min(64);
                e.eax = (e.eax & 0x3fff)
                    | (((cores_ids - 1) & 0x3f) << 26)
                    | (((sharing - 1) & 0xfff) << 14);
            }
            0x8000_0001 if vendor == Vendor::Amd => {
                // CmpLegacy: more than one logical CPU per package.
                if per_package > 1 {
                    e.ecx |= 1 << 1;
                } else {
                    e.ecx &= !(1 << 1);
                }
            }
            0x8000_0008 if vendor == Vendor::Amd => {
                e.ecx = (e.ecx & !0xf0ff) | ((tb + cb) << 12) | ((per_package - 1) & 0xff);
            }
            0x8000_001e if vendor == Vendor::Amd => {
                e.eax = apic_id;
                e.ebx = (e.ebx & !0xffff) | ((topo.threads - 1) << 8) | (core & 0xff);
                e.ecx = (e.ecx & !0xff) | (socket & 0xff);
            }
            0x4000_0000 => {
                [e.ebx, e.ecx, e.edx] = KVM_SIGNATURE;
            }
            _ => {}
        }
    }
    if !seen_leaf1 {
        return Err(CpuidError::NoLeaf1);
    }
    if !out.iter().any(|e| e.function == 0x4000_0000) {
        let max = if out.iter().any(|e| e.function == 0x4000_0001) {
            0x4000_0001
        } else {
            0x4000_0000
        };
        let mut sig = entry(
            0x4000_0000,
            0,
            [max, KVM_SIGNATURE[0], KVM_SIGNATURE[1], KVM_SIGNATURE[2]],
        );
        sig.flags = 0;
        out.push(sig);
    }
    out.extend(topology_leaves(0xb, topo, apic_id));
    if has_1f {
        out.extend(topology_leaves(0x1f, topo, apic_id));
    }
    CpuId::from_entries(&out).map_err(|_| CpuidError::TooManyEntries(out.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(function: u32, index: u32, eax: u32, ebx: u32, ecx: u32, edx: u32) -> kvm_cpuid_entry2 {
        kvm_cpuid_entry2 {
            function,
            index,
            eax,
            ebx,
            ecx,
            edx,
            ..Default::default()
        }
    }

    fn host(vendor: &[u8; 12], max: u32) -> CpuId {
        let r =
            |i: usize| u32::from_le_bytes([vendor[i], vendor[i + 1], vendor[i + 2], vendor[i + 3]]);
        CpuId::from_entries(&[
            leaf(0, 0, max, r(0), r(8), r(4)),
            leaf(1, 0, 0x906ea, 0xff08_0800, 0x7ffa_3203, 0x1f8b_fbff),
            leaf(4, 0, 0x1c00_4121, 0, 0, 0),
            leaf(4, 3, 0x1c03_c163, 0, 0, 0),
            leaf(4, 4, 0, 0, 0, 0),
            leaf(0xb, 0, 1, 2, 0x100, 7),
            leaf(0x8000_0001, 0, 0, 0, 0, 0),
            leaf(0x8000_0008, 0, 0x3030, 0, 0, 0),
            leaf(0x4000_0001, 0, 0x1234, 0, 0, 0),
        ])
        .unwrap()
    }

    fn find(c: &CpuId, f: u32, i: u32) -> kvm_cpuid_entry2 {
        *c.as_slice()
            .iter()
            .find(|e| e.function == f && e.index == i)
            .unwrap()
    }

    #[test]
    fn apic_ids_follow_topology() {
        let t = CpuTopology {
            sockets: 2,
            cores: 3,
            threads: 2,
        };
        assert_eq!((t.thread_bits(), t.core_bits()), (1, 2));
        let ids: Vec<u32> = (0..t.count()).map(|i| t.apic_id(i)).collect();
        assert_eq!(ids, vec![0, 1, 2, 3, 4, 5, 8, 9, 10, 11, 12, 13]);
        let flat = CpuTopology {
            sockets: 1,
            cores: 4,
            threads: 1,
        };
        assert_eq!(
            (0..4).map(|i| flat.apic_id(i)).collect::<Vec<_>>(),
            vec![0, 1, 2, 3]
        );
    }

    #[test]
    fn intel_leaves() {
        let t = CpuTopology {
            sockets: 2,
            cores: 3,
            threads: 2,
        };
        let c = vcpu_cpuid(&host(b"GenuineIntel", 0x1f), &t, 7).unwrap();
        let id = t.apic_id(7);
        assert_eq!(id, 9);
        let l1 = find(&c, 1, 0);
        assert_eq!(l1.ebx >> 24, id);
        assert_eq!((l1.ebx >> 16) & 0xff, 8);
        assert_eq!(l1.ebx & 0xffff, 0x0800);
        assert_ne!(l1.ecx & HYPERVISOR_BIT, 0);
        assert_ne!(l1.edx & HTT_BIT, 0);
        for f in [0xb, 0x1f] {
            let s0 = find(&c, f, 0);
            let s1 = find(&c, f, 1);
            let s2 = find(&c, f, 2);
            assert_eq!((s0.eax, s0.ebx, s0.ecx, s0.edx), (1, 2, 0x100, id));
            assert_eq!((s1.eax, s1.ebx, s1.ecx, s1.edx), (3, 6, 0x201, id));
            assert_eq!((s2.eax, s2.ebx, s2.ecx, s2.edx), (0, 0, 2, id));
            assert_eq!(s0.flags, KVM_CPUID_FLAG_SIGNIFCANT_INDEX);
        }
        assert_eq!(c.as_slice().iter().filter(|e| e.function == 0xb).count(), 3);
        // L1: shared by the 2 threads, 4 addressable cores; L3 by the package.
        assert_eq!(find(&c, 4, 0).eax, (3 << 26) | (1 << 14) | 0x121);
        assert_eq!(find(&c, 4, 3).eax, (3 << 26) | (7 << 14) | 0x163);
        assert_eq!(find(&c, 4, 4).eax, 0);
        let sig = find(&c, 0x4000_0000, 0);
        assert_eq!(
            [sig.eax, sig.ebx, sig.ecx, sig.edx],
            [0x4000_0001, 0x4b4d_564b, 0x564b_4d56, 0x4d]
        );
        let mut s = Vec::new();
        for r in [sig.ebx, sig.ecx, sig.edx] {
            s.extend_from_slice(&r.to_le_bytes());
        }
        assert_eq!(&s, b"KVMKVMKVM\0\0\0");
        // Intel: AMD-only leaves left alone.
        assert_eq!(find(&c, 0x8000_0008, 0).ecx, 0);
    }

    #[test]
    fn single_cpu_and_amd() {
        let one = CpuTopology {
            sockets: 1,
            cores: 1,
            threads: 1,
        };
        let c = vcpu_cpuid(&host(b"AuthenticAMD", 0xd), &one, 0).unwrap();
        let l1 = find(&c, 1, 0);
        assert_eq!(l1.ebx >> 16, 1);
        assert_eq!(l1.edx & HTT_BIT, 0);
        assert_eq!(find(&c, 0, 0).eax, 0xd);
        assert!(!c.as_slice().iter().any(|e| e.function == 0x1f));
        assert_eq!(find(&c, 0xb, 1).ebx, 1);

        let quad = CpuTopology {
            sockets: 1,
            cores: 4,
            threads: 1,
        };
        let c = vcpu_cpuid(&host(b"AuthenticAMD", 0x7), &quad, 3).unwrap();
        assert_eq!(find(&c, 0, 0).eax, 0xb);
        assert_eq!(find(&c, 0x8000_0008, 0).ecx, (2 << 12) | 3);
        assert_eq!(find(&c, 0x8000_0001, 0).ecx & 2, 2);
        assert_eq!(find(&c, 0xb, 0).edx, 3);
    }

    #[test]
    fn rejects_bad_input() {
        let t = CpuTopology {
            sockets: 1,
            cores: 2,
            threads: 1,
        };
        let h = host(b"GenuineIntel", 0xd);
        assert_eq!(
            vcpu_cpuid(&h, &t, 2).unwrap_err(),
            CpuidError::BadIndex { index: 2, total: 2 }
        );
        let z = CpuTopology {
            sockets: 1,
            cores: 0,
            threads: 1,
        };
        assert!(matches!(
            vcpu_cpuid(&h, &z, 0),
            Err(CpuidError::EmptyTopology(_))
        ));
        let empty = CpuId::from_entries(&[leaf(1, 0, 0, 0, 0, 0)]).unwrap();
        assert_eq!(vcpu_cpuid(&empty, &t, 0).unwrap_err(), CpuidError::NoLeaf0);
    }
}
