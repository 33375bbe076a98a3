//! Run-time changes to a running lab's network, through the switch's control socket
//! (and, for cable pulls, the node's QMP socket so the guest sees carrier loss).

use std::path::PathBuf;

use thiserror::Error;

use super::state::LabState;
use crate::netsw::client::{Client, ClientError};
use crate::netsw::impair::ImpairConfig;

#[derive(Debug, Error)]
pub enum NetCtlError {
    #[error("the lab's switch is not running")]
    NoSwitch,
    #[error("the lab switch")]
    Switch(#[from] ClientError),
    #[error("`{0}` is not NODE:NIC")]
    BadEndpoint(String),
    #[error("node `{node}`: set_link on `{nic}` failed")]
    Qmp {
        node: String,
        nic: String,
        #[source]
        source: crate::control::ctl::CtlError,
    },
    #[error("cannot write the capture to {path}")]
    Output {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn switch(state: &LabState) -> Result<Client, NetCtlError> {
    let ctl = state.switch_control.as_ref().ok_or(NetCtlError::NoSwitch)?;
    Ok(Client::connect(ctl)?)
}

/// Pulls or plugs `node:nic`: the switch stops (or resumes) carrying the port's frames
/// and the node's NIC shows the carrier change (if the node runs).
pub fn set_link(state: &LabState, endpoint: &str, up: bool) -> Result<(), NetCtlError> {
    let (node, nic) = endpoint
        .split_once(':')
        .ok_or_else(|| NetCtlError::BadEndpoint(endpoint.into()))?;
    switch(state)?.set_link(endpoint, up)?;
    let running = state
        .node(node)
        .filter(|n| n.process.as_ref().is_some_and(|p| p.alive()));
    if let Some(n) = running {
        let args = crate::control::json::Json::object([
            ("name", crate::control::json::Json::from(nic)),
            ("up", crate::control::json::Json::Bool(up)),
        ]);
        crate::control::ctl::Client::connect(&n.qmp)
            .and_then(|mut c| c.execute("set_link", Some(args)))
            .map_err(|source| NetCtlError::Qmp {
                node: node.into(),
                nic: nic.into(),
                source,
            })?;
    }
    Ok(())
}

/// Sets (or with `None` clears) a link's or network's impairment.
pub fn impair(
    state: &LabState,
    target: &str,
    cfg: Option<ImpairConfig>,
) -> Result<(), NetCtlError> {
    switch(state)?.impair(target, None, cfg.as_ref())?;
    Ok(())
}

/// Streams a live capture of `target` to `output` ("-": standard output).
pub fn capture(state: &LabState, target: &str, output: &str) -> Result<(), NetCtlError> {
    let c = switch(state)?;
    if output == "-" {
        let mut out = std::io::stdout().lock();
        c.capture_stream(target, None, &mut out)?;
        return Ok(());
    }
    let path = PathBuf::from(output);
    let mut f = std::fs::File::create(&path).map_err(|source| NetCtlError::Output {
        path: path.clone(),
        source,
    })?;
    let format = Some(crate::netsw::capture::Format::for_path(&path));
    c.capture_stream(target, format, &mut f)?;
    Ok(())
}
