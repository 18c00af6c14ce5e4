//! `berth-runtime list [--format table|json] [-q]`, in runc's shapes.

use crate::cli::{Cli, ListArgs, OutputFormat};
use crate::Container;

pub fn run(cli: &Cli, args: &ListArgs) -> anyhow::Result<i32> {
    let states: Vec<_> = Container::list(&cli.root)?
        .iter()
        .map(Container::oci_state)
        .collect();
    if args.quiet {
        for s in &states {
            println!("{}", s.id);
        }
        return Ok(0);
    }
    match args.format {
        OutputFormat::Json => println!("{}", serde_json::to_string(&states)?),
        OutputFormat::Table => {
            let mut rows = vec![[
                "ID".to_string(),
                "PID".into(),
                "STATUS".into(),
                "BUNDLE".into(),
                "CREATED".into(),
                "OWNER".into(),
            ]];
            for s in &states {
                rows.push([
                    s.id.clone(),
                    s.pid.to_string(),
                    s.status.to_string(),
                    s.bundle.display().to_string(),
                    s.created.clone(),
                    s.owner.clone(),
                ]);
            }
            print!("{}", table(&rows));
        }
    }
    Ok(0)
}

/// Columns padded like Go's tabwriter with minwidth 12 and padding 3, as
/// runc's list uses it.
pub fn table<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0usize; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len() + 3).max(12);
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == N {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}", w = widths[i]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn table_pads_like_tabwriter() {
        let t = super::table(&[["ID".to_string(), "PID".into()], ["a".into(), "1".into()]]);
        assert_eq!(t, "ID          PID\na           1\n");
        let t = super::table(&[["a-long-container".to_string(), "1".into()]]);
        assert_eq!(t, "a-long-container   1\n");
    }
}
