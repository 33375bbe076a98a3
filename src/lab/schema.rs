//! The lab file's keys: the reader rejects keys not listed here, with a "did you mean"
//! from these lists, and the README documents them.

use crate::config::schema::{f, Field, Ty};

pub const TOP: &[Field] = &[
    f("lab", Ty::Tables(LAB), "", "The lab's name."),
    f(
        "node",
        Ty::Tables(NODE),
        "",
        "The machines, by node name: `[node.r1]`.",
    ),
    f(
        "link",
        Ty::Tables(LINK),
        "",
        "Point-to-point cables between two NICs.",
    ),
    f(
        "network",
        Ty::Tables(NETWORK),
        "",
        "LANs: learning switches joining many NICs, by name.",
    ),
];

pub const LAB: &[Field] = &[f(
    "name",
    Ty::Str,
    "the file name without .toml",
    "Nodes run as <lab>-<node>; the state directory is .vmrun/<name>/ beside the file.",
)];

pub const NODE: &[Field] = &[
    f(
        "machine",
        Ty::Path,
        "",
        "The node's machine file, relative to the lab file.",
    ),
    f(
        "depends_on",
        Ty::Str,
        "[]",
        "Nodes that must be ready before this one starts.",
    ),
    f(
        "ready",
        Ty::Tables(READY),
        "running",
        "When the node counts as ready.",
    ),
    f(
        "autostart",
        Ty::Bool,
        "true",
        "Start with `lab up` (else only when named).",
    ),
    f(
        "cmdline",
        Ty::Str,
        "the machine's",
        "Replaces the machine's `[boot] cmdline` (the probe's options).",
    ),
];

pub const READY: &[Field] = &[
    f(
        "serial",
        Ty::Str,
        "none",
        "A regular expression the node's console must print.",
    ),
    f("timeout", Ty::Str, "\"60s\"", "How long to wait for it."),
];

pub const LINK: &[Field] = &[
    f(
        "name",
        Ty::Str,
        "link<N>",
        "The cable's name (for capture, impair and status).",
    ),
    f(
        "endpoints",
        Ty::Str,
        "",
        "Two ends: \"node:nic\", { remote = \"udp://HOST:PORT\", local = \"udp://ADDR:PORT\" }, or { external = \"NAME\" }.",
    ),
    f(
        "impair",
        Ty::Tables(IMPAIR),
        "none",
        "Delay, loss, rate... on the cable.",
    ),
    f(
        "capture",
        Ty::Path,
        "none",
        "Write every frame on it to this pcap file.",
    ),
];

pub const NETWORK: &[Field] = &[
    f(
        "endpoints",
        Ty::Str,
        "",
        "The NICs on the LAN: \"node:nic\" (or remote endpoints).",
    ),
    f(
        "impair",
        Ty::Tables(IMPAIR),
        "none",
        "Delay, loss, rate... on every port.",
    ),
    f(
        "capture",
        Ty::Path,
        "none",
        "Write every frame on it to this pcap file.",
    ),
];

pub const IMPAIR: &[Field] = &[
    f("delay", Ty::Str, "0", "One-way delay, e.g. \"20ms\"."),
    f(
        "jitter",
        Ty::Str,
        "0",
        "Random extra delay up to this much.",
    ),
    f("loss", Ty::Str, "0%", "Frames dropped, e.g. \"1%\"."),
    f("duplicate", Ty::Str, "0%", "Frames sent twice."),
    f(
        "reorder",
        Ty::Str,
        "0%",
        "Frames sent ahead of the delay queue.",
    ),
    f("corrupt", Ty::Str, "0%", "Frames with one bit flipped."),
    f(
        "rate",
        Ty::Str,
        "unlimited",
        "A token-bucket rate, e.g. \"10Mbit\".",
    ),
];
