//! Signal names and numbers as `kill` takes them: `TERM`, `SIGTERM`, `sigterm`, `15`.

use nix::sys::signal::Signal;

#[derive(Debug, thiserror::Error)]
#[error("unknown signal {0:?}")]
pub struct UnknownSignal(pub String);

/// Like [`parse`], but also takes `0` (no signal: only checks the target
/// exists), which `kill` accepts as runc does; 0 is None.
pub fn parse_or_zero(s: &str) -> Result<Option<Signal>, UnknownSignal> {
    if s.trim() == "0" {
        return Ok(None);
    }
    parse(s).map(Some)
}

/// Parse a signal given by name (with or without `SIG`, any case) or number.
pub fn parse(s: &str) -> Result<Signal, UnknownSignal> {
    let unknown = || UnknownSignal(s.to_string());
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| unknown());
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<Signal>().map_err(|_| unknown())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        assert_eq!(parse("TERM").unwrap(), Signal::SIGTERM);
        assert_eq!(parse("SIGKILL").unwrap(), Signal::SIGKILL);
        assert_eq!(parse("sighup").unwrap(), Signal::SIGHUP);
        assert_eq!(parse("9").unwrap(), Signal::SIGKILL);
        assert!(parse("NOPE").is_err());
        assert!(parse("99").is_err());
        assert!(parse("").is_err());
        assert_eq!(parse_or_zero("0").unwrap(), None);
        assert_eq!(parse_or_zero("KILL").unwrap(), Some(Signal::SIGKILL));
    }
}
