//! `vmrun schema`: the JSON Schema (draft-07) of a machine file, for editors (taplo,
//! Even Better TOML), generated from the key tables in `schema.rs` that the reader
//! checks files against.
//!
//! A `[[device]]` gets one branch per kind (`if kind == K then` the keys of K, with
//! K's value types), so one kind's choices never apply to another kind's key. An entry
//! without `kind` overrides a board default or an inherited device by id, whose kind
//! this file alone does not tell: it must fit at least one kind (`anyOf`), which is
//! exactly what `check` accepts for some base.

use serde_json::{json, Map, Value as Json};

use super::schema::{
    Field, KindDef, Ty, ARTIFACT, BOOT, BUS, CONTROL, DEVICE_COMMON, KINDS, MACHINE, TOP,
};

/// A size as `units::parse_size` reads it: digits, a binary unit, spaces around.
const SIZE_PATTERN: &str = r"^\s*[0-9]+\s*(B|KiB|MiB|GiB|TiB)\s*$";
/// "SS.F" or "SS": a hex slot 00-1f, an optional function 0-7.
const PCI_ADDR_PATTERN: &str = r"^(0?[0-9a-fA-F]|1[0-9a-fA-F])(\.[0-7])?$";
/// Six hex bytes, the first one even (unicast).
const MAC_PATTERN: &str = r"^[0-9a-fA-F][02468aceACE](:[0-9a-fA-F]{2}){5}$";
const ID_PATTERN: &str = r"^[A-Za-z0-9._-]{1,64}$";
const SHA256_PATTERN: &str = r"^[0-9a-fA-F]{64}$";
/// Non-empty, no NUL byte.
const PATH_PATTERN: &str = r"^[^\u0000]+$";

/// The schema of one value of type `ty` (without its description).
fn value_schema(ty: Ty) -> Json {
    match ty {
        Ty::Str => json!({"type": "string"}),
        Ty::Id => json!({"type": "string", "pattern": ID_PATTERN}),
        Ty::Sha256 => json!({"type": "string", "pattern": SHA256_PATTERN}),
        Ty::Bool => json!({"type": "boolean"}),
        Ty::Int(min, max) => json!({"type": "integer", "minimum": min, "maximum": max}),
        Ty::Size => json!({"type": "string", "pattern": SIZE_PATTERN}),
        Ty::Choice(c) => json!({"type": "string", "enum": c}),
        Ty::Path => json!({"type": "string", "pattern": PATH_PATTERN}),
        Ty::Artifact => json!({"anyOf": [value_schema(Ty::Path), object(ARTIFACT)]}),
        Ty::PciAddr => json!({"anyOf": [
            {"type": "string", "pattern": PCI_ADDR_PATTERN},
            {"type": "integer", "minimum": 0, "maximum": 31},
        ]}),
        Ty::Mac => json!({"type": "string", "pattern": MAC_PATTERN}),
        Ty::Table(fields) => object(fields),
        Ty::Tables(fields) => json!({"type": "array", "items": object(fields)}),
    }
}

fn field_schema(fl: &Field) -> Json {
    let mut s = value_schema(fl.ty);
    s["description"] = json!(fl.doc);
    s
}

fn properties<'a>(fields: impl IntoIterator<Item = &'a Field>) -> Map<String, Json> {
    fields
        .into_iter()
        .map(|fl| (fl.key.to_string(), field_schema(fl)))
        .collect()
}

fn required<'a>(fields: impl IntoIterator<Item = &'a Field>) -> Vec<&'static str> {
    fields
        .into_iter()
        .filter(|fl| fl.required)
        .map(|fl| fl.key)
        .collect()
}

/// A closed table: exactly these keys, the required ones present.
fn object(fields: &[Field]) -> Json {
    let mut o = json!({
        "type": "object",
        "properties": properties(fields),
        "additionalProperties": false,
    });
    let req = required(fields);
    if !req.is_empty() {
        o["required"] = json!(req);
    }
    if fields.iter().any(|fl| fl.key == "string") {
        // An fw_cfg file has its contents in `path` or in `string`, not both.
        o["oneOf"] = json!([{"required": ["path"]}, {"required": ["string"]}]);
    }
    o
}

/// The keys of one device kind: the common ones and its own.
fn kind_schema(d: &KindDef) -> Json {
    let fields: Vec<Field> = DEVICE_COMMON.iter().chain(d.fields).copied().collect();
    object(&fields)
}

fn kind_ref(d: &KindDef) -> Json {
    json!({"$ref": format!("#/definitions/device-{}", d.name)})
}

/// Every key a device may have, for editors' completion and hover: a key that several
/// kinds have with different types accepts any of them (the per-kind branches decide).
fn device_properties() -> Map<String, Json> {
    let mut alts: Vec<(&str, Vec<Json>)> = DEVICE_COMMON
        .iter()
        .map(|fl| (fl.key, vec![field_schema(fl)]))
        .collect();
    for fl in KINDS.iter().flat_map(|d| d.fields) {
        let s = field_schema(fl);
        match alts.iter_mut().find(|(k, _)| *k == fl.key) {
            Some((_, v)) if v.contains(&s) => {}
            Some((_, v)) => v.push(s),
            None => alts.push((fl.key, vec![s])),
        }
    }
    alts.into_iter()
        .map(|(k, mut v)| {
            let s = if v.len() == 1 {
                v.remove(0)
            } else {
                json!({"anyOf": v, "description": "Depends on the device's kind."})
            };
            (k.to_string(), s)
        })
        .collect()
}

fn device_schema() -> Json {
    let mut branches: Vec<Json> = KINDS
        .iter()
        .map(|d| {
            json!({
                "if": {"properties": {"kind": {"const": d.name}}, "required": ["kind"]},
                "then": kind_ref(d),
            })
        })
        .collect();
    branches.push(json!({
        "if": {"not": {"required": ["kind"]}},
        "then": {"anyOf": KINDS.iter().map(kind_ref).collect::<Vec<_>>()},
    }));
    json!({
        "type": "object",
        "properties": device_properties(),
        "required": required(DEVICE_COMMON),
        "allOf": branches,
    })
}

/// The JSON Schema (draft-07) of a machine file.
pub fn json_schema() -> Json {
    let definitions: Map<String, Json> = KINDS
        .iter()
        .map(|d| (format!("device-{}", d.name), kind_schema(d)))
        .collect();
    let mut top = object(TOP);
    top["properties"]["machine"] = object(MACHINE);
    top["properties"]["boot"] = object(BOOT);
    top["properties"]["control"] = object(CONTROL);
    top["properties"]["bus"] = json!({"type": "array", "items": object(BUS)});
    top["properties"]["device"] = json!({"type": "array", "items": device_schema()});
    for (key, fl) in TOP.iter().map(|fl| (fl.key, fl)) {
        top["properties"][key]["description"] = json!(fl.doc);
    }
    top["definitions"] = Json::Object(definitions);
    top["$schema"] = json!("http://json-schema.org/draft-07/schema#");
    top["title"] = json!("vmrun machine file");
    top
}

#[cfg(test)]
mod tests {
    use super::super::schema::BOARDS;
    use super::*;

    #[test]
    fn every_kind_has_its_own_branch_with_its_own_choices() {
        let s = json_schema();
        for d in KINDS {
            let def = &s["definitions"][format!("device-{}", d.name)]["properties"];
            for fl in DEVICE_COMMON.iter().chain(d.fields) {
                assert!(def.get(fl.key).is_some(), "{}.{}", d.name, fl.key);
            }
        }
        let nic = &s["definitions"]["device-nic"]["properties"]["backend"]["enum"];
        assert_eq!(nic, &json!(["none", "tap", "switch", "dgram"]));
        let serial = &s["definitions"]["device-serial"]["properties"]["backend"]["enum"];
        assert!(serial.as_array().unwrap().contains(&json!("stdio")));
        assert_eq!(
            s["properties"]["machine"]["properties"]["board"]["enum"],
            json!(BOARDS)
        );
    }

    #[test]
    fn shared_keys_accept_every_kind_s_values() {
        let s = json_schema();
        let backend = &s["properties"]["device"]["items"]["properties"]["backend"];
        let alts = backend["anyOf"].as_array().unwrap();
        assert_eq!(alts.len(), 3, "{backend}");
    }
}
