//! The QMP command table: each command's name, its arguments (QAPI types, checked
//! with QEMU's error wording) and its handler. `query-commands` lists this table.
//!
//! Argument checking follows QEMU's input visitor: the declared arguments in order
//! (`Parameter 'x' is missing`, `Invalid parameter type for 'x', expected: string`,
//! `Parameter 'x' does not accept value 'y'`), then any left over
//! (`Parameter 'x' is unexpected`).

use std::path::PathBuf;

use super::json::Json;
use super::protocol::{self, ErrorClass, QmpError, Request};
use super::{ControlError, ControlTarget, ImageFormat, Screendump};

/// A QAPI argument type.
#[derive(Debug, Clone, Copy)]
pub enum ArgType {
    Str,
    Int,
    Bool,
    Enum(&'static [&'static str]),
    /// An array of enum values.
    EnumList(&'static [&'static str]),
}

/// One declared argument.
#[derive(Debug, Clone, Copy)]
pub struct Arg {
    pub name: &'static str,
    pub ty: ArgType,
    pub optional: bool,
}

const fn arg(name: &'static str, ty: ArgType, optional: bool) -> Arg {
    Arg { name, ty, optional }
}

/// A client connection's negotiation state.
#[derive(Debug, Default)]
pub struct Session {
    pub negotiated: bool,
}

/// What a handler gets.
pub struct Ctx<'a> {
    pub target: &'a dyn ControlTarget,
    pub session: &'a mut Session,
}

type Handler = fn(&mut Ctx, &Args) -> Result<Json, QmpError>;

/// One command.
pub struct Command {
    pub name: &'static str,
    pub args: &'static [Arg],
    run: Handler,
}

const fn cmd(name: &'static str, args: &'static [Arg], run: Handler) -> Command {
    Command { name, args, run }
}

const QMP_CAPS: &[&str] = &["oob"];
const IMAGE_FORMATS: &[&str] = &["ppm", "png"];

/// Every command vmrun answers, in `query-commands` order.
pub static COMMANDS: &[Command] = &[
    cmd(
        "qmp_capabilities",
        &[arg("enable", ArgType::EnumList(QMP_CAPS), true)],
        qmp_capabilities,
    ),
    cmd("query-version", &[], |_, _| Ok(protocol::version_info())),
    cmd("query-commands", &[], query_commands),
    cmd("query-name", &[], |c, _| {
        Ok(Json::object([("name", Json::from(c.target.name()))]))
    }),
    cmd("query-status", &[], query_status),
    cmd("query-cpus-fast", &[], query_cpus_fast),
    cmd("query-chardev", &[], query_chardev),
    cmd("query-target", &[], |_, _| {
        Ok(Json::object([("arch", Json::from("x86_64"))]))
    }),
    cmd("query-kvm", &[], |_, _| {
        Ok(Json::object([
            ("enabled", Json::Bool(true)),
            ("present", Json::Bool(true)),
        ]))
    }),
    cmd("query-uuid", &[], |_, _| {
        let nil = "00000000-0000-0000-0000-000000000000";
        Ok(Json::object([("UUID", Json::from(nil))]))
    }),
    cmd("query-current-machine", &[], |_, _| {
        Ok(Json::object([(
            "wakeup-suspend-support",
            Json::Bool(false),
        )]))
    }),
    cmd("query-memory-size-summary", &[], |c, _| {
        Ok(Json::object([
            ("base-memory", Json::from(c.target.memory_size())),
            ("plugged-memory", Json::Int(0)),
        ]))
    }),
    cmd("stop", &[], |c, _| done(c.target.stop())),
    cmd("cont", &[], |c, _| done(c.target.cont())),
    cmd("system_powerdown", &[], |c, _| done(c.target.powerdown())),
    cmd("system_reset", &[], |c, _| done(c.target.reset())),
    cmd("inject-nmi", &[], |c, _| done(c.target.inject_nmi())),
    cmd(
        "set_link",
        &[
            arg("name", ArgType::Str, false),
            arg("up", ArgType::Bool, false),
        ],
        set_link,
    ),
    cmd(
        "snapshot-save",
        &[
            arg("path", ArgType::Str, false),
            arg("paused", ArgType::Bool, true),
        ],
        snapshot_save,
    ),
    cmd("quit", &[], |c, _| {
        c.target.quit();
        Ok(Json::empty())
    }),
    cmd(
        "screendump",
        &[
            arg("filename", ArgType::Str, false),
            arg("device", ArgType::Str, true),
            arg("head", ArgType::Int, true),
            arg("format", ArgType::Enum(IMAGE_FORMATS), true),
        ],
        screendump,
    ),
];

impl From<ControlError> for QmpError {
    fn from(e: ControlError) -> Self {
        let class = match e {
            ControlError::DeviceNotFound(_) => ErrorClass::DeviceNotFound,
            _ => ErrorClass::GenericError,
        };
        QmpError {
            class,
            desc: e.to_string(),
        }
    }
}

fn done(r: Result<(), ControlError>) -> Result<Json, QmpError> {
    r.map(|()| Json::empty()).map_err(QmpError::from)
}

/// Checked arguments.
pub struct Args(Vec<(String, Json)>);

impl Args {
    pub fn get(&self, name: &str) -> Option<&Json> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    fn str(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(Json::as_str)
    }
}

fn type_error(name: &str, expected: &str) -> QmpError {
    QmpError::generic(format!(
        "Invalid parameter type for '{name}', expected: {expected}"
    ))
}

fn check_enum(name: &str, v: &Json, values: &[&str]) -> Result<(), QmpError> {
    let s = v.as_str().ok_or_else(|| type_error(name, "string"))?;
    if values.contains(&s) {
        Ok(())
    } else {
        Err(QmpError::generic(format!(
            "Parameter '{name}' does not accept value '{s}'"
        )))
    }
}

fn check_value(name: &str, ty: ArgType, v: &Json) -> Result<(), QmpError> {
    match (ty, v) {
        (ArgType::Str, Json::Str(_)) | (ArgType::Int, Json::Int(_)) => Ok(()),
        (ArgType::Bool, Json::Bool(_)) => Ok(()),
        (ArgType::Str, _) => Err(type_error(name, "string")),
        (ArgType::Int, _) => Err(type_error(name, "integer")),
        (ArgType::Bool, _) => Err(type_error(name, "boolean")),
        (ArgType::Enum(values), v) => check_enum(name, v, values),
        (ArgType::EnumList(values), Json::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                check_enum(&format!("{name}[{i}]"), item, values)?;
            }
            Ok(())
        }
        (ArgType::EnumList(_), _) => Err(type_error(name, "array")),
    }
}

/// Checks `given` against the declared arguments.
pub fn check_args(decl: &[Arg], given: Vec<(String, Json)>) -> Result<Args, QmpError> {
    for a in decl {
        match given.iter().find(|(k, _)| k == a.name) {
            Some((_, v)) => check_value(a.name, a.ty, v)?,
            None if a.optional => {}
            None => {
                return Err(QmpError::generic(format!(
                    "Parameter '{}' is missing",
                    a.name
                )))
            }
        }
    }
    if let Some((k, _)) = given
        .iter()
        .find(|(k, _)| !decl.iter().any(|a| a.name == k))
    {
        return Err(QmpError::generic(format!("Parameter '{k}' is unexpected")));
    }
    Ok(Args(given))
}

pub fn find(name: &str) -> Option<&'static Command> {
    COMMANDS.iter().find(|c| c.name == name)
}

/// Runs one request and returns the reply line.
pub fn dispatch(target: &dyn ControlTarget, session: &mut Session, req: Request) -> String {
    let id = req.id.clone();
    match run(target, session, req) {
        Ok(v) => protocol::reply_ok(v, id),
        Err(e) => protocol::reply_err(&e, id),
    }
}

fn run(target: &dyn ControlTarget, session: &mut Session, req: Request) -> Result<Json, QmpError> {
    if !session.negotiated && req.execute != "qmp_capabilities" {
        return Err(QmpError::not_found(
            "Expecting capabilities negotiation with 'qmp_capabilities'",
        ));
    }
    let Some(c) = find(&req.execute) else {
        return Err(QmpError::not_found(format!(
            "The command {} has not been found",
            req.execute
        )));
    };
    let args = check_args(c.args, req.arguments)?;
    (c.run)(&mut Ctx { target, session }, &args)
}

fn qmp_capabilities(c: &mut Ctx, args: &Args) -> Result<Json, QmpError> {
    if c.session.negotiated {
        return Err(QmpError::not_found(
            "Capabilities negotiation is already complete, command ignored",
        ));
    }
    if let Some(Json::Array(caps)) = args.get("enable") {
        if let Some(cap) = caps.first().and_then(Json::as_str) {
            return Err(QmpError::generic(format!(
                "Capability '{cap}' not available"
            )));
        }
    }
    c.session.negotiated = true;
    Ok(Json::empty())
}

fn query_commands(_: &mut Ctx, _: &Args) -> Result<Json, QmpError> {
    Ok(Json::Array(
        COMMANDS
            .iter()
            .map(|c| Json::object([("name", Json::from(c.name))]))
            .collect(),
    ))
}

fn set_link(c: &mut Ctx, args: &Args) -> Result<Json, QmpError> {
    let name = args.str("name").unwrap_or("");
    let up = matches!(args.get("up"), Some(Json::Bool(true)));
    done(c.target.set_link(name, up))
}

fn snapshot_save(c: &mut Ctx, args: &Args) -> Result<Json, QmpError> {
    let path = PathBuf::from(args.str("path").unwrap_or_default());
    let paused = matches!(args.get("paused"), Some(Json::Bool(true)));
    let info = c.target.snapshot_save(&path, paused)?;
    Ok(Json::object([
        ("path", Json::from(info.path.display().to_string())),
        ("memory-bytes", Json::from(info.memory_bytes)),
        ("sha256", Json::from(info.sha256)),
        ("paused-ms", Json::from(info.paused_ms)),
    ]))
}

fn query_status(c: &mut Ctx, _: &Args) -> Result<Json, QmpError> {
    let s = c.target.status();
    Ok(Json::object([
        ("status", Json::from(s.as_str())),
        ("singlestep", Json::Bool(false)),
        ("running", Json::Bool(s == super::RunStatus::Running)),
    ]))
}

fn query_cpus_fast(c: &mut Ctx, _: &Args) -> Result<Json, QmpError> {
    let cpus = c.target.cpus().into_iter().map(|cpu| {
        Json::object([
            ("thread-id", Json::Int(cpu.thread_id)),
            (
                "props",
                Json::object([
                    ("core-id", Json::from(cpu.core)),
                    ("thread-id", Json::from(cpu.thread)),
                    ("socket-id", Json::from(cpu.socket)),
                ]),
            ),
            (
                "qom-path",
                Json::from(format!("/machine/unattached/device[{}]", cpu.index)),
            ),
            ("cpu-index", Json::from(cpu.index)),
            ("target", Json::from("x86_64")),
        ])
    });
    Ok(Json::Array(cpus.collect()))
}

fn query_chardev(c: &mut Ctx, _: &Args) -> Result<Json, QmpError> {
    let devs = c.target.chardevs().into_iter().map(|d| {
        Json::object([
            ("frontend-open", Json::Bool(d.frontend_open)),
            ("filename", Json::from(d.filename)),
            ("label", Json::from(d.label)),
        ])
    });
    Ok(Json::Array(devs.collect()))
}

fn screendump(c: &mut Ctx, args: &Args) -> Result<Json, QmpError> {
    let format = match args.str("format") {
        Some("png") => ImageFormat::Png,
        _ => ImageFormat::Ppm,
    };
    let req = Screendump {
        filename: PathBuf::from(args.str("filename").unwrap_or_default()),
        device: args.str("device").map(str::to_string),
        head: args.get("head").and_then(Json::as_i64),
        format,
    };
    done(c.target.screendump(&req))
}
