use super::*;

fn spec(board: &str, extra: &str) -> MachineSpec {
    let text = format!("[machine]\nboard = \"{board}\"\nmemory = \"512MiB\"\n{extra}");
    let (_, r) = crate::check_str("t.toml", &text, std::path::Path::new("/"));
    r.expect("valid machine")
}

fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
}

#[test]
fn every_checksum_is_valid() {
    for board in ["pc", "q35", "microvm"] {
        let a = build(&spec(board, ""));
        assert_eq!(sum(&a.rsdp[..20]), 0, "{board} rsdp v1");
        assert_eq!(sum(&a.rsdp), 0, "{board} rsdp v2");
        for e in &a.entries {
            let t = &a.tables[e.offset..e.offset + e.len];
            assert_eq!(u32_at(t, 4) as usize, e.len);
            if &e.sig != b"FACS" {
                assert_eq!(sum(t), 0, "{board} {:?}", e.sig);
            }
        }
        let sigs: Vec<&[u8; 4]> = a.entries.iter().map(|e| &e.sig).collect();
        assert_eq!(sigs.contains(&b"MCFG"), board == "q35");
    }
}

#[test]
fn relocated_tables_match_the_loader_script() {
    let a = build(&spec("q35", ""));
    let (rsdp, tables) = a.relocate(0x7ff_0000);
    let mut files = vec![
        (TABLES_FILE, a.tables.clone(), 0x7ff_0000),
        (RSDP_FILE, a.rsdp.clone(), 0xf_5000),
    ];
    loader::execute(&a.loader_commands(), &mut files).unwrap();
    assert_eq!(files[0].1, tables);
    assert_eq!(files[1].1, rsdp);
    // The XSDT entries and the RSDP pointers moved with the tables.
    let xsdt_addr = u64_at(&rsdp, tables::RSDP_XSDT);
    let xsdt = &tables[(xsdt_addr - 0x7ff_0000) as usize..];
    assert_eq!(&xsdt[..4], b"XSDT");
    let fadt_addr = u64_at(xsdt, 36);
    let fadt = &tables[(fadt_addr - 0x7ff_0000) as usize..];
    assert_eq!(&fadt[..4], b"FACP");
    let dsdt = u64_at(fadt, tables::FADT_X_DSDT);
    assert_eq!(u64::from(u32_at(fadt, tables::FADT_DSDT)), dsdt);
    assert_eq!(&tables[(dsdt - 0x7ff_0000) as usize..][..4], b"DSDT");
    let facs = u64::from(u32_at(fadt, tables::FADT_FIRMWARE_CTRL));
    assert_eq!(facs % 64, 0);
    assert_eq!(u64_at(fadt, tables::FADT_X_FIRMWARE_CTRL), 0);
    let loader = &a.fw_cfg_files()[2].1;
    assert_eq!(loader.len() % loader::COMMAND_LEN, 0);
}

#[test]
fn fadt_fields() {
    let pc = build(&spec("pc", ""));
    let f = pc.table(b"FACP").unwrap();
    assert_eq!(f.len(), tables::FADT_LEN);
    assert_eq!(u16::from_le_bytes([f[46], f[47]]), 9, "SCI_INT");
    assert_eq!(u32_at(f, 48), 0, "SMI_CMD");
    assert_eq!(u32_at(f, 56), 0x600);
    assert_eq!(u32_at(f, 64), 0x604);
    assert_eq!(u32_at(f, 76), 0x608);
    assert_eq!((u32_at(f, 80), f[92]), (0x60c, 4), "GPE0");
    assert_eq!(
        u16::from_le_bytes([f[109], f[110]]),
        0b011,
        "8042 + legacy, VGA present"
    );
    assert_ne!(u32_at(f, 112) & (1 << 10), 0, "RESET_REG_SUP");
    assert_eq!((u64_at(f, 120), f[128]), (0xcf9, 6));
    let q = build(&spec("q35", ""));
    let f = q.table(b"FACP").unwrap();
    assert_eq!((u32_at(f, 80), f[92]), (0x620, 0x10), "ICH9 GPE0");
    let m = build(&spec("microvm", ""));
    let f = m.table(b"FACP").unwrap();
    assert_eq!(
        u16::from_le_bytes([f[109], f[110]]),
        0b100,
        "no 8042, no VGA"
    );
    assert_eq!(u32_at(f, 112) & (1 << 10), 0);
}

#[test]
fn madt_entries() {
    let a = build(&spec(
        "q35",
        "cpus = 4\nsockets = 2\ncores = 1\nthreads = 2\n",
    ));
    let m = a.table(b"APIC").unwrap();
    assert_eq!(u32_at(m, 36), 0xfee0_0000);
    assert_eq!(u32_at(m, 40), 1, "PCAT_COMPAT");
    let mut i = 44;
    let (mut ids, mut isos, mut ioapic) = (vec![], vec![], None);
    while i < m.len() {
        let (t, l) = (m[i], m[i + 1] as usize);
        match t {
            0 => ids.push(m[i + 3] as u32),
            1 => ioapic = Some((m[i + 2], u32_at(m, i + 4))),
            2 => isos.push((m[i + 3], u32_at(m, i + 4), m[i + 8])),
            _ => {}
        }
        i += l;
    }
    assert_eq!(ids, vec![0, 1, 2, 3]);
    assert_eq!(ioapic, Some((4, 0xfec0_0000)));
    assert_eq!(isos, vec![(0, 2, 0), (9, 9, 0x0d)]);
    assert_eq!(tables::madt_overrides(&spec("pc", "")), 2);
}

#[test]
fn madt_x2apic_for_large_ids() {
    let mut s = spec("q35", "");
    s.cpus = crate::spec::CpuTopology {
        sockets: 2,
        cores: 129,
        threads: 1,
    };
    let m = build(&s);
    let m = m.table(b"APIC").unwrap();
    let (mut x2, mut x, mut x2nmi) = (vec![], 0, false);
    let mut i = 44;
    while i < m.len() {
        match m[i] {
            0 => x += 1,
            9 => x2.push(u32_at(m, i + 4)),
            0x0a => x2nmi = true,
            _ => {}
        }
        i += m[i + 1] as usize;
    }
    // Socket 1 starts at APIC ID 256 (8 core bits).
    assert_eq!(x, 129);
    assert_eq!(x2.len(), 129);
    assert_eq!(x2[0], 256);
    assert!(x2nmi);
    assert_eq!(sum(m), 0);
}

#[test]
fn direct_write_places_rsdp_and_tables() {
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap();
    let a = build(&spec("pc", ""));
    let d = write_direct(&mem, &a, DIRECT_BASE, DIRECT_END).unwrap();
    assert_eq!(d.rsdp, DIRECT_BASE);
    assert_eq!(d.e820[0].kind, E820Type::Reserved);
    let mut r = [0u8; 36];
    mem.read_slice(&mut r, GuestAddress(DIRECT_BASE)).unwrap();
    assert_eq!(&r[..8], b"RSD PTR ");
    assert_eq!(sum(&r), 0);
    let xsdt = u64_at(&r, 24);
    let mut h = [0u8; 4];
    mem.read_slice(&mut h, GuestAddress(xsdt)).unwrap();
    assert_eq!(&h, b"XSDT");
    let err = write_direct(&mem, &a, DIRECT_BASE, DIRECT_BASE + 0x100).unwrap_err();
    assert!(matches!(err, AcpiError::TooLarge { .. }));
}

#[test]
fn the_power_button_is_the_fixed_feature_one() {
    // FADT PWR_BUTTON (bit 4) clear: the PM1 block's PWRBTN_STS/EN button, the one
    // `system_powerdown` presses; SLP_BUTTON (bit 5) set: no sleep button. The DSDT
    // must not also declare a control-method power button (PNP0C0C), and the MADT
    // makes the SCI level-triggered, active high, as QEMU's boards do.
    for board in ["pc", "q35", "microvm"] {
        let a = build(&spec(board, ""));
        let f = a.table(b"FACP").unwrap();
        assert_eq!(u32_at(f, 112) & (1 << 4), 0, "{board}: PWR_BUTTON");
        assert_ne!(u32_at(f, 112) & (1 << 5), 0, "{board}: SLP_BUTTON");
        assert_eq!(f[88], 4, "{board}: PM1_EVT_LEN (STS + EN)");
        let d = a.table(b"DSDT").unwrap();
        let eisa_pnp0c0c = [0x41, 0xd0, 0x0c, 0x0c];
        assert!(!d.windows(4).any(|w| w == eisa_pnp0c0c), "{board}: PNP0C0C");
        let m = a.table(b"APIC").unwrap();
        let sci_iso = m
            .windows(10)
            .any(|w| w[0] == 2 && w[1] == 10 && w[3] == 9 && w[8] == 0x0d);
        assert!(sci_iso, "{board}: SCI override, level, active high");
    }
}
