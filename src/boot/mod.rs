//! Boot images: Linux (bzImage, ELF vmlinux, PVH) and firmware ROMs.
pub mod probe;
