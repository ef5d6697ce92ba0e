//! Canonical JSON (spec appendix "Signing JSON"): a value model that can only
//! hold what canonical JSON allows, a strict parser, and the one encoding that
//! hashes and signatures are computed over.
//!
//! The parser rides on serde_json's tokenizer (fast and well fuzzed) but builds
//! our own [`Value`] through a visitor that rejects everything the spec forbids:
//! floats, integers outside `[-(2^53)+1, 2^53-1]`, duplicate object keys and
//! nesting deeper than [`MAX_DEPTH`].

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};

/// The largest integer canonical JSON may carry, `2^53 - 1`.
pub const MAX_SAFE_INT: i64 = (1 << 53) - 1;
/// The smallest integer canonical JSON may carry, `-(2^53) + 1`.
pub const MIN_SAFE_INT: i64 = -MAX_SAFE_INT;
/// Nesting limit for arrays and objects. The spec sets none; this is far above
/// anything a real event carries and keeps recursion (parse, encode, redact)
/// bounded for hostile input.
pub const MAX_DEPTH: usize = 64;

/// A JSON object with keys kept in canonical (code point) order. UTF-8 byte
/// order equals code point order, so `BTreeMap<String, _>` sorts correctly.
pub type Object = BTreeMap<String, Value>;

/// A JSON value that is valid canonical JSON by construction.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub enum Value {
    #[default]
    Null,
    Bool(bool),
    /// Always within `[MIN_SAFE_INT, MAX_SAFE_INT]` when built by this module's
    /// parser or by [`Value::integer`].
    Integer(i64),
    String(String),
    Array(Vec<Value>),
    Object(Object),
}

/// Why a document is not acceptable canonical JSON.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("invalid JSON: {0}")]
    Syntax(String),
    #[error("float values are not allowed in canonical JSON")]
    Float,
    #[error("integer {0} is outside the canonical JSON range")]
    IntegerOutOfRange(String),
    #[error("duplicate object key {0:?}")]
    DuplicateKey(String),
    #[error("JSON nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("expected a JSON object at the top level")]
    NotAnObject,
}

impl Value {
    /// An integer value, or an error when it falls outside the canonical range.
    pub fn integer(n: i64) -> Result<Self, Error> {
        if (MIN_SAFE_INT..=MAX_SAFE_INT).contains(&n) {
            Ok(Value::Integer(n))
        } else {
            Err(Error::IntegerOutOfRange(n.to_string()))
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_integer(&self) -> Option<i64> {
        match self {
            Value::Integer(n) => Some(*n),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&Vec<Value>> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    pub fn as_object(&self) -> Option<&Object> {
        match self {
            Value::Object(o) => Some(o),
            _ => None,
        }
    }

    pub fn as_object_mut(&mut self) -> Option<&mut Object> {
        match self {
            Value::Object(o) => Some(o),
            _ => None,
        }
    }

    /// Canonical encoding of this value.
    pub fn to_canonical_bytes(&self) -> Vec<u8> {
        self.to_canonical_string().into_bytes()
    }

    /// Canonical encoding as a `String` (canonical JSON is always UTF-8).
    pub fn to_canonical_string(&self) -> String {
        let mut out = String::with_capacity(256);
        write_value_str(&mut out, self);
        out
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_canonical_string())
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_canonical_string())
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::String(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::String(s)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

impl From<Object> for Value {
    fn from(o: Object) -> Self {
        Value::Object(o)
    }
}

impl From<Vec<Value>> for Value {
    fn from(a: Vec<Value>) -> Self {
        Value::Array(a)
    }
}

// ---------------------------------------------------------------------------
// Parsing

/// Parses a document that must be canonical-JSON-compatible (any whitespace or
/// key order is accepted; the value space is what is checked).
pub fn parse(bytes: &[u8]) -> Result<Value, Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = ValueSeed { depth: 0 }
        .deserialize(&mut de)
        .map_err(map_serde_error)?;
    de.end().map_err(map_serde_error)?;
    Ok(value)
}

/// Parses a document whose top level must be an object.
pub fn parse_object(bytes: &[u8]) -> Result<Object, Error> {
    match parse(bytes)? {
        Value::Object(o) => Ok(o),
        _ => Err(Error::NotAnObject),
    }
}

/// Our visitor reports its errors through `serde::de::Error::custom` with a
/// tag prefix so they survive serde_json's error type and come back typed.
const TAG: &str = "\u{1}myelin:";

fn tagged(e: Error) -> String {
    let code = match &e {
        Error::Float => "float".to_owned(),
        Error::IntegerOutOfRange(n) => format!("int:{n}"),
        Error::DuplicateKey(k) => format!("dup:{k}"),
        Error::TooDeep => "deep".to_owned(),
        Error::Syntax(s) => format!("syntax:{s}"),
        Error::NotAnObject => "notobj".to_owned(),
    };
    format!("{TAG}{code}")
}

fn map_serde_error(e: serde_json::Error) -> Error {
    let msg = e.to_string();
    if let Some(rest) = msg.strip_prefix(TAG) {
        // serde_json appends " at line L column C" to custom messages.
        let rest = rest.rsplit_once(" at line ").map_or(rest, |(head, _)| head);
        if rest == "float" {
            return Error::Float;
        }
        if rest == "deep" {
            return Error::TooDeep;
        }
        if rest == "notobj" {
            return Error::NotAnObject;
        }
        if let Some(n) = rest.strip_prefix("int:") {
            return Error::IntegerOutOfRange(n.to_owned());
        }
        if let Some(k) = rest.strip_prefix("dup:") {
            return Error::DuplicateKey(k.to_owned());
        }
        if let Some(s) = rest.strip_prefix("syntax:") {
            return Error::Syntax(s.to_owned());
        }
    }
    if msg.starts_with("recursion limit exceeded") {
        return Error::TooDeep;
    }
    Error::Syntax(msg)
}

struct ValueSeed {
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for ValueSeed {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(ValueVisitor { depth: self.depth })
    }
}

struct ValueVisitor {
    depth: usize,
}

impl ValueVisitor {
    fn nested<E: de::Error>(&self) -> Result<usize, E> {
        let depth = self.depth + 1;
        if depth > MAX_DEPTH {
            Err(E::custom(tagged(Error::TooDeep)))
        } else {
            Ok(depth)
        }
    }
}

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a canonical JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Value, E> {
        Value::integer(n).map_err(|e| E::custom(tagged(e)))
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Value, E> {
        match i64::try_from(n) {
            Ok(n) => self.visit_i64(n),
            Err(_) => Err(E::custom(tagged(Error::IntegerOutOfRange(n.to_string())))),
        }
    }

    fn visit_f64<E: de::Error>(self, f: f64) -> Result<Value, E> {
        // serde_json reads the integer `-0` as the float -0.0; Python's json
        // (and so Synapse) reads it as 0, which is what we do. The visitor
        // cannot tell it from `-0.0`, which is therefore accepted too.
        if f == 0.0 && f.is_sign_negative() {
            return Ok(Value::Integer(0));
        }
        // Real floats, and integers too large for u64/i64, which serde_json
        // also hands over as floats: neither is canonical JSON.
        Err(E::custom(tagged(Error::Float)))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_owned()))
    }

    fn visit_string<E: de::Error>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let depth = self.nested()?;
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(v) = seq.next_element_seed(ValueSeed { depth })? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let depth = self.nested()?;
        let mut obj = Object::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(ValueSeed { depth })?;
            match obj.entry(key) {
                std::collections::btree_map::Entry::Occupied(e) => {
                    return Err(de::Error::custom(tagged(Error::DuplicateKey(
                        e.key().clone(),
                    ))));
                }
                std::collections::btree_map::Entry::Vacant(e) => {
                    e.insert(value);
                }
            }
        }
        Ok(Value::Object(obj))
    }
}

// ---------------------------------------------------------------------------
// Conversions from and to serde_json

/// Converts a `serde_json::Value`, rejecting floats. Used where JSON has
/// already been parsed by someone else (e.g. a framework extractor).
pub fn from_json(value: serde_json::Value) -> Result<Value, Error> {
    convert(value, 0, false)
}

/// Like [`from_json`] but accepts floats that hold an exact integer in range
/// (`1e10`, `-0.0`), as the spec's canonical JSON examples do. Events must not
/// use this: room versions 6+ reject floats outright.
pub fn from_json_lenient(value: serde_json::Value) -> Result<Value, Error> {
    convert(value, 0, true)
}

fn convert(value: serde_json::Value, depth: usize, lenient: bool) -> Result<Value, Error> {
    Ok(match value {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(b),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::integer(i)?
            } else if n.is_u64() {
                return Err(Error::IntegerOutOfRange(n.to_string()));
            } else {
                let f = n.as_f64().ok_or(Error::Float)?;
                if !lenient || f.fract() != 0.0 || f.abs() > MAX_SAFE_INT as f64 {
                    return Err(Error::Float);
                }
                // Exact: |f| <= 2^53 - 1 and integral.
                Value::Integer(f as i64)
            }
        }
        serde_json::Value::String(s) => Value::String(s),
        serde_json::Value::Array(a) => {
            let depth = depth + 1;
            if depth > MAX_DEPTH {
                return Err(Error::TooDeep);
            }
            Value::Array(
                a.into_iter()
                    .map(|v| convert(v, depth, lenient))
                    .collect::<Result<_, _>>()?,
            )
        }
        serde_json::Value::Object(o) => {
            let depth = depth + 1;
            if depth > MAX_DEPTH {
                return Err(Error::TooDeep);
            }
            Value::Object(
                o.into_iter()
                    .map(|(k, v)| Ok((k, convert(v, depth, lenient)?)))
                    .collect::<Result<_, Error>>()?,
            )
        }
    })
}

impl From<Value> for serde_json::Value {
    fn from(value: Value) -> Self {
        match value {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(b),
            Value::Integer(n) => serde_json::Value::Number(n.into()),
            Value::String(s) => serde_json::Value::String(s),
            Value::Array(a) => serde_json::Value::Array(a.into_iter().map(Into::into).collect()),
            Value::Object(o) => {
                serde_json::Value::Object(o.into_iter().map(|(k, v)| (k, v.into())).collect())
            }
        }
    }
}

impl serde::Serialize for Value {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match self {
            Value::Null => s.serialize_unit(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Integer(n) => s.serialize_i64(*n),
            Value::String(v) => s.serialize_str(v),
            Value::Array(a) => {
                let mut seq = s.serialize_seq(Some(a.len()))?;
                for v in a {
                    seq.serialize_element(v)?;
                }
                seq.end()
            }
            Value::Object(o) => {
                let mut map = s.serialize_map(Some(o.len()))?;
                for (k, v) in o {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

impl<'de> serde::Deserialize<'de> for Value {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        ValueSeed { depth: 0 }.deserialize(d)
    }
}

// ---------------------------------------------------------------------------
// Encoding

/// Canonical encoding of an object, leaving out the top-level keys in `skip`
/// (signing covers an event without `signatures` and `unsigned`; hashing also
/// leaves out `hashes`). Avoids cloning the object to remove keys.
pub fn object_bytes_without(obj: &Object, skip: &[&str]) -> Vec<u8> {
    let mut out = String::with_capacity(512);
    out.push('{');
    let mut first = true;
    for (k, v) in obj {
        if skip.contains(&k.as_str()) {
            continue;
        }
        if !first {
            out.push(',');
        }
        first = false;
        write_string(&mut out, k);
        out.push(':');
        write_value_str(&mut out, v);
    }
    out.push('}');
    out.into_bytes()
}

fn write_value_str(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Integer(n) => {
            use fmt::Write;
            // Writing into a String cannot fail.
            let _ = write!(out, "{n}");
        }
        Value::String(s) => write_string(out, s),
        Value::Array(a) => {
            out.push('[');
            for (i, v) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value_str(out, v);
            }
            out.push(']');
        }
        Value::Object(o) => {
            out.push('{');
            for (i, (k, v)) in o.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(out, k);
                out.push(':');
                write_value_str(out, v);
            }
            out.push('}');
        }
    }
}

/// Writes a JSON string with exactly the escapes the canonical grammar allows:
/// `\"`, `\\`, the five short control escapes, `\u00XX` (lowercase hex) for
/// the other ASCII controls, and every other code point as raw UTF-8.
fn write_string(out: &mut String, s: &str) {
    out.push('"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &str = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            0x08 => "\\b",
            0x09 => "\\t",
            0x0a => "\\n",
            0x0c => "\\f",
            0x0d => "\\r",
            0x00..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if escape.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.push_str("\\u00");
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 0xf) as usize] as char);
        } else {
            out.push_str(escape);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(input: &str) -> String {
        parse(input.as_bytes())
            .expect("valid")
            .to_canonical_string()
    }

    /// The examples from the spec appendix "Canonical JSON", verbatim.
    #[test]
    fn spec_examples() {
        assert_eq!(canon("{}"), "{}");
        assert_eq!(
            canon("{\n    \"one\": 1,\n    \"two\": \"Two\"\n}"),
            r#"{"one":1,"two":"Two"}"#
        );
        assert_eq!(
            canon("{\n    \"b\": \"2\",\n    \"a\": \"1\"\n}"),
            r#"{"a":"1","b":"2"}"#
        );
        assert_eq!(canon(r#"{"b":"2","a":"1"}"#), r#"{"a":"1","b":"2"}"#);
        assert_eq!(
            canon(
                r#"{
    "auth": {
        "success": true,
        "mxid": "@john.doe:example.com",
        "profile": {
            "display_name": "John Doe",
            "three_pids": [
                {
                    "medium": "email",
                    "address": "john.doe@example.org"
                },
                {
                    "medium": "msisdn",
                    "address": "123456789"
                }
            ]
        }
    }
}"#
            ),
            r#"{"auth":{"mxid":"@john.doe:example.com","profile":{"display_name":"John Doe","three_pids":[{"address":"john.doe@example.org","medium":"email"},{"address":"123456789","medium":"msisdn"}]},"success":true}}"#
        );
        assert_eq!(canon(r#"{"a": "日本語"}"#), r#"{"a":"日本語"}"#);
        assert_eq!(canon(r#"{"本": 2, "日": 1}"#), r#"{"日":1,"本":2}"#);
        assert_eq!(canon(r#"{"a": "\u65E5"}"#), r#"{"a":"日"}"#);
        assert_eq!(canon(r#"{"a": null}"#), r#"{"a":null}"#);
        // The last example uses a float exponent; only the lenient conversion
        // (never used for events) accepts it.
        let lenient =
            from_json_lenient(serde_json::from_str(r#"{"a": -0, "b": 1e10}"#).expect("json"))
                .expect("integral floats");
        assert_eq!(lenient.to_canonical_string(), r#"{"a":0,"b":10000000000}"#);
        assert_eq!(canon(r#"{"a": -0}"#), r#"{"a":0}"#);
    }

    #[test]
    fn escapes_follow_the_grammar() {
        let v = Value::String("\u{0}\u{7}\u{8}\t\n\u{b}\u{c}\r\u{1f} \"\\/\u{7f}é😀".into());
        assert_eq!(
            v.to_canonical_string(),
            "\"\\u0000\\u0007\\b\\t\\n\\u000b\\f\\r\\u001f \\\"\\\\/\u{7f}é😀\""
        );
    }

    #[test]
    fn rejects_what_the_spec_forbids() {
        assert_eq!(parse(b"1.5"), Err(Error::Float));
        assert_eq!(parse(b"1e3"), Err(Error::Float));
        assert_eq!(
            parse(b"9007199254740992"),
            Err(Error::IntegerOutOfRange("9007199254740992".into()))
        );
        assert_eq!(
            parse(b"-9007199254740992"),
            Err(Error::IntegerOutOfRange("-9007199254740992".into()))
        );
        assert_eq!(parse(b"18446744073709551616"), Err(Error::Float));
        assert_eq!(parse(b"9007199254740991"), Ok(Value::Integer(MAX_SAFE_INT)));
        assert_eq!(
            parse(b"-9007199254740991"),
            Ok(Value::Integer(MIN_SAFE_INT))
        );
        assert_eq!(
            parse(br#"{"a":1,"b":{"c":1,"c":2}}"#),
            Err(Error::DuplicateKey("c".into()))
        );
        assert!(matches!(parse(br#"{"a":1"#), Err(Error::Syntax(_))));
        assert!(matches!(parse(br#"{"a":1} x"#), Err(Error::Syntax(_))));
        assert!(matches!(parse(b"\"\\ud800\""), Err(Error::Syntax(_))));
        assert!(matches!(parse(b"\"\xff\""), Err(Error::Syntax(_))));
        assert_eq!(parse_object(b"[]"), Err(Error::NotAnObject));
    }

    #[test]
    fn depth_is_bounded() {
        let ok = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert!(parse(ok.as_bytes()).is_ok());
        let deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        assert_eq!(parse(deep.as_bytes()), Err(Error::TooDeep));
        let very_deep = "[".repeat(100_000);
        assert_eq!(parse(very_deep.as_bytes()), Err(Error::TooDeep));
    }

    #[test]
    fn object_bytes_without_skips_top_level_keys_only() {
        let obj =
            parse_object(br#"{"signatures":{},"a":{"unsigned":1},"unsigned":2}"#).expect("object");
        assert_eq!(
            String::from_utf8(object_bytes_without(&obj, &["signatures", "unsigned"]))
                .expect("utf8"),
            r#"{"a":{"unsigned":1}}"#
        );
    }
}
