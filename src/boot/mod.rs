//! Boot images: Linux (bzImage, ELF vmlinux, PVH) and firmware ROMs.
pub mod probe;
pub mod bzimage;
pub mod elf;
pub mod zeropage;
pub mod pvh;
pub mod linux;
#[cfg(test)]
mod testimg;
