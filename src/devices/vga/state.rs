//! The std VGA's snapshot state: every legacy register (sequencer, graphics, CRTC,
//! attribute controller and its flip-flop, DAC indexes and palette), the DISPI
//! registers, the planar latches, video memory (only its non-zero 4 KiB pages) and
//! the PCI config space. Restoring the config space places the framebuffer memslot
//! where BAR0 and the memory-decode bit say, as a guest's write of them does.

use serde::{Deserialize, Serialize};

use super::pci::StdVga;
use super::regs::{VgaRegs, AR_LEN, CRTC_LEN, GR_LEN, SEQ_LEN};
use super::Vga;
use crate::devices::pci::PciConfigState;
use crate::snapshot::state::{decode, encode, ensure, StateError, Stateful};

const PAGE: usize = 4096;

#[derive(Serialize, Deserialize)]
struct RegsState {
    misc: u8,
    feature: u8,
    seq_index: u8,
    seq: Vec<u8>,
    gr_index: u8,
    gr: Vec<u8>,
    crtc_index: u8,
    crtc: Vec<u8>,
    ar_index: u8,
    ar: Vec<u8>,
    ar_flip_flop: bool,
    dac_read_index: u8,
    dac_write_index: u8,
    dac_sub_index: u8,
    dac_state: u8,
    dac_cache: [u8; 3],
    dac_pel_mask: u8,
    palette: Vec<u8>,
    retrace_toggle: u8,
}

#[derive(Serialize, Deserialize)]
struct VgaState {
    regs: RegsState,
    dispi_index: u16,
    dispi: Vec<u16>,
    latch: u32,
    /// (page index, its 4 KiB) for every page of VRAM that is not all zeros, in order.
    vram: Vec<(u32, Vec<u8>)>,
}

#[derive(Serialize, Deserialize)]
struct StdVgaState {
    cfg: PciConfigState,
    vga: VgaState,
}

fn regs_state(r: &VgaRegs) -> RegsState {
    RegsState {
        misc: r.misc,
        feature: r.feature,
        seq_index: r.seq_index,
        seq: r.seq.to_vec(),
        gr_index: r.gr_index,
        gr: r.gr.to_vec(),
        crtc_index: r.crtc_index,
        crtc: r.crtc.to_vec(),
        ar_index: r.ar_index,
        ar: r.ar.to_vec(),
        ar_flip_flop: r.ar_flip_flop,
        dac_read_index: r.dac_read_index,
        dac_write_index: r.dac_write_index,
        dac_sub_index: r.dac_sub_index,
        dac_state: r.dac_state,
        dac_cache: r.dac_cache,
        dac_pel_mask: r.dac_pel_mask,
        palette: r.palette.to_vec(),
        retrace_toggle: r.retrace_toggle,
    }
}

fn array<const N: usize>(v: &[u8], what: &str) -> Result<[u8; N], StateError> {
    v.try_into()
        .map_err(|_| StateError::Invalid(format!("{} bytes of {what}, not {N}", v.len())))
}

fn regs_from(s: &RegsState) -> Result<VgaRegs, StateError> {
    ensure(s.dac_sub_index <= 2, || {
        format!("DAC component {}", s.dac_sub_index)
    })?;
    let mut r = VgaRegs::new();
    r.misc = s.misc;
    r.feature = s.feature;
    r.seq_index = s.seq_index;
    r.seq = array::<SEQ_LEN>(&s.seq, "sequencer")?;
    r.gr_index = s.gr_index;
    r.gr = array::<GR_LEN>(&s.gr, "graphics controller")?;
    r.crtc_index = s.crtc_index;
    r.crtc = array::<CRTC_LEN>(&s.crtc, "CRTC")?;
    r.ar_index = s.ar_index;
    r.ar = array::<AR_LEN>(&s.ar, "attribute controller")?;
    r.ar_flip_flop = s.ar_flip_flop;
    r.dac_read_index = s.dac_read_index;
    r.dac_write_index = s.dac_write_index;
    r.dac_sub_index = s.dac_sub_index;
    r.dac_state = s.dac_state;
    r.dac_cache = s.dac_cache;
    r.dac_pel_mask = s.dac_pel_mask;
    r.palette = array::<768>(&s.palette, "palette")?;
    r.retrace_toggle = s.retrace_toggle;
    Ok(r)
}

impl Vga {
    fn save(&self) -> VgaState {
        let mut pages = Vec::new();
        let mut buf = vec![0u8; PAGE];
        for (i, at) in (0..self.vram.len()).step_by(PAGE).enumerate() {
            self.vram.copy_out(at, &mut buf);
            if buf.iter().any(|&b| b != 0) {
                pages.push((i as u32, buf.clone()));
            }
        }
        VgaState {
            regs: regs_state(&self.regs),
            dispi_index: self.dispi.index,
            dispi: self.dispi.regs.to_vec(),
            latch: self.window.latch,
            vram: pages,
        }
    }

    fn restore(&mut self, s: &VgaState) -> Result<(), StateError> {
        let regs = regs_from(&s.regs)?;
        let dispi = s
            .dispi
            .as_slice()
            .try_into()
            .map_err(|_| StateError::Invalid(format!("{} DISPI registers", s.dispi.len())))?;
        let pages = self.vram.len() / PAGE;
        let mut next = 0usize;
        for (i, data) in &s.vram {
            let i = *i as usize;
            ensure(i >= next && i < pages && data.len() == PAGE, || {
                format!("VRAM page {i} ({} bytes)", data.len())
            })?;
            next = i + 1;
        }
        self.regs = regs;
        self.dispi.index = s.dispi_index;
        self.dispi.regs = dispi;
        self.window.latch = s.latch;
        self.vram.clear(self.vram.len());
        for (i, data) in &s.vram {
            self.vram.copy_in(*i as usize * PAGE, data);
        }
        Ok(())
    }
}

impl Stateful for StdVga {
    fn save_state(&self) -> Result<Vec<u8>, StateError> {
        encode(&StdVgaState {
            cfg: self.config_state(),
            vga: self.vga().save(),
        })
    }

    fn restore_state(&mut self, bytes: &[u8]) -> Result<(), StateError> {
        let s: StdVgaState = decode(bytes)?;
        self.check_config_state(&s.cfg)?;
        self.vga_mut().restore(&s.vga)?;
        self.restore_config_state(&s.cfg)
    }
}
