//! `ps` / `container ls`.

use std::borrow::Cow;

use anyhow::Result;
use http::Method;

use super::PsArgs;
use crate::client::{filters_query, Client};
use crate::format::{self, container};

pub async fn ps(c: &Client, a: PsArgs) -> Result<i32> {
    let source = match &a.format {
        Some(f) => f.clone(),
        None if !a.quiet => crate::config::ConfigFile::load()
            .ok()
            .and_then(|cfg| cfg.format("psFormat"))
            .unwrap_or_default(),
        None => String::new(),
    };
    let fmt = container::format_for(&source, a.quiet, a.size);
    // Parsed once, before the request: docker checks a custom format first (to see
    // whether it shows .Size); any other format's error comes after the answer.
    let parsed = crate::template::Template::parse(&format::template_source(&fmt));
    if let Err(e) = &parsed {
        if !a.quiet && !a.size && a.format.is_some() {
            anyhow::bail!("failed to parse template: {e}");
        }
    }
    // docker asks for sizes when the template shows them.
    let size = a.size || (!a.quiet && fmt.contains(".Size"));
    let mut q = vec![format!("all={}", (a.all || a.latest || a.last > 0) as u8)];
    if a.latest {
        q.push("limit=1".into());
    } else if a.last > 0 {
        q.push(format!("limit={}", a.last));
    }
    if size {
        q.push("size=1".into());
    }
    let f = filters_query(&a.filter)?;
    if !f.is_empty() {
        q.push(format!("filters={f}"));
    }
    let body = c
        .body(Method::GET, &format!("/containers/json?{}", q.join("&")))
        .await?;
    let text = if body.iter().all(u8::is_ascii_whitespace) {
        "[]"
    } else {
        // Checked as UTF-8 at once, not string by string while parsing.
        std::str::from_utf8(&body)
            .map_err(|e| anyhow::anyhow!("the container list is not UTF-8: {e}"))?
    };
    let show = container::Show::new(!a.no_trunc);
    let cell =
        |x: &container::Summary, name: &str, out: &mut String| container::cell(x, &show, name, out);
    let tmpl = parsed.map_err(format::FormatError::from)?;
    let out = match format::plain_pieces(&tmpl, &container::Summary::default(), cell) {
        // Each row printed as it is decoded: hundreds of rows are never held.
        Some(pieces) => {
            let mut lines = String::with_capacity(text.len() / 4);
            container::each_row(text, |x| format::plain_row(&pieces, &x, cell, &mut lines))
                .map_err(crate::client::CliError::from)?;
            format::finish(&fmt, &tmpl, &container::header(), lines)
        }
        None => {
            let items = container::decode_list(text).map_err(crate::client::CliError::from)?;
            format::executed(&fmt, &tmpl, &container::header(), &items, |x, f| {
                Cow::Owned(container::row(x, &show, f))
            })?
        }
    };
    print!("{out}");
    Ok(0)
}
