//! Failure stacks in the author's own lines. A task bundled before it was compiled
//! (TypeScript, npm packages: see `guest/js/build.mjs`) runs as one generated file, so
//! its stacks would name lines of the bundle. The build appends the bundle's source map
//! to the component as the custom section [`SECTION`]; [`SourceMap::of_component`]
//! reads it back, and [`SourceMap::rewrite_stack`] turns each `file:line:col` of the
//! bundle in a stack into the original file, line and column. Only what is needed for
//! that is decoded: `sources` and `mappings` (source map version 3).

use serde::Deserialize;

/// The custom section of a component that holds its source map (JSON).
pub const SECTION: &str = "warren:source-map";

/// One mapped position: a generated column maps to a place in a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Segment {
    generated_column: u32,
    source: u32,
    line: u32,
    column: u32,
}

/// A decoded source map: the generated file as stacks name it, and per generated line
/// its segments in column order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceMap {
    file: Option<String>,
    sources: Vec<String>,
    lines: Vec<Vec<Segment>>,
}

#[derive(Deserialize)]
struct RawMap {
    version: u32,
    #[serde(default)]
    file: Option<String>,
    sources: Vec<String>,
    mappings: String,
}

/// Why a source map could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid source map: {0}")]
pub struct SourceMapError(String);

impl SourceMap {
    /// Reads a version 3 source map from its JSON text.
    pub fn parse(json: &str) -> Result<SourceMap, SourceMapError> {
        let raw: RawMap = serde_json::from_str(json).map_err(|e| SourceMapError(e.to_string()))?;
        if raw.version != 3 {
            return Err(SourceMapError(format!("version {}, not 3", raw.version)));
        }
        let mut lines = Vec::new();
        // Source, line and column are deltas across the whole map; the generated
        // column starts again at each line.
        let (mut source, mut line, mut column) = (0i64, 0i64, 0i64);
        for text in raw.mappings.split(';') {
            let mut segments = Vec::new();
            let mut generated_column = 0i64;
            for segment in text.split(',').filter(|s| !s.is_empty()) {
                let fields = decode_vlq(segment)?;
                generated_column += fields[0];
                if fields.len() >= 4 {
                    source += fields[1];
                    line += fields[2];
                    column += fields[3];
                    let position = [generated_column, source, line, column];
                    if position.iter().any(|v| *v < 0 || *v > i64::from(u32::MAX)) {
                        return Err(SourceMapError(format!(
                            "segment {segment} leaves the range"
                        )));
                    }
                    segments.push(Segment {
                        generated_column: generated_column as u32,
                        source: source as u32,
                        line: line as u32,
                        column: column as u32,
                    });
                }
            }
            segments.sort_by_key(|s| s.generated_column);
            lines.push(segments);
        }
        Ok(SourceMap {
            file: raw.file,
            sources: raw.sources,
            lines,
        })
    }

    /// The source map a component carries in its [`SECTION`], if any (and readable).
    pub fn of_component(component: &[u8]) -> Option<SourceMap> {
        let json = custom_section(component, SECTION)?;
        SourceMap::parse(std::str::from_utf8(json).ok()?).ok()
    }

    /// The original place of a 1-based generated line and column: the source, and its
    /// 1-based line and column.
    pub fn original(&self, line: u32, column: u32) -> Option<(&str, u32, u32)> {
        let segments = self.lines.get(line.checked_sub(1)? as usize)?;
        let column0 = column.saturating_sub(1);
        let at = segments.partition_point(|s| s.generated_column <= column0);
        // The segment that starts at or before the column; else the line's first.
        let segment = segments.get(at.saturating_sub(1))?;
        let source = self.sources.get(segment.source as usize)?;
        Some((source, segment.line + 1, segment.column + 1))
    }

    /// `stack` with every `FILE:LINE:COL` (or `FILE:LINE`) of the generated file (the
    /// map's `file`) replaced by its original place; as it is when the map names no
    /// file. QuickJS names the file with a leading `/` (`at f (/m/tasks/x.js:3:9)`),
    /// StarlingMonkey without (`f@m/tasks/x.js:3:9`): both are found.
    pub fn rewrite(&self, stack: &str) -> String {
        match &self.file {
            Some(file) => self.rewrite_stack(stack, file.trim_start_matches('/')),
            None => stack.to_string(),
        }
    }

    /// `stack` with every `FILE:LINE:COL` (or `FILE:LINE`) whose file is `generated`
    /// (after `@`, `(`, a space or a line start, and an optional `/`) replaced by its
    /// original place.
    fn rewrite_stack(&self, stack: &str, generated: &str) -> String {
        let mut out = String::with_capacity(stack.len());
        let mut rest = stack;
        while let Some(at) = rest.find(generated) {
            let after = &rest[at + generated.len()..];
            // The file's whole name: a delimiter, at most one '/', then `generated`.
            let before = &rest[..at];
            let starts_name = before
                .strip_suffix('/')
                .unwrap_or(before)
                .chars()
                .next_back()
                .is_none_or(|c| matches!(c, '@' | '(' | ' ' | '\n'));
            let position = position_after(after).filter(|_| starts_name);
            let Some((line, column, used)) = position else {
                out.push_str(&rest[..at + generated.len()]);
                rest = after;
                continue;
            };
            // The file's name starts after the last space or '(' before it.
            let start = rest[..at].rfind([' ', '(', '\n', '@']).map_or(0, |i| i + 1);
            out.push_str(&rest[..start]);
            match self.original(line, column.unwrap_or(1)) {
                Some((source, l, c)) => out.push_str(&format!("{source}:{l}:{c}")),
                None => out.push_str(&rest[start..at + generated.len() + used]),
            }
            rest = &after[used..];
        }
        out.push_str(rest);
        out
    }
}

/// `:LINE` or `:LINE:COL` at the start of `text`: the numbers and the bytes they take.
fn position_after(text: &str) -> Option<(u32, Option<u32>, usize)> {
    let number = |s: &str| -> Option<(u32, usize)> {
        let digits = s.bytes().take_while(u8::is_ascii_digit).count();
        Some((s[..digits].parse().ok()?, digits))
    };
    let (line, n) = number(text.strip_prefix(':')?)?;
    let mut used = 1 + n;
    let column = match text[used..].strip_prefix(':').and_then(number) {
        Some((column, n)) => {
            used += 1 + n;
            Some(column)
        }
        None => None,
    };
    Some((line, column, used))
}

/// Decodes one segment's base64 VLQ fields.
fn decode_vlq(segment: &str) -> Result<Vec<i64>, SourceMapError> {
    let mut fields = Vec::with_capacity(5);
    let (mut value, mut shift) = (0i64, 0u32);
    for byte in segment.bytes() {
        let digit = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => {
                return Err(SourceMapError(format!(
                    "'{}' in segment {segment}",
                    byte as char
                )))
            }
        } as i64;
        if shift > 60 {
            return Err(SourceMapError(format!("segment {segment} overflows")));
        }
        value |= (digit & 31) << shift;
        if digit & 32 != 0 {
            shift += 5;
            continue;
        }
        let magnitude = value >> 1;
        fields.push(if value & 1 == 1 {
            -magnitude
        } else {
            magnitude
        });
        value = 0;
        shift = 0;
    }
    if shift != 0 || fields.is_empty() {
        return Err(SourceMapError(format!("segment {segment} ends early")));
    }
    Ok(fields)
}

/// The payload of the top-level custom section `name` of a WebAssembly module or
/// component (the format's sections: an id byte, a LEB128 size, the payload; a custom
/// section's payload starts with its LEB128-prefixed name).
fn custom_section<'a>(binary: &'a [u8], name: &str) -> Option<&'a [u8]> {
    fn leb(bytes: &[u8], at: &mut usize) -> Option<usize> {
        let (mut value, mut shift) = (0usize, 0u32);
        loop {
            let byte = *bytes.get(*at)?;
            *at += 1;
            value |= usize::from(byte & 0x7f).checked_shl(shift)?;
            if byte & 0x80 == 0 {
                return Some(value);
            }
            shift += 7;
            if shift > 63 {
                return None;
            }
        }
    }
    if binary.get(..4)? != b"\0asm" {
        return None;
    }
    let mut at = 8;
    while at < binary.len() {
        let id = binary[at];
        at += 1;
        let size = leb(binary, &mut at)?;
        let end = at.checked_add(size).filter(|e| *e <= binary.len())?;
        if id == 0 {
            let mut inner = at;
            let len = leb(binary, &mut inner)?;
            let name_end = inner.checked_add(len).filter(|e| *e <= end)?;
            if &binary[inner..name_end] == name.as_bytes() {
                return Some(&binary[name_end..end]);
            }
        }
        at = end;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two generated lines: line 1 col 1 → a.ts 1:1; col 5 → a.ts 3:3; line 2 col 3 → b.ts 10:1.
    const MAP: &str = r#"{"version":3,"sources":["/m/a.ts","/m/b.ts"],"names":[],"mappings":"AAAA,IAEE;ECOF","file":"/m/tasks/x.js"}"#;

    #[test]
    fn segments_map_generated_places_to_original_ones() {
        let map = SourceMap::parse(MAP).unwrap();
        assert_eq!(map.original(1, 1), Some(("/m/a.ts", 1, 1)));
        assert_eq!(map.original(1, 4), Some(("/m/a.ts", 1, 1)));
        assert_eq!(map.original(1, 5), Some(("/m/a.ts", 3, 3)));
        assert_eq!(map.original(1, 80), Some(("/m/a.ts", 3, 3)));
        assert_eq!(map.original(2, 3), Some(("/m/b.ts", 10, 1)));
        assert_eq!(map.original(3, 1), None);
        assert_eq!(map.original(0, 1), None);
    }

    #[test]
    fn stacks_name_the_original_files() {
        let map = SourceMap::parse(MAP).unwrap();
        let stack = "Error: x\n    at run (/m/tasks/x.js:1:6)\n    at other (/elsewhere.js:1:1)\n    at <anonymous> (/m/tasks/x.js:2)\n";
        assert_eq!(
            map.rewrite_stack(stack, "/m/tasks/x.js"),
            "Error: x\n    at run (/m/a.ts:3:3)\n    at other (/elsewhere.js:1:1)\n    at <anonymous> (/m/b.ts:10:1)\n"
        );
        assert_eq!(map.rewrite("at (/m/tasks/x.js:1:1)"), "at (/m/a.ts:1:1)");
        // StarlingMonkey's frames name the file without its leading '/'.
        assert_eq!(
            map.rewrite("run@m/tasks/x.js:1:6\nf@m/tasks/x.js:2:3\n"),
            "run@/m/a.ts:3:3\nf@/m/b.ts:10:1\n"
        );
        // A longer name that ends with the generated one is another file.
        assert_eq!(
            map.rewrite("at (/other/m/tasks/x.js:1:1)"),
            "at (/other/m/tasks/x.js:1:1)"
        );
        // A name without a position, or a position outside the map, stays as it is.
        assert_eq!(
            map.rewrite_stack("at /m/tasks/x.js", "/m/tasks/x.js"),
            "at /m/tasks/x.js"
        );
        assert_eq!(
            map.rewrite_stack("at (/m/tasks/x.js:9:1)", "/m/tasks/x.js"),
            "at (/m/tasks/x.js:9:1)"
        );
    }

    #[test]
    fn bad_maps_are_refused() {
        assert!(SourceMap::parse("{}").is_err());
        assert!(SourceMap::parse(r#"{"version":2,"sources":[],"mappings":""}"#).is_err());
        assert!(SourceMap::parse(r#"{"version":3,"sources":[],"mappings":"A!"}"#).is_err());
        assert!(SourceMap::parse(r#"{"version":3,"sources":[],"mappings":"g"}"#).is_err());
        assert!(SourceMap::parse(r#"{"version":3,"sources":[],"mappings":"AAAD"}"#).is_err());
    }

    #[test]
    fn the_section_is_found_among_the_components_sections() {
        let mut binary = b"\0asm\x0d\0\x01\0".to_vec();
        // an unrelated section, then the custom one
        binary.extend([1, 2, 0xaa, 0xbb]);
        let payload = br#"{"version":3}"#;
        let name = SECTION.as_bytes();
        binary.push(0);
        binary.push((1 + name.len() + payload.len()) as u8);
        binary.push(name.len() as u8);
        binary.extend(name);
        binary.extend(payload);
        assert_eq!(custom_section(&binary, SECTION), Some(&payload[..]));
        assert_eq!(custom_section(&binary, "other"), None);
        assert_eq!(custom_section(&binary[..binary.len() - 1], SECTION), None);
        assert_eq!(custom_section(b"not wasm", SECTION), None);
    }
}
