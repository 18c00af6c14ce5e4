//! The functions a template can call: Go's builtins (`index`, `len`, `slice`, `not`,
//! `eq`..`ge`, `print`, `printf`, `println`, `html`, `js`, `urlquery`, `call`; `and`
//! and `or` short-circuit in the executor) and docker's (`json`, `split`, `join`,
//! `title`, `lower`, `upper`, `pad`, `truncate`), plus docker's table-header variants.

use std::cmp::Ordering;
use std::sync::Arc;

use super::printf::{sprint, sprintf, sprintln};
use super::value::{Func, Value};
use super::FuncMap;

fn f(g: impl Fn(&[Value]) -> Result<Value, String> + Send + Sync + 'static) -> Func {
    Arc::new(g)
}

fn want(args: &[Value], n: usize) -> Result<(), String> {
    if args.len() != n {
        return Err(format!("wrong number of args: want {n} got {}", args.len()));
    }
    Ok(())
}

fn string_arg(v: &Value) -> Result<&str, String> {
    match v {
        Value::Str(s) => Ok(s),
        other => Err(format!(
            "wrong type for value; expected string; got {}",
            other.type_name()
        )),
    }
}

fn int_arg(v: &Value) -> Result<i64, String> {
    match v {
        Value::Int(i) => Ok(*i),
        other => Err(format!(
            "wrong type for value; expected int; got {}",
            other.type_name()
        )),
    }
}

/// What `html`, `js` and `urlquery` do with their arguments first.
fn args_string(args: &[Value]) -> String {
    match args {
        [Value::Str(s)] => s.clone(),
        _ => sprint(args),
    }
}

/// Go's builtins and docker's functions.
pub fn builtins() -> FuncMap {
    let mut m = FuncMap::new();
    // `and` and `or` are evaluated lazily by the executor; these stand for their names.
    m.insert("and", f(|a| Ok(a.last().cloned().unwrap_or_default())));
    m.insert("or", f(|a| Ok(a.last().cloned().unwrap_or_default())));
    m.insert(
        "not",
        f(|a| {
            want(a, 1)?;
            Ok(Value::Bool(!a[0].truth()))
        }),
    );
    m.insert(
        "len",
        f(|a| {
            want(a, 1)?;
            match &a[0] {
                Value::Str(s) => Ok(Value::Int(s.len() as i64)),
                Value::List(l) => Ok(Value::Int(l.len() as i64)),
                Value::Map(m) => Ok(Value::Int(m.entries.len() as i64)),
                Value::Nil => Err("len of nil pointer".into()),
                other => Err(format!("len of type {}", other.type_name())),
            }
        }),
    );
    m.insert("index", f(index));
    m.insert("slice", f(slice));
    m.insert("print", f(|a| Ok(Value::Str(sprint(a)))));
    m.insert("println", f(|a| Ok(Value::Str(sprintln(a)))));
    m.insert(
        "printf",
        f(|a| {
            let Some((fmt, rest)) = a.split_first() else {
                return Err("wrong number of args for printf: want at least 1 got 0".into());
            };
            Ok(Value::Str(sprintf(string_arg(fmt)?, rest)))
        }),
    );
    m.insert("eq", f(eq));
    m.insert(
        "ne",
        f(|a| {
            want(a, 2)?;
            Ok(Value::Bool(!equal(&a[0], &a[1])?))
        }),
    );
    m.insert("lt", f(|a| compare(a, |o| o == Ordering::Less)));
    m.insert("le", f(|a| compare(a, |o| o != Ordering::Greater)));
    m.insert("gt", f(|a| compare(a, |o| o == Ordering::Greater)));
    m.insert("ge", f(|a| compare(a, |o| o != Ordering::Less)));
    m.insert("html", f(|a| Ok(Value::Str(html_escape(&args_string(a))))));
    m.insert("js", f(|a| Ok(Value::Str(js_escape(&args_string(a))))));
    m.insert(
        "urlquery",
        f(|a| Ok(Value::Str(query_escape(&args_string(a))))),
    );
    m.insert(
        "call",
        f(|a| match a.split_first() {
            Some((Value::Func(g), rest)) => g(rest),
            Some((other, _)) => Err(format!("non-function of type {}", other.type_name())),
            None => Err("wrong number of args for call: want at least 1 got 0".into()),
        }),
    );
    // docker's (github.com/docker/cli/templates).
    m.insert(
        "json",
        f(|a| {
            want(a, 1)?;
            Ok(Value::Str(a[0].to_json()))
        }),
    );
    m.insert(
        "split",
        f(|a| {
            want(a, 2)?;
            let (s, sep) = (string_arg(&a[0])?, string_arg(&a[1])?);
            let parts: Vec<Value> = if sep.is_empty() {
                s.chars().map(|c| Value::Str(c.to_string())).collect()
            } else {
                s.split(sep).map(|p| Value::Str(p.to_string())).collect()
            };
            Ok(Value::List(parts))
        }),
    );
    m.insert("join", f(join));
    m.insert(
        "title",
        f(|a| {
            want(a, 1)?;
            Ok(Value::Str(title(string_arg(&a[0])?)))
        }),
    );
    m.insert(
        "lower",
        f(|a| {
            want(a, 1)?;
            Ok(Value::Str(string_arg(&a[0])?.to_lowercase()))
        }),
    );
    m.insert(
        "upper",
        f(|a| {
            want(a, 1)?;
            Ok(Value::Str(string_arg(&a[0])?.to_uppercase()))
        }),
    );
    m.insert(
        "pad",
        f(|a| {
            want(a, 3)?;
            let s = string_arg(&a[0])?;
            if s.is_empty() {
                return Ok(Value::Str(String::new()));
            }
            let (pre, post) = (int_arg(&a[1])?.max(0), int_arg(&a[2])?.max(0));
            Ok(Value::Str(format!(
                "{}{s}{}",
                " ".repeat(pre as usize),
                " ".repeat(post as usize)
            )))
        }),
    );
    m.insert(
        "truncate",
        f(|a| {
            want(a, 2)?;
            let s = string_arg(&a[0])?;
            let n = int_arg(&a[1])?;
            if n < 0 {
                return Err(format!("slice bounds out of range [:{n}]"));
            }
            let n = n as usize;
            if s.len() < n {
                return Ok(Value::Str(s.to_string()));
            }
            // Go cuts bytes; never cut inside a character.
            let mut end = n;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            Ok(Value::Str(s[..end].to_string()))
        }),
    );
    m
}

/// docker's HeaderFunctions: in a table's header row these leave the header text as
/// it is (`pad` is not among them, so headers stay aligned with padded columns).
pub fn header_functions() -> FuncMap {
    let mut m = FuncMap::new();
    let ident = |n: usize| {
        f(move |a: &[Value]| {
            want(a, n)?;
            Ok(Value::Str(string_arg(&a[0])?.to_string()))
        })
    };
    m.insert("json", ident(1));
    m.insert("split", ident(2));
    m.insert("join", ident(2));
    m.insert("title", ident(1));
    m.insert("lower", ident(1));
    m.insert("upper", ident(1));
    m.insert("truncate", ident(2));
    m
}

fn index(a: &[Value]) -> Result<Value, String> {
    let Some((item, keys)) = a.split_first() else {
        return Err("wrong number of args for index: want at least 1 got 0".into());
    };
    let mut cur = item.clone();
    for k in keys {
        cur = match (&cur, k) {
            (Value::Nil, _) => return Err("index of untyped nil".into()),
            (Value::List(l), Value::Int(i)) => {
                let idx = usize::try_from(*i).map_err(|_| format!("index out of range: {i}"))?;
                l.get(idx)
                    .cloned()
                    .ok_or_else(|| format!("index out of range: {i}"))?
            }
            (Value::Str(s), Value::Int(i)) => {
                let idx = usize::try_from(*i).map_err(|_| format!("index out of range: {i}"))?;
                Value::Int(
                    *s.as_bytes()
                        .get(idx)
                        .ok_or_else(|| format!("index out of range: {i}"))?
                        as i64,
                )
            }
            (Value::Map(m), Value::Str(key)) => match m.get(key) {
                Some(v) => v.clone(),
                None if m.kind == super::value::Kind::StrMap => Value::Str(String::new()),
                None => Value::Nil,
            },
            (Value::Map(_), other) => {
                return Err(format!(
                    "value has type {}; should be string",
                    other.type_name()
                ))
            }
            (Value::List(_) | Value::Str(_), other) => {
                return Err(format!(
                    "cannot index slice/array with type {}",
                    other.type_name()
                ))
            }
            (other, _) => return Err(format!("can't index item of type {}", other.type_name())),
        };
    }
    Ok(cur)
}

fn slice(a: &[Value]) -> Result<Value, String> {
    let Some((item, idx)) = a.split_first() else {
        return Err("wrong number of args for slice: want at least 1 got 0".into());
    };
    if idx.len() > 3 {
        return Err(format!("too many slice indexes: {}", idx.len()));
    }
    let len = match item {
        Value::Str(s) => s.len(),
        Value::List(l) => l.len(),
        other => return Err(format!("can't slice item of type {}", other.type_name())),
    };
    let mut bounds = vec![];
    for i in idx {
        let n = int_arg(i)?;
        let n = usize::try_from(n).map_err(|_| format!("index out of range: {n}"))?;
        if n > len {
            return Err(format!("index out of range: {n}"));
        }
        bounds.push(n);
    }
    let start = bounds.first().copied().unwrap_or(0);
    let end = bounds.get(1).copied().unwrap_or(len);
    if start > end {
        return Err(format!("invalid slice index: {start} > {end}"));
    }
    Ok(match item {
        Value::Str(s) => Value::Str(
            s.get(start..end)
                .ok_or("slice cuts a character")?
                .to_string(),
        ),
        Value::List(l) => Value::List(l[start..end].to_vec()),
        _ => Value::Nil,
    })
}

/// Go's `eq` for two values: basic kinds compare by value (ints and floats do not
/// mix); nil equals only nil; maps and lists are not comparable.
fn equal(a: &Value, b: &Value) -> Result<bool, String> {
    Ok(match (a, b) {
        (Value::Nil, Value::Nil) => true,
        (Value::Nil, _) | (_, Value::Nil) => false,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Int(x), Value::Int(y)) => x == y,
        (Value::Float(x), Value::Float(y)) => x == y,
        (Value::Str(x), Value::Str(y)) => x == y,
        (Value::List(_) | Value::Map(_) | Value::Func(_), _)
        | (_, Value::List(_) | Value::Map(_) | Value::Func(_)) => {
            return Err(format!(
                "non-comparable types {}: {}",
                a.type_name(),
                b.type_name()
            ))
        }
        _ => return Err("incompatible types for comparison".into()),
    })
}

fn eq(a: &[Value]) -> Result<Value, String> {
    let Some((first, rest)) = a.split_first() else {
        return Err("wrong number of args for eq: want at least 1 got 0".into());
    };
    if rest.is_empty() {
        return Err("missing argument for comparison".into());
    }
    for r in rest {
        if equal(first, r)? {
            return Ok(Value::Bool(true));
        }
    }
    Ok(Value::Bool(false))
}

fn compare(a: &[Value], ok: impl Fn(Ordering) -> bool) -> Result<Value, String> {
    want(a, 2)?;
    let ord = match (&a[0], &a[1]) {
        (Value::Int(x), Value::Int(y)) => x.cmp(y),
        (Value::Float(x), Value::Float(y)) => x.partial_cmp(y).ok_or("NaN in comparison")?,
        (Value::Str(x), Value::Str(y)) => x.cmp(y),
        (Value::Bool(_), Value::Bool(_))
        | (Value::Nil, _)
        | (_, Value::Nil)
        | (Value::List(_) | Value::Map(_) | Value::Func(_), _)
        | (_, Value::List(_) | Value::Map(_) | Value::Func(_)) => {
            return Err("invalid type for comparison".into())
        }
        _ => return Err("incompatible types for comparison".into()),
    };
    Ok(Value::Bool(ok(ord)))
}

fn join(a: &[Value]) -> Result<Value, String> {
    want(a, 2)?;
    let sep = string_arg(&a[1])?;
    let parts: Vec<String> = match &a[0] {
        Value::Nil => return Ok(Value::Str(String::new())),
        Value::List(l) => l.iter().map(|v| sprint(std::slice::from_ref(v))).collect(),
        Value::Map(m) => {
            let mut v: Vec<String> = m
                .entries
                .values()
                .map(|v| sprint(std::slice::from_ref(v)))
                .collect();
            v.sort();
            v
        }
        other => return Err(format!("expected slice, got {}", other.type_name())),
    };
    Ok(Value::Str(parts.join(sep)))
}

/// Go's `strings.Title`: the first letter of each word in title case.
fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut prev_sep = true;
    for c in s.chars() {
        if prev_sep {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        prev_sep = if c.is_ascii() {
            !(c.is_ascii_alphanumeric() || c == '_')
        } else {
            c.is_whitespace()
        };
    }
    out
}

fn html_escape(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        match c {
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\0' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

fn js_escape(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '<' => out.push_str("\\u003C"),
            '>' => out.push_str("\\u003E"),
            '&' => out.push_str("\\u0026"),
            '=' => out.push_str("\\u003D"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

fn query_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn title_is_gos() {
        assert_eq!(
            title("hello wide-world foo_bar"),
            "Hello Wide-World Foo_bar"
        );
    }

    #[test]
    fn escapes() {
        assert_eq!(
            html_escape("<a href=\"x\">&"),
            "&lt;a href=&#34;x&#34;&gt;&amp;"
        );
        assert_eq!(query_escape("a b&c"), "a+b%26c");
        assert_eq!(js_escape("it's <b>"), "it\\'s \\u003Cb\\u003E");
    }
}
