//! docker's formatter: `--format` values (`table ...`, `json`, a Go template) rendered
//! over docker's formatter objects ([`container`], [`image`], ...), tables aligned by a
//! Go-compatible [`tabwriter`], and docker's [`units`].

pub mod container;
pub mod image;
pub mod misc;
pub mod tabwriter;
pub mod units;

use crate::template::{Map, Piece, Template, Value};

/// What `--format json` stands for.
pub const JSON_FORMAT: &str = "{{json .}}";

/// A `--format` problem, worded as docker words it.
#[derive(Debug, thiserror::Error)]
#[error("template parsing error: {0}")]
pub struct FormatError(pub crate::template::Error);

impl From<crate::template::Error> for FormatError {
    fn from(e: crate::template::Error) -> FormatError {
        FormatError(e)
    }
}

/// Whether a format is a table (`table ...`).
pub fn is_table(format: &str) -> bool {
    format.starts_with("table")
}

/// docker's preFormat: `table` taken off, `json` expanded, spaces trimmed, and a
/// typed `\t` or `\n` made a real tab or newline.
pub fn template_source(format: &str) -> String {
    let f = if is_table(format) {
        &format["table".len()..]
    } else if format == "json" {
        JSON_FORMAT
    } else {
        format
    };
    f.trim_matches(' ')
        .replace("\\t", "\t")
        .replace("\\n", "\n")
}

/// Parses a `--format` value.
pub fn parse(format: &str) -> Result<Template, FormatError> {
    Ok(Template::parse(&template_source(format))?)
}

/// Which fields of a row a format reads, so that a formatter builds only those.
pub struct Fields(Option<std::collections::BTreeSet<String>>);

impl Fields {
    /// Every field (a format that uses the row whole, or a caller that keeps rows).
    pub fn all() -> Fields {
        Fields(None)
    }

    pub fn wants(&self, name: &str) -> bool {
        self.0.as_ref().is_none_or(|f| f.contains(name))
    }
}

/// docker's `Context.Write`: every row through the template, one per line; a table
/// gets its header row (the template run against `header` with docker's header
/// functions) and is aligned with tabs at minimum width 10, padding 3.
pub fn write(format: &str, header: &Map, rows: &[Value]) -> Result<String, FormatError> {
    write_each(format, header, rows, |r, _| std::borrow::Cow::Borrowed(r))
}

/// [`write`] over items that `row` turns into rows, given the fields the format reads.
pub fn write_each<'a, T>(
    format: &str,
    header: &Map,
    items: &'a [T],
    row: impl Fn(&'a T, &Fields) -> std::borrow::Cow<'a, Value>,
) -> Result<String, FormatError> {
    executed(format, &parse(format)?, header, items, row)
}

/// Every row through the parsed template `tmpl` of `format` ([`write_each`] for a
/// caller that has parsed it already).
pub fn executed<'a, T>(
    format: &str,
    tmpl: &Template,
    header: &Map,
    items: &'a [T],
    row: impl Fn(&'a T, &Fields) -> std::borrow::Cow<'a, Value>,
) -> Result<String, FormatError> {
    let fields = Fields(tmpl.data_fields());
    let mut body = String::new();
    for item in items {
        body.push_str(&tmpl.execute(&row(item, &fields))?);
        body.push('\n');
    }
    Ok(finish(format, tmpl, header, body))
}

/// A shortcut for formats that only print text and fields (docker's default
/// tables, `{{.ID}}`): their pieces, when `cell` writes every field they name as a
/// plain string. Rows are then printed from `cell` directly ([`plain_row`], then
/// [`finish`]), without being built as values and run through the template; the
/// output is the same. `cell` appends a field of an item and says whether it is
/// such a field; it answers by the field's name alone, so `probe` may be any item.
pub fn plain_pieces<'t, T>(
    tmpl: &'t Template,
    probe: T,
    cell: impl Fn(T, &str, &mut String) -> bool,
) -> Option<Vec<Piece<'t>>>
where
    T: Copy,
{
    let pieces = tmpl.plain_pieces()?;
    let mut scratch = String::new();
    pieces
        .iter()
        .all(|p| match p {
            Piece::Text(_) => true,
            Piece::Field(f) => cell(probe, f, &mut scratch),
        })
        .then_some(pieces)
}

/// An item's line through [`plain_pieces`], appended to `body`.
pub fn plain_row<T: Copy>(
    pieces: &[Piece],
    item: T,
    cell: impl Fn(T, &str, &mut String) -> bool,
    body: &mut String,
) {
    for p in pieces {
        match p {
            Piece::Text(t) => body.push_str(t),
            Piece::Field(f) => {
                cell(item, f, body);
            }
        }
    }
    body.push('\n');
}

/// A table's header and alignment around the rendered rows; other formats' rows as
/// they are.
pub fn finish(format: &str, tmpl: &Template, header: &Map, body: String) -> String {
    if !is_table(format) {
        return body;
    }
    let mut tw = tabwriter::TabWriter::new(10, 3);
    // Like docker, a header the template cannot render is printed as far as it got.
    let (head, _) = tmpl
        .for_header()
        .execute_partial(&Value::Map(header.clone()));
    tw.write(&head);
    tw.write("\n");
    tw.write(&body);
    tw.flush()
}

/// Renders each value through a plain template (inspect's `-f`), one per line.
pub fn each(format: &str, values: &[Value]) -> Result<String, FormatError> {
    let tmpl = Template::parse(&template_source(format))?;
    let mut out = String::new();
    for v in values {
        out.push_str(&tmpl.execute(v)?);
        out.push('\n');
    }
    Ok(out)
}

/// A header map (`map[string]string`) from pairs, with docker's `.Label "k"` header.
pub fn header(pairs: &[(&str, &str)]) -> Map {
    let mut m = Map::str_map();
    for (k, v) in pairs {
        m.insert(*k, *v);
    }
    m.insert(
        "Label",
        Value::Func(std::sync::Arc::new(|a: &[Value]| {
            let name = a.first().and_then(Value::as_str).unwrap_or("");
            let last = name.rsplit('.').next().unwrap_or(name);
            Ok(Value::Str(last.replace(['-', '_'], " ")))
        })),
    );
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_preprocessed_like_docker() {
        assert_eq!(
            template_source("table {{.ID}}\\t{{.Names}}"),
            "{{.ID}}\t{{.Names}}"
        );
        assert_eq!(template_source("json"), "{{json .}}");
        assert_eq!(template_source("  {{.ID}} "), "{{.ID}}");
        assert!(is_table("table"));
    }

    #[test]
    fn tables_get_headers() {
        let h = header(&[("ID", "CONTAINER ID"), ("Names", "NAMES")]);
        let mut r = Map::structure("*formatter.ContainerContext");
        r.insert("ID", "0123456789ab");
        r.insert("Names", "web");
        let out = write(
            "table {{.ID}}\\t{{.Names}}\\t{{.Label \"com.x.my-label\"}}",
            &h,
            &[Value::Map(r)],
        );
        assert!(out.is_err(), "the row has no Label method");
        let mut r = Map::structure("*formatter.ContainerContext");
        r.insert("ID", "0123456789ab");
        r.insert("Names", "web");
        let out = write("table {{.ID}}\t{{upper .Names}}", &h, &[Value::Map(r)]).unwrap();
        assert_eq!(out, "CONTAINER ID   NAMES\n0123456789ab   WEB\n");
        assert_eq!(header(&[]).entries.get("Label").map(|_| ()), Some(()));
    }

    #[test]
    fn errors_say_template_parsing_error() {
        let e = write(
            "{{.Nope}}",
            &header(&[]),
            &[Value::Map(Map::structure("*formatter.ContainerContext"))],
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("template parsing error: template: "),
            "{e}"
        );
    }
}
