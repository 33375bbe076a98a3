//! Register offsets (BAR0, byte offsets) and bit fields of the 82540EM, as the 8254x
//! Software Developer's Manual names them.

pub const CTRL: u32 = 0x0000;
pub const STATUS: u32 = 0x0008;
pub const EECD: u32 = 0x0010;
pub const EERD: u32 = 0x0014;
pub const CTRL_EXT: u32 = 0x0018;
pub const MDIC: u32 = 0x0020;
pub const FCAL: u32 = 0x0028;
pub const FCAH: u32 = 0x002c;
pub const FCT: u32 = 0x0030;
pub const VET: u32 = 0x0038;
pub const ICR: u32 = 0x00c0;
pub const ITR: u32 = 0x00c4;
pub const ICS: u32 = 0x00c8;
pub const IMS: u32 = 0x00d0;
pub const IMC: u32 = 0x00d8;
pub const RCTL: u32 = 0x0100;
pub const FCTTV: u32 = 0x0170;
pub const TXCW: u32 = 0x0178;
pub const RXCW: u32 = 0x0180;
pub const TCTL: u32 = 0x0400;
pub const TIPG: u32 = 0x0410;
pub const AIT: u32 = 0x0458;
pub const LEDCTL: u32 = 0x0e00;
pub const PBA: u32 = 0x1000;
pub const FCRTL: u32 = 0x2160;
pub const FCRTH: u32 = 0x2168;
pub const RDBAL: u32 = 0x2800;
pub const RDBAH: u32 = 0x2804;
pub const RDLEN: u32 = 0x2808;
pub const RDH: u32 = 0x2810;
pub const RDT: u32 = 0x2818;
pub const RDTR: u32 = 0x2820;
pub const RXDCTL: u32 = 0x2828;
pub const RADV: u32 = 0x282c;
pub const RSRPD: u32 = 0x2c00;
pub const TXDMAC: u32 = 0x3000;
pub const TDBAL: u32 = 0x3800;
pub const TDBAH: u32 = 0x3804;
pub const TDLEN: u32 = 0x3808;
pub const TDH: u32 = 0x3810;
pub const TDT: u32 = 0x3818;
pub const TIDV: u32 = 0x3820;
pub const TXDCTL: u32 = 0x3828;
pub const TADV: u32 = 0x382c;
pub const TSPMT: u32 = 0x3830;
/// FIFO diagnostic registers.
pub const RDFH: u32 = 0x2410;
pub const RDFT: u32 = 0x2418;
pub const RDFHS: u32 = 0x2420;
pub const RDFTS: u32 = 0x2428;
pub const RDFPC: u32 = 0x2430;
pub const TDFH: u32 = 0x3410;
pub const TDFT: u32 = 0x3418;
pub const TDFHS: u32 = 0x3420;
pub const TDFTS: u32 = 0x3428;
pub const TDFPC: u32 = 0x3430;
/// Statistics: 0x4000..0x4100, every register clears when read.
pub const STATS_START: u32 = 0x4000;
pub const STATS_END: u32 = 0x4100;
pub const RXCSUM: u32 = 0x5000;
/// Multicast table array: 128 words.
pub const MTA: u32 = 0x5200;
pub const MTA_END: u32 = 0x5400;
/// Receive address array: 16 (RAL, RAH) pairs.
pub const RA: u32 = 0x5400;
pub const RA_END: u32 = 0x5480;
pub const RA_ENTRIES: usize = 16;
/// VLAN filter table array: 128 words.
pub const VFTA: u32 = 0x5600;
pub const VFTA_END: u32 = 0x5800;
pub const WUC: u32 = 0x5800;
pub const WUFC: u32 = 0x5808;
pub const WUS: u32 = 0x5810;
pub const MANC: u32 = 0x5820;
pub const IPAV: u32 = 0x5838;
pub const IP4AT: u32 = 0x5840;
pub const IP4AT_END: u32 = 0x5860;
pub const IP6AT: u32 = 0x5880;
pub const IP6AT_END: u32 = 0x5890;
pub const WUPL: u32 = 0x5900;
pub const WUPM: u32 = 0x5a00;
pub const WUPM_END: u32 = 0x5a80;
pub const FFLT: u32 = 0x5f00;
pub const FFLT_END: u32 = 0x5f20;
pub const FFMT: u32 = 0x9000;
pub const FFMT_END: u32 = 0x9400;
pub const FFVT: u32 = 0x9800;
pub const FFVT_END: u32 = 0x9c00;
/// Packet buffer memory (diagnostic window onto the 64 KiB FIFO RAM).
pub const PBM: u32 = 0x10000;
pub const PBM_END: u32 = 0x20000;

/// Size of the register BAR (BAR0).
pub const MMIO_SIZE: u64 = 0x20000;
/// Size of the I/O BAR (BAR1): IOADDR and IODATA.
pub const IO_SIZE: u64 = 8;

// CTRL
pub const CTRL_FD: u32 = 1 << 0;
pub const CTRL_LRST: u32 = 1 << 3;
pub const CTRL_ASDE: u32 = 1 << 5;
pub const CTRL_SLU: u32 = 1 << 6;
pub const CTRL_SPEED_1000: u32 = 2 << 8;
pub const CTRL_ADVD3WUC: u32 = 1 << 20;
pub const CTRL_RST: u32 = 1 << 26;
pub const CTRL_VME: u32 = 1 << 30;
pub const CTRL_PHY_RST: u32 = 1 << 31;
/// Bits of CTRL that hold a value (the rest are reserved or self-clearing).
pub const CTRL_WMASK: u32 = 0xd8fc_1be9;

// STATUS
pub const STATUS_FD: u32 = 1 << 0;
pub const STATUS_LU: u32 = 1 << 1;
pub const STATUS_SPEED_1000: u32 = 2 << 6;
pub const STATUS_ASDV_1000: u32 = 2 << 8;

// EECD
pub const EECD_SK: u32 = 1 << 0;
pub const EECD_CS: u32 = 1 << 1;
pub const EECD_DI: u32 = 1 << 2;
pub const EECD_DO: u32 = 1 << 3;
pub const EECD_FWE_DISABLED: u32 = 1 << 4;
pub const EECD_FWE_MASK: u32 = 3 << 4;
pub const EECD_REQ: u32 = 1 << 6;
pub const EECD_GNT: u32 = 1 << 7;
pub const EECD_PRES: u32 = 1 << 8;

// EERD (82540 layout: start bit 0, done bit 4, address 15:8, data 31:16)
pub const EERD_START: u32 = 1 << 0;
pub const EERD_DONE: u32 = 1 << 4;

// MDIC
pub const MDIC_DATA: u32 = 0xffff;
pub const MDIC_OP_WRITE: u32 = 1 << 26;
pub const MDIC_OP_READ: u32 = 2 << 26;
pub const MDIC_READY: u32 = 1 << 28;
pub const MDIC_INT_EN: u32 = 1 << 29;
pub const MDIC_ERROR: u32 = 1 << 30;

// Interrupt causes (ICR, ICS, IMS, IMC)
pub const INT_TXDW: u32 = 1 << 0;
pub const INT_TXQE: u32 = 1 << 1;
pub const INT_LSC: u32 = 1 << 2;
pub const INT_RXSEQ: u32 = 1 << 3;
pub const INT_RXDMT0: u32 = 1 << 4;
pub const INT_RXO: u32 = 1 << 6;
pub const INT_RXT0: u32 = 1 << 7;
pub const INT_MDAC: u32 = 1 << 9;
pub const INT_RXCFG: u32 = 1 << 10;
pub const INT_GPI0: u32 = 1 << 11;
pub const INT_PHYINT: u32 = 1 << 12;
pub const INT_TXD_LOW: u32 = 1 << 15;
pub const INT_SRPD: u32 = 1 << 16;
/// The causes the 82540EM implements.
pub const INT_MASK: u32 = 0x0001_fedf;

// RCTL
pub const RCTL_EN: u32 = 1 << 1;
pub const RCTL_SBP: u32 = 1 << 2;
pub const RCTL_UPE: u32 = 1 << 3;
pub const RCTL_MPE: u32 = 1 << 4;
pub const RCTL_LPE: u32 = 1 << 5;
pub const RCTL_LBM_SHIFT: u32 = 6;
pub const RCTL_RDMTS_SHIFT: u32 = 8;
pub const RCTL_MO_SHIFT: u32 = 12;
pub const RCTL_BAM: u32 = 1 << 15;
pub const RCTL_BSIZE_SHIFT: u32 = 16;
pub const RCTL_VFE: u32 = 1 << 18;
pub const RCTL_CFIEN: u32 = 1 << 19;
pub const RCTL_CFI: u32 = 1 << 20;
pub const RCTL_BSEX: u32 = 1 << 25;
pub const RCTL_SECRC: u32 = 1 << 26;
pub const RCTL_WMASK: u32 = 0x06df_b3fe;

// TCTL
pub const TCTL_EN: u32 = 1 << 1;
pub const TCTL_PSP: u32 = 1 << 3;

// RDTR
pub const RDTR_FPD: u32 = 1 << 31;

// RXCSUM
pub const RXCSUM_PCSS: u32 = 0xff;
pub const RXCSUM_IPOFL: u32 = 1 << 8;
pub const RXCSUM_TUOFL: u32 = 1 << 9;

// RAH
pub const RAH_AV: u32 = 1 << 31;

// Receive descriptor status and errors
pub const RXD_DD: u8 = 1 << 0;
pub const RXD_EOP: u8 = 1 << 1;
pub const RXD_IXSM: u8 = 1 << 2;
pub const RXD_VP: u8 = 1 << 3;
pub const RXD_TCPCS: u8 = 1 << 5;
pub const RXD_IPCS: u8 = 1 << 6;
pub const RXE_TCPE: u8 = 1 << 5;
pub const RXE_IPE: u8 = 1 << 6;

// Transmit descriptor command bits (legacy CMD, and DCMD / TUCMD)
pub const TXD_EOP: u8 = 1 << 0;
pub const TXD_IFCS: u8 = 1 << 1;
pub const TXD_IC: u8 = 1 << 2;
pub const TXD_TSE: u8 = 1 << 2;
pub const TXD_RS: u8 = 1 << 3;
pub const TXD_DEXT: u8 = 1 << 5;
pub const TXD_VLE: u8 = 1 << 6;
pub const TXD_IDE: u8 = 1 << 7;
/// Transmit descriptor status: descriptor done.
pub const TXD_STAT_DD: u8 = 1 << 0;
/// TUCMD: TCP (else UDP), IPv4 (else IPv6).
pub const TUCMD_TCP: u8 = 1 << 0;
pub const TUCMD_IP: u8 = 1 << 1;
/// POPTS: insert the IP checksum, the TCP/UDP checksum.
pub const POPTS_IXSM: u8 = 1 << 0;
pub const POPTS_TXSM: u8 = 1 << 1;

/// The delay timers count in units of 1.024 us; ITR in units of 256 ns.
pub const TIMER_UNIT_NS: u64 = 1024;
pub const ITR_UNIT_NS: u64 = 256;

/// The register at `off` holds a plain value (read back as written under this mask),
/// or `None` for special and reserved registers.
pub fn plain_mask(off: u32) -> Option<u32> {
    let m = match off {
        // ASDCHK (12) and EE_RST (13) self-clear.
        CTRL_EXT => 0x00e2_cfff,
        FCAL => 0xffff_ffff,
        FCAH | FCT | VET | FCTTV => 0xffff,
        TXCW => 0xc000_ffff,
        TIPG => 0x3fff_ffff,
        AIT => 0xffff,
        LEDCTL => 0xcfcf_cfcf,
        FCRTL => 0x8000_fff8,
        FCRTH => 0x0000_fff8,
        RDBAL | TDBAL => 0xffff_fff0,
        RDBAH | TDBAH => 0xffff_ffff,
        RDLEN | TDLEN => 0x000f_ff80,
        RADV | TIDV | TADV => 0xffff,
        // Thresholds, GRAN (bit 24); TXDCTL also LWTHRESH (31:25).
        RXDCTL => 0x013f_3f3f,
        TXDCTL => 0xff3f_3f3f,
        RSRPD => 0xfff,
        TXDMAC => 1,
        TSPMT => 0xffff_ffff,
        RDFH | RDFT | RDFHS | RDFTS | TDFH | TDFT | TDFHS | TDFTS => 0x1fff,
        RDFPC | TDFPC => 0x1fff,
        RXCSUM => 0x3ff,
        WUC => 0xf,
        WUFC => 0x000f_00ff,
        WUS => 0,
        MANC => 0x00ff_ffff,
        IPAV => 0x0001_0001,
        WUPL => 0xfff,
        MTA..MTA_END | VFTA..VFTA_END | IP4AT..IP4AT_END | IP6AT..IP6AT_END => 0xffff_ffff,
        WUPM..WUPM_END | PBM..PBM_END => 0xffff_ffff,
        FFMT..FFMT_END => 0xf,
        FFVT..FFVT_END => 0xff,
        FFLT..FFLT_END => 0x7ff,
        RA..RA_END if off & 4 == 0 => 0xffff_ffff,
        RA..RA_END => RAH_AV | 0x0003_ffff,
        _ => return None,
    };
    Some(m)
}
