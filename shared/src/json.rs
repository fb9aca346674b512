//! The reader the forge parses JSON with: request bodies, stream frames, the Worker ⇄ register
//! messages and its own stored records.
//!
//! Why not serde's derived `Deserialize`: in the Worker's Wasm, the derived visitors
//! (monomorphized per type), serde_json's reader and serde's error formatting (which keeps
//! `f64` formatting alive) were the largest block of code the forge did not need. This reader
//! parses once into a [`Json`] tree with integer numbers only, and each type reads its fields
//! from it through non-generic helpers. The agent and the tests keep serde for the same types;
//! `tests` below and `wire::tests` check that both read the same documents the same way
//! (values, defaults, missing and duplicate fields, refusals).
//!
//! Differences from serde_json: a struct is read only from an object (serde also takes an array
//! of its fields in order), and a number with an exponent beyond `f64` (`1e400`), which
//! serde_json refuses anywhere, is accepted where it is ignored (an unknown field); no integer
//! field ever takes a fraction or an exponent, in either. Error texts name the field path (`peers.n1.nonce: missing field `seq``).
use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

/// A parsed JSON value. Numbers are kept only as integers: the forge's types have no
/// fractional fields, so a fraction or an exponent is kept as [`Json::Fraction`] and refused
/// wherever an integer is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Json {
    Null,
    Bool(bool),
    Int(i128),
    /// A number with a fraction or an exponent, or an integer beyond ±10³⁸.
    Fraction,
    Str(String),
    Arr(Vec<Json>),
    /// The members in document order (duplicates kept; a struct refuses a duplicate field).
    Obj(Vec<(String, Json)>),
    /// A value nested deeper than [`MAX_DEPTH`]: checked, not kept (no field the forge reads
    /// is that deep, and an unknown field may be nested arbitrarily deep, as serde allows).
    Deep,
}

/// Why a document could not be read: one line, with the field path where it applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError {
    /// Where: `peers.n1.nonce`, `headers[0]`; empty for the document itself.
    path: String,
    msg: String,
}

impl JsonError {
    fn new(msg: impl Into<String>) -> Self {
        JsonError {
            path: String::new(),
            msg: msg.into(),
        }
    }

    /// A string that names no variant of an enum.
    pub fn unknown_variant(s: &str) -> Self {
        JsonError::new(format!("unknown variant `{s}`"))
    }

    /// The same error, under the field (or map key, or `[index]`) `name`.
    pub fn under(mut self, name: &str) -> Self {
        self.path = match (self.path.is_empty(), self.path.starts_with('[')) {
            (true, _) => name.to_string(),
            (false, true) => format!("{name}{}", self.path),
            (false, false) => format!("{name}.{}", self.path),
        };
        self
    }
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.msg)
        } else {
            write!(f, "{}: {}", self.path, self.msg)
        }
    }
}

/// Deepest nesting kept in the tree; deeper values are checked without recursion and kept as
/// [`Json::Deep`], so a hostile body cannot overflow the stack.
pub const MAX_DEPTH: usize = 32;

/// Parses one JSON document (surrounding whitespace allowed, nothing after it).
pub fn parse(bytes: &[u8]) -> Result<Json, JsonError> {
    let text = core::str::from_utf8(bytes)
        .map_err(|e| JsonError::new(format!("not UTF-8 at byte {}", e.valid_up_to())))?;
    let mut p = Parser {
        s: text.as_bytes(),
        i: 0,
    };
    p.ws();
    let v = p.value(0)?;
    p.ws();
    if p.i != p.s.len() {
        return Err(p.err("trailing characters"));
    }
    Ok(v)
}

/// Reads a `T` from a JSON document.
pub fn from_json<T: FromJson>(bytes: &[u8]) -> Result<T, JsonError> {
    T::from_json(&parse(bytes)?)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn err(&self, what: &str) -> JsonError {
        JsonError::new(format!("{what} at byte {}", self.i))
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.s.get(self.i) {
            self.i += 1;
        }
    }

    fn eat(&mut self, lit: &[u8]) -> bool {
        if self.s[self.i..].starts_with(lit) {
            self.i += lit.len();
            true
        } else {
            false
        }
    }

    fn value(&mut self, depth: usize) -> Result<Json, JsonError> {
        if depth > MAX_DEPTH {
            return self.skip();
        }
        match self.s.get(self.i) {
            None => Err(self.err("unexpected end")),
            Some(b'{') => {
                self.i += 1;
                let mut members = Vec::new();
                self.ws();
                if self.eat(b"}") {
                    return Ok(Json::Obj(members));
                }
                loop {
                    self.ws();
                    if self.s.get(self.i) != Some(&b'"') {
                        return Err(self.err("expected a string key"));
                    }
                    let k = self.string()?;
                    self.ws();
                    if !self.eat(b":") {
                        return Err(self.err("expected `:`"));
                    }
                    self.ws();
                    let v = self.value(depth + 1)?;
                    members.push((k, v));
                    self.ws();
                    if self.eat(b"}") {
                        return Ok(Json::Obj(members));
                    }
                    if !self.eat(b",") {
                        return Err(self.err("expected `,` or `}`"));
                    }
                }
            }
            Some(b'[') => {
                self.i += 1;
                let mut items = Vec::new();
                self.ws();
                if self.eat(b"]") {
                    return Ok(Json::Arr(items));
                }
                loop {
                    self.ws();
                    items.push(self.value(depth + 1)?);
                    self.ws();
                    if self.eat(b"]") {
                        return Ok(Json::Arr(items));
                    }
                    if !self.eat(b",") {
                        return Err(self.err("expected `,` or `]`"));
                    }
                }
            }
            Some(b'"') => self.string().map(Json::Str),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) if self.eat(b"null") => Ok(Json::Null),
            Some(_) if self.eat(b"true") => Ok(Json::Bool(true)),
            Some(_) if self.eat(b"false") => Ok(Json::Bool(false)),
            Some(_) => Err(self.err("expected a value")),
        }
    }

    /// Checks one value without recursion (a stack of the brackets still open).
    fn skip(&mut self) -> Result<Json, JsonError> {
        let mut open: Vec<u8> = Vec::new();
        loop {
            self.ws();
            match self.s.get(self.i) {
                Some(b'[') => {
                    self.i += 1;
                    open.push(b']');
                    self.ws();
                    if !self.eat(b"]") {
                        continue;
                    }
                    open.pop();
                }
                Some(b'{') => {
                    self.i += 1;
                    open.push(b'}');
                    self.ws();
                    if !self.eat(b"}") {
                        self.key()?;
                        continue;
                    }
                    open.pop();
                }
                Some(b'"') => {
                    self.string()?;
                }
                Some(b'-' | b'0'..=b'9') => {
                    self.number()?;
                }
                Some(_) if self.eat(b"null") || self.eat(b"true") || self.eat(b"false") => {}
                None => return Err(self.err("unexpected end")),
                Some(_) => return Err(self.err("expected a value")),
            }
            // After a value: close brackets, or a comma and the next member.
            loop {
                let Some(&close) = open.last() else {
                    return Ok(Json::Deep);
                };
                self.ws();
                if self.eat(&[close]) {
                    open.pop();
                    continue;
                }
                if !self.eat(b",") {
                    return Err(self.err("expected `,` or a closing bracket"));
                }
                if close == b'}' {
                    self.key()?;
                }
                break;
            }
        }
    }

    /// An object key and its colon.
    fn key(&mut self) -> Result<(), JsonError> {
        self.ws();
        if self.s.get(self.i) != Some(&b'"') {
            return Err(self.err("expected a string key"));
        }
        self.string()?;
        self.ws();
        if !self.eat(b":") {
            return Err(self.err("expected `:`"));
        }
        Ok(())
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while let Some(b'0'..=b'9') = self.s.get(self.i) {
            self.i += 1;
        }
        self.i - start
    }

    fn number(&mut self) -> Result<Json, JsonError> {
        let start = self.i;
        self.eat(b"-");
        let int_start = self.i;
        let n = self.digits();
        if n == 0 || (n > 1 && self.s[int_start] == b'0') {
            return Err(self.err("invalid number"));
        }
        let int_end = self.i;
        let mut fraction = false;
        if self.eat(b".") {
            if self.digits() == 0 {
                return Err(self.err("invalid number"));
            }
            fraction = true;
        }
        if let Some(b'e' | b'E') = self.s.get(self.i) {
            self.i += 1;
            if let Some(b'+' | b'-') = self.s.get(self.i) {
                self.i += 1;
            }
            if self.digits() == 0 {
                return Err(self.err("invalid number"));
            }
            fraction = true;
        }
        // serde_json reads `-0` as the float -0.0, never as an integer.
        if fraction || &self.s[start..int_end] == b"-0" {
            return Ok(Json::Fraction);
        }
        // ASCII digits with an optional sign: always UTF-8; beyond i128 it is no integer we read.
        let text = core::str::from_utf8(&self.s[start..int_end]).unwrap_or_default();
        Ok(text.parse::<i128>().map_or(Json::Fraction, Json::Int))
    }

    fn hex4(&mut self) -> Result<u32, JsonError> {
        let h = self
            .s
            .get(self.i..self.i + 4)
            .ok_or_else(|| self.err("unexpected end"))?;
        let mut v = 0u32;
        for &b in h {
            let d = (b as char)
                .to_digit(16)
                .ok_or_else(|| self.err("invalid \\u escape"))?;
            v = v * 16 + d;
        }
        self.i += 4;
        Ok(v)
    }

    /// A string starting at the opening quote.
    fn string(&mut self) -> Result<String, JsonError> {
        self.i += 1;
        let mut out = String::new();
        loop {
            let start = self.i;
            while let Some(&b) = self.s.get(self.i) {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.i += 1;
            }
            // The input is UTF-8 and the run stops only at ASCII bytes: a whole str.
            out.push_str(core::str::from_utf8(&self.s[start..self.i]).unwrap_or_default());
            match self.s.get(self.i) {
                None => return Err(self.err("unterminated string")),
                Some(b'"') => {
                    self.i += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.i += 1;
                    let esc = self.s.get(self.i).copied();
                    self.i += 1;
                    let c = match esc {
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        Some(b'/') => '/',
                        Some(b'b') => '\u{8}',
                        Some(b'f') => '\u{c}',
                        Some(b'n') => '\n',
                        Some(b'r') => '\r',
                        Some(b't') => '\t',
                        Some(b'u') => {
                            let hi = self.hex4()?;
                            let code = if (0xD800..0xDC00).contains(&hi) {
                                if !self.eat(b"\\u") {
                                    return Err(self.err("lone surrogate in \\u escape"));
                                }
                                let lo = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return Err(self.err("lone surrogate in \\u escape"));
                                }
                                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                            } else {
                                hi
                            };
                            char::from_u32(code)
                                .ok_or_else(|| self.err("lone surrogate in \\u escape"))?
                        }
                        _ => return Err(self.err("invalid escape")),
                    };
                    out.push(c);
                }
                Some(_) => return Err(self.err("control character in a string")),
            }
        }
    }
}

impl Json {
    fn kind(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool(_) => "a boolean",
            Json::Int(_) => "an integer",
            Json::Fraction => "a fractional number",
            Json::Str(_) => "a string",
            Json::Arr(_) => "an array",
            Json::Obj(_) => "an object",
            Json::Deep => "a value nested too deep",
        }
    }

    fn expected(&self, what: &str) -> JsonError {
        JsonError::new(format!("expected {what}, found {}", self.kind()))
    }

    /// The members of an object, to read a struct's fields from.
    pub fn fields(&self) -> Result<Fields<'_>, JsonError> {
        match self {
            Json::Obj(m) => Ok(Fields(m)),
            other => Err(other.expected("an object")),
        }
    }
}

/// The members of one JSON object, read field by field.
pub struct Fields<'a>(&'a [(String, Json)]);

impl<'a> Fields<'a> {
    /// The value of member `name`; a member named twice is refused (as serde does for a field).
    pub fn get(&self, name: &str) -> Result<Option<&'a Json>, JsonError> {
        let mut found = None;
        for (k, v) in self.0 {
            if k == name {
                if found.is_some() {
                    return Err(JsonError::new(format!("duplicate field `{name}`")));
                }
                found = Some(v);
            }
        }
        Ok(found)
    }

    /// A field that must be present unless its type has an absent value (`Option`: `None`).
    pub fn req<T: FromJson>(&self, name: &str) -> Result<T, JsonError> {
        match self.get(name)? {
            Some(v) => T::from_json(v).map_err(|e| e.under(name)),
            None => T::absent().ok_or_else(|| JsonError::new(format!("missing field `{name}`"))),
        }
    }

    /// A field that takes its type's default when absent (`#[serde(default)]`).
    pub fn or_default<T: FromJson + Default>(&self, name: &str) -> Result<T, JsonError> {
        match self.get(name)? {
            Some(v) => T::from_json(v).map_err(|e| e.under(name)),
            None => Ok(T::default()),
        }
    }

    /// Refuses a member not in `known` (`#[serde(deny_unknown_fields)]`).
    pub fn deny_unknown(&self, known: &[&str]) -> Result<(), JsonError> {
        match self.0.iter().find(|(k, _)| !known.contains(&k.as_str())) {
            Some((k, _)) => Err(JsonError::new(format!("unknown field `{k}`"))),
            None => Ok(()),
        }
    }
}

/// A type the forge reads from JSON.
pub trait FromJson: Sized {
    fn from_json(v: &Json) -> Result<Self, JsonError>;

    /// The value of a field that is absent, if the type has one (`Option`: `None`).
    fn absent() -> Option<Self> {
        None
    }
}

/// Implements [`FromJson`] for a struct from its fields, each read with `req` (must be
/// present, `Option`s may be absent) or `or_default` (`#[serde(default)]`). `deny_unknown`
/// after the name refuses other members; `..` at the end fills the fields serde skips from
/// `Default`.
#[macro_export]
macro_rules! from_json_struct {
    ($ty:ident { $($field:ident: $how:ident),* $(,)? }) => {
        $crate::from_json_struct!(@impl $ty false { $($field: $how),* } []);
    };
    ($ty:ident deny_unknown { $($field:ident: $how:ident),* $(,)? }) => {
        $crate::from_json_struct!(@impl $ty true { $($field: $how),* } []);
    };
    ($ty:ident { $($field:ident: $how:ident),* , .. }) => {
        $crate::from_json_struct!(@impl $ty false { $($field: $how),* } [..Default::default()]);
    };
    (@impl $ty:ident $deny:literal { $($field:ident: $how:ident),* } [$($rest:tt)*]) => {
        impl $crate::json::FromJson for $ty {
            fn from_json(v: &$crate::json::Json) -> Result<Self, $crate::json::JsonError> {
                let f = v.fields()?;
                if $deny {
                    f.deny_unknown(&[$(stringify!($field)),*])?;
                }
                Ok($ty { $($field: f.$how(stringify!($field))?,)* $($rest)* })
            }
        }
    };
}

impl FromJson for bool {
    fn from_json(v: &Json) -> Result<Self, JsonError> {
        match v {
            Json::Bool(b) => Ok(*b),
            other => Err(other.expected("a boolean")),
        }
    }
}

impl FromJson for String {
    fn from_json(v: &Json) -> Result<Self, JsonError> {
        match v {
            Json::Str(s) => Ok(s.clone()),
            other => Err(other.expected("a string")),
        }
    }
}

fn integer(v: &Json, what: &str, min: i128, max: i128) -> Result<i128, JsonError> {
    match v {
        Json::Int(n) if (min..=max).contains(n) => Ok(*n),
        Json::Int(n) => Err(JsonError::new(format!("{n} is out of range for {what}"))),
        other => Err(other.expected(what)),
    }
}

macro_rules! from_json_int {
    ($($t:ty: $what:literal),*) => {$(
        impl FromJson for $t {
            fn from_json(v: &Json) -> Result<Self, JsonError> {
                // In range by the check above: the cast cannot truncate.
                integer(v, $what, <$t>::MIN as i128, <$t>::MAX as i128).map(|n| n as $t)
            }
        }
    )*};
}
from_json_int!(u8: "an integer (u8)", u16: "an integer (u16)", u32: "an integer (u32)",
    u64: "an integer (u64)", i32: "an integer (i32)", i64: "an integer (i64)");

impl<T: FromJson> FromJson for Option<T> {
    fn from_json(v: &Json) -> Result<Self, JsonError> {
        match v {
            Json::Null => Ok(None),
            other => T::from_json(other).map(Some),
        }
    }

    fn absent() -> Option<Self> {
        Some(None)
    }
}

impl<T: FromJson> FromJson for Box<T> {
    fn from_json(v: &Json) -> Result<Self, JsonError> {
        T::from_json(v).map(Box::new)
    }
}

impl<T: FromJson> FromJson for Vec<T> {
    fn from_json(v: &Json) -> Result<Self, JsonError> {
        match v {
            Json::Arr(items) => items
                .iter()
                .enumerate()
                .map(|(i, x)| T::from_json(x).map_err(|e| e.under(&format!("[{i}]"))))
                .collect(),
            other => Err(other.expected("an array")),
        }
    }
}

impl<A: FromJson, B: FromJson> FromJson for (A, B) {
    fn from_json(v: &Json) -> Result<Self, JsonError> {
        match v {
            Json::Arr(items) if items.len() == 2 => Ok((
                A::from_json(&items[0]).map_err(|e| e.under("[0]"))?,
                B::from_json(&items[1]).map_err(|e| e.under("[1]"))?,
            )),
            Json::Arr(items) => Err(JsonError::new(format!(
                "expected an array of 2, found {}",
                items.len()
            ))),
            other => Err(other.expected("an array of 2")),
        }
    }
}

impl<T: FromJson> FromJson for BTreeMap<String, T> {
    fn from_json(v: &Json) -> Result<Self, JsonError> {
        match v {
            // A key named twice: the last one wins, as serde_json's map does.
            Json::Obj(members) => members
                .iter()
                .map(|(k, x)| Ok((k.clone(), T::from_json(x).map_err(|e| e.under(k))?)))
                .collect(),
            other => Err(other.expected("an object")),
        }
    }
}

/// Reads a unit enum from its wire name: `names` pairs each variant with it.
pub fn unit_enum<T: Copy>(v: &Json, names: &[(&str, T)]) -> Result<T, JsonError> {
    let s = match v {
        Json::Str(s) => s,
        other => return Err(other.expected("a string")),
    };
    names
        .iter()
        .find(|(n, _)| n == s)
        .map(|(_, t)| *t)
        .ok_or_else(|| JsonError::unknown_variant(s))
}

impl fmt::Display for Json {
    /// Compact JSON text (for tests and diagnostics; [`Json::Fraction`] is written as `0.5`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Json::Null => f.write_str("null"),
            Json::Bool(b) => write!(f, "{b}"),
            Json::Int(n) => write!(f, "{n}"),
            Json::Fraction => f.write_str("0.5"),
            Json::Deep => f.write_str("null"),
            Json::Str(s) => write_str(f, s),
            Json::Arr(items) => {
                f.write_str("[")?;
                for (i, x) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{x}")?;
                }
                f.write_str("]")
            }
            Json::Obj(members) => {
                f.write_str("{")?;
                for (i, (k, x)) in members.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write_str(f, k)?;
                    write!(f, ":{x}")?;
                }
                f.write_str("}")
            }
        }
    }
}

fn write_str(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    f.write_str("\"")?;
    for c in s.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            c if (c as u32) < 0x20 => write!(f, "\\u{:04x}", c as u32)?,
            c => write!(f, "{c}")?,
        }
    }
    f.write_str("\"")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::election::{EnvState, Lease, Peer, Resignation};
    use crate::replay::NonceMark;
    use crate::sign::KeyId;
    use crate::wire::{
        ConsensusReport, ErrorCode, Heartbeat, HistoryEntry, ResignRequest, RevokeRequest,
        StreamRequest,
    };
    use alloc::vec;
    use proptest::prelude::*;
    use serde::de::DeserializeOwned;
    use std::string::ToString;

    /// Both readers on one document: the same value, or both refuse it.
    fn same<T: FromJson + DeserializeOwned + PartialEq + fmt::Debug>(doc: &str) {
        let ours = from_json::<T>(doc.as_bytes());
        let serde = serde_json::from_str::<T>(doc);
        match (&ours, &serde) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "{doc}"),
            (Err(_), Err(_)) => {}
            _ => panic!(
                "{doc}: ours {ours:?}, serde {:?}",
                serde.map_err(|e| e.to_string())
            ),
        }
    }

    #[test]
    fn reads_what_serde_reads() {
        for doc in [
            r#"{"env":"dev"}"#,
            r#"{"env":"dev","priority":-3,"draining":true,"uptime_s":9,"version":"1","api":"h:1"}"#,
            r#"{"env":"dev","api":null}"#,
            r#" {"env" : "d\u00e9v\n\"x\"\\\/" , "extra": [1, {"a": null}] } "#,
            r#"{"env":"\ud83d\ude00"}"#,
            r#"{"env":"dev","priority":2147483648}"#,
            r#"{"env":"dev","priority":1.0}"#,
            r#"{"env":"dev","priority":1e2}"#,
            r#"{"env":"dev","uptime_s":-1}"#,
            r#"{"env":"dev","uptime_s":18446744073709551615}"#,
            r#"{"env":"dev","uptime_s":18446744073709551616}"#,
            r#"{"env":"dev","priority":null}"#,
            r#"{"env":"dev","env":"prod"}"#,
            r#"{"env":"dev","draining":"yes"}"#,
            r#"{"priority":1}"#,
            r#"{"env":"dev",}"#,
            r#"{"env":"dev"} x"#,
            r#"{"env":"dev""#,
            r#"{"env":"a\qb"}"#,
            r#"{"env":"a\ud800"}"#,
            "{\"env\":\"a\tb\"}",
            r#"{"env":01}"#,
            r#"{"env":"dev","priority":-}"#,
            r#"{"env":"dev","priority":-0}"#,
            r#"{env:"dev"}"#,
            r#"[]"#,
            r#"null"#,
            r#""#,
            r#"{"env":"dev","x":tru}"#,
        ] {
            same::<Heartbeat>(doc);
        }
        for doc in [
            r#"{"env":"dev","term":3}"#,
            r#"{"env":"dev","term":3,"leaving":true,"successor":"n2"}"#,
            r#"{"env":"dev"}"#,
        ] {
            same::<ResignRequest>(doc);
        }
        for doc in [
            r#"{"env":"dev","leader":null}"#,
            r#"{"env":"dev"}"#,
            r#"{"env":"dev","leader":"n1","peers":["n1","n2"],"term":2,"epoch":1}"#,
            r#"{"env":"dev","leader":"n1","peers":["n1",2]}"#,
        ] {
            same::<ConsensusReport>(doc);
        }
        for doc in [
            r#"{"env":"dev","node":"n1"}"#,
            r#"{"env":"dev","node":"n1","generation":4}"#,
            r#"{"env":"dev","node":"n1","extra":1}"#,
            r#"{"env":"dev","node":"n1","generation":4294967296}"#,
        ] {
            same::<RevokeRequest>(doc);
        }
        same::<Option<ErrorCode>>(r#""not_holder""#);
        same::<Option<ErrorCode>>(r#""nope""#);
        same::<Option<ErrorCode>>("null");
        same::<(String, u64)>(r#"["a",1]"#);
        same::<(String, u64)>(r#"["a",1,2]"#);
        same::<BTreeMap<String, u32>>(r#"{"a":1,"b":2,"a":3}"#);
    }

    #[test]
    fn errors_name_the_field() {
        let e = from_json::<Heartbeat>(br#"{"priority":1}"#).unwrap_err();
        assert_eq!(e.to_string(), "missing field `env`");
        let e = from_json::<Heartbeat>(br#"{"env":"d","priority":"x"}"#).unwrap_err();
        assert_eq!(
            e.to_string(),
            "priority: expected an integer (i32), found a string"
        );
        let e = from_json::<RevokeRequest>(br#"{"env":"d","node":"n","x":1}"#).unwrap_err();
        assert_eq!(e.to_string(), "unknown field `x`");
        let doc = br#"{"term":1,"lease":null,"resigned":null,"split_brain_alarms":0,
            "peers":{"n1":{"joined_at_ms":1,"last_seen_ms":1,"priority":0,"draining":false,
            "uptime_s":0,"version":"","nonce":{"boot_id":"b","ts_ms":1}}}}"#;
        let e = from_json::<EnvState>(doc).unwrap_err();
        assert_eq!(e.to_string(), "peers.n1.nonce: missing field `seq`");
        let e = from_json::<Vec<(String, u8)>>(br#"[["a",1],["b",300]]"#).unwrap_err();
        assert_eq!(
            e.to_string(),
            "[1][1]: 300 is out of range for an integer (u8)"
        );
        assert!(parse(&[b'"', 0xff, b'"']).is_err());
        // Deep nesting is checked without recursion: accepted where ignored, as serde does,
        // refused where a field is read, and still a syntax error when malformed.
        let deep = "[".repeat(10_000) + &"]".repeat(10_000);
        same::<Heartbeat>(&std::format!(r#"{{"env":"d","x":{deep}}}"#));
        same::<Heartbeat>(&std::format!(
            r#"{{"env":"d","x":[{{"a":{deep},"b":[1,"x",null]}}]}}"#
        ));
        assert!(
            from_json::<Heartbeat>(std::format!(r#"{{"env":"d","x":{deep}"#).as_bytes()).is_err()
        );
        assert!(parse(std::format!("[{deep},]").as_bytes()).is_err());
        assert!(parse(("[".repeat(40) + "{\"a\" 1}" + &"]".repeat(40)).as_bytes()).is_err());
        let e = from_json::<Vec<Vec<Vec<u8>>>>(("[".repeat(40) + &"]".repeat(40)).as_bytes());
        assert!(e.is_err());
    }

    fn env_state() -> impl Strategy<Value = EnvState> {
        let peer = (
            any::<u64>(),
            any::<i32>(),
            any::<bool>(),
            "[a-z0-9\"\\\\é\u{1F600}\n]{0,6}",
            proptest::option::of("[a-z:0-9]{1,8}"),
            (
                "[a-f0-9]{1,8}",
                any::<u64>(),
                proptest::collection::vec("[a-f0-9]{1,4}", 0..3),
            ),
            proptest::option::of((proptest::option::of("[a-z]{1,3}"), any::<u64>())),
            any::<bool>(),
            (any::<u32>(), any::<bool>()),
        )
            .prop_map(
                |(
                    t,
                    priority,
                    draining,
                    version,
                    api,
                    (boot_id, seq, retired),
                    reported,
                    leaving,
                    (generation, previous_seal),
                )| Peer {
                    joined_at_ms: t / 2,
                    last_seen_ms: t,
                    priority,
                    draining,
                    uptime_s: t / 1000,
                    version,
                    api,
                    nonce: NonceMark {
                        boot_id,
                        seq,
                        ts_ms: t,
                        retired,
                    },
                    reported,
                    leaving,
                    key: KeyId {
                        generation,
                        previous_seal,
                    },
                },
            );
        (
            any::<u64>(),
            proptest::option::of(("[a-z0-9]{1,6}", any::<u64>(), any::<u64>())),
            proptest::collection::btree_map("[a-z0-9]{1,6}", peer, 0..4),
            proptest::option::of((
                "[a-z0-9]{1,6}",
                any::<u64>(),
                proptest::option::of("[a-z]{1,3}"),
            )),
            any::<u64>(),
            proptest::collection::btree_map("[a-z0-9]{1,6}", any::<u32>(), 0..3),
        )
            .prop_map(|(term, lease, peers, resigned, alarms, revoked)| {
                let mut s = EnvState::default();
                s.term = term;
                s.lease = lease.map(|(holder, g, ttl)| Lease {
                    holder,
                    term,
                    granted_at_ms: g,
                    expires_at_ms: g.saturating_add(ttl),
                    ttl_ms: ttl,
                });
                s.peers = peers;
                s.resigned = resigned.map(|(node, at_ms, successor)| Resignation {
                    node,
                    term,
                    at_ms,
                    successor,
                });
                s.split_brain_alarms = alarms;
                s.revoked = revoked;
                s
            })
    }

    /// A random JSON value whose object keys are drawn from `keys`.
    fn value(keys: &'static [&'static str]) -> impl Strategy<Value = Json> {
        let leaf = prop_oneof![
            Just(Json::Null),
            any::<bool>().prop_map(Json::Bool),
            any::<i64>().prop_map(|n| Json::Int(n.into())),
            (0u64..5).prop_map(|n| Json::Int(n.into())),
            any::<u64>().prop_map(|n| Json::Int(n.into())),
            Just(Json::Int(i128::from(u64::MAX) + 1)),
            "[a-z0-9 é\"\\\\\n]{0,5}".prop_map(Json::Str),
        ];
        leaf.prop_recursive(3, 24, 4, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..3).prop_map(Json::Arr),
                proptest::collection::vec((proptest::sample::select(keys), inner), 0..4).prop_map(
                    |m| Json::Obj(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
                ),
            ]
        })
    }

    /// A random object with members drawn from `keys` (some valid, some not).
    fn document(keys: &'static [&'static str]) -> impl Strategy<Value = String> {
        proptest::collection::vec((proptest::sample::select(keys), value(keys)), 0..7).prop_map(
            |m| Json::Obj(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect()).to_string(),
        )
    }

    const HEARTBEAT: &[&str] = &[
        "env", "priority", "draining", "uptime_s", "version", "api", "x",
    ];
    const RESIGN: &[&str] = &["env", "term", "leaving", "successor", "x"];
    const CONSENSUS: &[&str] = &["env", "leader", "term", "peers", "epoch", "x"];
    const REVOKE: &[&str] = &["env", "node", "generation", "x"];
    const STREAM: &[&str] = &["path", "node", "ts", "nonce", "sig", "body", "key_gen"];
    const HISTORY: &[&str] = &["term", "leader", "reason", "at_ms"];

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

        /// Random objects over each type's own field names: both readers agree.
        #[test]
        fn agrees_with_serde_on_random_documents(
            hb in document(HEARTBEAT), rs in document(RESIGN), cr in document(CONSENSUS),
            rv in document(REVOKE), st in document(STREAM), hi in document(HISTORY),
        ) {
            same::<Heartbeat>(&hb);
            same::<ResignRequest>(&rs);
            same::<ConsensusReport>(&cr);
            same::<RevokeRequest>(&rv);
            same::<StreamRequest>(&st);
            same::<HistoryEntry>(&hi);
        }

        /// Whatever serde writes for a stored env, the reader reads back unchanged.
        #[test]
        fn reads_back_what_serde_writes(s in env_state()) {
            let text = serde_json::to_string(&s).unwrap();
            prop_assert_eq!(&from_json::<EnvState>(text.as_bytes()).unwrap(), &s);
            for p in s.peers.values() {
                let text = serde_json::to_string(p).unwrap();
                prop_assert_eq!(&from_json::<Peer>(text.as_bytes()).unwrap(), p);
            }
        }

        /// A valid document with one byte changed: accepted or refused as serde_json does.
        /// (Not an exponent: serde_json refuses `1e400` as out of range, this reader, which
        /// never reads a fraction, accepts it where the field is ignored.)
        #[test]
        fn parses_what_serde_json_parses(s in env_state(), at in any::<prop::sample::Index>(), b in any::<u8>()) {
            prop_assume!(b != b'e' && b != b'E');
            let mut text = serde_json::to_string(&s).unwrap().into_bytes();
            let i = at.index(text.len());
            text[i] = b;
            let ours = parse(&text).is_ok();
            let serde = serde_json::from_slice::<serde_json::Value>(&text).is_ok();
            prop_assert_eq!(ours, serde, "{}", String::from_utf8_lossy(&text));
        }
    }

    #[test]
    fn display_writes_json() {
        let v = Json::Obj(vec![(
            "a\"".to_string(),
            Json::Arr(vec![Json::Int(-1), Json::Null]),
        )]);
        assert_eq!(v.to_string(), r#"{"a\"":[-1,null]}"#);
        assert_eq!(parse(v.to_string().as_bytes()).unwrap(), v);
    }
}
