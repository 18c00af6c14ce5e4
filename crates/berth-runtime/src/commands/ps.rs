//! `berth-runtime ps [--format table|json] ID [ps options]`: ps(1) filtered to the
//! container's cgroup, as runc does it.

use anyhow::Context;

use crate::cli::{Cli, OutputFormat, PsArgs};
use crate::Container;

pub fn run(cli: &Cli, args: &PsArgs) -> anyhow::Result<i32> {
    let pids = Container::load(&cli.root, &args.id)?.pids()?;
    if args.format == OutputFormat::Json {
        println!("{}", serde_json::to_string(&pids)?);
        return Ok(0);
    }
    let ps_args: Vec<String> = if args.ps_args.is_empty() {
        vec!["-ef".into()]
    } else {
        args.ps_args.clone()
    };
    let out = std::process::Command::new("ps")
        .args(&ps_args)
        .output()
        .context("running ps")?;
    if !out.status.success() {
        anyhow::bail!(
            "ps {}: {}",
            ps_args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    print!("{}", filter(&String::from_utf8_lossy(&out.stdout), &pids)?);
    Ok(0)
}

/// Keep the header and the lines whose PID column is one of `pids`.
pub fn filter(ps_output: &str, pids: &[i32]) -> anyhow::Result<String> {
    let mut lines = ps_output.lines();
    let header = lines.next().unwrap_or_default();
    let col = header
        .split_whitespace()
        .position(|h| h == "PID")
        .context("ps output has no PID column (add pid to -o)")?;
    let mut out = format!("{header}\n");
    for line in lines {
        let pid = line
            .split_whitespace()
            .nth(col)
            .and_then(|p| p.parse::<i32>().ok());
        if pid.is_some_and(|p| pids.contains(&p)) {
            out.push_str(line);
            out.push('\n');
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn filters_on_pid_column() {
        let ps = "UID PID PPID CMD\nroot 1 0 init\nroot 42 1 sh\nroot 43 42 sleep\n";
        assert_eq!(
            super::filter(ps, &[42]).unwrap(),
            "UID PID PPID CMD\nroot 42 1 sh\n"
        );
        assert!(super::filter("A B\n1 2\n", &[1]).is_err());
    }
}
