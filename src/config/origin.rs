//! Where the board's built-in devices come from, so that an error found in a board's
//! built-in text (`<board pc defaults>`, `<board pc devices>`) is reported at the
//! user's line that caused it: the other party of a conflict when that is the user's
//! (a note located in a user file), else the `[[device]]` entry that overrides the
//! default, else `board = ...`, else the start of the machine file. The built-in line
//! stays visible in a note that names the default by id.
//!
//! [`Origins::relocate`] is the one place that does this; `config::load` and
//! `spec::check` pass every diagnostic through it before returning.

use super::source::{Diagnostic, Loc};

/// One device of a board's built-in texts.
#[derive(Debug, Clone, PartialEq)]
pub struct BoardDevice {
    pub id: String,
    pub kind: String,
    /// From its `[[device]]` header to the next one, in the board's text.
    pub region: Loc,
    /// One of the interrupt controllers every machine of the board has (not a
    /// default that `defaults = false` drops).
    pub intrinsic: bool,
    /// The `id` of the user's `[[device]]` that overrides it, if any.
    pub user: Option<Loc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Origins {
    /// Sources with this id or higher are the board's built-in texts.
    pub board_src_start: u32,
    pub board_name: &'static str,
    pub devices: Vec<BoardDevice>,
    /// `board = ...` where a user file says it.
    pub board_key: Option<Loc>,
    /// The start of the top machine file.
    pub anchor: Loc,
}

impl Origins {
    /// No board texts (nothing to relocate).
    pub fn none(anchor: Loc) -> Self {
        Self {
            board_src_start: u32::MAX,
            board_name: "",
            devices: Vec::new(),
            board_key: None,
            anchor,
        }
    }

    /// Whether `loc` is in one of the board's built-in texts.
    pub fn is_board(&self, loc: &Loc) -> bool {
        loc.src.0 >= self.board_src_start
    }

    /// The board device whose text holds `loc`.
    pub fn device_at(&self, loc: &Loc) -> Option<&BoardDevice> {
        self.devices.iter().find(|d| {
            d.region.src == loc.src
                && d.region.span.start <= loc.span.start
                && loc.span.start < d.region.span.end
        })
    }

    /// The user's line standing for what is at `loc` in a board text.
    fn user_loc(&self, dev: Option<&BoardDevice>) -> Loc {
        dev.and_then(|d| d.user.clone())
            .or_else(|| self.board_key.clone())
            .unwrap_or_else(|| self.anchor.clone())
    }

    /// Moves a diagnostic whose primary location is in a board text to the user's
    /// line, with a note pointing at the built-in line and naming the device.
    pub fn relocate(&self, mut d: Diagnostic) -> Diagnostic {
        if !self.is_board(&d.loc) {
            return d;
        }
        let dev = self.device_at(&d.loc);
        let note = match dev {
            Some(dev) => {
                let what = if dev.intrinsic {
                    "one of the interrupt controllers of board"
                } else {
                    "a default device of board"
                };
                let how = match (&dev.user, dev.intrinsic) {
                    (Some(_), _) => String::new(),
                    (None, true) => format!(
                        "; a [[device]] with id = \"{}\" overrides its keys",
                        dev.id
                    ),
                    (None, false) => format!(
                        "; a [[device]] with id = \"{}\" overrides it, and `enabled = false` removes it",
                        dev.id
                    ),
                };
                format!(
                    "this is about `{}` (a {}), {what} {}{how}",
                    dev.id, dev.kind, self.board_name
                )
            }
            None => format!("this is in board {}'s built-in devices", self.board_name),
        };
        let other = d
            .notes
            .iter()
            .position(|n| n.loc.as_ref().is_some_and(|l| !self.is_board(l)));
        let target = match other {
            // The note said where the user's party is ("device `dbg` is here"); the
            // caret now does.
            Some(i) => d.notes.remove(i).loc.unwrap_or_else(|| self.user_loc(dev)),
            None => self.user_loc(dev),
        };
        let builtin = std::mem::replace(&mut d.loc, target);
        d.note_at(&builtin, note)
    }

    pub fn relocate_all(&self, diags: Vec<Diagnostic>) -> Vec<Diagnostic> {
        diags.into_iter().map(|d| self.relocate(d)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::source::SrcId;
    use super::*;

    fn origins() -> Origins {
        Origins {
            board_src_start: 2,
            board_name: "pc",
            devices: vec![
                BoardDevice {
                    id: "com1".into(),
                    kind: "serial".into(),
                    region: Loc::new(SrcId(3), 0..50),
                    intrinsic: false,
                    user: Some(Loc::new(SrcId(0), 20..26)),
                },
                BoardDevice {
                    id: "vga".into(),
                    kind: "vga".into(),
                    region: Loc::new(SrcId(3), 50..80),
                    intrinsic: false,
                    user: None,
                },
            ],
            board_key: Some(Loc::new(SrcId(1), 8..12)),
            anchor: Loc::new(SrcId(0), 0..0),
        }
    }

    #[test]
    fn board_locations_move_to_the_user_s_line() {
        let o = origins();
        let d = o.relocate(Diagnostic::new(&Loc::new(SrcId(3), 10..14), "x"));
        assert_eq!(d.loc, Loc::new(SrcId(0), 20..26), "the overriding entry");
        assert_eq!(d.notes[0].loc, Some(Loc::new(SrcId(3), 10..14)));
        assert!(d.notes[0].message.contains("`com1`"), "{:?}", d.notes);
        let d = o.relocate(Diagnostic::new(&Loc::new(SrcId(3), 60..61), "x"));
        assert_eq!(d.loc, Loc::new(SrcId(1), 8..12), "`board = ...`");
        assert!(d.notes[0].message.contains("enabled = false"));
        let conflict = Diagnostic::new(&Loc::new(SrcId(3), 60..61), "x")
            .note_at(&Loc::new(SrcId(0), 40..44), "device `dbg` is here");
        let d = o.relocate(conflict);
        assert_eq!(d.loc, Loc::new(SrcId(0), 40..44), "the user's party");
        assert_eq!(d.notes.len(), 1, "{:?}", d.notes);
        assert!(d.notes[0].message.contains("default device"));
        let user = Diagnostic::new(&Loc::new(SrcId(1), 3..4), "x");
        assert_eq!(o.relocate(user.clone()), user, "user locations stay");
        let o = Origins {
            board_key: None,
            ..origins()
        };
        let d = o.relocate(Diagnostic::new(&Loc::new(SrcId(2), 0..1), "x"));
        assert_eq!(d.loc, Loc::new(SrcId(0), 0..0), "the file's start");
    }
}
