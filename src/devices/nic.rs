//! What every NIC model hands the event loop: the receive side ([`NicRx`]), so the VMM
//! drives virtio-net and the e1000 the same way. The loop polls [`NicRx::fd`] (the
//! backend's); when it is readable it calls [`NicRx::pump`], which moves frames into
//! the device; [`RxState::NoBuffers`] means a frame waits for the guest to post
//! buffers, and the waker given to [`NicRx::set_waker`] rings when it does.

use std::os::fd::RawFd;

/// What [`NicRx::pump`] left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxState {
    /// The backend may have more (batch limit) or is empty: keep polling its fd.
    Open,
    /// A frame waits for a receive buffer: poll the waker, not the fd.
    NoBuffers,
}

/// A NIC's receive side, shared with the device (cheap to clone).
pub trait NicRx: Send {
    /// The backend's fd, if the NIC has a backend.
    fn fd(&self) -> Option<RawFd>;
    /// Called by the device when the guest posts buffers after a `NoBuffers`.
    fn set_waker(&self, wake: Box<dyn Fn() + Send>);
    /// Moves waiting frames from the backend into the device.
    fn pump(&self) -> RxState;
}

/// A NIC's cable, for cable pulls (QMP `set_link`, `vmrun lab link`): the guest sees
/// carrier loss as the model shows it (virtio-net link status with a configuration
/// interrupt, the e1000's STATUS.LU and LSC) and frames stop both ways.
pub trait NicLink: Send + Sync {
    fn set_link(&self, up: bool);
    fn link_up(&self) -> bool;
}
