//! The data a template sees: JSON-shaped values with maps kept in their source order
//! (so `{{json .}}` of an inspect object keeps dockerd's key order), plus methods,
//! which is how docker's formatter objects expose `.Label "key"`.

use std::fmt;
use std::sync::Arc;

use indexmap::IndexMap;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

/// A function value: a method of a formatter object, or a template function.
pub type Func = Arc<dyn Fn(&[Value]) -> Result<Value, String> + Send + Sync>;

/// A value in a template's world.
#[derive(Clone, Default)]
pub enum Value {
    /// JSON null: Go's nil interface. A field of it is an error.
    #[default]
    Nil,
    /// Go's invalid value: a key a map does not have, or what a pipeline makes of
    /// nil. A field of it is missing too; it prints as `<no value>`.
    Missing,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<Value>),
    Map(Map),
    /// A method: called when a field chain reaches it (with the command's arguments).
    Func(Func),
}

/// A map or a struct, with Go's behaviour for a key that is not there.
#[derive(Clone, Default)]
pub struct Map {
    pub entries: IndexMap<String, Value>,
    pub kind: Kind,
}

/// What Go type a [`Map`] stands for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Kind {
    /// `map[string]interface{}` (decoded JSON): a missing key is nil, `<no value>`.
    #[default]
    Map,
    /// `map[string]string` (docker's table headers): a missing key is "".
    StrMap,
    /// A struct (one of docker's formatter objects), named for error messages: a
    /// missing field is an error.
    Struct(&'static str),
}

impl Map {
    pub fn new() -> Map {
        Map::default()
    }

    /// An empty struct-like map named `name` (its type in error messages).
    pub fn structure(name: &'static str) -> Map {
        Map {
            entries: IndexMap::new(),
            kind: Kind::Struct(name),
        }
    }

    /// An empty `map[string]string`.
    pub fn str_map() -> Map {
        Map {
            entries: IndexMap::new(),
            kind: Kind::StrMap,
        }
    }

    pub fn is_struct(&self) -> bool {
        matches!(self.kind, Kind::Struct(_))
    }

    pub fn insert(&mut self, k: impl Into<String>, v: impl Into<Value>) {
        self.entries.insert(k.into(), v.into());
    }

    pub fn get(&self, k: &str) -> Option<&Value> {
        self.entries.get(k)
    }

    /// Makes `alias` answer what `key` holds, for templates only (a method: left out
    /// of JSON). docker's typed objects name some fields differently from their JSON
    /// (`ID` for `Id`, `APIVersion` for `ApiVersion`) and templates use either.
    pub fn alias(&mut self, alias: &str, key: &str) {
        if self.entries.contains_key(alias) {
            return;
        }
        if let Some(v) = self.entries.get(key).cloned() {
            self.entries.insert(
                alias.to_string(),
                Value::Func(std::sync::Arc::new(move |_: &[Value]| Ok(v.clone()))),
            );
        }
    }

    /// A field docker's typed object always has but its JSON leaves out when empty
    /// (`State.Health`, a nil pointer: `{{json .State.Health}}` is `null` there):
    /// `v` for templates only, left out of JSON like an alias.
    pub fn typed_field(&mut self, key: &str, v: Value) {
        if self.entries.contains_key(key) {
            return;
        }
        self.entries.insert(
            key.to_string(),
            Value::Func(std::sync::Arc::new(move |_: &[Value]| Ok(v.clone()))),
        );
    }

    pub fn get_mut(&mut self, k: &str) -> Option<&mut Value> {
        self.entries.get_mut(k)
    }

    /// Keys in Go's iteration order for maps: sorted.
    pub fn sorted_keys(&self) -> Vec<&String> {
        let mut keys: Vec<&String> = self.entries.keys().collect();
        keys.sort();
        keys
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Nil => write!(f, "Nil"),
            Value::Missing => write!(f, "Missing"),
            Value::Bool(b) => write!(f, "Bool({b})"),
            Value::Int(i) => write!(f, "Int({i})"),
            Value::Float(x) => write!(f, "Float({x})"),
            Value::Str(s) => write!(f, "Str({s:?})"),
            Value::List(l) => f.debug_list().entries(l).finish(),
            Value::Map(m) => f.debug_map().entries(m.entries.iter()).finish(),
            Value::Func(_) => write!(f, "Func"),
        }
    }
}

impl fmt::Debug for Map {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.entries.iter()).finish()
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::Str(s.to_string())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::Str(s)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Bool(b)
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Value {
        Value::Int(i)
    }
}

impl From<Map> for Value {
    fn from(m: Map) -> Value {
        Value::Map(m)
    }
}

impl From<Vec<Value>> for Value {
    fn from(l: Vec<Value>) -> Value {
        Value::List(l)
    }
}

impl From<&serde_json::Value> for Value {
    fn from(v: &serde_json::Value) -> Value {
        match v {
            serde_json::Value::Null => Value::Nil,
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => number(n),
            serde_json::Value::String(s) => Value::Str(s.clone()),
            serde_json::Value::Array(a) => Value::List(a.iter().map(Value::from).collect()),
            serde_json::Value::Object(o) => Value::Map(Map {
                entries: o.iter().map(|(k, v)| (k.clone(), Value::from(v))).collect(),
                kind: Kind::Map,
            }),
        }
    }
}

fn number(n: &serde_json::Number) -> Value {
    if let Some(i) = n.as_i64() {
        Value::Int(i)
    } else {
        Value::Float(n.as_f64().unwrap_or(0.0))
    }
}

impl Value {
    /// Parses JSON text keeping every object's key order.
    pub fn from_json(bytes: &[u8]) -> Result<Value, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// Go's name for the value's type, for error messages and `%T`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Nil | Value::Missing => "<nil>",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float64",
            Value::Str(_) => "string",
            Value::List(_) => "[]interface {}",
            Value::Map(m) => match m.kind {
                Kind::Map => "map[string]interface {}",
                Kind::StrMap => "map[string]string",
                Kind::Struct(name) => name,
            },
            Value::Func(_) => "func",
        }
    }

    /// Go's `truth`: the zero value and empty collections are false.
    pub fn truth(&self) -> bool {
        match self {
            Value::Nil | Value::Missing => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Float(f) => *f != 0.0,
            Value::Str(s) => !s.is_empty(),
            Value::List(l) => !l.is_empty(),
            Value::Map(m) => m.is_struct() || !m.entries.is_empty(),
            Value::Func(_) => true,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Compact JSON as docker's `json` function writes it: without HTML escaping,
    /// except for a formatter object, which marshals itself with Go's default
    /// encoder (`<` as `\u003c`, ...).
    pub fn to_json(&self) -> String {
        let s = serde_json::to_string(self).unwrap_or_default();
        match self {
            Value::Map(m) if m.is_struct() => s
                .replace('<', "\\u003c")
                .replace('>', "\\u003e")
                .replace('&', "\\u0026")
                .replace('\u{2028}', "\\u2028")
                .replace('\u{2029}', "\\u2029"),
            _ => s,
        }
    }

    /// Indented JSON (4 spaces, as `docker inspect` prints).
    pub fn to_json_pretty(&self) -> String {
        let mut out = Vec::new();
        let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
        let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
        if self.serialize(&mut ser).is_err() {
            return String::new();
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Nil | Value::Missing | Value::Func(_) => s.serialize_unit(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Int(i) => s.serialize_i64(*i),
            Value::Float(f) => s.serialize_f64(*f),
            Value::Str(x) => s.serialize_str(x),
            Value::List(l) => {
                let mut seq = s.serialize_seq(Some(l.len()))?;
                for v in l {
                    seq.serialize_element(v)?;
                }
                seq.end()
            }
            Value::Map(m) => {
                // Methods are not data: they are left out, as Go's encoder leaves them.
                let entries: Vec<_> = m
                    .entries
                    .iter()
                    .filter(|(_, v)| !matches!(v, Value::Func(_)))
                    .collect();
                let mut map = s.serialize_map(Some(entries.len()))?;
                for (k, v) in entries {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Nil)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Nil)
    }

    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }

    fn visit_i64<E: de::Error>(self, i: i64) -> Result<Value, E> {
        Ok(Value::Int(i))
    }

    fn visit_u64<E: de::Error>(self, u: u64) -> Result<Value, E> {
        Ok(i64::try_from(u).map_or(Value::Float(u as f64), Value::Int))
    }

    fn visit_f64<E: de::Error>(self, f: f64) -> Result<Value, E> {
        Ok(Value::Float(f))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Value, E> {
        Ok(Value::Str(s.to_string()))
    }

    fn visit_string<E: de::Error>(self, s: String) -> Result<Value, E> {
        Ok(Value::Str(s))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::List(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut m = Map::new();
        while let Some((k, v)) = access.next_entry::<String, Value>()? {
            m.entries.insert(k, v);
        }
        // An object of strings is one of docker's `map[string]string`s (labels,
        // driver data, options): a key it lacks is "" there, not `<no value>`.
        if m.entries.values().all(|v| matches!(v, Value::Str(_))) {
            m.kind = Kind::StrMap;
        }
        Ok(Value::Map(m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_keeps_key_order_and_numbers() {
        let v = Value::from_json(br#"{"z":1,"a":{"y":2.5,"b":null},"l":[true,"s"]}"#).unwrap();
        assert_eq!(
            v.to_json(),
            r#"{"z":1,"a":{"y":2.5,"b":null},"l":[true,"s"]}"#
        );
        assert_eq!(
            v.to_json_pretty(),
            "{\n    \"z\": 1,\n    \"a\": {\n        \"y\": 2.5,\n        \"b\": null\n    },\n    \"l\": [\n        true,\n        \"s\"\n    ]\n}"
        );
        let Value::Map(m) = &v else { panic!() };
        assert_eq!(m.sorted_keys(), vec!["a", "l", "z"]);
    }

    #[test]
    fn json_is_not_html_escaped() {
        assert_eq!(Value::from("<a&b>").to_json(), "\"<a&b>\"");
    }

    #[test]
    fn truth_is_gos() {
        assert!(!Value::Nil.truth());
        assert!(!Value::from("").truth());
        assert!(!Value::Int(0).truth());
        assert!(!Value::List(vec![]).truth());
        assert!(!Value::Map(Map::new()).truth());
        assert!(Value::Map(Map::structure("x")).truth());
        assert!(Value::from("0").truth());
    }
}
