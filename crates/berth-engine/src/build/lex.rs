//! Variable substitution in Dockerfile words, with the rules of Docker's shell-word
//! processing: `'...'` is literal, `"..."` expands `$` and lets the escape character
//! escape `"`, `$` and itself, the escape character outside quotes takes the next
//! character literally, and `$name`, `${name}`, `${name:-word}`, `${name-word}`,
//! `${name:+word}`, `${name+word}`, `${name:?word}` and `${name?word}` expand. Quotes
//! are removed. Unset variables expand to nothing.

use std::collections::HashMap;

/// A word that cannot be expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LexError {
    #[error(
        "failed to process {word:?}: unexpected end of statement while looking for matching {what}"
    )]
    Unterminated { word: String, what: &'static str },
    #[error("failed to process {word:?}: unsupported modifier ({modifier}) in substitution")]
    Modifier { word: String, modifier: char },
    #[error("failed to process {word:?}: {name}: {message}")]
    Required {
        word: String,
        name: String,
        message: String,
    },
    #[error("failed to process {word:?}: missing ':' in substitution")]
    MissingColon { word: String },
}

/// The variables a word sees.
pub type Env = HashMap<String, String>;

struct Scanner<'a> {
    chars: Vec<char>,
    pos: usize,
    escape: char,
    env: &'a Env,
    word: &'a str,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }
    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    /// Processes until `stop` (not consumed) or the end. Returns the text and, for
    /// word splitting, the words (split on unquoted whitespace).
    fn process(&mut self, stop: Option<char>) -> Result<(String, Vec<String>), LexError> {
        let mut out = String::new();
        let mut words: Vec<String> = vec![];
        let mut cur = String::new();
        let mut in_word = false;
        while let Some(c) = self.peek() {
            if Some(c) == stop {
                break;
            }
            if c == '\'' {
                self.next();
                let s = self.single_quoted()?;
                out.push_str(&s);
                cur.push_str(&s);
                in_word = true;
            } else if c == '"' {
                self.next();
                let s = self.double_quoted()?;
                out.push_str(&s);
                cur.push_str(&s);
                in_word = true;
            } else if c == '$' {
                self.next();
                let s = self.dollar()?;
                out.push_str(&s);
                // An unquoted expansion is split into words like the shell does.
                for (i, part) in s.split(char::is_whitespace).enumerate() {
                    if i > 0 && (in_word || !cur.is_empty()) {
                        words.push(std::mem::take(&mut cur));
                        in_word = false;
                    }
                    if !part.is_empty() {
                        cur.push_str(part);
                        in_word = true;
                    }
                }
            } else if c == self.escape {
                self.next();
                // An escape at the end is dropped.
                if let Some(n) = self.next() {
                    out.push(n);
                    cur.push(n);
                    in_word = true;
                }
            } else if c.is_whitespace() {
                self.next();
                out.push(c);
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            } else {
                self.next();
                out.push(c);
                cur.push(c);
                in_word = true;
            }
        }
        if in_word {
            words.push(cur);
        }
        Ok((out, words))
    }

    fn single_quoted(&mut self) -> Result<String, LexError> {
        let mut s = String::new();
        loop {
            match self.next() {
                None => {
                    return Err(LexError::Unterminated {
                        word: self.word.to_string(),
                        what: "'",
                    })
                }
                Some('\'') => return Ok(s),
                Some(c) => s.push(c),
            }
        }
    }

    fn double_quoted(&mut self) -> Result<String, LexError> {
        let mut s = String::new();
        loop {
            match self.peek() {
                None => {
                    return Err(LexError::Unterminated {
                        word: self.word.to_string(),
                        what: "\"",
                    })
                }
                Some('"') => {
                    self.next();
                    return Ok(s);
                }
                Some('$') => {
                    self.next();
                    s.push_str(&self.dollar()?);
                }
                Some(c) if c == self.escape => {
                    self.next();
                    match self.peek() {
                        None => {}
                        Some(n) if n == '"' || n == '$' || n == self.escape => {
                            self.next();
                            s.push(n);
                        }
                        Some(_) => s.push(c),
                    }
                }
                Some(c) => {
                    self.next();
                    s.push(c);
                }
            }
        }
    }

    fn name(&mut self) -> String {
        let mut n = String::new();
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() || c == '_' {
                n.push(c);
                self.next();
            } else {
                break;
            }
        }
        n
    }

    fn lookup(&self, name: &str) -> Option<String> {
        self.env.get(name).cloned()
    }

    fn dollar(&mut self) -> Result<String, LexError> {
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".to_string());
            }
            return Ok(self.lookup(&name).unwrap_or_default());
        }
        self.next();
        let name = self.name();
        let unterminated = || LexError::Unterminated {
            word: self.word.to_string(),
            what: "}",
        };
        match self.next() {
            None => Err(unterminated()),
            Some('}') => Ok(self.lookup(&name).unwrap_or_default()),
            Some(c) => {
                let colon = c == ':';
                let op = if colon {
                    self.next().ok_or_else(unterminated)?
                } else {
                    c
                };
                let (word, _) = self.process(Some('}'))?;
                if self.next() != Some('}') {
                    return Err(unterminated());
                }
                let value = self.lookup(&name);
                let set = match (&value, colon) {
                    (Some(v), true) => !v.is_empty(),
                    (Some(_), false) => true,
                    (None, _) => false,
                };
                match op {
                    '-' => Ok(if set { value.unwrap_or_default() } else { word }),
                    '+' => Ok(if set { word } else { String::new() }),
                    '?' => {
                        if set {
                            Ok(value.unwrap_or_default())
                        } else {
                            Err(LexError::Required {
                                word: self.word.to_string(),
                                name,
                                message: if word.is_empty() {
                                    "is not allowed to be unset".to_string()
                                } else {
                                    word
                                },
                            })
                        }
                    }
                    _ if !colon => Err(LexError::MissingColon {
                        word: self.word.to_string(),
                    }),
                    m => Err(LexError::Modifier {
                        word: self.word.to_string(),
                        modifier: m,
                    }),
                }
            }
        }
    }
}

/// Expands one word (quotes removed, not split).
pub fn process_word(word: &str, env: &Env, escape: char) -> Result<String, LexError> {
    let mut s = Scanner {
        chars: word.chars().collect(),
        pos: 0,
        escape,
        env,
        word,
    };
    Ok(s.process(None)?.0)
}

/// Expands and splits into words on unquoted whitespace (EXPOSE, VOLUME, ...).
pub fn process_words(word: &str, env: &Env, escape: char) -> Result<Vec<String>, LexError> {
    let mut s = Scanner {
        chars: word.chars().collect(),
        pos: 0,
        escape,
        env,
        word,
    };
    Ok(s.process(None)?.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Env {
        [("A", "1"), ("E", ""), ("S", "x y")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn substitutions() {
        let e = env();
        let p = |w: &str| process_word(w, &e, '\\').unwrap();
        assert_eq!(p("$A"), "1");
        assert_eq!(p("${A}b"), "1b");
        assert_eq!(p("$Ab"), "");
        assert_eq!(p("'$A'"), "$A");
        assert_eq!(p("\"$A\""), "1");
        assert_eq!(p("\\$A"), "$A");
        assert_eq!(p("${Z:-d}"), "d");
        assert_eq!(p("${E:-d}"), "d");
        assert_eq!(p("${E-d}"), "");
        assert_eq!(p("${A:+y}"), "y");
        assert_eq!(p("${Z:+y}"), "");
        assert_eq!(p("${Z:-${A}x}"), "1x");
        assert_eq!(p("a\\ b"), "a b");
        assert_eq!(p("\"a\\\"b\""), "a\"b");
        assert_eq!(p("\"a\\nb\""), "a\\nb");
        assert_eq!(p("$"), "$");
        assert!(process_word("${Z:?must}", &e, '\\').is_err());
        assert!(process_word("'open", &e, '\\').is_err());
        assert!(process_word("${A", &e, '\\').is_err());
        assert_eq!(process_word("`$A", &e, '`').unwrap(), "$A");
    }

    #[test]
    fn words() {
        let e = env();
        let w = |s: &str| process_words(s, &e, '\\').unwrap();
        assert_eq!(w("80 90/udp"), vec!["80", "90/udp"]);
        assert_eq!(w("\"a b\" c"), vec!["a b", "c"]);
        assert_eq!(w("$S z"), vec!["x", "y", "z"]);
        assert_eq!(w("  "), Vec::<String>::new());
    }
}
