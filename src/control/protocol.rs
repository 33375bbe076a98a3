//! QMP framing: one request line in, reply lines out, byte for byte as QEMU prints
//! them (`{"return": {}, "id": 1}`, `{"id": 1, "error": {...}}`, events with their
//! timestamp first, every line ending in `\r\n`).
//!
//! Messages come from the `framer`. A request is an object with `execute` (a string), optional `arguments` (an
//! object) and optional `id` (any JSON, echoed back). Anything else gets QEMU's
//! `GenericError` wording; the checks run in the order the members appear.

use std::time::Duration;

use super::json::{self, Json};
use super::QEMU_VERSION;

/// A QMP error class (QAPI `QapiErrorClass`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    GenericError,
    CommandNotFound,
    DeviceNotFound,
}

impl ErrorClass {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::GenericError => "GenericError",
            ErrorClass::CommandNotFound => "CommandNotFound",
            ErrorClass::DeviceNotFound => "DeviceNotFound",
        }
    }
}

/// An error reply's contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QmpError {
    pub class: ErrorClass,
    pub desc: String,
}

impl QmpError {
    pub fn generic(desc: impl Into<String>) -> Self {
        QmpError {
            class: ErrorClass::GenericError,
            desc: desc.into(),
        }
    }

    pub fn not_found(desc: impl Into<String>) -> Self {
        QmpError {
            class: ErrorClass::CommandNotFound,
            desc: desc.into(),
        }
    }
}

/// A well-formed request.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub execute: String,
    /// The `arguments` object's members (empty when absent).
    pub arguments: Vec<(String, Json)>,
    pub id: Option<Json>,
}

/// A request that was refused before dispatch: the error and the id to echo.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    pub error: QmpError,
    pub id: Option<Json>,
}

/// `package` of the greeting and `query-version`.
pub fn package() -> String {
    format!("vmrun {}", env!("CARGO_PKG_VERSION"))
}

/// QEMU's `VersionInfo`: `{"qemu": {"micro", "minor", "major"}, "package"}`.
pub fn version_info() -> Json {
    let (major, minor, micro) = QEMU_VERSION;
    Json::object([
        (
            "qemu",
            Json::object([
                ("micro", Json::from(micro)),
                ("minor", Json::from(minor)),
                ("major", Json::from(major)),
            ]),
        ),
        ("package", Json::from(package())),
    ])
}

/// The line a client gets on connecting (no capabilities: no out-of-band).
pub fn greeting() -> String {
    let g = Json::object([(
        "QMP",
        Json::object([
            ("version", version_info()),
            ("capabilities", Json::Array(Vec::new())),
        ]),
    )]);
    line(&g)
}

fn line(v: &Json) -> String {
    let mut s = v.to_qmp();
    s.push_str("\r\n");
    s
}

/// `{"return": ..., "id": ...}`.
pub fn reply_ok(ret: Json, id: Option<Json>) -> String {
    let mut m = vec![("return".to_string(), ret)];
    if let Some(id) = id {
        m.push(("id".into(), id));
    }
    line(&Json::Object(m))
}

/// `{"id": ..., "error": {"class": ..., "desc": ...}}` (QEMU puts the id first here).
pub fn reply_err(err: &QmpError, id: Option<Json>) -> String {
    let mut m = Vec::new();
    if let Some(id) = id {
        m.push(("id".to_string(), id));
    }
    m.push((
        "error".into(),
        Json::object([
            ("class", Json::from(err.class.as_str())),
            ("desc", Json::from(err.desc.as_str())),
        ]),
    ));
    line(&Json::Object(m))
}

/// `{"timestamp": {"seconds", "microseconds"}, "event": ..., "data": ...}`; `now` is
/// the time since the Unix epoch.
pub fn event_line(name: &str, data: Option<Json>, now: Duration) -> String {
    let mut m = vec![
        (
            "timestamp".to_string(),
            Json::object([
                ("seconds", Json::from(now.as_secs())),
                ("microseconds", Json::from(now.subsec_micros())),
            ]),
        ),
        ("event".into(), Json::from(name)),
    ];
    if let Some(d) = data {
        m.push(("data".into(), d));
    }
    line(&Json::Object(m))
}

/// Checks one parsed value as a request.
pub fn check_request(v: Json) -> Result<Request, Refused> {
    let Json::Object(members) = v else {
        return Err(Refused {
            error: QmpError::generic("QMP input must be a JSON object"),
            id: None,
        });
    };
    let id = members
        .iter()
        .find(|(k, _)| k == "id")
        .map(|(_, v)| v.clone());
    let refuse = |desc: String| Refused {
        error: QmpError::generic(desc),
        id: id.clone(),
    };
    let mut execute = None;
    let mut arguments = Vec::new();
    for (k, v) in members.iter() {
        match (k.as_str(), v) {
            ("execute", Json::Str(s)) => execute = Some(s.clone()),
            ("execute", _) => {
                return Err(refuse("QMP input member 'execute' must be a string".into()))
            }
            ("arguments", Json::Object(a)) => arguments = a.clone(),
            ("arguments", _) => {
                return Err(refuse(
                    "QMP input member 'arguments' must be an object".into(),
                ))
            }
            ("id", _) => {}
            (other, _) => return Err(refuse(format!("QMP input member '{other}' is unexpected"))),
        }
    }
    let Some(execute) = execute else {
        return Err(refuse("QMP input lacks member 'execute'".into()));
    };
    Ok(Request {
        execute,
        arguments,
        id,
    })
}

/// Parses one input message (see `framer`): every request in it, or the refusal to
/// send back for each bad one (a JSON error ends the message).
pub fn parse_message(msg: &[u8]) -> Vec<Result<Request, Refused>> {
    json::parse_all(msg)
        .into_iter()
        .map(|r| match r {
            Ok(v) => check_request(v),
            Err(e) => Err(Refused {
                error: QmpError::generic(e.to_string()),
                id: None,
            }),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(line: &str) -> Result<Request, Refused> {
        let mut v = parse_message(line.as_bytes());
        assert_eq!(v.len(), 1, "{line}");
        v.remove(0)
    }

    fn desc(line: &str) -> String {
        one(line).unwrap_err().error.desc
    }

    #[test]
    fn requests() {
        let r = one(r#"{"execute": "stop", "arguments": {"a": 1}, "id": [1]}"#).unwrap();
        assert_eq!(r.execute, "stop");
        assert_eq!(r.arguments, vec![("a".to_string(), Json::Int(1))]);
        assert_eq!(r.id, Some(Json::Array(vec![Json::Int(1)])));
        assert_eq!(desc("[1, 2]"), "QMP input must be a JSON object");
        assert_eq!(
            desc(r#"{"foo": 1}"#),
            "QMP input member 'foo' is unexpected"
        );
        assert_eq!(desc(r#"{}"#), "QMP input lacks member 'execute'");
        assert_eq!(
            desc(r#"{"execute": 1}"#),
            "QMP input member 'execute' must be a string"
        );
        assert_eq!(
            desc(r#"{"execute": "x", "arguments": null}"#),
            "QMP input member 'arguments' must be an object"
        );
        assert_eq!(
            desc(r#"{"exec-oob": "x"}"#),
            "QMP input member 'exec-oob' is unexpected"
        );
        let e = one(r#"{"execute": "x", "bogus": 1, "id": "a"}"#).unwrap_err();
        assert_eq!(e.id, Some(Json::from("a")));
        assert_eq!(desc("{ bad"), "JSON parse error, invalid keyword 'bad'");
        let two = parse_message(br#"{"execute": "a"} {"execute": "b"}}"#);
        assert_eq!(two.len(), 3);
        assert_eq!(
            two[2].as_ref().unwrap_err().error.desc,
            "JSON parse error, expecting value"
        );
        assert!(parse_message(b"   \t").is_empty());
    }

    #[test]
    fn output_is_qemus() {
        assert_eq!(
            reply_ok(Json::empty(), Some(Json::Int(1))),
            "{\"return\": {}, \"id\": 1}\r\n"
        );
        assert_eq!(
            reply_err(&QmpError::not_found("no"), Some(Json::from("x"))),
            "{\"id\": \"x\", \"error\": {\"class\": \"CommandNotFound\", \"desc\": \"no\"}}\r\n"
        );
        assert_eq!(
            event_line("STOP", None, Duration::new(1700000000, 123_456_789)),
            "{\"timestamp\": {\"seconds\": 1700000000, \"microseconds\": 123456}, \"event\": \"STOP\"}\r\n"
        );
        let g = greeting();
        assert!(g.starts_with("{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 7}, \"package\": \"vmrun "));
        assert!(g.ends_with("\"}, \"capabilities\": []}}\r\n"));
    }
}
