//! Whether a folder's entries changed since it was last asked (Linux: inotify).
//!
//! The SQLite wake-up sockets (`sqlite_wake.rs`) list their folder to learn of other
//! processes. A modification time cannot say "unchanged" for sure while it is recent
//! (timestamps are coarse), so without a watch a folder that changed within the last
//! second is listed again at every commit. A watch says it exactly, at the cost of one
//! non-blocking read.

use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};
use rustix::io::Errno;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::path::Path;

/// A watch on the entries of one folder: created, removed or renamed names, and the
/// folder itself going away.
#[derive(Debug)]
pub(crate) struct FolderWatch {
    fd: OwnedFd,
}

/// What a watch saw since it was last asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seen {
    /// Nothing: the folder's entries are as they were.
    Nothing,
    /// Something changed (or events were lost): list the folder again.
    Changed,
    /// The watch ended (the folder was removed or moved, or reading failed): list
    /// the folder again and start a new watch.
    Ended,
}

impl FolderWatch {
    /// Starts watching `folder`. Changes from this call on are seen; list the folder
    /// after it, not before, so that nothing falls between the listing and the watch.
    pub(crate) fn new(folder: &Path) -> io::Result<FolderWatch> {
        let fd = inotify::init(CreateFlags::NONBLOCK | CreateFlags::CLOEXEC)?;
        inotify::add_watch(
            &fd,
            folder,
            WatchFlags::CREATE
                | WatchFlags::DELETE
                | WatchFlags::MOVED_FROM
                | WatchFlags::MOVED_TO
                | WatchFlags::DELETE_SELF
                | WatchFlags::MOVE_SELF
                | WatchFlags::ONLYDIR,
        )?;
        Ok(FolderWatch { fd })
    }

    /// What happened since the last call (or since the watch started); reads every
    /// queued event, so the next call reports only what follows.
    pub(crate) fn take(&self) -> Seen {
        let gone = ReadFlags::DELETE_SELF | ReadFlags::MOVE_SELF | ReadFlags::IGNORED;
        let mut buffer = [MaybeUninit::<u8>::uninit(); 4096];
        let mut events = inotify::Reader::new(&self.fd, &mut buffer);
        let mut seen = Seen::Nothing;
        loop {
            match events.next() {
                Ok(event) if event.events().intersects(gone) => seen = Seen::Ended,
                Ok(_) if seen == Seen::Nothing => seen = Seen::Changed,
                Ok(_) => {}
                Err(Errno::WOULDBLOCK) => return seen,
                Err(Errno::INTR) => {}
                Err(_) => return Seen::Ended,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh_folder(name: &str) -> std::path::PathBuf {
        let folder = std::env::temp_dir().join(format!(
            "warren-folder-watch-{name}-{}-{:x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&folder).unwrap();
        folder
    }

    #[test]
    fn a_quiet_folder_reads_as_unchanged_and_every_change_is_seen_once() {
        let folder = fresh_folder("changes");
        let watch = FolderWatch::new(&folder).unwrap();
        assert_eq!(watch.take(), Seen::Nothing);
        std::fs::write(folder.join("a"), b"").unwrap();
        assert_eq!(watch.take(), Seen::Changed);
        assert_eq!(watch.take(), Seen::Nothing, "events are read once");
        std::fs::rename(folder.join("a"), folder.join("b")).unwrap();
        assert_eq!(watch.take(), Seen::Changed);
        std::fs::remove_file(folder.join("b")).unwrap();
        assert_eq!(watch.take(), Seen::Changed);
        // A file's contents are not the folder's entries.
        std::fs::write(folder.join("c"), b"").unwrap();
        assert_eq!(watch.take(), Seen::Changed);
        std::fs::write(folder.join("c"), b"more").unwrap();
        assert_eq!(watch.take(), Seen::Nothing);
        std::fs::remove_dir_all(&folder).unwrap();
    }

    #[test]
    fn a_removed_folder_ends_the_watch() {
        let folder = fresh_folder("removed");
        let watch = FolderWatch::new(&folder).unwrap();
        std::fs::remove_dir(&folder).unwrap();
        assert_eq!(watch.take(), Seen::Ended);
    }

    #[test]
    fn a_folder_that_is_not_there_cannot_be_watched() {
        let folder = fresh_folder("missing");
        std::fs::remove_dir(&folder).unwrap();
        assert!(FolderWatch::new(&folder).is_err());
    }
}
