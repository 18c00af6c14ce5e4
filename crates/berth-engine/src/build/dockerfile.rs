//! The Dockerfile as the builder uses it: parsed by `parse-dockerfile` (directives,
//! heredocs, spans), turned into owned instructions with Docker's argument rules
//! (`ENV`/`LABEL` name-value pairs in both syntaxes, `ARG` defaults, flags), and each
//! instruction's text as Docker prints it in `Step N/M : ...` (continuation lines
//! joined). Words are not expanded here: that needs the build's variables.

use parse_dockerfile as pd;

/// A Dockerfile that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("dockerfile parse error: {0}")]
    Syntax(String),
    #[error("dockerfile parse error line {line}: {message}")]
    Instruction { line: usize, message: String },
    #[error("the Dockerfile (or its stdin) is empty")]
    Empty,
}

/// A command in exec (JSON) or shell form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CmdForm {
    Exec(Vec<String>),
    Shell(String),
}

/// A source of COPY/ADD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Path(String),
    /// An inline file: its name (the heredoc's delimiter), content, expanded or not.
    Inline {
        name: String,
        content: String,
        expand: bool,
    },
}

/// COPY and ADD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopySpec {
    pub add: bool,
    pub srcs: Vec<Source>,
    pub dest: String,
    pub from: Option<String>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
}

/// HEALTHCHECK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// None: `HEALTHCHECK NONE`.
    pub cmd: Option<CmdForm>,
    pub flags: Vec<(String, String)>,
}

/// One instruction, arguments as written (unexpanded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    From {
        image: String,
        name: Option<String>,
        platform: Option<String>,
    },
    Run {
        cmd: CmdForm,
        /// A heredoc that is the whole command: run as a script.
        script: Option<String>,
        flags: Vec<(String, String)>,
    },
    Cmd(CmdForm),
    Entrypoint(CmdForm),
    Env(Vec<(String, String)>),
    Label(Vec<(String, String)>),
    Arg(Vec<(String, Option<String>)>),
    Expose(Vec<String>),
    Volume(Vec<String>),
    /// JSON form: the paths are taken literally (still expanded).
    User(String),
    Workdir(String),
    Stopsignal(String),
    Shell(Vec<String>),
    Maintainer(String),
    /// The trigger as written after ONBUILD.
    Onbuild(String),
    Healthcheck(Health),
    Copy(CopySpec),
}

/// An instruction with what Docker prints for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    pub kind: Kind,
    /// The logical line, as `Step N/M : <original>` shows it.
    pub original: String,
    /// 1-based line of the keyword.
    pub line: usize,
}

/// A build stage: its FROM and what follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    pub from: Instruction,
    pub name: Option<String>,
    pub instructions: Vec<Instruction>,
}

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    pub escape: char,
    /// ARGs before the first FROM.
    pub meta_args: Vec<Instruction>,
    pub stages: Vec<Stage>,
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Docker's logical line: continuation lines joined (escape and newline dropped,
/// comment and empty lines inside skipped), the first line's leading blanks gone.
pub fn join_continuations(raw: &str, escape: char) -> String {
    let mut out = String::new();
    let mut first = true;
    for line in raw.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if !first {
            let t = line.trim_start();
            if t.starts_with('#') || t.is_empty() {
                continue;
            }
        }
        let trimmed = line.trim_end();
        let (body, cont) = match trimmed.strip_suffix(escape) {
            Some(b) => (b, true),
            None => (line, false),
        };
        if first {
            out.push_str(body.trim_start());
        } else {
            out.push_str(body);
        }
        first = false;
        if !cont {
            break;
        }
    }
    out.trim_end().to_string()
}

/// The logical line starting at `offset`.
fn original_at(text: &str, offset: usize, escape: char) -> String {
    join_continuations(&text[offset.min(text.len())..], escape)
}

fn unq(s: &pd::UnescapedString<'_>) -> String {
    s.value.to_string()
}

fn flags(f: &[pd::Flag<'_>]) -> Vec<(String, String)> {
    f.iter()
        .map(|f| {
            (
                f.name.value.to_string(),
                f.value.as_ref().map(unq).unwrap_or_default(),
            )
        })
        .collect()
}

fn cmd(c: &pd::Command<'_>, escape: char) -> CmdForm {
    match c {
        pd::Command::Exec(v) => CmdForm::Exec(v.value.iter().map(unq).collect()),
        pd::Command::Shell(s) => CmdForm::Shell(join_all(s.value, escape)),
        _ => CmdForm::Shell(String::new()),
    }
}

/// A shell-form command: every continuation joined (a command keeps its comment
/// lines out, as Docker's parser drops them).
fn join_all(raw: &str, escape: char) -> String {
    let mut out = String::new();
    let lines: Vec<&str> = raw.split('\n').collect();
    for (i, line) in lines.iter().enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if i > 0 {
            let t = line.trim_start();
            if t.starts_with('#') || t.is_empty() {
                continue;
            }
        }
        let trimmed = line.trim_end();
        match trimmed.strip_suffix(escape) {
            Some(b) => out.push_str(b),
            None => out.push_str(line),
        }
    }
    out.trim().to_string()
}

/// Splits `ENV`/`LABEL` arguments into words as Docker's parser does: on blanks
/// outside quotes, quotes and escapes kept for the expansion step.
fn split_words(s: &str, escape: char) -> Vec<String> {
    let mut words = vec![];
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if quote.is_none() && c.is_whitespace() {
            if !cur.is_empty() {
                words.push(std::mem::take(&mut cur));
            }
            continue;
        }
        if c == escape {
            cur.push(c);
            if let Some(n) = chars.next() {
                cur.push(n);
            }
            continue;
        }
        match quote {
            Some(q) if c == q => quote = None,
            None if c == '"' || c == '\'' => quote = Some(c),
            _ => {}
        }
        cur.push(c);
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
}

/// `ENV`/`LABEL`: `k=v k2=v2`, or the old `k v with spaces`.
fn name_values(
    raw: &str,
    escape: char,
    what: &str,
    line: usize,
) -> Result<Vec<(String, String)>, ParseError> {
    let words = split_words(raw, escape);
    let Some(first) = words.first() else {
        return Err(ParseError::Instruction {
            line,
            message: format!("{what} requires at least one argument"),
        });
    };
    if !first.contains('=') {
        let value = raw.trim_start()[first.len()..].trim().to_string();
        if value.is_empty() && what == "ENV" {
            return Err(ParseError::Instruction {
                line,
                message: "ENV must have two arguments".to_string(),
            });
        }
        return Ok(vec![(first.clone(), value)]);
    }
    let mut out = vec![];
    for w in words {
        let Some((k, v)) = w.split_once('=') else {
            return Err(ParseError::Instruction {
                line,
                message: format!(
                    "Syntax error - can't find = in {w:?}. Must be of the form: name=value"
                ),
            });
        };
        if k.is_empty() {
            return Err(ParseError::Instruction {
                line,
                message: format!("{what} names can not be blank"),
            });
        }
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

/// The name a heredoc source takes: its delimiter, found before its body.
fn heredoc_name(text: &str, body_start: usize) -> String {
    let before = &text[..body_start.min(text.len())];
    let Some(i) = before.rfind("<<") else {
        return "heredoc".to_string();
    };
    before[i + 2..]
        .trim_start_matches('-')
        .chars()
        .take_while(|c| !c.is_whitespace())
        .filter(|c| *c != '"' && *c != '\'')
        .collect()
}

fn convert(
    text: &str,
    i: &pd::Instruction<'_>,
    escape: char,
    offset: usize,
) -> Result<Kind, ParseError> {
    let line = line_of(text, offset);
    Ok(match i {
        pd::Instruction::From(f) => {
            let fl = flags(&f.options);
            Kind::From {
                image: unq(&f.image),
                name: f.as_.as_ref().map(|(_, n)| n.value.to_string()),
                platform: fl
                    .into_iter()
                    .find(|(k, _)| k == "platform")
                    .map(|(_, v)| v),
            }
        }
        pd::Instruction::Run(r) => {
            let c = cmd(&r.arguments, escape);
            let mut script = None;
            let mut c2 = c.clone();
            if let Some(h) = r.here_docs.first() {
                // What follows RUN on its line: only the marker (`<<EOF`) makes the
                // heredoc the script; anything else goes to the shell as written.
                let after = r.run.span.end.min(text.len());
                let first_line = text[after..].lines().next().unwrap_or("").trim();
                let marker = first_line
                    .strip_prefix("<<")
                    .map(|m| m.trim_start_matches('-'))
                    .is_some_and(|m| {
                        let m = m.trim_matches(|c| c == '"' || c == '\'');
                        !m.is_empty() && m.chars().all(|c| c.is_alphanumeric() || c == '_')
                    });
                if marker && r.here_docs.len() == 1 {
                    script = Some(h.value.to_string());
                } else {
                    let end = r
                        .here_docs
                        .iter()
                        .map(|h| h.span.end)
                        .max()
                        .unwrap_or(after);
                    let mut whole = text[after..end.min(text.len()).max(after)]
                        .trim_start()
                        .to_string();
                    // The closing delimiter of the last heredoc ends the command.
                    if let Some(l) = text[end.min(text.len())..].lines().next() {
                        whole.push_str(l);
                    }
                    c2 = CmdForm::Shell(whole);
                }
            }
            Kind::Run {
                cmd: c2,
                script,
                flags: flags(&r.options),
            }
        }
        pd::Instruction::Cmd(c) => Kind::Cmd(cmd(&c.arguments, escape)),
        pd::Instruction::Entrypoint(c) => Kind::Entrypoint(cmd(&c.arguments, escape)),
        pd::Instruction::Env(e) => Kind::Env(name_values(
            &join_all(&e.arguments.value, escape),
            escape,
            "ENV",
            line,
        )?),
        pd::Instruction::Label(l) => Kind::Label(name_values(
            &join_all(&l.arguments.value, escape),
            escape,
            "LABEL",
            line,
        )?),
        pd::Instruction::Arg(a) => {
            let words = split_words(&a.arguments.value, escape);
            Kind::Arg(
                words
                    .into_iter()
                    .map(|w| match w.split_once('=') {
                        Some((k, v)) => (k.to_string(), Some(v.to_string())),
                        None => (w, None),
                    })
                    .collect(),
            )
        }
        pd::Instruction::Expose(e) => Kind::Expose(e.arguments.iter().map(unq).collect()),
        pd::Instruction::Volume(v) => Kind::Volume(match &v.arguments {
            pd::JsonOrStringArray::Json(j) => j.value.iter().map(unq).collect(),
            pd::JsonOrStringArray::String(s) => s.iter().map(unq).collect(),
        }),
        pd::Instruction::User(u) => Kind::User(unq(&u.arguments)),
        pd::Instruction::Workdir(w) => Kind::Workdir(unq(&w.arguments)),
        pd::Instruction::Stopsignal(s) => Kind::Stopsignal(unq(&s.arguments)),
        pd::Instruction::Shell(s) => Kind::Shell(s.arguments.iter().map(unq).collect()),
        pd::Instruction::Maintainer(m) => Kind::Maintainer(unq(&m.name)),
        pd::Instruction::Onbuild(o) => {
            let after = original_at(text, offset, escape);
            let trigger = after
                .split_once(char::is_whitespace)
                .map(|(_, t)| t.trim().to_string())
                .unwrap_or_default();
            if matches!(
                *o.instruction,
                pd::Instruction::From(_) | pd::Instruction::Onbuild(_)
            ) {
                return Err(ParseError::Instruction {
                    line,
                    message: "ONBUILD cannot trigger FROM or ONBUILD".to_string(),
                });
            }
            Kind::Onbuild(trigger)
        }
        pd::Instruction::Healthcheck(h) => Kind::Healthcheck(Health {
            cmd: match &h.arguments {
                pd::HealthcheckArguments::Cmd { arguments, .. } => Some(cmd(arguments, escape)),
                _ => None,
            },
            flags: flags(&h.options),
        }),
        pd::Instruction::Copy(c) => Kind::Copy(copy_spec(text, false, &c.options, &c.src, &c.dest)),
        pd::Instruction::Add(a) => Kind::Copy(copy_spec(text, true, &a.options, &a.src, &a.dest)),
        _ => {
            return Err(ParseError::Instruction {
                line,
                message: "unknown instruction".to_string(),
            })
        }
    })
}

fn copy_spec(
    text: &str,
    add: bool,
    options: &[pd::Flag<'_>],
    src: &[pd::Source<'_>],
    dest: &pd::UnescapedString<'_>,
) -> CopySpec {
    let fl = flags(options);
    let get = |k: &str| fl.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    CopySpec {
        add,
        srcs: src
            .iter()
            .map(|s| match s {
                pd::Source::Path(p) => Source::Path(unq(p)),
                pd::Source::HereDoc(h) => Source::Inline {
                    name: heredoc_name(text, h.span.start),
                    content: h.value.to_string(),
                    expand: h.expand,
                },
                _ => Source::Path(String::new()),
            })
            .collect(),
        dest: unq(dest),
        from: get("from"),
        chown: get("chown"),
        chmod: get("chmod"),
    }
}

fn keyword_start(i: &pd::Instruction<'_>) -> usize {
    match i {
        pd::Instruction::Add(x) => x.add.span.start,
        pd::Instruction::Arg(x) => x.arg.span.start,
        pd::Instruction::Cmd(x) => x.cmd.span.start,
        pd::Instruction::Copy(x) => x.copy.span.start,
        pd::Instruction::Entrypoint(x) => x.entrypoint.span.start,
        pd::Instruction::Env(x) => x.env.span.start,
        pd::Instruction::Expose(x) => x.expose.span.start,
        pd::Instruction::From(x) => x.from.span.start,
        pd::Instruction::Healthcheck(x) => x.healthcheck.span.start,
        pd::Instruction::Label(x) => x.label.span.start,
        pd::Instruction::Maintainer(x) => x.maintainer.span.start,
        pd::Instruction::Onbuild(x) => x.onbuild.span.start,
        pd::Instruction::Run(x) => x.run.span.start,
        pd::Instruction::Shell(x) => x.shell.span.start,
        pd::Instruction::Stopsignal(x) => x.stopsignal.span.start,
        pd::Instruction::User(x) => x.user.span.start,
        pd::Instruction::Volume(x) => x.volume.span.start,
        pd::Instruction::Workdir(x) => x.workdir.span.start,
        _ => 0,
    }
}

/// Parses a Dockerfile.
pub fn parse(text: &str) -> Result<Dockerfile, ParseError> {
    if text.trim().is_empty() {
        return Err(ParseError::Empty);
    }
    let d = pd::parse(text).map_err(|e| ParseError::Syntax(e.to_string()))?;
    let escape = d
        .parser_directives
        .escape
        .as_ref()
        .map(|e| e.value.value)
        .unwrap_or('\\');
    let mut meta_args = vec![];
    let mut stages: Vec<Stage> = vec![];
    for i in &d.instructions {
        let offset = keyword_start(i);
        let ins = Instruction {
            kind: convert(text, i, escape, offset)?,
            original: original_at(text, offset, escape),
            line: line_of(text, offset),
        };
        match (&ins.kind, stages.last_mut()) {
            (Kind::From { name, .. }, _) => stages.push(Stage {
                name: name.clone(),
                from: ins,
                instructions: vec![],
            }),
            (_, Some(stage)) => stage.instructions.push(ins),
            (Kind::Arg(_), None) => meta_args.push(ins),
            (_, None) => {
                return Err(ParseError::Instruction {
                    line: ins.line,
                    message: "no build stage in current context".to_string(),
                })
            }
        }
    }
    if stages.is_empty() {
        return Err(ParseError::Syntax(
            "no build stage in current context".into(),
        ));
    }
    Ok(Dockerfile {
        escape,
        meta_args,
        stages,
    })
}

/// Parses one ONBUILD trigger (or any single instruction) as it is stored in an
/// image's config.
pub fn parse_trigger(trigger: &str) -> Result<Instruction, ParseError> {
    let text = format!("FROM scratch\n{trigger}\n");
    let d = parse(&text)?;
    d.stages
        .into_iter()
        .next()
        .and_then(|s| s.instructions.into_iter().next())
        .ok_or_else(|| ParseError::Syntax(format!("empty ONBUILD trigger {trigger:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_and_instructions() {
        let d = parse(
            "ARG V=1\nFROM busybox:${V} AS b\nRUN echo a \\\n   b \\\n# c\n  c\nENV A=\"x y\" B=2\nENV C d e\nLABEL \"k\"=v\nFROM scratch\nCOPY --from=b --chown=1:1 a b /c/\nONBUILD RUN echo x\n",
        )
        .unwrap();
        assert_eq!(d.meta_args.len(), 1);
        assert_eq!(d.stages.len(), 2);
        assert_eq!(d.stages[0].name.as_deref(), Some("b"));
        let ins = &d.stages[0].instructions;
        assert_eq!(
            ins[0].kind,
            Kind::Run {
                cmd: CmdForm::Shell("echo a    b   c".into()),
                script: None,
                flags: vec![]
            }
        );
        assert_eq!(ins[0].original, "RUN echo a    b   c");
        assert_eq!(
            ins[1].kind,
            Kind::Env(vec![
                ("A".into(), "\"x y\"".into()),
                ("B".into(), "2".into())
            ])
        );
        assert_eq!(ins[2].kind, Kind::Env(vec![("C".into(), "d e".into())]));
        assert_eq!(ins[3].kind, Kind::Label(vec![("\"k\"".into(), "v".into())]));
        let Kind::Copy(c) = &d.stages[1].instructions[0].kind else {
            panic!()
        };
        assert_eq!(c.from.as_deref(), Some("b"));
        assert_eq!(c.chown.as_deref(), Some("1:1"));
        assert_eq!(c.dest, "/c/");
        assert_eq!(
            d.stages[1].instructions[1].kind,
            Kind::Onbuild("RUN echo x".into())
        );
    }

    #[test]
    fn heredocs() {
        let d = parse(
            "FROM a\nRUN <<EOF\necho hi\nEOF\nRUN <<'EOT' | sh\necho x\nEOT\nCOPY <<F /g\nhello\nF\n",
        )
        .unwrap();
        let ins = &d.stages[0].instructions;
        assert!(matches!(&ins[0].kind, Kind::Run { script: Some(s), .. } if s == "echo hi\n"));
        assert!(
            matches!(&ins[1].kind, Kind::Run { cmd: CmdForm::Shell(s), script: None, .. } if s == "<<'EOT' | sh\necho x\nEOT"),
            "{:?}",
            ins[1].kind
        );
        let Kind::Copy(c) = &ins[2].kind else {
            panic!()
        };
        assert_eq!(
            c.srcs,
            vec![Source::Inline {
                name: "F".into(),
                content: "hello\n".into(),
                expand: true
            }]
        );
    }

    #[test]
    fn errors_and_escape() {
        assert!(parse("").is_err());
        assert!(parse("RUN x").is_err());
        assert!(parse("FROM a\nBOGUS x").is_err());
        let d = parse("# escape=`\nFROM a\nRUN echo a `\n b\n").unwrap();
        assert_eq!(d.escape, '`');
        assert!(
            matches!(&d.stages[0].instructions[0].kind, Kind::Run { cmd: CmdForm::Shell(s), .. } if s == "echo a  b")
        );
        let t = parse_trigger("RUN echo hi").unwrap();
        assert_eq!(t.original, "RUN echo hi");
    }
}
