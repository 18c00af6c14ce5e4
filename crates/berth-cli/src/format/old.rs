//! Output helpers: `--format` with Go-template-like field paths (`{{.State.Pid}}`,
//! `{{json .GraphDriver.Data}}`, literal text around them), and docker-style tables
//! (columns padded to the widest cell plus three spaces).

use serde_json::Value;

/// A `--format` template problem.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FormatError {
    #[error("template: unclosed action in {0:?}")]
    Unclosed(String),
    #[error("template: unsupported action {{{{{0}}}}}: only .Field.Path and json .Field.Path are supported")]
    Unsupported(String),
}

fn lookup<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    let path = path.trim();
    if path == "." {
        return Some(v);
    }
    let mut cur = v;
    for part in path.trim_start_matches('.').split('.') {
        cur = cur.get(part)?;
    }
    Some(cur)
}

/// How Go's template prints a value.
fn plain(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "<no value>".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) => format!(
            "[{}]",
            a.iter()
                .map(|x| plain(Some(x)))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        Some(Value::Object(m)) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            format!(
                "map[{}]",
                keys.iter()
                    .map(|k| format!("{k}:{}", plain(m.get(*k))))
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        }
        Some(other) => other.to_string(),
    }
}

/// Renders `template` against `v`.
pub fn render(template: &str, v: &Value) -> Result<String, FormatError> {
    // As docker's CLI does: a literal \t or \n typed in a shell means tab/newline.
    let template = template.replace("\\t", "\t").replace("\\n", "\n");
    let template = template.as_str();
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| FormatError::Unclosed(template.to_string()))?;
        let action = after[..end]
            .trim()
            .trim_start_matches('-')
            .trim_end_matches('-')
            .trim();
        if let Some(path) = action.strip_prefix("json ") {
            let value = lookup(v, path).cloned().unwrap_or(Value::Null);
            out.push_str(&value.to_string());
        } else if action.starts_with('.') {
            out.push_str(&plain(lookup(v, action)));
        } else {
            return Err(FormatError::Unsupported(action.to_string()));
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Prints rows under headers, each column as wide as its widest cell plus three spaces.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(c);
                s.push_str(&" ".repeat(widths[i] - c.chars().count() + 3));
            }
        }
        s.trim_end().to_string()
    };
    let mut out = line(headers.to_vec());
    out.push('\n');
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    out
}

/// Docker's byte sizes ("1.24MB", "4.1kB"): decimal units, three significant digits.
pub fn human_size(bytes: i64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut v = bytes.max(0) as f64;
    let mut i = 0;
    while v >= 1000.0 && i + 1 < units.len() {
        v /= 1000.0;
        i += 1;
    }
    let s = format!("{v:.3}");
    let digits = if v >= 100.0 {
        0
    } else if v >= 10.0 {
        1
    } else {
        2
    };
    let s = format!("{:.*}", digits, s.parse::<f64>().unwrap_or(v));
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    format!("{s}{}", units[i])
}

/// Docker's "5 minutes ago" column text, from a duration in seconds.
pub fn ago(secs: i64) -> String {
    let d = match secs {
        s if s < 1 => return "Less than a second ago".to_string(),
        1 => "1 second".to_string(),
        s if s < 60 => format!("{s} seconds"),
        s if s < 120 => "About a minute".to_string(),
        s if s < 3600 => format!("{} minutes", s / 60),
        s if s < 7200 => "About an hour".to_string(),
        s if s < 48 * 3600 => format!("{} hours", s / 3600),
        s if s < 14 * 86400 => format!("{} days", s / 86400),
        s if s < 90 * 86400 => format!("{} weeks", s / (7 * 86400)),
        s if s < 730 * 86400 => format!("{} months", s / (30 * 86400)),
        s => format!("{} years", s / (365 * 86400)),
    };
    format!("{d} ago")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn field_paths_and_json() {
        let v = json!({"State": {"Pid": 42, "Running": true}, "GraphDriver": {"Data": {"UpperDir": "/u"}}, "Name": "/web"});
        assert_eq!(render("{{.State.Pid}}", &v).unwrap(), "42");
        assert_eq!(render("{{ .State.Running }}", &v).unwrap(), "true");
        assert_eq!(
            render("{{json .GraphDriver.Data}}", &v).unwrap(),
            r#"{"UpperDir":"/u"}"#
        );
        assert_eq!(
            render("name={{.Name}} pid={{.State.Pid}}", &v).unwrap(),
            "name=/web pid=42"
        );
        assert_eq!(render("{{.Nope.X}}", &v).unwrap(), "<no value>");
        assert_eq!(render("{{json .}}", &json!([1])).unwrap(), "[1]");
        assert!(render("{{.State", &v).is_err());
        assert!(render("{{range .X}}", &v).is_err());
    }

    #[test]
    fn tables_align_like_docker() {
        let t = table(
            &["CONTAINER ID", "NAMES"],
            &[
                vec!["abc".into(), "web".into()],
                vec!["0123456789ab".into(), "db".into()],
            ],
        );
        assert_eq!(
            t,
            "CONTAINER ID   NAMES\nabc            web\n0123456789ab   db\n"
        );
    }

    #[test]
    fn sizes_and_ages() {
        assert_eq!(human_size(4_261_482), "4.26MB");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(1_500), "1.5kB");
        assert_eq!(ago(300), "5 minutes ago");
    }
}
