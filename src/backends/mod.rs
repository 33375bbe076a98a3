//! Host-side backends that devices talk to: character devices, TAP, the lab switch, disk images.
pub mod chardev;
