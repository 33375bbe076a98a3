//! `vmrun lab graph`: nodes, their NICs, cables and LANs as Graphviz DOT.

use std::fmt::Write as _;

use super::{LabSpec, NetKind, Port};

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

pub fn to_dot(lab: &LabSpec) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "graph \"{}\" {{", esc(&lab.name));
    let _ = writeln!(o, "  node [fontname=\"monospace\", fontsize=10];");
    for n in &lab.nodes {
        let board = n.machine.board.board().name;
        let _ = writeln!(
            o,
            "  \"node:{0}\" [shape=box3d, label=\"{0}\\n{board}, {1} CPUs\"];",
            esc(&n.name),
            n.machine.cpus.count()
        );
    }
    for net in &lab.nets {
        let port = |p: &Port| match p {
            Port::Nic { node, nic, mac } => (
                format!("node:{}", esc(node)),
                format!("{}\\n{}", esc(nic), crate::spec::mac_string(mac)),
            ),
            Port::Remote { remote, .. } => (format!("remote:{}", esc(remote)), String::new()),
            Port::External { name } => (format!("ext:{}", esc(name)), String::new()),
        };
        for p in &net.ports {
            if let Port::External { name } = p {
                let _ = writeln!(
                    o,
                    "  \"ext:{0}\" [shape=component, label=\"{0}\"];",
                    esc(name)
                );
            }
            if let Port::Remote { remote, .. } = p {
                let _ = writeln!(
                    o,
                    "  \"remote:{0}\" [shape=cds, label=\"{0}\"];",
                    esc(remote)
                );
            }
        }
        match (net.kind, net.ports.as_slice()) {
            (NetKind::Link, [a, b]) => {
                let ((na, la), (nb, lb)) = (port(a), port(b));
                let _ = writeln!(
                    o,
                    "  \"{na}\" -- \"{nb}\" [label=\"{}\", taillabel=\"{la}\", headlabel=\"{lb}\"];",
                    esc(&net.name)
                );
            }
            _ => {
                let _ = writeln!(
                    o,
                    "  \"net:{0}\" [shape=ellipse, label=\"{0}\"];",
                    esc(&net.name)
                );
                for p in &net.ports {
                    let (n, l) = port(p);
                    let _ = writeln!(
                        o,
                        "  \"{n}\" -- \"net:{}\" [taillabel=\"{l}\"];",
                        esc(&net.name)
                    );
                }
            }
        }
    }
    o.push_str("}\n");
    o
}
