//! Go text/template's parser: actions, pipelines, `if`/`else if`/`else`, `range`
//! (with `$i, $e :=`, `else`, `break`, `continue`), `with`/`else with`, `define`,
//! `template`, `block`, variables, parenthesized pipelines and field chains.
//! Functions and variables are checked as Go checks them, at parse time.

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use super::lex::{lex, Number, Tok, Token};
use super::Error;

#[derive(Debug, Clone)]
pub enum Node {
    Text(String),
    Action(Pipe),
    If(Branch),
    With(Branch),
    Range(Branch),
    Template {
        name: String,
        pipe: Option<Pipe>,
        line: usize,
    },
    Break,
    Continue,
}

#[derive(Debug, Clone)]
pub struct Branch {
    pub pipe: Pipe,
    pub list: Vec<Node>,
    pub else_list: Option<Vec<Node>>,
}

#[derive(Debug, Clone)]
pub struct Pipe {
    pub line: usize,
    pub decl: Vec<String>,
    pub is_assign: bool,
    pub cmds: Vec<Cmd>,
}

#[derive(Debug, Clone)]
pub struct Cmd {
    pub args: Vec<Arg>,
}

#[derive(Debug, Clone)]
pub enum Arg {
    /// `.A.B`
    Field(Vec<String>),
    /// `$x.A.B` (`$x` alone has no fields).
    Variable(String, Vec<String>),
    /// `(pipeline).A.B`
    Chain(Box<Arg>, Vec<String>),
    Dot,
    Nil,
    Bool(bool),
    Number(Number),
    Str(String),
    /// A function name.
    Ident(String),
    Pipe(Box<Pipe>),
}

impl fmt::Display for Arg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Arg::Field(ids) => {
                for id in ids {
                    write!(f, ".{id}")?;
                }
                Ok(())
            }
            Arg::Variable(v, ids) => {
                write!(f, "{v}")?;
                for id in ids {
                    write!(f, ".{id}")?;
                }
                Ok(())
            }
            Arg::Chain(a, ids) => {
                write!(f, "{a}")?;
                for id in ids {
                    write!(f, ".{id}")?;
                }
                Ok(())
            }
            Arg::Dot => write!(f, "."),
            Arg::Nil => write!(f, "nil"),
            Arg::Bool(b) => write!(f, "{b}"),
            Arg::Number(Number::Int(i)) => write!(f, "{i}"),
            Arg::Number(Number::Float(x)) => write!(f, "{x}"),
            Arg::Str(s) => write!(f, "{s:?}"),
            Arg::Ident(i) => write!(f, "{i}"),
            Arg::Pipe(p) => write!(f, "({p})"),
        }
    }
}

impl fmt::Display for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.args.iter().map(ToString::to_string).collect();
        write!(f, "{}", parts.join(" "))
    }
}

impl fmt::Display for Pipe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.decl.is_empty() {
            write!(
                f,
                "{} {} ",
                self.decl.join(", "),
                if self.is_assign { "=" } else { ":=" }
            )?;
        }
        let parts: Vec<String> = self.cmds.iter().map(ToString::to_string).collect();
        write!(f, "{}", parts.join(" | "))
    }
}

/// A parsed template: the main list and the `define`d ones.
#[derive(Debug, Clone, Default)]
pub struct Tree {
    pub root: Vec<Node>,
    pub defines: HashMap<String, Vec<Node>>,
}

/// How an item list ended.
enum Stop {
    Eof,
    End,
    Else,
}

struct Parser<'a> {
    toks: Vec<Token>,
    pos: usize,
    funcs: &'a dyn Fn(&str) -> bool,
    vars: Vec<String>,
    range_depth: usize,
    defines: HashMap<String, Vec<Node>>,
}

/// Parses `src`; `is_func` says which identifiers are functions.
pub fn parse(src: &str, is_func: &dyn Fn(&str) -> bool) -> Result<Tree, Error> {
    let mut p = Parser {
        toks: lex(src)?,
        pos: 0,
        funcs: is_func,
        vars: vec!["$".to_string()],
        range_depth: 0,
        defines: HashMap::new(),
    };
    let mut root = Vec::new();
    loop {
        // `define` is only allowed at the top level.
        if p.peek_is(&Tok::Left) && p.peek_keyword_after_left() == Some("define") {
            p.next();
            p.next_non_space();
            p.parse_define()?;
            continue;
        }
        let (list, end) = p.item_list()?;
        root.extend(list);
        match end {
            Stop::Eof => break,
            Stop::End => return Err(p.err("unexpected {{end}}")),
            Stop::Else => return Err(p.err("unexpected {{else}}")),
        }
    }
    Ok(Tree {
        root,
        defines: p.defines,
    })
}

impl Parser<'_> {
    fn line(&self) -> usize {
        self.toks
            .get(self.pos.min(self.toks.len().saturating_sub(1)))
            .map_or(1, |t| t.line)
    }

    fn err(&self, msg: &str) -> Error {
        Error::parse(self.line(), msg)
    }

    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|t| &t.tok)
    }

    fn peek_is(&self, t: &Tok) -> bool {
        self.peek() == Some(t)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).map(|t| t.tok.clone());
        self.pos += 1;
        t
    }

    fn skip_space(&mut self) {
        while self.peek_is(&Tok::Space) {
            self.pos += 1;
        }
    }

    fn peek_non_space(&mut self) -> Option<&Tok> {
        self.skip_space();
        self.peek()
    }

    fn next_non_space(&mut self) -> Option<Tok> {
        self.skip_space();
        self.next()
    }

    /// The keyword right after a `{{` at the current position, if any.
    fn peek_keyword_after_left(&self) -> Option<&'static str> {
        let mut i = self.pos + 1;
        while matches!(self.toks.get(i).map(|t| &t.tok), Some(Tok::Space)) {
            i += 1;
        }
        match self.toks.get(i).map(|t| &t.tok) {
            Some(Tok::Keyword(k)) => Some(k),
            _ => None,
        }
    }

    fn expect_right(&mut self, context: &str) -> Result<(), Error> {
        match self.next_non_space() {
            Some(Tok::Right) => Ok(()),
            Some(t) => Err(self.err(&format!("unexpected {t} in {context}"))),
            None => Err(self.err(&format!("unclosed action in {context}"))),
        }
    }

    fn item_list(&mut self) -> Result<(Vec<Node>, Stop), Error> {
        let mut list = Vec::new();
        loop {
            match self.next() {
                None => return Ok((list, Stop::Eof)),
                Some(Tok::Text(t)) => list.push(Node::Text(t)),
                Some(Tok::Left) => {
                    let kw = match self.peek_non_space() {
                        Some(Tok::Keyword(k)) => Some(*k),
                        _ => None,
                    };
                    match kw {
                        Some("end") => {
                            self.next();
                            self.expect_right("end")?;
                            return Ok((list, Stop::End));
                        }
                        Some("else") => {
                            self.next();
                            // `else if` / `else with` leave the keyword for the caller.
                            match self.peek_non_space() {
                                Some(Tok::Keyword("if" | "with")) => {}
                                _ => self.expect_right("else")?,
                            }
                            return Ok((list, Stop::Else));
                        }
                        Some("define") => {
                            return Err(self.err("unexpected <define> in command"));
                        }
                        _ => list.push(self.action()?),
                    }
                }
                Some(t) => return Err(self.err(&format!("unexpected {t}"))),
            }
        }
    }

    fn action(&mut self) -> Result<Node, Error> {
        if let Some(Tok::Keyword(k)) = self.peek_non_space() {
            let k = *k;
            self.next();
            return match k {
                "if" => self.control("if").map(Node::If),
                "with" => self.control("with").map(Node::With),
                "range" => self.control("range").map(Node::Range),
                "block" => self.parse_block(),
                "template" => self.parse_template(),
                "break" | "continue" => {
                    if self.range_depth == 0 {
                        return Err(self.err(&format!("{{{{{k}}}}} outside {{{{range}}}}")));
                    }
                    self.expect_right(k)?;
                    Ok(if k == "break" {
                        Node::Break
                    } else {
                        Node::Continue
                    })
                }
                other => Err(self.err(&format!("unexpected <{other}> in command"))),
            };
        }
        let line = self.line();
        let pipe = self.pipeline("command", &Tok::Right, line)?;
        Ok(Node::Action(pipe))
    }

    fn control(&mut self, context: &str) -> Result<Branch, Error> {
        let vars = self.vars.len();
        let line = self.line();
        let pipe = self.pipeline(context, &Tok::Right, line)?;
        if pipe.cmds.is_empty() {
            return Err(self.err(&format!("missing value for {context}")));
        }
        if context == "range" {
            self.range_depth += 1;
        }
        let (list, end) = self.item_list()?;
        if context == "range" {
            self.range_depth -= 1;
        }
        let else_list = match end {
            Stop::Eof => return Err(self.err(&format!("unexpected EOF in {context}"))),
            Stop::End => None,
            Stop::Else => {
                let chained = match self.peek_non_space() {
                    Some(Tok::Keyword("if")) if context == "if" => Some("if"),
                    Some(Tok::Keyword("with")) if context == "with" => Some("with"),
                    _ => None,
                };
                match chained {
                    Some(k) => {
                        self.next();
                        // {{else if b}} is {{else}}{{if b}}..{{end}}{{end}}: the inner
                        // control consumes the one {{end}}.
                        let b = self.control(k)?;
                        Some(vec![if k == "if" {
                            Node::If(b)
                        } else {
                            Node::With(b)
                        }])
                    }
                    None => {
                        let (l, end) = self.item_list()?;
                        if !matches!(end, Stop::End) {
                            return Err(self.err("expected end; found else or EOF"));
                        }
                        Some(l)
                    }
                }
            }
        };
        self.vars.truncate(vars);
        Ok(Branch {
            pipe,
            list,
            else_list,
        })
    }

    fn string_arg(&mut self, context: &str) -> Result<String, Error> {
        match self.next_non_space() {
            Some(Tok::Str(s)) => Ok(s),
            _ => Err(self.err(&format!("expected string constant in {context}"))),
        }
    }

    fn parse_template(&mut self) -> Result<Node, Error> {
        let line = self.line();
        let name = self.string_arg("template clause")?;
        let pipe = if matches!(self.peek_non_space(), Some(Tok::Right)) {
            self.next();
            None
        } else {
            Some(self.pipeline("template clause", &Tok::Right, line)?)
        };
        Ok(Node::Template { name, pipe, line })
    }

    fn parse_block(&mut self) -> Result<Node, Error> {
        let line = self.line();
        let name = self.string_arg("block clause")?;
        let pipe = self.pipeline("block clause", &Tok::Right, line)?;
        let saved = std::mem::replace(&mut self.vars, vec!["$".to_string()]);
        let (list, end) = self.item_list()?;
        self.vars = saved;
        if !matches!(end, Stop::End) {
            return Err(self.err("unexpected EOF in block clause"));
        }
        self.defines.insert(name.clone(), list);
        Ok(Node::Template {
            name,
            pipe: Some(pipe),
            line,
        })
    }

    fn parse_define(&mut self) -> Result<(), Error> {
        let name = self.string_arg("define clause")?;
        self.expect_right("define clause")?;
        let saved = std::mem::replace(&mut self.vars, vec!["$".to_string()]);
        let (list, end) = self.item_list()?;
        self.vars = saved;
        if !matches!(end, Stop::End) {
            return Err(self.err("unexpected EOF in define clause"));
        }
        self.defines.insert(name, list);
        Ok(())
    }

    fn pipeline(&mut self, context: &str, end: &Tok, line: usize) -> Result<Pipe, Error> {
        let mut pipe = Pipe {
            line,
            decl: vec![],
            is_assign: false,
            cmds: vec![],
        };
        // Declarations: `$x :=`, `$x =`, `$i, $e :=` (range only).
        if let Some(Tok::Variable(v)) = self.peek_non_space().cloned() {
            let save = self.pos;
            self.next();
            match self.peek_non_space() {
                Some(Tok::Declare) | Some(Tok::Assign) => {
                    pipe.is_assign = self.peek_is(&Tok::Assign);
                    self.next();
                    if pipe.is_assign && !self.vars.contains(&v) {
                        return Err(self.err(&format!("undefined variable {v:?}")));
                    }
                    pipe.decl.push(v.clone());
                }
                Some(Tok::Comma) if context == "range" => {
                    self.next();
                    let Some(Tok::Variable(v2)) = self.next_non_space() else {
                        return Err(self.err("range can only initialize variables"));
                    };
                    match self.next_non_space() {
                        Some(Tok::Declare) => {}
                        Some(Tok::Assign) => pipe.is_assign = true,
                        _ => return Err(self.err("expected := after range variables")),
                    }
                    pipe.decl.push(v.clone());
                    pipe.decl.push(v2);
                }
                Some(Tok::Comma) => {
                    return Err(self.err(&format!("too many declarations in {context}")));
                }
                _ => self.pos = save,
            }
        }
        loop {
            match self.peek_non_space() {
                Some(t) if t == end => {
                    self.next();
                    break;
                }
                None => return Err(self.err(&format!("unclosed action in {context}"))),
                _ => pipe.cmds.push(self.command()?),
            }
        }
        if pipe.cmds.is_empty() {
            return Err(self.err(&format!("missing value for {context}")));
        }
        if !pipe.is_assign {
            for d in &pipe.decl {
                self.vars.push(d.clone());
            }
        }
        for (i, c) in pipe.cmds.iter().enumerate() {
            if i > 0 {
                if let Some(first) = c.args.first() {
                    if matches!(
                        first,
                        Arg::Bool(_) | Arg::Dot | Arg::Nil | Arg::Number(_) | Arg::Str(_)
                    ) {
                        return Err(self.err(&format!(
                            "non executable command in pipeline stage {}",
                            i + 1
                        )));
                    }
                }
            }
        }
        Ok(pipe)
    }

    fn command(&mut self) -> Result<Cmd, Error> {
        let mut cmd = Cmd { args: vec![] };
        loop {
            self.skip_space();
            if let Some(a) = self.operand()? {
                cmd.args.push(a);
            }
            match self.peek() {
                Some(Tok::Space) => {
                    self.next();
                    continue;
                }
                Some(Tok::Right) | Some(Tok::RParen) => {}
                Some(Tok::Pipe) => {
                    self.next();
                }
                Some(t) => {
                    let t = t.clone();
                    return Err(self.err(&format!("unexpected {t} in operand")));
                }
                None => return Err(self.err("unclosed action")),
            }
            break;
        }
        if cmd.args.is_empty() {
            return Err(self.err("empty command"));
        }
        Ok(cmd)
    }

    fn operand(&mut self) -> Result<Option<Arg>, Error> {
        let Some(term) = self.term()? else {
            return Ok(None);
        };
        let mut fields = vec![];
        while let Some(Tok::Field(f)) = self.peek() {
            fields.push(f.clone());
            self.next();
        }
        if fields.is_empty() {
            return Ok(Some(term));
        }
        Ok(Some(match term {
            Arg::Field(mut ids) => {
                ids.extend(fields);
                Arg::Field(ids)
            }
            Arg::Variable(v, mut ids) => {
                ids.extend(fields);
                Arg::Variable(v, ids)
            }
            Arg::Bool(_) | Arg::Str(_) | Arg::Number(_) | Arg::Nil | Arg::Dot => {
                return Err(self.err(&format!("unexpected . after term {term}")))
            }
            other => Arg::Chain(Box::new(other), fields),
        }))
    }

    fn term(&mut self) -> Result<Option<Arg>, Error> {
        let Some(t) = self.peek().cloned() else {
            return Ok(None);
        };
        let arg = match t {
            Tok::Ident(name) => {
                if !(self.funcs)(&name) {
                    return Err(self.err(&format!("function {name:?} not defined")));
                }
                Arg::Ident(name)
            }
            Tok::Dot => Arg::Dot,
            Tok::Nil => Arg::Nil,
            Tok::Variable(v) => {
                if !self.vars.contains(&v) {
                    return Err(self.err(&format!("undefined variable {v:?}")));
                }
                Arg::Variable(v, vec![])
            }
            Tok::Field(f) => Arg::Field(vec![f]),
            Tok::Bool(b) => Arg::Bool(b),
            Tok::Number(n) => Arg::Number(n),
            Tok::Str(s) => Arg::Str(s),
            Tok::LParen => {
                self.next();
                let line = self.line();
                let pipe = self.pipeline("parenthesized pipeline", &Tok::RParen, line)?;
                return Ok(Some(Arg::Pipe(Box::new(pipe))));
            }
            _ => return Ok(None),
        };
        self.next();
        Ok(Some(arg))
    }
}

/// The top-level fields a template reads from its data, or `None` when it may use the
/// data whole (`.` alone, `$` alone, `json .`, `template "t" .`). Over-counts on
/// purpose: a field read inside `with` or `range` is counted though it belongs to
/// another value, since a formatter that builds one field too many is only slower.
pub fn data_fields(tree: &Tree) -> Option<BTreeSet<String>> {
    let mut names = std::collections::BTreeSet::new();
    let lists = std::iter::once(&tree.root).chain(tree.defines.values());
    for list in lists {
        nodes_fields(list, &mut names)?;
    }
    Some(names)
}

fn nodes_fields(nodes: &[Node], names: &mut BTreeSet<String>) -> Option<()> {
    for n in nodes {
        match n {
            Node::Text(_) | Node::Break | Node::Continue => {}
            Node::Action(p) => pipe_fields(p, names)?,
            Node::If(b) | Node::With(b) | Node::Range(b) => {
                pipe_fields(&b.pipe, names)?;
                nodes_fields(&b.list, names)?;
                if let Some(e) = &b.else_list {
                    nodes_fields(e, names)?;
                }
            }
            Node::Template { pipe, .. } => {
                if let Some(p) = pipe {
                    pipe_fields(p, names)?;
                }
            }
        }
    }
    Some(())
}

fn pipe_fields(p: &Pipe, names: &mut BTreeSet<String>) -> Option<()> {
    for a in p.cmds.iter().flat_map(|c| &c.args) {
        arg_fields(a, names)?;
    }
    Some(())
}

fn arg_fields(a: &Arg, names: &mut BTreeSet<String>) -> Option<()> {
    match a {
        Arg::Dot => None,
        Arg::Field(ids) => {
            names.extend(ids.first().cloned());
            Some(())
        }
        // `$` is the data; any other variable got its value from a field or from `.`,
        // and both are counted where they were read.
        Arg::Variable(v, ids) if v == "$" => {
            names.insert(ids.first()?.clone());
            Some(())
        }
        Arg::Chain(inner, _) => arg_fields(inner, names),
        Arg::Pipe(p) => pipe_fields(p, names),
        Arg::Variable(..)
        | Arg::Nil
        | Arg::Bool(_)
        | Arg::Number(_)
        | Arg::Str(_)
        | Arg::Ident(_) => Some(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Tree, Error> {
        parse(s, &|f| matches!(f, "printf" | "len" | "eq" | "index"))
    }

    #[test]
    fn parses_controls() {
        assert!(p("{{if .A}}a{{else if .B}}b{{else}}c{{end}}").is_ok());
        assert!(p("{{range $i, $e := .L}}{{$i}}{{$e}}{{else}}none{{end}}").is_ok());
        assert!(p("{{with $x := .A}}{{$x}}{{end}}").is_ok());
        assert!(p("{{define \"t\"}}x{{end}}{{template \"t\" .}}").is_ok());
        assert!(p("{{(printf \"%s\" .A).B}}").is_ok());
        assert!(p("{{.A | printf \"%s\" | len}}").is_ok());
    }

    #[test]
    fn rejects_what_go_rejects() {
        assert!(p("{{nosuch .A}}").is_err());
        assert!(p("{{$x}}").is_err());
        assert!(p("{{if .A}}").is_err());
        assert!(p("{{end}}").is_err());
        assert!(p("{{break}}").is_err());
        assert!(p("{{with $x := .A}}{{end}}{{$x}}").is_err());
        assert!(p("{{.A | 3}}").is_err());
        assert!(p("{{}}").is_err());
    }
}
