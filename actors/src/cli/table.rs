//! Plain-text output of the operating commands: aligned tables and readable instants.

use super::terminal::{self, Layout};
use warren::task::Millis;

/// Prints `rows` under `headers`, each column as wide as its widest cell (the last
/// column is not padded). Cells are made printable on one line (see
/// [`terminal::printable`]): they may hold task-provided text.
pub fn print(headers: &[&str], rows: &[Vec<String>]) {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            row.iter()
                .map(|cell| terminal::printable(cell, Layout::Line))
                .collect()
        })
        .collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        println!("{}", out.trim_end());
    };
    line(headers.to_vec());
    for row in &rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// An instant as `2026-01-05 10:00:00Z` (UTC).
pub fn time(ms: Millis) -> String {
    warren::clock::to_datetime(ms)
        .format("%Y-%m-%d %H:%M:%SZ")
        .to_string()
}

/// An optional instant, `-` when there is none.
pub fn maybe_time(ms: Option<Millis>) -> String {
    ms.map_or_else(|| "-".to_string(), time)
}

/// The first line of `text`, cut to `max` characters (with `…` when cut).
pub fn short(text: &str, max: usize) -> String {
    let first = text.lines().next().unwrap_or("").trim();
    if first.chars().count() <= max && !text.trim().contains('\n') {
        return first.to_string();
    }
    let cut: String = first.chars().take(max.saturating_sub(1)).collect();
    format!("{cut}…")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_short_text() {
        assert_eq!(time(1_767_571_200_000), "2026-01-05 00:00:00Z");
        assert_eq!(maybe_time(None), "-");
        assert_eq!(short("abc", 5), "abc");
        assert_eq!(short("abcdefgh", 5), "abcd…");
        assert_eq!(short("ab\ncd", 5), "ab…");
    }
}
