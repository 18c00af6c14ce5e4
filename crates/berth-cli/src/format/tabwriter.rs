//! Go's text/tabwriter (elastic tabstops), as the docker CLI uses it for tables:
//! tab-terminated cells, column blocks of consecutive lines, each column as wide as
//! its widest cell plus padding and at least `minwidth`, widths in terminal columns.

use unicode_width::UnicodeWidthStr;

/// A tabwriter with space padding and no flags (docker's settings).
#[derive(Debug, Clone)]
pub struct TabWriter {
    minwidth: usize,
    padding: usize,
    buf: String,
}

impl TabWriter {
    /// `minwidth`: minimal cell width including padding; `padding`: added to a cell's
    /// width before it is compared with its column's.
    pub fn new(minwidth: usize, padding: usize) -> TabWriter {
        TabWriter {
            minwidth,
            padding,
            buf: String::new(),
        }
    }

    pub fn write(&mut self, s: &str) {
        self.buf.push_str(s);
    }

    /// Aligns everything written so far.
    pub fn flush(self) -> String {
        // Text after the last newline is a line without one.
        let trailing_newline = self.buf.ends_with('\n');
        let text = if trailing_newline {
            &self.buf[..self.buf.len() - 1]
        } else {
            &self.buf[..]
        };
        // Every line's cells in one list (a table has hundreds of lines), with each
        // cell's width measured once, as its length when the whole text is ASCII.
        // One pass over the bytes for both separators: splitting line by line, then
        // cell by cell, started a search per cell. (Not the memchr crate: its first
        // call asks the CPU for its features, and cpuid traps to the hypervisor in a
        // VM, which costs a short-lived process more than this loop saves.)
        let mut table = Table {
            cells: Vec::with_capacity(text.len() / 8),
            starts: Vec::with_capacity(text.len() / 64 + 2),
        };
        let ascii = text.is_ascii();
        let width = |c: &str| if ascii { c.len() } else { cell_width(c) };
        table.starts.push(0);
        let mut from = 0;
        for (at, &b) in text.as_bytes().iter().enumerate() {
            if b != b'\t' && b != b'\n' {
                continue;
            }
            let c = &text[from..at];
            table.cells.push((c, width(c)));
            if b == b'\n' {
                table.starts.push(table.cells.len());
            }
            from = at + 1;
        }
        let c = &text[from..];
        table.cells.push((c, width(c)));
        table.starts.push(table.cells.len());
        let mut out = String::with_capacity(self.buf.len() * 2);
        let mut widths = Vec::new();
        let lines = table.starts.len() - 1;
        self.format(&mut out, &table, &mut widths, 0, lines);
        if !trailing_newline && out.ends_with('\n') {
            out.pop();
        }
        out
    }

    fn format(
        &self,
        out: &mut String,
        table: &Table,
        widths: &mut Vec<usize>,
        line0: usize,
        line1: usize,
    ) {
        let column = widths.len();
        let mut start = line0;
        let mut this = line0;
        while this < line1 {
            if column + 1 >= table.line(this).len() {
                this += 1;
                continue;
            }
            // A column block begins here: write the lines before it.
            self.write_lines(out, table, widths, start, this);
            start = this;
            let mut width = self.minwidth;
            while this < line1 && column + 1 < table.line(this).len() {
                width = width.max(table.line(this)[column].1 + self.padding);
                this += 1;
            }
            widths.push(width);
            self.format(out, table, widths, start, this);
            widths.pop();
            start = this;
        }
        self.write_lines(out, table, widths, start, line1);
    }

    fn write_lines(
        &self,
        out: &mut String,
        table: &Table,
        widths: &[usize],
        line0: usize,
        line1: usize,
    ) {
        const SPACES: &str = "                                ";
        for i in line0..line1 {
            for (j, (cell, width)) in table.line(i).iter().enumerate() {
                out.push_str(cell);
                if let Some(w) = widths.get(j) {
                    let mut pad = w.saturating_sub(*width);
                    while pad > 0 {
                        let n = pad.min(SPACES.len());
                        out.push_str(&SPACES[..n]);
                        pad -= n;
                    }
                }
            }
            out.push('\n');
        }
    }
}

/// The lines of a table, cut into cells with their widths.
struct Table<'s> {
    cells: Vec<(&'s str, usize)>,
    /// Where each line's cells begin in `cells`, and one past the last line's end.
    starts: Vec<usize>,
}

impl<'s> Table<'s> {
    fn line(&self, i: usize) -> &[(&'s str, usize)] {
        &self.cells[self.starts[i]..self.starts[i + 1]]
    }
}

/// A cell's width in terminal columns; most cells are ASCII, one column a byte.
fn cell_width(cell: &str) -> usize {
    if cell.is_ascii() {
        cell.len()
    } else {
        cell.width()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tw(min: usize, pad: usize, s: &str) -> String {
        let mut t = TabWriter::new(min, pad);
        t.write(s);
        t.flush()
    }

    #[test]
    fn columns_and_min_width() {
        assert_eq!(
            tw(10, 3, "CONTAINER ID\tNAMES\nabc\tweb\n"),
            "CONTAINER ID   NAMES\nabc            web\n"
        );
        // Short columns are still minwidth wide; empty cells are padded too.
        assert_eq!(
            tw(10, 3, "ID\tX\tN\n1\t\tn\n"),
            "ID        X         N\n1                   n\n"
        );
    }

    #[test]
    fn blocks_end_at_lines_without_tabs() {
        assert_eq!(
            tw(1, 1, "a\tb\nlong\tc\nplain\nx\ty\n"),
            "a    b\nlong c\nplain\nx y\n"
        );
    }

    #[test]
    fn ascii_widths_are_the_unicode_ones() {
        let all: String = (0u8..128).map(char::from).collect();
        for i in 0..all.len() {
            assert_eq!(
                cell_width(&all[i..i + 1]),
                all[i..i + 1].width(),
                "byte {i}"
            );
        }
        // A cell never holds a newline (lines are split on it), the one ASCII
        // character unicode-width joins with another ("\r\n" is one column).
        let cell: String = all.chars().filter(|c| *c != '\n').collect();
        assert_eq!(cell_width(&cell), cell.width());
    }

    #[test]
    fn wide_characters_count_twice() {
        assert_eq!(tw(1, 1, "日本\tx\nab\ty\n"), "日本 x\nab   y\n");
    }

    #[test]
    fn version_style_nested_columns() {
        // Go: minwidth 20, padding 1 (docker version's writer).
        assert_eq!(
            tw(20, 1, "Client:\n Version:\t28\n API version:\t1.47\n"),
            "Client:\n Version:           28\n API version:       1.47\n"
        );
    }
}
