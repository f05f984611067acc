//! Task-provided text made safe for a terminal. A task's error, stack, output or data
//! is whatever its code wrote: control characters in it (an escape sequence that clears
//! the screen, sets the window title or rewrites the line) must not reach the terminal
//! of the person reading `warren tasks show`.

/// Where text is printed, and so which layout characters it may keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// A table cell or a one-line message: no line breaks, no tabs.
    Line,
    /// A field printed on lines of its own (a stack, pretty JSON): line breaks and tabs
    /// are kept.
    Block,
}

/// `text` with every control character (C0, DEL and C1 — so every escape sequence,
/// whose introducer is one) written as a visible escape such as `\u{1b}`, except the
/// line breaks and tabs `layout` keeps. The rest of an escape sequence stays as plain
/// text, so the reader sees what the task wrote without the terminal acting on it.
pub fn printable(text: &str, layout: Layout) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let keep = layout == Layout::Block && matches!(c, '\n' | '\t');
        if c.is_control() && !keep {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// `value` as pretty JSON a terminal shows as text: the same JSON value, with DEL and
/// the C1 controls (which JSON allows unescaped) written as `\u` escapes; JSON already
/// escapes the C0 controls.
pub fn json(value: &impl serde::Serialize) -> Result<String, serde_json::Error> {
    Ok(escape_json_controls(&serde_json::to_string_pretty(value)?))
}

/// `value` as compact JSON, made safe as [`json`] does.
pub fn compact_json(value: &impl serde::Serialize) -> Result<String, serde_json::Error> {
    Ok(escape_json_controls(&serde_json::to_string(value)?))
}

/// Serialized JSON with DEL and C1 characters escaped. They can only occur inside
/// strings, where `\u00XX` stands for the same character (the line breaks of pretty
/// JSON lie between values and stay).
fn escape_json_controls(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if matches!(c, '\u{7f}'..='\u{9f}') {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        let hostile = "\x1b[2J\x1b]0;owned\x07ok\r\u{9b}31m\x7f\x00";
        let line = printable(hostile, Layout::Line);
        assert_eq!(
            line,
            "\\u{1b}[2J\\u{1b}]0;owned\\u{7}ok\\r\\u{9b}31m\\u{7f}\\u{0}"
        );
        assert!(!line.chars().any(char::is_control), "{line:?}");
        assert_eq!(
            printable("plain text é 漢", Layout::Line),
            "plain text é 漢"
        );
    }

    #[test]
    fn blocks_keep_line_breaks_and_tabs() {
        assert_eq!(printable("a\n\tb\r\n", Layout::Block), "a\n\tb\\r\n");
        assert_eq!(printable("a\n\tb", Layout::Line), "a\\n\\tb");
    }

    #[test]
    fn json_stays_the_same_value_without_raw_controls() {
        let value = serde_json::json!({"error": "\x1b[31m\u{9b}\x7f red"});
        for text in [json(&value).unwrap(), compact_json(&value).unwrap()] {
            assert!(!text.chars().any(|c| c.is_control() && c != '\n'), "{text}");
            let back: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(back, value);
        }
        assert_eq!(
            compact_json(&value).unwrap(),
            r#"{"error":"\u001b[31m\u009b\u007f red"}"#
        );
    }
}
