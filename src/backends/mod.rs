//! Host-side backends that devices talk to: character devices, TAP, the lab switch, disk images.
pub mod chardev;
pub mod dgram;
pub mod dgram_sock;
pub mod private_dir;
pub mod switch;
pub mod tap;

/// A host-side Ethernet link a NIC sends frames to and receives frames from (TAP, the
/// lab switch, datagram cables). Frames are whole Ethernet frames (destination MAC first), no header.
pub trait NetBackend: Send {
    /// Sends one frame. A frame the link cannot take now is dropped, as a wire would:
    /// an `Err` is for the caller's counters, never a reason to stop the device.
    fn send(&mut self, frame: &[u8]) -> std::io::Result<()>;
    /// Takes one waiting frame into `buf` without blocking: `Ok(None)` when none waits.
    /// A frame longer than `buf` is cut to its length (callers give 64 KiB).
    fn recv(&mut self, buf: &mut [u8]) -> std::io::Result<Option<usize>>;
    /// The fd that polls readable when a frame waits.
    fn fd(&self) -> std::os::fd::RawFd;
}
pub mod disk;
pub mod qcow2;
