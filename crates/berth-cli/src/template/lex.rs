//! Go text/template's lexer: text and `{{ }}` actions, with `{{-`/`-}}` trimming the
//! whitespace around them and `{{/* */}}` comments.

use super::Error;

#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    Text(String),
    /// `{{` (trimming already applied to the text before it).
    Left,
    /// `}}`.
    Right,
    Space,
    /// `.Name` (one link of a field chain).
    Field(String),
    /// `$` or `$name`.
    Variable(String),
    /// A lone `.`.
    Dot,
    Ident(String),
    Str(String),
    Number(Number),
    Bool(bool),
    Nil,
    Pipe,
    LParen,
    RParen,
    Declare,
    Assign,
    Comma,
    Keyword(&'static str),
}

impl std::fmt::Display for Tok {
    /// As Go's lexer names items in messages: `<.>`, `<if>`, `"str"`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Tok::Text(t) => write!(f, "{t:?}"),
            Tok::Left => write!(f, "<{{{{>"),
            Tok::Right => write!(f, "<}}}}>"),
            Tok::Space => write!(f, "space"),
            Tok::Field(n) => write!(f, "<.{n}>"),
            Tok::Variable(v) => write!(f, "<{v}>"),
            Tok::Dot => write!(f, "<.>"),
            Tok::Ident(i) => write!(f, "<{i}>"),
            Tok::Str(s) => write!(f, "{s:?}"),
            Tok::Number(Number::Int(i)) => write!(f, "<{i}>"),
            Tok::Number(Number::Float(x)) => write!(f, "<{x}>"),
            Tok::Bool(b) => write!(f, "<{b}>"),
            Tok::Nil => write!(f, "<nil>"),
            Tok::Pipe => write!(f, "<|>"),
            Tok::LParen => write!(f, "<(>"),
            Tok::RParen => write!(f, "<)>"),
            Tok::Declare => write!(f, "<:=>"),
            Tok::Assign => write!(f, "<=>"),
            Tok::Comma => write!(f, "<,>"),
            Tok::Keyword(k) => write!(f, "<{k}>"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Number {
    Int(i64),
    Float(f64),
}

/// A token and the line it starts on (1-based).
#[derive(Debug, Clone)]
pub struct Token {
    pub tok: Tok,
    pub line: usize,
}

const KEYWORDS: [&str; 10] = [
    "block", "break", "continue", "define", "else", "end", "if", "range", "template", "with",
];

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn is_alnum(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

/// Splits a template into tokens.
pub fn lex(src: &str) -> Result<Vec<Token>, Error> {
    let mut out: Vec<Token> = Vec::new();
    let mut rest = src;
    let mut line = 1usize;
    let mut trim_next_text = false;
    loop {
        let Some(start) = rest.find("{{") else {
            let mut text = rest;
            if trim_next_text {
                text = text.trim_start_matches(is_space);
            }
            if !text.is_empty() {
                out.push(Token {
                    tok: Tok::Text(text.to_string()),
                    line,
                });
            }
            return Ok(out);
        };
        let after = &rest[start + 2..];
        let trim_left = after.starts_with('-') && after[1..].starts_with(is_space);
        let mut text = &rest[..start];
        if trim_next_text {
            text = text.trim_start_matches(is_space);
        }
        if trim_left {
            text = text.trim_end_matches(is_space);
        }
        if !text.is_empty() {
            out.push(Token {
                tok: Tok::Text(text.to_string()),
                line,
            });
        }
        line += rest[..start].matches('\n').count();
        let mut body = if trim_left { &after[2..] } else { after };
        // A comment: `{{/* ... */}}`, possibly with trim markers.
        let trimmed = body.trim_start_matches(is_space);
        if trimmed.starts_with("/*") && (trim_left || trimmed.len() == body.len()) {
            let end = trimmed
                .find("*/")
                .ok_or_else(|| Error::parse(line, "unclosed comment"))?;
            let after_comment = &trimmed[end + 2..];
            let (trim_right, tail) = if let Some(t) = after_comment.strip_prefix(" -}}") {
                (true, t)
            } else if let Some(t) = after_comment
                .trim_start_matches(is_space)
                .strip_prefix("-}}")
                .filter(|_| after_comment.starts_with(is_space))
            {
                (true, t)
            } else if let Some(t) = after_comment.strip_prefix("}}") {
                (false, t)
            } else {
                return Err(Error::parse(line, "comment ends before closing delimiter"));
            };
            line += trimmed[..end].matches('\n').count();
            trim_next_text = trim_right;
            rest = tail;
            continue;
        }
        out.push(Token {
            tok: Tok::Left,
            line,
        });
        // Inside the action.
        let mut chars = body.char_indices().peekable();
        let mut trim_right = false;
        let consumed;
        loop {
            let Some(&(i, c)) = chars.peek() else {
                return Err(Error::parse(line, "unclosed action"));
            };
            let here = &body[i..];
            if here.starts_with("}}") {
                out.push(Token {
                    tok: Tok::Right,
                    line,
                });
                consumed = i + 2;
                break;
            }
            if is_space(c) {
                // ` -}}` closes the action and trims what follows.
                let spaces_end = here
                    .find(|ch: char| !is_space(ch))
                    .map_or(here.len(), |n| n);
                if here[spaces_end..].starts_with("-}}") {
                    line += here[..spaces_end].matches('\n').count();
                    out.push(Token {
                        tok: Tok::Right,
                        line,
                    });
                    trim_right = true;
                    consumed = i + spaces_end + 3;
                    break;
                }
                line += here[..spaces_end].matches('\n').count();
                out.push(Token {
                    tok: Tok::Space,
                    line,
                });
                for _ in 0..here[..spaces_end].chars().count() {
                    chars.next();
                }
                continue;
            }
            let tok_line = line;
            let (tok, len) = lex_one(here, line)?;
            line += here[..len].matches('\n').count();
            out.push(Token {
                tok,
                line: tok_line,
            });
            for _ in 0..here[..len].chars().count() {
                chars.next();
            }
        }
        trim_next_text = trim_right;
        body = &body[consumed..];
        rest = body;
    }
}

/// Go's lexer ends a field, variable or word only at a space, `.`, `,`, `|`, `:`,
/// a parenthesis or the action's end: `{{.a.b-c}}` is an error there, not `.a.b`
/// followed by something else.
fn check_terminated(s: &str, len: usize, line: usize) -> Result<(), Error> {
    let rest = &s[len..];
    match rest.chars().next() {
        None => Ok(()),
        Some(c) if is_space(c) || matches!(c, '.' | ',' | '|' | ':' | ')' | '(') => Ok(()),
        Some('}') if rest.starts_with("}}") => Ok(()),
        Some(c) => Err(Error::parse(
            line,
            &format!("bad character U+{:04X} '{c}'", c as u32),
        )),
    }
}

/// One token at the start of `s` (inside an action): the token and its length in bytes.
fn lex_one(s: &str, line: usize) -> Result<(Tok, usize), Error> {
    let mut it = s.chars();
    let c = it.next().unwrap_or(' ');
    let next = it.next();
    match c {
        '|' => Ok((Tok::Pipe, 1)),
        '(' => Ok((Tok::LParen, 1)),
        ')' => Ok((Tok::RParen, 1)),
        ',' => Ok((Tok::Comma, 1)),
        '=' => Ok((Tok::Assign, 1)),
        ':' if next == Some('=') => Ok((Tok::Declare, 2)),
        '"' => {
            let mut escaped = false;
            for (i, ch) in s.char_indices().skip(1) {
                if escaped {
                    escaped = false;
                } else if ch == '\\' {
                    escaped = true;
                } else if ch == '\n' {
                    break;
                } else if ch == '"' {
                    return Ok((Tok::Str(unquote(&s[1..i], line)?), i + 1));
                }
            }
            Err(Error::parse(line, "unterminated quoted string"))
        }
        '`' => match s[1..].find('`') {
            Some(end) => Ok((Tok::Str(s[1..1 + end].to_string()), end + 2)),
            None => Err(Error::parse(line, "unterminated raw quoted string")),
        },
        '\'' => {
            let mut escaped = false;
            for (i, ch) in s.char_indices().skip(1) {
                if escaped {
                    escaped = false;
                } else if ch == '\\' {
                    escaped = true;
                } else if ch == '\'' {
                    let inner = unquote(&s[1..i], line)?;
                    let mut cs = inner.chars();
                    return match (cs.next(), cs.next()) {
                        (Some(ch), None) => Ok((Tok::Number(Number::Int(ch as i64)), i + 1)),
                        _ => Err(Error::parse(line, "malformed character constant")),
                    };
                }
            }
            Err(Error::parse(line, "unterminated character constant"))
        }
        '$' => {
            let len = 1 + s[1..].find(|ch: char| !is_alnum(ch)).unwrap_or(s.len() - 1);
            check_terminated(s, len, line)?;
            Ok((Tok::Variable(s[..len].to_string()), len))
        }
        '.' => match next {
            Some(d) if d.is_ascii_digit() => lex_number(s, line),
            Some(a) if is_alnum(a) => {
                let len = 1 + s[1..].find(|ch: char| !is_alnum(ch)).unwrap_or(s.len() - 1);
                check_terminated(s, len, line)?;
                Ok((Tok::Field(s[1..len].to_string()), len))
            }
            _ => Ok((Tok::Dot, 1)),
        },
        '+' | '-' | '0'..='9' => lex_number(s, line),
        c if is_alnum(c) => {
            let len = s.find(|ch: char| !is_alnum(ch)).unwrap_or(s.len());
            check_terminated(s, len, line)?;
            let word = &s[..len];
            let tok = match word {
                "true" => Tok::Bool(true),
                "false" => Tok::Bool(false),
                "nil" => Tok::Nil,
                w => match KEYWORDS.iter().find(|k| **k == w) {
                    Some(k) => Tok::Keyword(k),
                    None => Tok::Ident(w.to_string()),
                },
            };
            Ok((tok, len))
        }
        c => Err(Error::parse(
            line,
            &format!("unrecognized character in action: {c:?}"),
        )),
    }
}

fn lex_number(s: &str, line: usize) -> Result<(Tok, usize), Error> {
    let len = s
        .char_indices()
        .find(|&(i, ch)| {
            !(ch.is_ascii_alphanumeric()
                || ch == '.'
                || ch == '_'
                || ((ch == '+' || ch == '-')
                    && (i == 0 || matches!(s.as_bytes()[i - 1], b'e' | b'E' | b'p' | b'P'))))
        })
        .map_or(s.len(), |(i, _)| i);
    let text = &s[..len];
    parse_number(text)
        .map(|n| (Tok::Number(n), len))
        .ok_or_else(|| Error::parse(line, &format!("bad number syntax: {text:?}")))
}

fn parse_number(text: &str) -> Option<Number> {
    let clean: String = text.chars().filter(|c| *c != '_').collect();
    let (neg, body) = match clean.strip_prefix('-') {
        Some(b) => (true, b.to_string()),
        None => (false, clean.trim_start_matches('+').to_string()),
    };
    let radix = |p: &str, r: u32| {
        body.strip_prefix(p)
            .or_else(|| body.strip_prefix(&p.to_uppercase()))
            .and_then(|d| i64::from_str_radix(d, r).ok())
    };
    let int = radix("0x", 16)
        .or_else(|| radix("0o", 8))
        .or_else(|| radix("0b", 2))
        .or_else(|| {
            if body.len() > 1 && body.starts_with('0') && body.bytes().all(|b| b.is_ascii_digit()) {
                i64::from_str_radix(&body[1..], 8).ok()
            } else {
                body.parse::<i64>().ok()
            }
        });
    if let Some(i) = int {
        return Some(Number::Int(if neg { -i } else { i }));
    }
    let f: f64 = body.parse().ok()?;
    Some(Number::Float(if neg { -f } else { f }))
}

/// Go's string escapes: `\n`, `\t`, `\\`, `\"`, `\'`, `\xNN`, `\uNNNN`, `\UNNNNNNNN`,
/// octal `\NNN`, `\a \b \f \r \v`.
fn unquote(s: &str, line: usize) -> Result<String, Error> {
    let mut out = String::new();
    let mut chars = s.chars();
    let bad = || Error::parse(line, &format!("invalid syntax in string {s:?}"));
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let e = chars.next().ok_or_else(bad)?;
        match e {
            'n' => out.push('\n'),
            't' => out.push('\t'),
            'r' => out.push('\r'),
            'a' => out.push('\u{7}'),
            'b' => out.push('\u{8}'),
            'f' => out.push('\u{c}'),
            'v' => out.push('\u{b}'),
            '\\' | '"' | '\'' => out.push(e),
            'x' | 'u' | 'U' => {
                let n = match e {
                    'x' => 2,
                    'u' => 4,
                    _ => 8,
                };
                let hex: String = chars.by_ref().take(n).collect();
                let v = u32::from_str_radix(&hex, 16).map_err(|_| bad())?;
                out.push(char::from_u32(v).ok_or_else(bad)?);
            }
            '0'..='7' => {
                let rest: String = chars.by_ref().take(2).collect();
                let v = u32::from_str_radix(&format!("{e}{rest}"), 8).map_err(|_| bad())?;
                out.push(char::from_u32(v).ok_or_else(bad)?);
            }
            _ => return Err(bad()),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<Tok> {
        lex(s).unwrap().into_iter().map(|t| t.tok).collect()
    }

    #[test]
    fn text_fields_and_trim() {
        assert_eq!(
            toks("a {{.X.Y}} b"),
            vec![
                Tok::Text("a ".into()),
                Tok::Left,
                Tok::Field("X".into()),
                Tok::Field("Y".into()),
                Tok::Right,
                Tok::Text(" b".into())
            ]
        );
        assert_eq!(
            toks("a  {{- 3 -}}  b"),
            vec![
                Tok::Text("a".into()),
                Tok::Left,
                Tok::Number(Number::Int(3)),
                Tok::Right,
                Tok::Text("b".into())
            ]
        );
        assert_eq!(
            toks("x {{/* c */}} y"),
            vec![Tok::Text("x ".into()), Tok::Text(" y".into())]
        );
        assert_eq!(
            toks("x {{- /* c */ -}} y"),
            vec![Tok::Text("x".into()), Tok::Text("y".into())]
        );
    }

    #[test]
    fn literals() {
        assert_eq!(
            toks(r#"{{"a\tb" `r\n` 'x' -1 0x1F 1.5 true nil $v $}}"#),
            vec![
                Tok::Left,
                Tok::Str("a\tb".into()),
                Tok::Space,
                Tok::Str("r\\n".into()),
                Tok::Space,
                Tok::Number(Number::Int(120)),
                Tok::Space,
                Tok::Number(Number::Int(-1)),
                Tok::Space,
                Tok::Number(Number::Int(31)),
                Tok::Space,
                Tok::Number(Number::Float(1.5)),
                Tok::Space,
                Tok::Bool(true),
                Tok::Space,
                Tok::Nil,
                Tok::Space,
                Tok::Variable("$v".into()),
                Tok::Space,
                Tok::Variable("$".into()),
                Tok::Right
            ]
        );
    }

    #[test]
    fn errors() {
        assert!(lex("{{.X").is_err());
        assert!(lex("{{\"x}}").is_err());
        assert!(lex("{{ # }}").is_err());
    }
}
