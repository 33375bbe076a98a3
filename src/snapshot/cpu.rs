//! Whether this host can run a guest that saw a given CPUID: every feature bit the
//! guest was shown must be one this host's KVM offers too, and the vendor the same.
//! A mismatch names the feature (as Linux's `/proc/cpuinfo` spells it where we know
//! the name).

use kvm_bindings::kvm_cpuid_entry2;

/// (leaf, subleaf, register, bit, name) of the feature bits worth naming.
const NAMES: &[(u32, u32, Reg, u32, &str)] = &[
    (1, 0, Reg::Ecx, 0, "sse3"),
    (1, 0, Reg::Ecx, 1, "pclmulqdq"),
    (1, 0, Reg::Ecx, 9, "ssse3"),
    (1, 0, Reg::Ecx, 12, "fma"),
    (1, 0, Reg::Ecx, 13, "cx16"),
    (1, 0, Reg::Ecx, 19, "sse4_1"),
    (1, 0, Reg::Ecx, 20, "sse4_2"),
    (1, 0, Reg::Ecx, 21, "x2apic"),
    (1, 0, Reg::Ecx, 22, "movbe"),
    (1, 0, Reg::Ecx, 23, "popcnt"),
    (1, 0, Reg::Ecx, 24, "tsc_deadline_timer"),
    (1, 0, Reg::Ecx, 25, "aes"),
    (1, 0, Reg::Ecx, 26, "xsave"),
    (1, 0, Reg::Ecx, 28, "avx"),
    (1, 0, Reg::Ecx, 29, "f16c"),
    (1, 0, Reg::Ecx, 30, "rdrand"),
    (1, 0, Reg::Edx, 25, "sse"),
    (1, 0, Reg::Edx, 26, "sse2"),
    (7, 0, Reg::Ebx, 0, "fsgsbase"),
    (7, 0, Reg::Ebx, 3, "bmi1"),
    (7, 0, Reg::Ebx, 5, "avx2"),
    (7, 0, Reg::Ebx, 8, "bmi2"),
    (7, 0, Reg::Ebx, 9, "erms"),
    (7, 0, Reg::Ebx, 16, "avx512f"),
    (7, 0, Reg::Ebx, 18, "rdseed"),
    (7, 0, Reg::Ebx, 19, "adx"),
    (7, 0, Reg::Ebx, 29, "sha_ni"),
    (7, 0, Reg::Ecx, 9, "vaes"),
    (7, 0, Reg::Ecx, 10, "vpclmulqdq"),
    (7, 0, Reg::Edx, 24, "amx_tile"),
    (0x8000_0001, 0, Reg::Ecx, 0, "lahf_lm"),
    (0x8000_0001, 0, Reg::Ecx, 5, "abm"),
    (0x8000_0001, 0, Reg::Edx, 20, "nx"),
    (0x8000_0001, 0, Reg::Edx, 26, "pdpe1gb"),
    (0x8000_0001, 0, Reg::Edx, 27, "rdtscp"),
    (0x8000_0001, 0, Reg::Edx, 29, "lm"),
    (0xd, 1, Reg::Eax, 0, "xsaveopt"),
    (0xd, 1, Reg::Eax, 1, "xsavec"),
    (0xd, 1, Reg::Eax, 3, "xsaves"),
];

/// The feature leaves compared bit by bit.
const FEATURE_LEAVES: &[(u32, u32, &[Reg])] = &[
    (1, 0, &[Reg::Ecx, Reg::Edx]),
    (7, 0, &[Reg::Ebx, Reg::Ecx, Reg::Edx]),
    (0xd, 1, &[Reg::Eax]),
    (0x8000_0001, 0, &[Reg::Ecx, Reg::Edx]),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reg {
    Eax,
    Ebx,
    Ecx,
    Edx,
}

fn reg(e: &kvm_cpuid_entry2, r: Reg) -> u32 {
    match r {
        Reg::Eax => e.eax,
        Reg::Ebx => e.ebx,
        Reg::Ecx => e.ecx,
        Reg::Edx => e.edx,
    }
}

fn find(cpuid: &[kvm_cpuid_entry2], leaf: u32, sub: u32) -> Option<&kvm_cpuid_entry2> {
    cpuid
        .iter()
        .find(|e| e.function == leaf && (e.index == sub || sub == 0 && e.index == 0))
}

/// The 12-character vendor string of leaf 0.
pub fn vendor(cpuid: &[kvm_cpuid_entry2]) -> String {
    let Some(e) = find(cpuid, 0, 0) else {
        return String::new();
    };
    let bytes: Vec<u8> = [e.ebx, e.edx, e.ecx]
        .iter()
        .flat_map(|r| r.to_le_bytes())
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn name(leaf: u32, sub: u32, r: Reg, bit: u32) -> String {
    NAMES
        .iter()
        .find(|n| n.0 == leaf && n.1 == sub && n.2 == r && n.3 == bit)
        .map_or_else(
            || format!("CPUID.{leaf:#x}.{sub}:{r:?}[{bit}]").to_uppercase(),
            |n| n.4.to_string(),
        )
}

/// None if `host` (what this host would give the same vCPU) offers everything
/// `saved` showed the guest; else what is missing, named.
pub fn missing(saved: &[kvm_cpuid_entry2], host: &[kvm_cpuid_entry2]) -> Option<String> {
    let (sv, hv) = (vendor(saved), vendor(host));
    if sv != hv {
        return Some(format!("the CPU vendor ({sv} saved, {hv} here)"));
    }
    let mut gone = Vec::new();
    for &(leaf, sub, regs) in FEATURE_LEAVES {
        let Some(s) = find(saved, leaf, sub) else {
            continue;
        };
        let h = find(host, leaf, sub);
        for &r in regs {
            let lost = reg(s, r) & !h.map_or(0, |h| reg(h, r));
            gone.extend(
                (0..32)
                    .filter(|b| lost & (1 << b) != 0)
                    .map(|b| name(leaf, sub, r, b)),
            );
        }
    }
    (!gone.is_empty()).then(|| format!("CPU features {}", gone.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(function: u32, index: u32, ebx: u32, ecx: u32, edx: u32) -> kvm_cpuid_entry2 {
        kvm_cpuid_entry2 {
            function,
            index,
            ebx,
            ecx,
            edx,
            ..Default::default()
        }
    }

    #[test]
    fn names_what_the_host_lacks() {
        let intel = e(0, 0, 0x756e_6547, 0x6c65_746e, 0x4965_6e69);
        let saved = [intel, e(7, 0, 1 << 5, 0, 0), e(1, 0, 0, 1 << 28, 0)];
        let host = [intel, e(7, 0, 0, 0, 0), e(1, 0, 0, 1 << 28, 0)];
        assert_eq!(vendor(&saved), "GenuineIntel");
        assert_eq!(missing(&saved, &saved), None);
        assert_eq!(missing(&saved, &host).as_deref(), Some("CPU features avx2"));
        let amd = e(0, 0, 0x6874_7541, 0x444d_4163, 0x6974_6e65);
        assert!(missing(&saved, &[amd]).unwrap().contains("vendor"));
    }
}
