//! Packet capture: taps on a network (every frame its ports send into it, once, before
//! impairment) or on a port (what its node sent and what was delivered to it, after
//! impairment), written as pcap (Ethernet link type, microsecond timestamps) or pcapng
//! (one interface per port named after it, nanosecond timestamps, and the direction
//! seen from the node's NIC: outbound = sent by the node, inbound = delivered to it).
//! `tcpdump -r` and `tshark -r` read both, from a file or a pipe.
//!
//! A tap writes to a file (buffered, flushed every [`super::run`] housekeeping tick)
//! or to a bounded in-memory stream that the control server hands to a client
//! connection; a client that reads too slowly loses frames (counted), the network never
//! waits for it. No tap, no cost: the engine checks one flag per frame.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

const LINKTYPE_ETHERNET: u32 = 1;
const SNAPLEN: u32 = 65535;
/// A stream tap holds at most this many bytes its client has not read yet.
pub const STREAM_LIMIT: usize = 4 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Pcap,
    Pcapng,
}

impl Format {
    /// pcapng for `*.pcapng`, else pcap.
    pub fn for_path(p: &Path) -> Self {
        if p.extension().is_some_and(|e| e == "pcapng") {
            Self::Pcapng
        } else {
            Self::Pcap
        }
    }
}

/// Which way a frame went, seen from the port's node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// The node sent it (the switch received it).
    FromNode,
    /// The switch delivered it to the node.
    ToNode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Net(usize),
    Port(usize),
}

#[derive(Debug)]
pub enum Sink {
    File {
        path: PathBuf,
        w: BufWriter<File>,
    },
    /// Bytes for the control client: `buf[sent..]` are not written out yet (see
    /// [`Tap::stream_bytes`]).
    Stream {
        buf: Vec<u8>,
        sent: usize,
    },
}

#[derive(Debug)]
pub struct Tap {
    pub id: u64,
    pub target: Target,
    pub format: Format,
    /// Port indices in interface order (pcapng).
    ifaces: Vec<usize>,
    sink: Sink,
    pub frames: u64,
    pub dropped: u64,
    pub error: Option<String>,
}

fn pad4(n: usize) -> usize {
    (4 - n % 4) % 4
}

fn put32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// The file header: pcap's global header, or pcapng's section header and one
/// interface description per port.
pub fn header(format: Format, names: &[&str]) -> Vec<u8> {
    let mut o = Vec::new();
    match format {
        Format::Pcap => {
            put32(&mut o, 0xa1b2_c3d4);
            o.extend_from_slice(&2u16.to_le_bytes());
            o.extend_from_slice(&4u16.to_le_bytes());
            put32(&mut o, 0); // thiszone
            put32(&mut o, 0); // sigfigs
            put32(&mut o, SNAPLEN);
            put32(&mut o, LINKTYPE_ETHERNET);
        }
        Format::Pcapng => {
            put32(&mut o, 0x0a0d_0d0a);
            put32(&mut o, 28);
            put32(&mut o, 0x1a2b_3c4d);
            o.extend_from_slice(&1u16.to_le_bytes());
            o.extend_from_slice(&0u16.to_le_bytes());
            o.extend_from_slice(&(-1i64).to_le_bytes());
            put32(&mut o, 28);
            for name in names {
                let n = name.as_bytes();
                // if_name (2), if_tsresol (9) = 10^-9, end of options.
                let opts = 4 + n.len() + pad4(n.len()) + 4 + 4 + 4;
                let total = (20 + opts) as u32;
                put32(&mut o, 1);
                put32(&mut o, total);
                o.extend_from_slice(&(LINKTYPE_ETHERNET as u16).to_le_bytes());
                o.extend_from_slice(&0u16.to_le_bytes());
                put32(&mut o, SNAPLEN);
                o.extend_from_slice(&2u16.to_le_bytes());
                o.extend_from_slice(&(n.len() as u16).to_le_bytes());
                o.extend_from_slice(n);
                o.resize(o.len() + pad4(n.len()), 0);
                o.extend_from_slice(&9u16.to_le_bytes());
                o.extend_from_slice(&1u16.to_le_bytes());
                o.extend_from_slice(&[9, 0, 0, 0]);
                put32(&mut o, 0);
                put32(&mut o, total);
            }
        }
    }
    o
}

/// One record's header (the frame's bytes follow, then `trailer`).
fn record_head(format: Format, ts: Duration, iface: u32, len: usize, out: &mut [u8; 28]) -> usize {
    let len = len.min(SNAPLEN as usize) as u32;
    match format {
        Format::Pcap => {
            out[0..4].copy_from_slice(&(ts.as_secs() as u32).to_le_bytes());
            out[4..8].copy_from_slice(&ts.subsec_micros().to_le_bytes());
            out[8..12].copy_from_slice(&len.to_le_bytes());
            out[12..16].copy_from_slice(&len.to_le_bytes());
            16
        }
        Format::Pcapng => {
            let total = 28 + len + pad4(len as usize) as u32 + 12 + 4;
            let ns = ts.as_nanos() as u64;
            out[0..4].copy_from_slice(&6u32.to_le_bytes());
            out[4..8].copy_from_slice(&total.to_le_bytes());
            out[8..12].copy_from_slice(&iface.to_le_bytes());
            out[12..16].copy_from_slice(&((ns >> 32) as u32).to_le_bytes());
            out[16..20].copy_from_slice(&(ns as u32).to_le_bytes());
            out[20..24].copy_from_slice(&len.to_le_bytes());
            out[24..28].copy_from_slice(&len.to_le_bytes());
            28
        }
    }
}

/// What follows the frame: padding, the direction option, the block length (pcapng).
fn record_tail(format: Format, dir: Dir, len: usize, out: &mut [u8; 20]) -> usize {
    let Format::Pcapng = format else {
        return 0;
    };
    let len = len.min(SNAPLEN as usize);
    let pad = pad4(len);
    out[..pad].fill(0);
    let flags: u32 = match dir {
        Dir::FromNode => 2, // outbound
        Dir::ToNode => 1,   // inbound
    };
    let total = (28 + len + pad + 12 + 4) as u32;
    let o = &mut out[pad..pad + 16];
    o[0..4].copy_from_slice(&[2, 0, 4, 0]); // epb_flags, 4 bytes
    o[4..8].copy_from_slice(&flags.to_le_bytes());
    o[8..12].copy_from_slice(&[0, 0, 0, 0]); // end of options
    o[12..16].copy_from_slice(&total.to_le_bytes());
    pad + 16
}

impl Tap {
    /// A tap writing `format` to `sink`, with the port `names` of `ifaces` (pcapng).
    pub fn new(
        id: u64,
        target: Target,
        format: Format,
        ifaces: Vec<usize>,
        names: &[&str],
        mut sink: Sink,
    ) -> io::Result<Self> {
        let head = header(format, names);
        match &mut sink {
            Sink::File { w, .. } => w.write_all(&head)?,
            Sink::Stream { buf, .. } => {
                buf.reserve(STREAM_LIMIT);
                buf.extend_from_slice(&head);
            }
        }
        Ok(Self {
            id,
            target,
            format,
            ifaces,
            sink,
            frames: 0,
            dropped: 0,
            error: None,
        })
    }

    /// A file sink at `path`, created 0600 (captures hold the lab's traffic).
    pub fn file_sink(path: &Path) -> io::Result<Sink> {
        use std::os::unix::fs::OpenOptionsExt;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?;
        Ok(Sink::File {
            path: path.into(),
            w: BufWriter::with_capacity(1 << 16, f),
        })
    }

    pub fn path(&self) -> Option<&Path> {
        match &self.sink {
            Sink::File { path, .. } => Some(path),
            Sink::Stream { .. } => None,
        }
    }

    /// Writes one frame seen on `port` at wall-clock time `ts`.
    pub fn record(&mut self, port: usize, dir: Dir, data: &[u8], ts: Duration) {
        if self.error.is_some() {
            return;
        }
        let iface = self.ifaces.iter().position(|&p| p == port).unwrap_or(0) as u32;
        let mut head = [0u8; 28];
        let mut tail = [0u8; 20];
        let h = record_head(self.format, ts, iface, data.len(), &mut head);
        let t = record_tail(self.format, dir, data.len(), &mut tail);
        let data = &data[..data.len().min(SNAPLEN as usize)];
        match &mut self.sink {
            Sink::File { w, .. } => {
                let r = w
                    .write_all(&head[..h])
                    .and_then(|_| w.write_all(data))
                    .and_then(|_| w.write_all(&tail[..t]));
                if let Err(e) = r {
                    self.error = Some(e.to_string());
                    return;
                }
            }
            Sink::Stream { buf, sent } => {
                if buf.len() - *sent + h + data.len() + t > STREAM_LIMIT {
                    self.dropped += 1;
                    return;
                }
                buf.extend_from_slice(&head[..h]);
                buf.extend_from_slice(data);
                buf.extend_from_slice(&tail[..t]);
            }
        }
        self.frames += 1;
    }

    pub fn flush(&mut self) {
        if let Sink::File { w, .. } = &mut self.sink {
            if let Err(e) = w.flush() {
                self.error.get_or_insert(e.to_string());
            }
        }
    }

    /// A stream tap's bytes not yet sent, for the control server to write out; it
    /// calls [`Tap::consumed`] with how many went.
    pub fn stream_bytes(&self) -> &[u8] {
        match &self.sink {
            Sink::Stream { buf, sent } => &buf[*sent..],
            Sink::File { .. } => &[],
        }
    }

    pub fn consumed(&mut self, n: usize) {
        if let Sink::Stream { buf, sent } = &mut self.sink {
            *sent = (*sent + n).min(buf.len());
            if *sent == buf.len() {
                buf.clear();
                *sent = 0;
            } else if *sent > STREAM_LIMIT / 2 {
                buf.drain(..*sent);
                *sent = 0;
            }
        }
    }

    /// A sink streamed to a control client.
    pub fn stream_sink() -> Sink {
        Sink::Stream {
            buf: Vec::new(),
            sent: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcap_and_pcapng_layouts() {
        let f = [0xabu8; 61];
        let ts = Duration::new(1_700_000_000, 123_456_789);
        let mut t = Tap::new(
            1,
            Target::Port(4),
            Format::Pcap,
            vec![4],
            &["a"],
            Tap::stream_sink(),
        )
        .unwrap();
        t.record(4, Dir::FromNode, &f, ts);
        let b = t.stream_bytes();
        assert_eq!(b.len(), 24 + 16 + 61);
        assert_eq!(&b[24..28], &1_700_000_000u32.to_le_bytes());
        assert_eq!(&b[28..32], &123_456u32.to_le_bytes());
        let mut t = Tap::new(
            2,
            Target::Net(0),
            Format::Pcapng,
            vec![3, 4],
            &["a:n0", "bb"],
            Tap::stream_sink(),
        )
        .unwrap();
        let head = t.stream_bytes().len();
        t.record(4, Dir::ToNode, &f, ts);
        let b = &t.stream_bytes()[head..];
        // Type, total length at both ends, interface 1, 61 bytes + 3 padding.
        let total = 28 + 64 + 16;
        assert_eq!(b.len(), total);
        assert_eq!(&b[0..4], &6u32.to_le_bytes());
        assert_eq!(&b[4..8], &(total as u32).to_le_bytes());
        assert_eq!(&b[total - 4..], &(total as u32).to_le_bytes());
        assert_eq!(&b[8..12], &1u32.to_le_bytes());
        assert_eq!(&b[28 + 64 + 4..28 + 64 + 8], &1u32.to_le_bytes()); // inbound
        t.consumed(head + total);
        assert!(t.stream_bytes().is_empty());
    }

    #[test]
    fn a_slow_stream_drops_instead_of_growing() {
        let mut t = Tap::new(
            1,
            Target::Port(0),
            Format::Pcap,
            vec![0],
            &["p"],
            Tap::stream_sink(),
        )
        .unwrap();
        for _ in 0..5000 {
            t.record(0, Dir::FromNode, &[0u8; 1514], Duration::ZERO);
        }
        assert!(t.stream_bytes().len() <= STREAM_LIMIT);
        assert!(t.dropped > 0 && t.frames + t.dropped == 5000);
    }
}
