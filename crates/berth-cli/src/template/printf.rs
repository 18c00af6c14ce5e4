//! Go's `fmt` for template values: `%v` printing (what `{{.X}}` writes), `print`,
//! `println` and `printf` with Go's verbs, flags, width and precision, including
//! Go's `%!verb(type=value)` for a verb that does not fit its value.

use super::value::Value;

/// How Go's `%v` prints a value.
pub fn sprint_v(v: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, v, &Spec::plain('v'));
    out
}

/// Go's `fmt.Sprint`: spaces between operands when neither is a string.
pub fn sprint(args: &[Value]) -> String {
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 && !matches!(a, Value::Str(_)) && !matches!(args[i - 1], Value::Str(_)) {
            out.push(' ');
        }
        out.push_str(&sprint_v(a));
    }
    out
}

/// Go's `fmt.Sprintln`: spaces between all operands, and a newline.
pub fn sprintln(args: &[Value]) -> String {
    let parts: Vec<String> = args.iter().map(sprint_v).collect();
    format!("{}\n", parts.join(" "))
}

#[derive(Debug, Clone, Default)]
struct Spec {
    verb: char,
    minus: bool,
    plus: bool,
    sharp: bool,
    space: bool,
    zero: bool,
    width: Option<usize>,
    prec: Option<usize>,
}

impl Spec {
    fn plain(verb: char) -> Spec {
        Spec {
            verb,
            ..Spec::default()
        }
    }
}

/// Go's `fmt.Sprintf`.
pub fn sprintf(format: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let mut next = 0usize;
    let chars: Vec<char> = format.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c != '%' {
            out.push(c);
            i += 1;
            continue;
        }
        i += 1;
        let mut spec = Spec::default();
        while i < chars.len() {
            match chars[i] {
                '-' => spec.minus = true,
                '+' => spec.plus = true,
                '#' => spec.sharp = true,
                ' ' => spec.space = true,
                '0' => spec.zero = true,
                _ => break,
            }
            i += 1;
        }
        // Width: digits or `*` (taken from the arguments).
        if i < chars.len() && chars[i] == '*' {
            i += 1;
            match args.get(next) {
                Some(Value::Int(n)) => {
                    if *n < 0 {
                        spec.minus = true;
                    }
                    spec.width = Some(n.unsigned_abs() as usize);
                }
                _ => out.push_str("%!(BADWIDTH)"),
            }
            next += 1;
        } else {
            let start = i;
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            if i > start {
                spec.width = chars[start..i].iter().collect::<String>().parse().ok();
            }
        }
        if i < chars.len() && chars[i] == '.' {
            i += 1;
            if i < chars.len() && chars[i] == '*' {
                i += 1;
                match args.get(next) {
                    Some(Value::Int(n)) if *n >= 0 => spec.prec = Some(*n as usize),
                    _ => out.push_str("%!(BADPREC)"),
                }
                next += 1;
            } else {
                let start = i;
                while i < chars.len() && chars[i].is_ascii_digit() {
                    i += 1;
                }
                spec.prec = Some(
                    chars[start..i]
                        .iter()
                        .collect::<String>()
                        .parse()
                        .unwrap_or(0),
                );
            }
        }
        let Some(&verb) = chars.get(i) else {
            out.push_str("%!(NOVERB)");
            break;
        };
        i += 1;
        if verb == '%' {
            out.push('%');
            continue;
        }
        spec.verb = verb;
        // Go ignores the zero flag when padding on the right.
        if spec.minus {
            spec.zero = false;
        }
        match args.get(next) {
            None => out.push_str(&format!("%!{verb}(MISSING)")),
            Some(a) => write_value(&mut out, a, &spec),
        }
        next += 1;
    }
    if next < args.len() {
        out.push_str("%!(EXTRA ");
        let extra: Vec<String> = args[next..]
            .iter()
            .map(|a| format!("{}={}", a.type_name(), sprint_v(a)))
            .collect();
        out.push_str(&extra.join(", "));
        out.push(')');
    }
    out
}

fn bad_verb(out: &mut String, v: &Value, verb: char) {
    match v {
        Value::Nil | Value::Missing => out.push_str(&format!("%!{verb}(<nil>)")),
        _ => out.push_str(&format!("%!{verb}({}={})", v.type_name(), sprint_v(v))),
    }
}

/// Pads `s` to the spec's width (in characters), spaces or zeros, left or right.
fn pad(out: &mut String, s: &str, spec: &Spec, numeric: bool) {
    let len = s.chars().count();
    let width = spec.width.unwrap_or(0);
    if len >= width {
        out.push_str(s);
        return;
    }
    let fill = width - len;
    if spec.minus {
        out.push_str(s);
        out.push_str(&" ".repeat(fill));
    } else if spec.zero && numeric {
        // Zeros go after the sign.
        let (sign, digits) = match s.chars().next() {
            Some(c @ ('-' | '+' | ' ')) => (c.to_string(), &s[1..]),
            _ => (String::new(), s),
        };
        out.push_str(&sign);
        out.push_str(&"0".repeat(fill));
        out.push_str(digits);
    } else {
        out.push_str(&" ".repeat(fill));
        out.push_str(s);
    }
}

fn write_value(out: &mut String, v: &Value, spec: &Spec) {
    let verb = spec.verb;
    if verb == 'T' {
        pad(out, v.type_name(), spec, false);
        return;
    }
    match v {
        Value::Nil | Value::Missing => match verb {
            'v' => pad(out, "<nil>", spec, false),
            _ => bad_verb(out, v, verb),
        },
        Value::Bool(b) => match verb {
            'v' | 't' => pad(out, if *b { "true" } else { "false" }, spec, false),
            _ => bad_verb(out, v, verb),
        },
        Value::Int(n) => write_int(out, *n, spec, v),
        Value::Float(f) => write_float(out, *f, spec, v),
        Value::Str(s) => write_str(out, s, spec, v),
        Value::List(items) => {
            let mut s = String::from("[");
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    s.push(' ');
                }
                write_value(&mut s, item, &Spec::plain(verb));
            }
            s.push(']');
            pad(out, &s, spec, false);
        }
        Value::Map(m) => {
            let mut s = String::new();
            if m.is_struct() {
                s.push('{');
                let mut first = true;
                for (k, item) in &m.entries {
                    if matches!(item, Value::Func(_)) {
                        continue;
                    }
                    if !first {
                        s.push(' ');
                    }
                    first = false;
                    if spec.plus {
                        s.push_str(k);
                        s.push(':');
                    }
                    write_value(&mut s, item, &Spec::plain(verb));
                }
                s.push('}');
            } else {
                s.push_str("map[");
                for (i, k) in m.sorted_keys().into_iter().enumerate() {
                    if i > 0 {
                        s.push(' ');
                    }
                    write_value(&mut s, &Value::Str(k.clone()), &Spec::plain(verb));
                    s.push(':');
                    if let Some(item) = m.get(k) {
                        write_value(&mut s, item, &Spec::plain(verb));
                    }
                }
                s.push(']');
            }
            pad(out, &s, spec, false);
        }
        Value::Func(_) => pad(out, "<func>", spec, false),
    }
}

fn write_int(out: &mut String, n: i64, spec: &Spec, v: &Value) {
    let sign = if n < 0 {
        "-"
    } else if spec.plus {
        "+"
    } else if spec.space {
        " "
    } else {
        ""
    };
    let abs = n.unsigned_abs();
    let body = match spec.verb {
        'v' | 'd' => abs.to_string(),
        'b' => format!("{abs:b}"),
        'o' => {
            if spec.sharp {
                format!("0{abs:o}")
            } else {
                format!("{abs:o}")
            }
        }
        'O' => format!("0o{abs:o}"),
        'x' => {
            if spec.sharp {
                format!("0x{abs:x}")
            } else {
                format!("{abs:x}")
            }
        }
        'X' => {
            if spec.sharp {
                format!("0X{abs:X}")
            } else {
                format!("{abs:X}")
            }
        }
        'c' => {
            let c = u32::try_from(n)
                .ok()
                .and_then(char::from_u32)
                .unwrap_or('\u{FFFD}');
            pad(out, &c.to_string(), spec, false);
            return;
        }
        'q' => {
            let c = u32::try_from(n)
                .ok()
                .and_then(char::from_u32)
                .unwrap_or('\u{FFFD}');
            pad(out, &quote_char(c), spec, false);
            return;
        }
        'U' => {
            pad(out, &format!("U+{abs:04X}"), spec, false);
            return;
        }
        'e' | 'E' | 'f' | 'F' | 'g' | 'G' | 's' | 't' => {
            bad_verb(out, v, spec.verb);
            return;
        }
        _ => {
            bad_verb(out, v, spec.verb);
            return;
        }
    };
    // A precision on an integer is a minimum number of digits.
    let body = match spec.prec {
        Some(p) if body.len() < p => format!("{}{body}", "0".repeat(p - body.len())),
        _ => body,
    };
    pad(out, &format!("{sign}{body}"), spec, spec.prec.is_none());
}

fn write_float(out: &mut String, f: f64, spec: &Spec, v: &Value) {
    let body = match spec.verb {
        'v' | 'g' => format_g(f, spec.prec.map(|p| p.max(1)), false),
        'G' => format_g(f, spec.prec.map(|p| p.max(1)), true),
        'e' => format_e(f, spec.prec.unwrap_or(6), false),
        'E' => format_e(f, spec.prec.unwrap_or(6), true),
        'f' | 'F' => format_f(f, spec.prec.unwrap_or(6)),
        _ => {
            bad_verb(out, v, spec.verb);
            return;
        }
    };
    let body = if !body.starts_with('-') && f.is_finite() {
        if spec.plus {
            format!("+{body}")
        } else if spec.space {
            format!(" {body}")
        } else {
            body
        }
    } else {
        body
    };
    pad(out, &body, spec, f.is_finite());
}

fn write_str(out: &mut String, s: &str, spec: &Spec, v: &Value) {
    let s: String = match spec.prec {
        Some(p) => s.chars().take(p).collect(),
        None => s.to_string(),
    };
    match spec.verb {
        'v' | 's' => pad(out, &s, spec, false),
        'q' => {
            if spec.sharp && !s.contains('`') {
                pad(out, &format!("`{s}`"), spec, false)
            } else {
                pad(out, &quote(&s), spec, false)
            }
        }
        'x' => pad(
            out,
            &s.bytes().map(|b| format!("{b:02x}")).collect::<String>(),
            spec,
            false,
        ),
        'X' => pad(
            out,
            &s.bytes().map(|b| format!("{b:02X}")).collect::<String>(),
            spec,
            false,
        ),
        _ => bad_verb(out, v, spec.verb),
    }
}

/// [`quote`] appended to `out`.
pub fn quote_into(s: &str, out: &mut String) {
    if s.bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
    {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        out.push_str(&quote(s));
    }
}

/// Go's `strconv.Quote`.
pub fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_control() => {
                if (c as u32) <= 0xffff {
                    out.push_str(&format!("\\u{:04x}", c as u32))
                } else {
                    out.push_str(&format!("\\U{:08x}", c as u32))
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn quote_char(c: char) -> String {
    match c {
        '\'' => "'\\''".to_string(),
        '"' => "'\"'".to_string(),
        c => {
            let q = quote(&c.to_string());
            format!("'{}'", &q[1..q.len() - 1])
        }
    }
}

/// The decimal digits (no leading/trailing zeros) and the decimal point position
/// of `f`, rounded to `prec` significant digits, or the shortest that round-trips.
fn digits(f: f64, prec: Option<usize>) -> (String, i32) {
    let s = match prec {
        Some(p) => format!("{:.*e}", p.saturating_sub(1), f.abs()),
        None => format!("{:e}", f.abs()),
    };
    let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let mut d: String = mant.chars().filter(char::is_ascii_digit).collect();
    while d.len() > 1 && d.ends_with('0') {
        d.pop();
    }
    if d == "0" {
        return (d, 1);
    }
    (d, exp + 1)
}

fn special(f: f64) -> Option<String> {
    if f.is_nan() {
        Some("NaN".into())
    } else if f.is_infinite() {
        Some(if f > 0.0 { "+Inf" } else { "-Inf" }.into())
    } else {
        None
    }
}

/// Go's `%g` (`prec` None = shortest).
pub fn format_g(f: f64, prec: Option<usize>, upper: bool) -> String {
    if let Some(s) = special(f) {
        return s;
    }
    let neg = f.is_sign_negative() && f != 0.0;
    let (d, dp) = digits(f, prec);
    let nd = d.len() as i32;
    let shortest = prec.is_none();
    let mut p = prec.map_or(nd, |p| p as i32);
    let mut eprec = p;
    if eprec > nd && nd >= dp {
        eprec = nd;
    }
    if shortest {
        eprec = 6;
    }
    let exp = dp - 1;
    let body = if exp < -4 || exp >= eprec {
        if p > nd {
            p = nd;
        }
        fmt_e(&d, dp, (p - 1).max(0) as usize, upper)
    } else {
        if p > dp {
            p = nd;
        }
        fmt_f(&d, dp, (p - dp).max(0) as usize)
    };
    if neg {
        format!("-{body}")
    } else {
        body
    }
}

fn format_e(f: f64, prec: usize, upper: bool) -> String {
    if let Some(s) = special(f) {
        return s;
    }
    let (d, dp) = digits(f, Some(prec + 1));
    let body = fmt_e(&d, dp, prec, upper);
    if f.is_sign_negative() && f != 0.0 {
        format!("-{body}")
    } else {
        body
    }
}

fn format_f(f: f64, prec: usize) -> String {
    if let Some(s) = special(f) {
        return s;
    }
    let s = format!("{f:.prec$}");
    // Go prints -0.00 as 0.00 only for a true zero; keep Rust's output otherwise.
    s
}

fn fmt_e(d: &str, dp: i32, prec: usize, upper: bool) -> String {
    let mut s = String::new();
    let mut chars = d.chars();
    s.push(chars.next().unwrap_or('0'));
    if prec > 0 {
        s.push('.');
        let rest: String = chars.collect();
        s.push_str(&rest);
        for _ in rest.len()..prec {
            s.push('0');
        }
        s.truncate(2 + prec);
    }
    let exp = if d == "0" { 0 } else { dp - 1 };
    s.push(if upper { 'E' } else { 'e' });
    s.push(if exp < 0 { '-' } else { '+' });
    s.push_str(&format!("{:02}", exp.abs()));
    s
}

fn fmt_f(d: &str, dp: i32, decimals: usize) -> String {
    let mut s = String::new();
    if dp > 0 {
        for i in 0..dp as usize {
            s.push(d.as_bytes().get(i).map_or('0', |b| *b as char));
        }
    } else {
        s.push('0');
    }
    if decimals > 0 {
        s.push('.');
        for i in 0..decimals as i32 {
            let idx = dp + i;
            let c = if idx < 0 {
                '0'
            } else {
                d.as_bytes().get(idx as usize).map_or('0', |b| *b as char)
            };
            s.push(c);
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &str) -> Value {
        Value::from(x)
    }

    #[test]
    fn floats_print_like_go() {
        assert_eq!(sprint_v(&Value::Float(1e6)), "1e+06");
        assert_eq!(sprint_v(&Value::Float(123456.0)), "123456");
        assert_eq!(sprint_v(&Value::Float(123456789.0)), "1.23456789e+08");
        assert_eq!(sprint_v(&Value::Float(2.5)), "2.5");
        assert_eq!(sprint_v(&Value::Float(0.0001)), "0.0001");
        assert_eq!(sprint_v(&Value::Float(0.00001)), "1e-05");
        assert_eq!(sprint_v(&Value::Float(-3.0)), "-3");
        assert_eq!(format_g(4.261482, Some(3), false), "4.26");
        assert_eq!(format_g(999.999, Some(3), false), "1e+03");
        assert_eq!(format_g(1.5, Some(3), false), "1.5");
        assert_eq!(format_g(100.0, Some(3), false), "100");
        assert_eq!(format_g(12.34, Some(3), false), "12.3");
        assert_eq!(format_g(0.0, Some(3), false), "0");
    }

    #[test]
    fn printf_verbs() {
        assert_eq!(sprintf("%s-%d", &[s("a"), Value::Int(5)]), "a-5");
        assert_eq!(sprintf("%5s|%-5s|", &[s("ab"), s("cd")]), "   ab|cd   |");
        assert_eq!(sprintf("%05d", &[Value::Int(-42)]), "-0042");
        assert_eq!(
            sprintf(
                "%x %X %o %b",
                &[
                    Value::Int(255),
                    Value::Int(255),
                    Value::Int(8),
                    Value::Int(5)
                ]
            ),
            "ff FF 10 101"
        );
        assert_eq!(sprintf("%.2f", &[Value::Float(1.23456)]), "1.23");
        assert_eq!(sprintf("%8.3f|", &[Value::Float(1.23456)]), "   1.235|");
        assert_eq!(sprintf("%e", &[Value::Float(1234.5678)]), "1.234568e+03");
        assert_eq!(sprintf("%q", &[s("a\"b\n")]), "\"a\\\"b\\n\"");
        assert_eq!(
            sprintf("%v %v", &[Value::Bool(true), Value::Nil]),
            "true <nil>"
        );
        assert_eq!(sprintf("%d", &[s("x")]), "%!d(string=x)");
        assert_eq!(sprintf("%s", &[Value::Int(1)]), "%!s(int=1)");
        assert_eq!(sprintf("%d %d", &[Value::Int(1)]), "1 %!d(MISSING)");
        assert_eq!(
            sprintf("%d", &[Value::Int(1), s("x")]),
            "1%!(EXTRA string=x)"
        );
        assert_eq!(sprintf("100%%", &[]), "100%");
        assert_eq!(sprintf("%.2s", &[s("héllo")]), "hé");
        assert_eq!(sprintf("%T %T", &[s("x"), Value::Int(1)]), "string int");
        assert_eq!(sprintf("%c", &[Value::Int(65)]), "A");
        assert_eq!(sprintf("%+d", &[Value::Int(3)]), "+3");
        assert_eq!(sprintf("%*d", &[Value::Int(4), Value::Int(7)]), "   7");
    }

    #[test]
    fn collections_print_like_go() {
        let l = Value::List(vec![s("a"), Value::Int(1), Value::Nil]);
        assert_eq!(sprint_v(&l), "[a 1 <nil>]");
        let v = Value::from_json(br#"{"b":1,"a":"x"}"#).unwrap();
        assert_eq!(sprint_v(&v), "map[a:x b:1]");
        assert_eq!(
            sprintf("%q", &[Value::List(vec![s("a"), s("b")])]),
            "[\"a\" \"b\"]"
        );
    }

    #[test]
    fn print_and_println() {
        assert_eq!(sprint(&[s("a"), s("b")]), "ab");
        assert_eq!(sprint(&[Value::Int(1), Value::Int(2)]), "1 2");
        assert_eq!(sprint(&[s("a"), Value::Int(2)]), "a2");
        assert_eq!(sprintln(&[s("a"), Value::Int(2)]), "a 2\n");
    }
}
