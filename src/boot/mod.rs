//! Boot images: Linux (bzImage, ELF vmlinux, PVH) and firmware ROMs.
pub mod bzimage;
pub mod elf;
pub mod firmware;
pub mod linux;
pub mod probe;
pub mod pvh;
#[cfg(test)]
mod testimg;
pub mod zeropage;
