//! `vmrun lab check`: the lab file and every node's machine file, all errors at once,
//! each located in the file that has it. The result is the resolved [`LabSpec`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::file::{self, EndpointCfg, ImpairCfg, LabFile};
use super::{Impair, LabSpec, NetKind, NetSpec, NodeSpec, Port, Ready};
use crate::config::reader::Sp;
use crate::config::source::{did_you_mean, Diagnostic, Loc, Sources};
use crate::spec::{DeviceKind, MachineSpec};

/// How long a node may take to be ready when the file does not say.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Everything wrong with a lab: its own file's errors and each node machine's.
pub struct LabErrors {
    pub sources: Sources,
    pub diags: Vec<Diagnostic>,
    /// (node, the machine file's sources, its errors).
    pub machines: Vec<(String, Sources, Vec<Diagnostic>)>,
}

impl LabErrors {
    pub fn count(&self) -> usize {
        self.diags.len() + self.machines.iter().map(|m| m.2.len()).sum::<usize>()
    }

    /// Every error, rendered like rustc's.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for d in &self.diags {
            out += &d.render(&self.sources);
            out.push('\n');
        }
        for (node, sources, diags) in &self.machines {
            for d in diags {
                out += &format!("in the machine of node `{node}`:\n");
                out += &d.render(sources);
                out.push('\n');
            }
        }
        out
    }
}

/// Why a lab file could not be read at all.
#[derive(Debug, thiserror::Error)]
#[error("cannot read lab file {path}")]
pub struct LabReadError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// Reads and checks the lab file at `path`.
pub fn check_file(path: &Path) -> Result<Result<LabSpec, LabErrors>, LabReadError> {
    let bytes = std::fs::read(path).map_err(|source| LabReadError {
        path: path.to_path_buf(),
        source,
    })?;
    let abs = crate::config::reader::absolute(path);
    let text = String::from_utf8_lossy(&bytes).into_owned();
    Ok(check_text(&abs, text))
}

/// Checks lab-file text that claims to be at `path` (relative paths resolve from its
/// directory).
pub fn check_text(path: &Path, text: String) -> Result<LabSpec, LabErrors> {
    let mut sources = Sources::default();
    let name = path.display().to_string();
    let id = sources.add(name, Some(path.to_path_buf()), text.clone());
    let mut diags = Vec::new();
    let parsed = match crate::config::node::parse(id, &text) {
        Ok(doc) => file::read(&doc, &sources, &mut diags),
        Err(d) => {
            diags.extend(d);
            None
        }
    };
    let mut errors = LabErrors {
        sources,
        diags,
        machines: Vec::new(),
    };
    let Some(lab) = parsed else {
        return Err(errors);
    };
    let spec = resolve(path, &lab, &mut errors);
    if errors.count() > 0 {
        return Err(errors);
    }
    Ok(spec)
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 48
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn resolve(path: &Path, lab: &LabFile, e: &mut LabErrors) -> LabSpec {
    let name = match &lab.name {
        Some(n) if !valid_name(&n.value) => {
            let d = Diagnostic::new(&n.loc, format!("bad lab name \"{}\"", n.value))
                .label("1-48 letters, digits, `-` or `_`");
            e.diags.push(d);
            n.value.clone()
        }
        Some(n) => n.value.clone(),
        None => path
            .file_stem()
            .map(|s| {
                s.to_string_lossy()
                    .replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "_")
            })
            .unwrap_or_else(|| "lab".into()),
    };
    let dir = path.parent().unwrap_or(Path::new("/")).to_path_buf();
    let nodes = resolve_nodes(lab, &name, e);
    check_dependencies(lab, e);
    let nets = resolve_nets(lab, &nodes, e);
    LabSpec {
        state_dir: dir.join(".vmrun").join(&name),
        name,
        file: path.to_path_buf(),
        nodes,
        nets,
    }
}

fn resolve_nodes(lab: &LabFile, lab_name: &str, e: &mut LabErrors) -> Vec<NodeSpec> {
    if lab.nodes.is_empty() {
        e.diags.push(
            Diagnostic::new(&lab.anchor, "the lab has no nodes").label("add a [node.NAME] table"),
        );
    }
    let mut out = Vec::new();
    for n in &lab.nodes {
        if !valid_name(&n.name.value) {
            let d = Diagnostic::new(&n.name.loc, format!("bad node name \"{}\"", n.name.value))
                .label("1-48 letters, digits, `-` or `_`");
            e.diags.push(d);
        }
        let Some(machine_path) = &n.machine else {
            continue;
        };
        let full = format!("{lab_name}-{}", n.name.value);
        let Some(mut machine) = load_machine(&n.name.value, &full, machine_path, e) else {
            continue;
        };
        if let Some(c) = &n.cmdline {
            machine.boot.cmdline = c.value.clone();
        }
        let ready = resolve_ready(n, e);
        out.push(NodeSpec {
            name: n.name.value.clone(),
            machine_file: machine_path.value.clone(),
            machine,
            depends_on: n.depends_on.iter().map(|d| d.value.clone()).collect(),
            ready,
            autostart: n.autostart.as_ref().is_none_or(|a| a.value),
        });
    }
    out
}

/// Loads and checks a node's machine file; its errors go with the node's name.
fn load_machine(
    node: &str,
    full_name: &str,
    path: &Sp<PathBuf>,
    e: &mut LabErrors,
) -> Option<MachineSpec> {
    match crate::load_and_check_as(&path.value, full_name) {
        Ok((_, Ok(spec))) => Some(spec),
        Ok((sources, Err(diags))) => {
            e.machines.push((node.to_string(), sources, diags));
            None
        }
        Err(err) => {
            let d = Diagnostic::new(&path.loc, format!("node `{node}`: {err}"))
                .label("the machine file can't be read");
            e.diags.push(d);
            None
        }
    }
}

fn resolve_ready(n: &file::NodeCfg, e: &mut LabErrors) -> Ready {
    let Some(r) = &n.ready else {
        return Ready::default();
    };
    let serial = r
        .serial
        .as_ref()
        .and_then(|s| match regex_lite::Regex::new(&s.value) {
            Ok(_) => Some(s.value.clone()),
            Err(err) => {
                let d = Diagnostic::new(
                    &s.loc,
                    format!(
                        "`serial` of node `{}` is not a regular expression: {err}",
                        n.name.value
                    ),
                )
                .label("bad regex");
                e.diags.push(d);
                None
            }
        });
    Ready {
        serial,
        timeout: r
            .timeout
            .as_ref()
            .map_or(DEFAULT_READY_TIMEOUT, |t| t.value),
    }
}

/// `depends_on` names known nodes, not the node itself, and makes no cycle.
fn check_dependencies(lab: &LabFile, e: &mut LabErrors) {
    let names: Vec<&str> = lab.nodes.iter().map(|n| n.name.value.as_str()).collect();
    let mut graph: BTreeMap<&str, Vec<(&str, &Loc)>> = BTreeMap::new();
    for n in &lab.nodes {
        for d in &n.depends_on {
            if !names.contains(&d.value.as_str()) {
                let mut diag = Diagnostic::new(
                    &d.loc,
                    format!(
                        "node `{}` depends on unknown node `{}`",
                        n.name.value, d.value
                    ),
                );
                diag = match did_you_mean(&d.value, names.iter().copied()) {
                    Some(s) => diag.label(format!("did you mean `{s}`?")),
                    None => diag.label("no such node"),
                };
                e.diags.push(diag);
            } else if d.value == n.name.value {
                e.diags.push(
                    Diagnostic::new(&d.loc, format!("node `{}` depends on itself", d.value))
                        .label("remove it"),
                );
            } else {
                graph
                    .entry(&n.name.value)
                    .or_default()
                    .push((&d.value, &d.loc));
            }
        }
    }
    if let Some((cycle, loc)) = find_cycle(&graph) {
        e.diags.push(
            Diagnostic::new(
                loc,
                format!("depends_on makes a cycle: {}", cycle.join(" → ")),
            )
            .label("no node of a cycle could start first"),
        );
    }
}

/// A cycle in the dependency graph, and the location of the edge that closes it.
fn find_cycle<'a>(
    graph: &BTreeMap<&'a str, Vec<(&'a str, &'a Loc)>>,
) -> Option<(Vec<String>, &'a Loc)> {
    fn visit<'a>(
        n: &'a str,
        graph: &BTreeMap<&'a str, Vec<(&'a str, &'a Loc)>>,
        path: &mut Vec<&'a str>,
        done: &mut Vec<&'a str>,
    ) -> Option<(Vec<String>, &'a Loc)> {
        path.push(n);
        for &(d, loc) in graph.get(n).map(Vec::as_slice).unwrap_or(&[]) {
            if let Some(i) = path.iter().position(|p| *p == d) {
                let mut c: Vec<String> = path[i..].iter().map(|s| s.to_string()).collect();
                c.push(d.to_string());
                return Some((c, loc));
            }
            if !done.contains(&d) {
                if let Some(r) = visit(d, graph, path, done) {
                    return Some(r);
                }
            }
        }
        path.pop();
        done.push(n);
        None
    }
    let mut done = Vec::new();
    for &n in graph.keys() {
        if !done.contains(&n) {
            if let Some(r) = visit(n, graph, &mut Vec::new(), &mut done) {
                return Some(r);
            }
        }
    }
    None
}

fn resolve_impair(i: &Option<ImpairCfg>) -> Impair {
    let Some(i) = i else { return Impair::default() };
    let pct = |v: &Option<Sp<f64>>| v.as_ref().map_or(0.0, |v| v.value / 100.0);
    Impair {
        delay: i.delay.as_ref().map_or(Duration::ZERO, |d| d.value),
        jitter: i.jitter.as_ref().map_or(Duration::ZERO, |d| d.value),
        loss: pct(&i.loss),
        duplicate: pct(&i.duplicate),
        reorder: pct(&i.reorder),
        corrupt: pct(&i.corrupt),
        rate: i.rate.as_ref().map(|r| r.value),
        ..Impair::default()
    }
}

struct NetInput<'a> {
    name: String,
    name_loc: &'a Loc,
    kind: NetKind,
    endpoints: &'a [EndpointCfg],
    written: usize,
    impair: &'a Option<ImpairCfg>,
    capture: &'a Option<Sp<PathBuf>>,
}

fn resolve_nets(lab: &LabFile, nodes: &[NodeSpec], e: &mut LabErrors) -> Vec<NetSpec> {
    let mut inputs = Vec::new();
    for (i, l) in lab.links.iter().enumerate() {
        inputs.push(NetInput {
            name: l
                .name
                .as_ref()
                .map_or(format!("link{}", i + 1), |n| n.value.clone()),
            name_loc: l.name.as_ref().map_or(&l.loc, |n| &n.loc),
            kind: NetKind::Link,
            endpoints: &l.endpoints,
            written: l.written,
            impair: &l.impair,
            capture: &l.capture,
        });
    }
    for n in &lab.networks {
        inputs.push(NetInput {
            name: n.name.value.clone(),
            name_loc: &n.name.loc,
            kind: NetKind::Lan,
            endpoints: &n.endpoints,
            written: n.endpoints.len(),
            impair: &n.impair,
            capture: &n.capture,
        });
    }
    let mut used: BTreeMap<(String, String), (String, Loc)> = BTreeMap::new();
    let mut names: BTreeMap<String, Loc> = BTreeMap::new();
    let mut out = Vec::new();
    for input in &inputs {
        if let Some(other) = names.get(&input.name) {
            let d = Diagnostic::new(
                input.name_loc,
                format!("two links or networks are named `{}`", input.name),
            )
            .label("names must be unique")
            .note_at(other, "the other is here");
            e.diags.push(d);
        } else if !valid_name(&input.name) {
            e.diags.push(
                Diagnostic::new(
                    input.name_loc,
                    format!("bad network name \"{}\"", input.name),
                )
                .label("1-48 letters, digits, `-` or `_`"),
            );
        }
        names.insert(input.name.clone(), input.name_loc.clone());
        let ports: Vec<Port> = input
            .endpoints
            .iter()
            .filter_map(|ep| resolve_endpoint(ep, &input.name, lab, nodes, &mut used, e))
            .collect();
        check_macs(input, &ports, e);
        if input.kind == NetKind::Link && input.written != 2 {
            let d = Diagnostic::new(
                input.name_loc,
                format!("link `{}` has {} endpoints", input.name, input.written),
            )
            .label("a cable has exactly two ends; use a [network.NAME] for more");
            e.diags.push(d);
        }
        if let Some(c) = input.capture {
            check_parent(&c.value, &c.loc, e);
        }
        out.push(NetSpec {
            name: input.name.clone(),
            kind: input.kind,
            ports,
            impair: resolve_impair(input.impair),
            capture: input.capture.as_ref().map(|c| c.value.clone()),
        });
    }
    out
}

/// Two NICs with one MAC on one network confuse every switch and host on it.
fn check_macs(input: &NetInput<'_>, ports: &[Port], e: &mut LabErrors) {
    let macs: Vec<(&[u8; 6], &str, &str)> = ports
        .iter()
        .filter_map(|p| match p {
            Port::Nic { node, nic, mac } => Some((mac, node.as_str(), nic.as_str())),
            Port::Remote { .. } | Port::External { .. } => None,
        })
        .collect();
    for (i, (mac, node, nic)) in macs.iter().enumerate() {
        if let Some((_, n2, d2)) = macs[..i].iter().find(|(m, _, _)| m == mac) {
            let d = Diagnostic::new(
                input.name_loc,
                format!(
                    "`{node}:{nic}` and `{n2}:{d2}` on `{}` have the same MAC {}",
                    input.name,
                    crate::spec::mac_string(mac)
                ),
            )
            .label("give one of them another `mac`");
            e.diags.push(d);
        }
    }
}

fn check_parent(p: &Path, loc: &Loc, e: &mut LabErrors) {
    if !p.parent().is_some_and(Path::is_dir) {
        e.diags.push(
            Diagnostic::new(
                loc,
                format!("the directory of {} does not exist", p.display()),
            )
            .label("no such directory"),
        );
    }
}

fn resolve_endpoint(
    ep: &EndpointCfg,
    net: &str,
    lab: &LabFile,
    nodes: &[NodeSpec],
    used: &mut BTreeMap<(String, String), (String, Loc)>,
    e: &mut LabErrors,
) -> Option<Port> {
    match ep {
        EndpointCfg::External { name, .. } => {
            if !valid_name(&name.value) {
                e.diags.push(
                    Diagnostic::new(
                        &name.loc,
                        format!("bad external port name \"{}\"", name.value),
                    )
                    .label("1-48 letters, digits, `-` or `_`"),
                );
            }
            Some(Port::External {
                name: name.value.clone(),
            })
        }
        EndpointCfg::Remote { remote, local, .. } => {
            for u in std::iter::once(remote).chain(local) {
                if super::parse_udp(&u.value).is_none() {
                    e.diags.push(
                        Diagnostic::new(&u.loc, format!("\"{}\" is not udp://HOST:PORT", u.value))
                            .label("e.g. \"udp://192.0.2.1:5000\""),
                    );
                }
            }
            Some(Port::Remote {
                remote: remote.value.clone(),
                local: local.as_ref().map(|l| l.value.clone()),
            })
        }
        EndpointCfg::Nic { loc, node, nic } => {
            let Some(n) = nodes.iter().find(|n| &n.name == node) else {
                // A node whose machine failed to check is reported there.
                if !lab.nodes.iter().any(|n| &n.name.value == node) {
                    let names = lab.nodes.iter().map(|n| n.name.value.as_str());
                    let mut d = Diagnostic::new(
                        loc,
                        format!("endpoint `{node}:{nic}` names unknown node `{node}`"),
                    );
                    d = match did_you_mean(node, names) {
                        Some(s) => d.label(format!("did you mean `{s}`?")),
                        None => d.label("no such node"),
                    };
                    e.diags.push(d);
                }
                return None;
            };
            let Some(dev) = n.machine.device(nic) else {
                let nics: Vec<&str> = n
                    .machine
                    .devices
                    .iter()
                    .filter(|d| matches!(d.kind, DeviceKind::Nic { .. }))
                    .map(|d| d.id.as_str())
                    .collect();
                let d = Diagnostic::new(loc, format!("node `{node}` has no device `{nic}`"))
                    .label(match did_you_mean(nic, nics.iter().copied()) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => "no such device".into(),
                    })
                    .note(format!(
                        "its NICs: {}",
                        if nics.is_empty() {
                            "none".into()
                        } else {
                            nics.join(", ")
                        }
                    ));
                e.diags.push(d);
                return None;
            };
            let DeviceKind::Nic { mac, .. } = dev.kind else {
                let d = Diagnostic::new(
                    loc,
                    format!(
                        "device `{nic}` of node `{node}` is a {}, not a nic",
                        dev.kind.name()
                    ),
                )
                .label("not a NIC");
                e.diags.push(d);
                return None;
            };
            let key = (node.clone(), nic.clone());
            if let Some((other, oloc)) = used.get(&key) {
                let d = Diagnostic::new(
                    loc,
                    format!("NIC `{node}:{nic}` is plugged into `{net}` and `{other}`"),
                )
                .label("a NIC has one cable")
                .note_at(oloc, "it is also here");
                e.diags.push(d);
                return None;
            }
            used.insert(key, (net.to_string(), loc.clone()));
            Some(Port::Nic {
                node: node.clone(),
                nic: nic.clone(),
                mac,
            })
        }
    }
}
