//! The lab file as written: a located tree read into typed values, every value with
//! its location, every error (wrong type, unknown key) collected. Nothing is checked
//! against anything else here; that is `check`'s job.

use std::path::PathBuf;
use std::time::Duration;

use super::schema;
use crate::config::node::{Node, Value};
use crate::config::reader::{Sp, TableReader};
use crate::config::source::{Diagnostic, Loc, Sources};

#[derive(Debug, Clone)]
pub struct LabFile {
    /// The start of the file, for errors about what is missing.
    pub anchor: Loc,
    pub name: Option<Sp<String>>,
    pub nodes: Vec<NodeCfg>,
    pub links: Vec<LinkCfg>,
    pub networks: Vec<NetworkCfg>,
}

#[derive(Debug, Clone)]
pub struct NodeCfg {
    pub loc: Loc,
    pub name: Sp<String>,
    pub machine: Option<Sp<PathBuf>>,
    pub depends_on: Vec<Sp<String>>,
    pub ready: Option<ReadyCfg>,
    pub autostart: Option<Sp<bool>>,
    pub cmdline: Option<Sp<String>>,
}

#[derive(Debug, Clone)]
pub struct ReadyCfg {
    pub loc: Loc,
    pub serial: Option<Sp<String>>,
    pub timeout: Option<Sp<Duration>>,
}

/// One end of a cable or a LAN port: a node's NIC, or a remote host (UDP).
#[derive(Debug, Clone)]
pub enum EndpointCfg {
    Nic {
        loc: Loc,
        node: String,
        nic: String,
    },
    Remote {
        loc: Loc,
        remote: Sp<String>,
        local: Option<Sp<String>>,
    },
    /// A port for a program outside the lab (a QEMU VM): its sockets are the lab's.
    External {
        loc: Loc,
        name: Sp<String>,
    },
}

#[derive(Debug, Clone, Default)]
pub struct ImpairCfg {
    pub loc: Option<Loc>,
    pub delay: Option<Sp<Duration>>,
    pub jitter: Option<Sp<Duration>>,
    /// Percentages, 0-100.
    pub loss: Option<Sp<f64>>,
    pub duplicate: Option<Sp<f64>>,
    pub reorder: Option<Sp<f64>>,
    pub corrupt: Option<Sp<f64>>,
    /// Bits per second.
    pub rate: Option<Sp<u64>>,
}

#[derive(Debug, Clone)]
pub struct LinkCfg {
    pub loc: Loc,
    pub name: Option<Sp<String>>,
    pub endpoints: Vec<EndpointCfg>,
    /// How many endpoints the file wrote (some may not have been readable).
    pub written: usize,
    pub impair: Option<ImpairCfg>,
    pub capture: Option<Sp<PathBuf>>,
}

#[derive(Debug, Clone)]
pub struct NetworkCfg {
    pub loc: Loc,
    pub name: Sp<String>,
    pub endpoints: Vec<EndpointCfg>,
    pub impair: Option<ImpairCfg>,
    pub capture: Option<Sp<PathBuf>>,
}

/// Reads the parsed lab file.
pub fn read(doc: &Node, sources: &Sources, diags: &mut Vec<Diagnostic>) -> Option<LabFile> {
    let mut top = TableReader::new(doc, "the lab file", schema::TOP, sources, diags)?;
    let lab = top.node("lab");
    let nodes = top.node("node");
    let links = top.tables("link");
    let networks = top.node("network");
    top.finish();
    let anchor = Loc::new(doc.loc.src, 0..0);
    let name = lab.and_then(|n| {
        let mut t = TableReader::new(n, "[lab]", schema::LAB, sources, diags)?;
        let name = t.str("name");
        t.finish();
        name
    });
    let mut out = LabFile {
        anchor,
        name,
        nodes: Vec::new(),
        links: Vec::new(),
        networks: Vec::new(),
    };
    for (key, n) in named_tables(nodes, "[node]", diags) {
        out.nodes.extend(read_node(key, n, sources, diags));
    }
    for n in links {
        out.links.extend(read_link(n, sources, diags));
    }
    for (key, n) in named_tables(networks, "[network]", diags) {
        out.networks.extend(read_network(key, n, sources, diags));
    }
    Some(out)
}

/// The sub-tables of a table of named tables (`[node.r1]`, `[network.lan]`).
fn named_tables<'a>(
    node: Option<&'a Node>,
    what: &str,
    diags: &mut Vec<Diagnostic>,
) -> Vec<(Sp<String>, &'a Node)> {
    let Some(node) = node else { return Vec::new() };
    match &node.value {
        Value::Table(t) => t
            .entries
            .iter()
            .map(|(k, v)| (Sp::new(k.name.clone(), k.loc.clone()), v))
            .collect(),
        other => {
            let msg = format!(
                "{what} must be a table of named tables, found {}",
                other.type_name()
            );
            diags.push(Diagnostic::new(&node.loc, msg).label("expected tables"));
            Vec::new()
        }
    }
}

fn read_node(
    name: Sp<String>,
    node: &Node,
    sources: &Sources,
    diags: &mut Vec<Diagnostic>,
) -> Option<NodeCfg> {
    let what = format!("node `{}`", name.value);
    let mut t = TableReader::new(node, what.clone(), schema::NODE, sources, diags)?;
    let machine = t.path("machine");
    if machine.is_none() && t.node("machine").is_none() {
        let loc = name.loc.clone();
        t.error(
            Diagnostic::new(&loc, format!("{what} has no `machine`"))
                .label("add `machine = \"path/to/machine.toml\"`"),
        );
    }
    let depends_on = strings(&mut t, "depends_on");
    let ready = t.node("ready");
    let autostart = t.bool("autostart");
    let cmdline = t.str("cmdline");
    let loc = t.loc.clone();
    t.finish();
    let ready = ready.and_then(|r| read_ready(r, &what, sources, diags));
    Some(NodeCfg {
        loc,
        name,
        machine,
        depends_on,
        ready,
        autostart,
        cmdline,
    })
}

fn read_ready(
    node: &Node,
    owner: &str,
    sources: &Sources,
    diags: &mut Vec<Diagnostic>,
) -> Option<ReadyCfg> {
    let what = format!("`ready` of {owner}");
    let mut t = TableReader::new(node, what, schema::READY, sources, diags)?;
    let serial = t.str("serial");
    let timeout = duration(&mut t, "timeout");
    let loc = t.loc.clone();
    t.finish();
    Some(ReadyCfg {
        loc,
        serial,
        timeout,
    })
}

fn read_link(node: &Node, sources: &Sources, diags: &mut Vec<Diagnostic>) -> Option<LinkCfg> {
    let mut t = TableReader::new(node, "a [[link]]", schema::LINK, sources, diags)?;
    let name = t.str("name");
    let (endpoints, written) = endpoints(&mut t);
    let impair = t.node("impair");
    let capture = t.path("capture");
    let loc = t.loc.clone();
    t.finish();
    let impair = impair.and_then(|n| read_impair(n, sources, diags));
    Some(LinkCfg {
        loc,
        name,
        endpoints,
        written,
        impair,
        capture,
    })
}

fn read_network(
    name: Sp<String>,
    node: &Node,
    sources: &Sources,
    diags: &mut Vec<Diagnostic>,
) -> Option<NetworkCfg> {
    let what = format!("network `{}`", name.value);
    let mut t = TableReader::new(node, what, schema::NETWORK, sources, diags)?;
    let (endpoints, _) = endpoints(&mut t);
    let impair = t.node("impair");
    let capture = t.path("capture");
    let loc = t.loc.clone();
    t.finish();
    let impair = impair.and_then(|n| read_impair(n, sources, diags));
    Some(NetworkCfg {
        loc,
        name,
        endpoints,
        impair,
        capture,
    })
}

/// An array of strings; other items are errors.
fn strings(t: &mut TableReader<'_, '_>, key: &str) -> Vec<Sp<String>> {
    let Some(node) = t.node(key) else {
        return Vec::new();
    };
    let Value::Array(items) = &node.value else {
        let msg = format!("`{key}` in {} must be an array of strings", t.what);
        let loc = node.loc.clone();
        t.error(Diagnostic::new(&loc, msg).label("expected [\"...\"]"));
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in items {
        match &item.value {
            Value::Str(s) => out.push(Sp::new(s.clone(), item.loc.clone())),
            other => {
                let msg = format!(
                    "`{key}` in {} holds {}, not a string",
                    t.what,
                    other.type_name()
                );
                t.error(Diagnostic::new(&item.loc, msg).label("expected a string"));
            }
        }
    }
    out
}

/// `endpoints`: "node:nic" strings, or `{ remote = "udp://…", local = "udp://…" }`;
/// and how many the file wrote.
fn endpoints(t: &mut TableReader<'_, '_>) -> (Vec<EndpointCfg>, usize) {
    let Some(node) = t.node("endpoints") else {
        let loc = t.loc.clone();
        let msg = format!("{} has no `endpoints`", t.what);
        t.error(Diagnostic::new(&loc, msg).label("add `endpoints = [\"node:nic\", ...]`"));
        return (Vec::new(), 2);
    };
    let Value::Array(items) = &node.value else {
        let msg = format!("`endpoints` in {} must be an array", t.what);
        let loc = node.loc.clone();
        t.error(Diagnostic::new(&loc, msg).label("expected [\"node:nic\", ...]"));
        return (Vec::new(), 2);
    };
    let mut out = Vec::new();
    for item in items {
        match &item.value {
            Value::Str(s) => match s.split_once(':') {
                Some((n, d)) if !n.is_empty() && !d.is_empty() && !d.contains(':') => {
                    out.push(EndpointCfg::Nic {
                        loc: item.loc.clone(),
                        node: n.to_string(),
                        nic: d.to_string(),
                    })
                }
                _ => {
                    let msg = format!("endpoint \"{s}\" is not `node:nic`");
                    t.error(Diagnostic::new(&item.loc, msg).label("write \"node:device-id\""));
                }
            },
            Value::Table(tab) => {
                let remote = tab.get("remote").and_then(|n| match &n.value {
                    Value::Str(s) => Some(Sp::new(s.clone(), n.loc.clone())),
                    _ => None,
                });
                let local = tab.get("local").and_then(|n| match &n.value {
                    Value::Str(s) => Some(Sp::new(s.clone(), n.loc.clone())),
                    _ => None,
                });
                let external = tab.get("external").and_then(|n| match &n.value {
                    Value::Str(s) => Some(Sp::new(s.clone(), n.loc.clone())),
                    _ => None,
                });
                for (k, _) in &tab.entries {
                    if !["remote", "local", "external"].contains(&k.name.as_str()) {
                        let msg = format!("unknown key `{}` in an endpoint", k.name);
                        t.error(
                            Diagnostic::new(&k.loc, msg)
                                .label("endpoints have `remote` and `local`, or `external`"),
                        );
                    }
                }
                if let Some(name) = external {
                    out.push(EndpointCfg::External {
                        loc: item.loc.clone(),
                        name,
                    });
                    continue;
                }
                match remote {
                    Some(remote) => out.push(EndpointCfg::Remote {
                        loc: item.loc.clone(),
                        remote,
                        local,
                    }),
                    None => {
                        let msg = "a remote endpoint needs `remote = \"udp://HOST:PORT\"`";
                        t.error(Diagnostic::new(&item.loc, msg).label("no `remote` string"));
                    }
                }
            }
            other => {
                let msg = format!(
                    "an endpoint must be \"node:nic\" or a table, found {}",
                    other.type_name()
                );
                t.error(Diagnostic::new(&item.loc, msg).label("bad endpoint"));
            }
        }
    }
    (out, items.len())
}

fn duration(t: &mut TableReader<'_, '_>, key: &str) -> Option<Sp<Duration>> {
    let s = t.str(key)?;
    match humantime::parse_duration(&s.value) {
        Ok(d) => Some(Sp::new(d, s.loc)),
        Err(e) => {
            let msg = format!(
                "`{key}` in {}: \"{}\" is not a duration ({e})",
                t.what, s.value
            );
            t.error(Diagnostic::new(&s.loc, msg).label("write e.g. \"20ms\", \"2s\""));
            None
        }
    }
}

fn percent(t: &mut TableReader<'_, '_>, key: &str) -> Option<Sp<f64>> {
    let s = t.str(key)?;
    match crate::netsw::units::percent(&s.value) {
        Ok(v) => Some(Sp::new(v * 100.0, s.loc)),
        Err(_) => {
            let msg = format!("`{key}` in {}: \"{}\" is not a percentage", t.what, s.value);
            t.error(Diagnostic::new(&s.loc, msg).label("write e.g. \"1%\", \"0.01%\" (0-100)"));
            None
        }
    }
}

fn rate(t: &mut TableReader<'_, '_>, key: &str) -> Option<Sp<u64>> {
    let s = t.str(key)?;
    match crate::netsw::units::rate(&s.value) {
        Ok(v) => Some(Sp::new(v, s.loc)),
        Err(_) => {
            let msg = format!("`{key}` in {}: \"{}\" is not a rate", t.what, s.value);
            t.error(
                Diagnostic::new(&s.loc, msg).label("write e.g. \"10Mbit\", \"512kbit\", \"1Gbit\""),
            );
            None
        }
    }
}

fn read_impair(node: &Node, sources: &Sources, diags: &mut Vec<Diagnostic>) -> Option<ImpairCfg> {
    let mut t = TableReader::new(node, "`impair`", schema::IMPAIR, sources, diags)?;
    let i = ImpairCfg {
        loc: Some(t.loc.clone()),
        delay: duration(&mut t, "delay"),
        jitter: duration(&mut t, "jitter"),
        loss: percent(&mut t, "loss"),
        duplicate: percent(&mut t, "duplicate"),
        reorder: percent(&mut t, "reorder"),
        corrupt: percent(&mut t, "corrupt"),
        rate: rate(&mut t, "rate"),
    };
    t.finish();
    Some(i)
}
