//! The switch's configuration file (JSON, or TOML when the name ends in `.toml`),
//! written by the lab supervisor. Relative paths are taken from the file's directory.
//!
//! ```json
//! {
//!   "control": "switch.ctl",
//!   "seed": 1,
//!   "queue": 256,
//!   "stall": "200ms",
//!   "networks": [
//!     { "name": "r1-r2", "kind": "link",
//!       "impair": { "delay": "20ms", "loss": "1%" },
//!       "capture": "r1-r2.pcap",
//!       "ports": [
//!         { "name": "r1:net0", "local": "sw/r1-net0.sock", "remote": "r1-net0.sock" },
//!         { "name": "r2:net0", "local": "udp://10.0.0.1:7000", "remote": "udp://10.0.0.2:7000" }
//!       ] },
//!     { "name": "lan", "kind": "lan", "mac_ageing": "300s",
//!       "ports": [
//!         { "name": "h1:net0", "local": "sw/h1-net0.sock", "remote": "h1-net0.sock",
//!           "impair": { "rate": "10Mbit" }, "capture": "h1.pcapng", "up": false }
//!       ] }
//!   ]
//! }
//! ```
//! - `control`: the control socket (see [`super::control`]).
//! - `seed`: seeds every impairment's random choices (default: from the clock).
//! - `queue`: frames each port's egress queue holds (default 256); `stall`: how long a
//!   port whose node does not read may hold its network back before frames to it are
//!   dropped (default 200 ms).
//! - A network is a `link` (exactly two ports: what one sends the other gets) or a
//!   `lan` (a learning switch, `mac_ageing` default 300 s).
//! - A port: `name` (unique in the file; the lab uses `node:nic`), `local` the socket
//!   the switch binds and `remote` the node's socket it sends to: both unix paths or
//!   both `udp://HOST:PORT`, as QEMU's `-netdev dgram` (the node's `local`/`remote` are
//!   the same two, swapped). `up = false` starts with the cable pulled.
//! - `impair` on a network applies to every frame it delivers (each direction of a
//!   link); on a port, to the frames delivered to that port (one direction), instead of
//!   the network's. Keys and units: [`super::impair`].
//! - `capture`: a pcap file (pcapng when it ends in `.pcapng`) of everything sent into
//!   the network, or for a port, of both its directions.
//!
//! The directories of `control` and of unix `local` sockets are created 0700 when
//! missing and refused when another user could write them
//! ([`crate::backends::private_dir`]).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::impair::{Impair, ImpairConfig};
use super::units;
use crate::backends::dgram_sock::Endpoint;

pub const DEFAULT_QUEUE: usize = 256;
pub const DEFAULT_STALL: Duration = Duration::from_millis(200);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetKind {
    Link,
    Lan,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub control: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stall: Option<String>,
    #[serde(default)]
    pub networks: Vec<NetworkConfig>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    pub name: String,
    pub kind: NetKind,
    pub ports: Vec<PortConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impair: Option<ImpairConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capture: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac_ageing: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortConfig {
    pub name: String,
    pub local: String,
    pub remote: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impair: Option<ImpairConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capture: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub up: Option<bool>,
}

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {msg}")]
    Parse { path: PathBuf, msg: String },
    #[error("{}", .0.join("\n"))]
    Invalid(Vec<String>),
}

/// A checked configuration: paths absolute, values parsed.
#[derive(Debug, Clone)]
pub struct Plan {
    pub control: PathBuf,
    pub seed: u64,
    pub queue: usize,
    pub stall: Duration,
    pub nets: Vec<NetPlan>,
}

#[derive(Debug, Clone)]
pub struct NetPlan {
    pub name: String,
    pub kind: NetKind,
    pub impair: Option<Impair>,
    pub capture: Option<PathBuf>,
    pub ageing: Duration,
    pub ports: Vec<PortPlan>,
}

#[derive(Debug, Clone)]
pub struct PortPlan {
    pub name: String,
    pub local: Endpoint,
    pub remote: Endpoint,
    pub impair: Option<Impair>,
    pub capture: Option<PathBuf>,
    pub up: bool,
}

impl Config {
    /// Reads a JSON (or `.toml`) file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        let parsed = if path.extension().is_some_and(|e| e == "toml") {
            toml::from_str(&text).map_err(|e| e.to_string())
        } else {
            serde_json::from_str(&text).map_err(|e| e.to_string())
        };
        parsed.map_err(|msg| ConfigError::Parse {
            path: path.into(),
            msg,
        })
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Writes the JSON form to `path`, readable by its owner only.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?;
        f.write_all(self.to_json().as_bytes())
    }

    /// Checks everything, with relative paths taken from `base`; every problem is
    /// reported at once.
    pub fn plan(&self, base: &Path) -> Result<Plan, ConfigError> {
        let mut errs = Vec::new();
        let mut names = HashSet::new();
        let mut locals = HashSet::new();
        let mut nets = Vec::new();
        for n in &self.networks {
            let what = format!("network `{}`", n.name);
            if !names.insert(n.name.clone()) {
                errs.push(format!("{what}: the name is used twice"));
            }
            match (n.kind, n.ports.len()) {
                (NetKind::Link, 2) | (NetKind::Lan, 1..) => {}
                (NetKind::Link, k) => errs.push(format!("{what}: a link has 2 ports, not {k}")),
                (NetKind::Lan, _) => errs.push(format!("{what}: a lan needs ports")),
            }
            let ageing = n.mac_ageing.as_deref().map(units::duration).transpose();
            let ageing = ageing.unwrap_or_else(|e| {
                errs.push(format!("{what}: mac_ageing: {e}"));
                None
            });
            let ports = n
                .ports
                .iter()
                .filter_map(|p| port_plan(p, base, &mut names, &mut locals, &mut errs))
                .collect();
            nets.push(NetPlan {
                name: n.name.clone(),
                kind: n.kind,
                impair: impair(&n.impair, &what, &mut errs),
                capture: n.capture.as_ref().map(|c| base.join(c)),
                ageing: ageing.unwrap_or(super::mac::DEFAULT_AGEING),
                ports,
            });
        }
        let stall = self.stall.as_deref().map(units::duration).transpose();
        let stall = stall.unwrap_or_else(|e| {
            errs.push(format!("stall: {e}"));
            None
        });
        if self.queue == Some(0) {
            errs.push("queue: must hold at least one frame".into());
        }
        if !errs.is_empty() {
            return Err(ConfigError::Invalid(errs));
        }
        Ok(Plan {
            control: base.join(&self.control),
            seed: self.seed.unwrap_or_else(super::rng::Rng::entropy),
            queue: self.queue.unwrap_or(DEFAULT_QUEUE),
            stall: stall.unwrap_or(DEFAULT_STALL),
            nets,
        })
    }
}

fn impair(c: &Option<ImpairConfig>, what: &str, errs: &mut Vec<String>) -> Option<Impair> {
    match c.as_ref().map(ImpairConfig::parse) {
        Some(Ok(i)) => (!i.is_none()).then_some(i),
        Some(Err(e)) => {
            errs.push(format!("{what}: impair: {e}"));
            None
        }
        None => None,
    }
}

fn port_plan(
    p: &PortConfig,
    base: &Path,
    names: &mut HashSet<String>,
    locals: &mut HashSet<Endpoint>,
    errs: &mut Vec<String>,
) -> Option<PortPlan> {
    let what = format!("port `{}`", p.name);
    if !names.insert(p.name.clone()) {
        errs.push(format!("{what}: the name is used twice"));
    }
    let mut ep = |s: &str, key: &str| {
        Endpoint::parse(s, base)
            .map_err(|e| errs.push(format!("{what}: {key}: {e}")))
            .ok()
    };
    let (local, remote) = (ep(&p.local, "local"), ep(&p.remote, "remote"));
    let (local, remote) = (local?, remote?);
    if matches!(local, Endpoint::Unix(_)) != matches!(remote, Endpoint::Unix(_)) {
        errs.push(format!(
            "{what}: local and remote must both be socket paths or both udp://"
        ));
    }
    if local == remote {
        errs.push(format!("{what}: local and remote are the same"));
    }
    if !locals.insert(local.clone()) {
        errs.push(format!("{what}: local {local} is used by another port"));
    }
    Some(PortPlan {
        name: p.name.clone(),
        impair: impair(&p.impair, &what, errs),
        capture: p.capture.as_ref().map(|c| base.join(c)),
        up: p.up.unwrap_or(true),
        local,
        remote,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = r#"{
      "control": "ctl.sock", "seed": 5,
      "networks": [
        { "name": "l", "kind": "link", "impair": { "delay": "20ms" }, "capture": "l.pcap",
          "ports": [ { "name": "a:n0", "local": "sw/a", "remote": "a" },
                     { "name": "b:n0", "local": "udp://127.0.0.1:7000",
                       "remote": "udp://127.0.0.1:7001", "up": false } ] },
        { "name": "lan", "kind": "lan", "mac_ageing": "10s",
          "ports": [ { "name": "c:n0", "local": "sw/c", "remote": "c",
                       "impair": { "rate": "10Mbit" } } ] } ] }"#;

    #[test]
    fn a_config_plans() {
        let c: Config = serde_json::from_str(DOC).unwrap();
        let p = c.plan(Path::new("/lab")).unwrap();
        assert_eq!(p.control, Path::new("/lab/ctl.sock"));
        assert_eq!(
            (p.seed, p.queue, p.stall),
            (5, DEFAULT_QUEUE, DEFAULT_STALL)
        );
        let l = &p.nets[0];
        assert_eq!(l.kind, NetKind::Link);
        assert_eq!(l.impair.as_ref().unwrap().delay, Duration::from_millis(20));
        assert_eq!(l.capture.as_deref(), Some(Path::new("/lab/l.pcap")));
        assert_eq!(l.ports[0].local, Endpoint::Unix("/lab/sw/a".into()));
        assert_eq!(l.ports[1].remote, Endpoint::Udp("127.0.0.1:7001".into()));
        assert!(l.ports[0].up && !l.ports[1].up);
        assert_eq!(p.nets[1].ageing, Duration::from_secs(10));
        assert_eq!(
            p.nets[1].ports[0].impair.as_ref().unwrap().rate,
            Some(10_000_000)
        );
        // The JSON written back reads the same.
        let again: Config = serde_json::from_str(&c.to_json()).unwrap();
        assert_eq!(again, c);
    }

    #[test]
    fn every_problem_is_reported() {
        let bad = r#"{ "control": "c", "stall": "soon", "queue": 0, "networks": [
            { "name": "l", "kind": "link", "ports": [ { "name": "a", "local": "x", "remote": "y" } ] },
            { "name": "l", "kind": "lan", "impair": { "loss": "5" }, "ports": [
              { "name": "a", "local": "x", "remote": "udp://h:1" },
              { "name": "b", "local": "udp://nope", "remote": "z" } ] } ] }"#;
        let c: Config = serde_json::from_str(bad).unwrap();
        let ConfigError::Invalid(errs) = c.plan(Path::new("/")).unwrap_err() else {
            panic!()
        };
        let all = errs.join("\n");
        for want in [
            "a link has 2 ports, not 1",
            "network `l`: the name is used twice",
            "port `a`: the name is used twice",
            "impair: `5` is not a percentage",
            "must both be socket paths or both udp://",
            "local /x is used by another port",
            "`udp://nope` is neither",
            "stall: `soon`",
            "queue: must hold",
        ] {
            assert!(all.contains(want), "{want} not in:\n{all}");
        }
        let unknown = r#"{ "control": "c", "networks": [], "extra": 1 }"#;
        assert!(serde_json::from_str::<Config>(unknown).is_err());
    }

    #[test]
    fn toml_works_too() {
        let d = std::env::temp_dir().join(format!("vmrun-swcfg-{}.toml", std::process::id()));
        std::fs::write(
            &d,
            "control = \"c\"\n[[networks]]\nname = \"l\"\nkind = \"lan\"\n\
             [[networks.ports]]\nname = \"p\"\nlocal = \"a\"\nremote = \"b\"\n",
        )
        .unwrap();
        let c = Config::load(&d).unwrap();
        assert_eq!(c.networks[0].ports[0].remote, "b");
        std::fs::remove_file(&d).unwrap();
    }
}
