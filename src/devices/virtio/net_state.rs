//! virtio-net's own snapshot state: the link (carrier) and a received frame that
//! waits for a receive buffer. Frames still in the backend's host queue stay there.

use serde::{Deserialize, Serialize};

use super::{State, MAX_FRAME};
use crate::snapshot::state::{decode, encode, ensure, StateError};

#[derive(Serialize, Deserialize)]
struct NetState {
    link_up: bool,
    held: Option<Vec<u8>>,
}

pub(super) fn save(st: &State) -> Result<Vec<u8>, StateError> {
    let held = st.held.and_then(|n| st.frame.get(..n)).map(|f| f.to_vec());
    encode(&NetState {
        link_up: st.link_up,
        held,
    })
}

pub(super) fn restore(st: &mut State, bytes: &[u8]) -> Result<(), StateError> {
    let s: NetState = decode(bytes)?;
    if let Some(f) = &s.held {
        ensure(f.len() <= MAX_FRAME && f.len() <= st.frame.len(), || {
            format!("a held frame of {} bytes", f.len())
        })?;
    }
    // Without a backend the link stays down, as `set_link` keeps it.
    st.link_up = s.link_up && st.backend.is_some();
    st.held = s.held.map(|f| {
        st.frame[..f.len()].copy_from_slice(&f);
        f.len()
    });
    Ok(())
}
