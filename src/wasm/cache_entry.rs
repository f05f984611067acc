//! One file of the compile cache: a short header naming the key the entry was written
//! for and the SHA-256 of its payload, then the payload. An entry is used only when it
//! is a private file (see [`super::trust`]), names the key it is looked up under and
//! its payload is intact, so an entry copied over another one, truncated, or planted by
//! someone else is refused rather than run.
//!
//! Entries are written under a name unique to the writer (process id and a counter),
//! then renamed into place: readers see a whole entry or none, and two writers never
//! share a temporary file.

use super::trust::check_private;
use sha2::{Digest, Sha256};
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// The first line of every entry (its format version).
const MAGIC: &str = "warren-cache-entry 1\n";

/// What reading an entry gave.
#[derive(Debug)]
pub(crate) enum Lookup {
    /// No entry under that name.
    Missing,
    /// The payload of a trusted entry written for the key.
    Found(Vec<u8>),
    /// An entry that must not be used, and why.
    Refused(String),
}

/// Lower-case hex of a digest.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn header(key: &str, payload: &[u8]) -> String {
    format!(
        "{MAGIC}key {key}\nsha256 {}\n",
        hex(&Sha256::digest(payload))
    )
}

/// Reads the entry at `file`, written for `key`.
pub(crate) fn read(file: &Path, key: &str) -> Lookup {
    let mut f = match std::fs::File::open(file) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Lookup::Missing,
        Err(e) => return Lookup::Refused(format!("cannot open it: {e}")),
    };
    // Judge the file that was opened, not whatever the name points to later.
    let checked = f
        .metadata()
        .map_err(|e| format!("cannot inspect it: {e}"))
        .and_then(|meta| match meta.is_file() {
            true => check_private(&meta),
            false => Err("it is not a regular file".into()),
        });
    if let Err(why) = checked {
        return Lookup::Refused(why);
    }
    let mut bytes = Vec::new();
    if let Err(e) = f.read_to_end(&mut bytes) {
        return Lookup::Refused(format!("cannot read it: {e}"));
    }
    match split(&bytes, key) {
        Ok(at) => {
            bytes.drain(..at);
            Lookup::Found(bytes)
        }
        Err(why) => Lookup::Refused(why),
    }
}

/// Where the payload starts, when `bytes` is a whole entry for `key`.
fn split(bytes: &[u8], key: &str) -> Result<usize, String> {
    let text_end = bytes
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .nth(2)
        .map(|(i, _)| i + 1)
        .ok_or("it has no cache entry header (written by an older version?)")?;
    let head = std::str::from_utf8(&bytes[..text_end]).map_err(|_| "its header is not text")?;
    let mut lines = head.lines();
    if lines.next() != MAGIC.strip_suffix('\n') {
        return Err("it has no cache entry header (written by an older version?)".into());
    }
    let written_for = lines
        .next()
        .and_then(|l| l.strip_prefix("key "))
        .unwrap_or("");
    if written_for != key {
        return Err(format!(
            "it was written for key {written_for}, not for {key} (copied over?)"
        ));
    }
    let payload = &bytes[text_end..];
    if head != header(key, payload) {
        return Err("its content does not match its checksum (damaged?)".into());
    }
    Ok(text_end)
}

/// Distinguishes the temporary files of one process.
static NEXT_TEMP: AtomicU64 = AtomicU64::new(0);

/// A file name in `dir` no other writer uses: `<name>.<pid>-<counter>.tmp`.
pub(crate) fn temp_name(dir: &Path, name: &str) -> std::path::PathBuf {
    let n = NEXT_TEMP.fetch_add(1, Ordering::Relaxed);
    dir.join(format!("{name}.{}-{n}.tmp", std::process::id()))
}

/// Writes the entry `name` in `dir` for `key`: to a temporary file of this writer
/// (readable by this user only), then renamed over `name`.
pub(crate) fn write(dir: &Path, name: &str, key: &str, payload: &[u8]) -> io::Result<()> {
    let tmp = temp_name(dir, name);
    let written = (|| {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut f = options.open(&tmp)?;
        f.write_all(header(key, payload).as_bytes())?;
        f.write_all(payload)?;
        // No fsync: an entry cut short by a crash fails its checksum and is rebuilt.
        std::fs::rename(&tmp, dir.join(name))
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("warren-entry-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        super::super::trust::create_private_dir(&dir).unwrap();
        dir
    }

    #[test]
    fn an_entry_reads_back_under_its_key_only() {
        let dir = fresh("key");
        write(&dir, "a", "ka", b"payload a").unwrap();
        write(&dir, "b", "kb", b"payload b").unwrap();
        assert!(matches!(read(&dir.join("a"), "ka"), Lookup::Found(p) if p == b"payload a"));
        assert!(matches!(read(&dir.join("c"), "kc"), Lookup::Missing));
        std::fs::copy(dir.join("a"), dir.join("b")).unwrap();
        match read(&dir.join("b"), "kb") {
            Lookup::Refused(why) => {
                assert!(why.contains("written for key ka, not for kb"), "{why}")
            }
            other => panic!("{other:?}"),
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn damaged_or_foreign_entries_are_refused() {
        let dir = fresh("damaged");
        write(&dir, "a", "ka", b"payload a").unwrap();
        let mut bytes = std::fs::read(dir.join("a")).unwrap();
        *bytes.last_mut().unwrap() ^= 1;
        std::fs::write(dir.join("a"), &bytes).unwrap();
        assert!(matches!(read(&dir.join("a"), "ka"), Lookup::Refused(w) if w.contains("checksum")));
        std::fs::write(dir.join("raw"), b"\x7fELF...").unwrap();
        assert!(
            matches!(read(&dir.join("raw"), "k"), Lookup::Refused(w) if w.contains("no cache entry header"))
        );
        let left: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left.len(), 2, "no temporary files are left: {left:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn temporary_names_are_unique() {
        let dir = Path::new("/x");
        assert_ne!(temp_name(dir, "a"), temp_name(dir, "a"));
    }
}
