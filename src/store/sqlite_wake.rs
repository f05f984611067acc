//! Wake-ups between processes that share one SQLite file.
//!
//! SQLite has no notifications, so a commit in one process (`warren schedule` in a
//! terminal) cannot wake the queue or the waiters of another (`warren serve`) through the
//! database. Instead each process that has the file open binds a Unix datagram socket
//! in the folder `<file>-wake/` (mode 0700: the sockets of this user only), named
//! `<pid>-<16 hex digits>`, and after each of its commits sends one datagram to every
//! other socket there, one line per wake-up:
//!
//! ```text
//! w CLUSTER    new or newly due work in CLUSTER (`*`: every cluster)
//! o ID         task ID has a new outcome (`-1`: any task)
//! ```
//!
//! A receiver thread per socket passes what arrives to the process's own wake-up
//! channels (`signals.rs`), as if its own commit had sent it. Sending never blocks the
//! committing thread: a peer whose queue is full is sent "everything" with the next
//! message instead. Each peer is sent to from a socket of its own: datagrams a peer has
//! not read yet count against the sending socket's buffer, so a stuck peer must not
//! hold up the others. The socket of a process that died refuses datagrams; its file is
//! removed. The one-second rechecks of the queue and of waiters stay, as the safety net
//! for a datagram that is lost anyway.

use super::signals::{Pending, ANY_CLUSTER, ANY_TASK};
use crate::task::TaskId;
use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};
use tokio::sync::broadcast;

/// The largest message sent as it is; a larger one becomes "everything".
const MAX_MESSAGE: usize = 8 * 1024;
/// What a receiver reads at most: a datagram that fills it was cut, and counts as
/// "everything".
const RECEIVE_BUFFER: usize = 64 * 1024;
/// "Every cluster, every task": what a peer owed a lost message is sent.
const EVERYTHING: &[u8] = b"w *\no -1\n";
/// How often the receiver thread looks at its stop flag while nothing arrives (a
/// dropped socket also wakes it at once).
const STOP_CHECK: Duration = Duration::from_millis(500);
/// Where the folder cannot be watched (see `folder_watch.rs`; Linux only): a folder
/// changed this recently may change again without its modification time changing
/// (timestamps are coarse), so its listing is read again at each send until its last
/// change is older than this.
const RACY: Duration = Duration::from_secs(1);
/// A socket file that refuses datagrams while it is younger than this and its process
/// is alive may be being bound right now: it is left in place.
const BINDING_GRACE: Duration = Duration::from_secs(10);
/// The longest socket path bound or addressed as it is (a socket address holds 104
/// bytes on the BSDs, 108 on Linux, the terminating NUL included).
const MAX_SOCKET_PATH: usize = 100;

/// This process's wake-up socket for one SQLite file, and its view of the other
/// processes' sockets. Dropping it removes its socket file and stops its thread.
pub(crate) struct WakeSocket {
    folder: Folder,
    /// This socket's file name in the folder.
    name: OsString,
    peers: Mutex<Peers>,
    /// Tells the receiver thread to end.
    stop: Arc<AtomicBool>,
    /// How often the folder was listed.
    #[cfg(test)]
    listings: std::sync::atomic::AtomicUsize,
}

/// The socket folder of a database file.
struct Folder {
    path: PathBuf,
    /// An open handle on the folder, through which a path too long for a socket
    /// address is reached (`/proc/self/fd/N/NAME`).
    #[cfg(target_os = "linux")]
    handle: std::fs::File,
}

/// The other sockets in the folder, as last listed.
#[derive(Default)]
struct Peers {
    /// The folder when it was listed, where its modification time decides; `None`:
    /// list it at the next send.
    listed: Option<Stamp>,
    /// Says exactly whether the folder changed since it was listed (Linux). The
    /// listing follows the watch's start, so no change falls between them.
    #[cfg(target_os = "linux")]
    watch: Option<super::folder_watch::FolderWatch>,
    /// The folder could not be watched (its file system, or it is gone): the
    /// modification time decides from then on.
    #[cfg(target_os = "linux")]
    unwatchable: bool,
    /// A send found a peer gone that may be binding again: list at the next send,
    /// whatever the folder's watch or modification time say.
    stale: bool,
    list: Vec<Peer>,
}

/// Which folder, and when it last changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    modified: SystemTime,
}

struct Peer {
    name: OsString,
    /// An unbound, non-blocking socket to send to this peer from.
    sender: UnixDatagram,
    /// A message to it was lost (its queue was full): the next one is "everything".
    owed: bool,
}

impl WakeSocket {
    /// Binds this process's wake-up socket for the SQLite file `db` (an existing file,
    /// by its canonical path) and starts the thread that forwards what arrives to
    /// `new_work` and `outcomes`. `None`, after a warning (once per process), when that
    /// is not possible: wake-ups from other processes then wait for the rechecks.
    pub(crate) fn open(
        db: &Path,
        new_work: broadcast::Sender<String>,
        outcomes: broadcast::Sender<TaskId>,
    ) -> Option<WakeSocket> {
        match WakeSocket::bind(db, new_work, outcomes) {
            Ok(socket) => Some(socket),
            Err(error) => {
                static WARNED: AtomicBool = AtomicBool::new(false);
                if !WARNED.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        folder = %folder_of(db).display(),
                        %error,
                        "cannot bind a wake-up socket next to the SQLite file: work and \
                         outcomes committed by other processes are noticed within a \
                         second instead of at once"
                    );
                }
                None
            }
        }
    }

    /// Binds the socket (see [`WakeSocket::open`]).
    fn bind(
        db: &Path,
        new_work: broadcast::Sender<String>,
        outcomes: broadcast::Sender<TaskId>,
    ) -> io::Result<WakeSocket> {
        let path = folder_of(db);
        let mut last = None;
        for _ in 0..8 {
            let folder = Folder::open(&path)?;
            let name = OsString::from(format!(
                "{}-{:016x}",
                std::process::id(),
                rand::random::<u64>()
            ));
            match UnixDatagram::bind(folder.address(&name)) {
                Ok(socket) => return WakeSocket::start(folder, name, socket, new_work, outcomes),
                // The folder was removed by the last socket leaving it (open creates
                // it again), or the name is taken.
                Err(e)
                    if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::AddrInUse) =>
                {
                    last = Some(e)
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("no free socket name")))
    }

    fn start(
        folder: Folder,
        name: OsString,
        socket: UnixDatagram,
        new_work: broadcast::Sender<String>,
        outcomes: broadcast::Sender<TaskId>,
    ) -> io::Result<WakeSocket> {
        let stop = Arc::new(AtomicBool::new(false));
        // From here on, an error drops `wake`, which removes the socket file.
        let wake = WakeSocket {
            folder,
            name,
            peers: Mutex::default(),
            stop: stop.clone(),
            #[cfg(test)]
            listings: Default::default(),
        };
        socket.set_read_timeout(Some(STOP_CHECK))?;
        std::thread::Builder::new()
            .name("warren-sqlite-wake".into())
            .spawn(move || receive(socket, &stop, &new_work, &outcomes))?;
        Ok(wake)
    }

    /// Sends the wake-ups of a commit to every other process that has the file open.
    /// Never blocks; a lost datagram is made up for by the next one or by the rechecks.
    pub(crate) fn send(&self, pending: &Pending) {
        let Some(message) = encode(pending) else {
            return;
        };
        let mut peers = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
        self.refresh(&mut peers);
        let mut list_again = false;
        peers.list.retain_mut(|peer| {
            let address = self.folder.address(&peer.name);
            let first: &[u8] = if peer.owed { EVERYTHING } else { &message };
            let sent = match peer.sender.send_to(first, &address) {
                // Too large for this system's datagrams: the short form says as much.
                Err(e) if is_errno(&e, rustix::io::Errno::MSGSIZE) && first != EVERYTHING => {
                    peer.sender.send_to(EVERYTHING, &address)
                }
                other => other,
            };
            match sent {
                Ok(_) => {
                    peer.owed = false;
                    true
                }
                Err(e) if is_gone(&e) => {
                    if !self.remove_if_stale(&peer.name) {
                        list_again = true;
                    }
                    false
                }
                Err(e) => {
                    tracing::debug!(peer = ?peer.name, error = %e, "wake-up not delivered");
                    peer.owed = true;
                    true
                }
            }
        });
        if list_again {
            peers.stale = true;
        }
    }

    /// Lists the folder again when it changed since it was last listed.
    fn refresh(&self, peers: &mut Peers) {
        #[cfg(target_os = "linux")]
        if self.watched_unchanged(peers) {
            return;
        }
        let stamp = std::fs::symlink_metadata(&self.folder.path)
            .ok()
            .and_then(|meta| Stamp::of(&meta));
        #[cfg(target_os = "linux")]
        let stamp = stamp.filter(|_| peers.watch.is_none());
        if stamp.is_some() && peers.listed == stamp && !peers.stale {
            return;
        }
        peers.stale = false;
        let listed_at = SystemTime::now();
        let mut old = std::mem::take(&mut peers.list);
        for name in self.listing() {
            let peer = match old.iter().position(|p| p.name == name) {
                Some(known) => old.swap_remove(known),
                None => match new_sender() {
                    Ok(sender) => Peer {
                        name,
                        sender,
                        owed: false,
                    },
                    Err(e) => {
                        // Out of file descriptors, say: this peer waits for its rechecks.
                        tracing::debug!(peer = ?name, error = %e, "no socket to send wake-ups from");
                        continue;
                    }
                },
            };
            peers.list.push(peer);
        }
        peers.listed = stamp.filter(|s| {
            listed_at
                .duration_since(s.modified)
                .is_ok_and(|age| age >= RACY)
        });
    }

    /// Whether the folder's watch says nothing changed since the last listing. Starts
    /// a watch when there is none (the listing that follows then covers everything
    /// before it); where none can be had, the modification time decides.
    #[cfg(target_os = "linux")]
    fn watched_unchanged(&self, peers: &mut Peers) -> bool {
        use super::folder_watch::{FolderWatch, Seen};
        match peers.watch.as_ref().map(FolderWatch::take) {
            Some(Seen::Nothing) => return !peers.stale,
            Some(Seen::Changed) => return false,
            Some(Seen::Ended) => peers.watch = None,
            None => {}
        }
        if !peers.unwatchable {
            match FolderWatch::new(&self.folder.path) {
                Ok(watch) => peers.watch = Some(watch),
                Err(e) => {
                    tracing::debug!(folder = %self.folder.path.display(), error = %e, "cannot watch the wake-up folder; its modification time is read instead");
                    peers.unwatchable = true;
                }
            }
        }
        false
    }

    /// The names of the other sockets in the folder.
    fn listing(&self) -> Vec<OsString> {
        #[cfg(test)]
        self.listings.fetch_add(1, Ordering::Relaxed);
        let Ok(entries) = std::fs::read_dir(&self.folder.path) else {
            return Vec::new();
        };
        entries
            .filter_map(|entry| entry.ok())
            .map(|entry| entry.file_name())
            .filter(|name| *name != self.name && name.to_str().is_some_and(is_socket_name))
            .collect()
    }

    /// Removes the file of a socket that refused a datagram, unless it may belong to a
    /// process binding it right now. Says whether it is gone.
    fn remove_if_stale(&self, name: &OsStr) -> bool {
        let file = self.folder.file(name);
        let Ok(meta) = std::fs::symlink_metadata(&file) else {
            return true;
        };
        let young = meta
            .modified()
            .ok()
            .and_then(|at| at.elapsed().ok())
            .is_some_and(|age| age < BINDING_GRACE);
        if young && name.to_str().and_then(pid_of).is_some_and(process_alive) {
            return false;
        }
        tracing::debug!(socket = %file.display(), "removing the wake-up socket of a process that is gone");
        let _ = std::fs::remove_file(&file);
        true
    }

    #[cfg(test)]
    fn file(&self) -> PathBuf {
        self.folder.file(&self.name)
    }
}

impl WakeSocket {
    /// Stops receiving and removes this socket's file (and the folder, if it was the
    /// last socket there). Sending still works. Idempotent.
    pub(crate) fn close(&self) {
        if self.stop.swap(true, Ordering::AcqRel) {
            return;
        }
        // Wakes the receiver thread at once; an empty datagram says nothing.
        if let Ok(sender) = UnixDatagram::unbound() {
            let _ = sender.send_to(&[], self.folder.address(&self.name));
        }
        let _ = std::fs::remove_file(self.folder.file(&self.name));
        // The folder goes with its last socket (a process binding there meanwhile
        // creates it again).
        let _ = std::fs::remove_dir(&self.folder.path);
    }
}

impl Drop for WakeSocket {
    fn drop(&mut self) {
        self.close();
    }
}

impl Folder {
    /// Creates the folder (mode 0700) if needed and checks that it is a folder of this
    /// user's that nobody else can write: its sockets accept wake-ups, and files in it
    /// are removed.
    fn open(path: &Path) -> io::Result<Folder> {
        match std::fs::DirBuilder::new().mode(0o700).create(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        let meta = std::fs::symlink_metadata(path)?;
        let refuse = |why: String| io::Error::other(format!("{}: {why}", path.display()));
        if !meta.is_dir() {
            return Err(refuse("it is not a folder".into()));
        }
        let me = rustix::process::geteuid().as_raw();
        if meta.uid() != me {
            return Err(refuse(format!(
                "it is owned by uid {}, not by this user (uid {me})",
                meta.uid()
            )));
        }
        if meta.mode() & 0o022 != 0 {
            return Err(refuse(format!(
                "it is writable by group or others (mode {:04o})",
                meta.mode() & 0o7777
            )));
        }
        #[cfg(target_os = "linux")]
        {
            let handle = std::fs::File::open(path)?;
            let opened = handle.metadata()?;
            if (opened.dev(), opened.ino()) != (meta.dev(), meta.ino()) {
                return Err(refuse("it was replaced while being opened".into()));
            }
            Ok(Folder {
                path: path.to_path_buf(),
                handle,
            })
        }
        #[cfg(not(target_os = "linux"))]
        Ok(Folder {
            path: path.to_path_buf(),
        })
    }

    /// The path of file `name` in the folder.
    fn file(&self, name: &OsStr) -> PathBuf {
        self.path.join(name)
    }

    /// The address of socket `name`: its path, or on Linux, when that is too long for a
    /// socket address, the same file reached through the folder's open handle.
    fn address(&self, name: &OsStr) -> PathBuf {
        let path = self.file(name);
        #[cfg(target_os = "linux")]
        if path.as_os_str().len() > MAX_SOCKET_PATH {
            use std::os::fd::AsRawFd;
            return Path::new("/proc/self/fd")
                .join(self.handle.as_raw_fd().to_string())
                .join(name);
        }
        path
    }
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Option<Stamp> {
        Some(Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            modified: meta.modified().ok()?,
        })
    }
}

/// An unbound, non-blocking socket to send from.
fn new_sender() -> io::Result<UnixDatagram> {
    let sender = UnixDatagram::unbound()?;
    sender.set_nonblocking(true)?;
    Ok(sender)
}

/// `<file>-wake`, next to the database file.
fn folder_of(db: &Path) -> PathBuf {
    let mut folder = db.as_os_str().to_owned();
    folder.push("-wake");
    PathBuf::from(folder)
}

/// Whether `name` is a socket name of this scheme: `<pid>-<16 hex digits>`.
fn is_socket_name(name: &str) -> bool {
    name.split_once('-').is_some_and(|(pid, random)| {
        !pid.is_empty()
            && pid.bytes().all(|b| b.is_ascii_digit())
            && random.len() == 16
            && random.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

/// The process id in a socket name.
fn pid_of(name: &str) -> Option<i32> {
    name.split_once('-')?.0.parse().ok()
}

/// Whether a process `pid` exists (of any user).
fn process_alive(pid: i32) -> bool {
    match rustix::process::Pid::from_raw(pid) {
        Some(pid) => !matches!(
            rustix::process::test_kill_process(pid),
            Err(rustix::io::Errno::SRCH)
        ),
        None => false,
    }
}

fn is_errno(e: &io::Error, errno: rustix::io::Errno) -> bool {
    e.raw_os_error() == Some(errno.raw_os_error())
}

/// Whether a send failed because nobody listens there any more (or never did: a file
/// that is not a socket).
fn is_gone(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::NotFound
    ) || is_errno(e, rustix::io::Errno::NOTSOCK)
}

/// The datagram for a commit's wake-ups; `None` when there are none.
fn encode(pending: &Pending) -> Option<Vec<u8>> {
    use std::io::Write;
    if pending.clusters.is_empty() && pending.outcomes.is_empty() {
        return None;
    }
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for cluster in &pending.clusters {
        // A name that would break the line format stands for every cluster.
        let cluster = match cluster.as_str() {
            c if c.is_empty() || c.contains(['\n', '\r']) => ANY_CLUSTER,
            c => c,
        };
        if seen.insert(cluster) {
            let _ = writeln!(out, "w {cluster}");
        }
        if out.len() > MAX_MESSAGE {
            break;
        }
    }
    for id in &pending.outcomes {
        if out.len() > MAX_MESSAGE {
            break;
        }
        let _ = writeln!(out, "o {id}");
    }
    if out.len() > MAX_MESSAGE {
        out.clear();
        if !pending.clusters.is_empty() {
            out.extend_from_slice(b"w *\n");
        }
        if !pending.outcomes.is_empty() {
            out.extend_from_slice(b"o -1\n");
        }
    }
    Some(out)
}

/// One wake-up of a datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Arrival {
    Work(String),
    Outcome(TaskId),
}

/// The wake-ups in a datagram; lines that are not one are ignored. A datagram that was
/// `cut` (it filled the buffer) means everything.
fn decode(message: &[u8], cut: bool) -> Vec<Arrival> {
    if cut {
        return vec![
            Arrival::Work(ANY_CLUSTER.to_string()),
            Arrival::Outcome(ANY_TASK),
        ];
    }
    message
        .split(|&b| b == b'\n')
        .filter_map(|line| {
            let (kind, rest) = (*line.first()?, line.get(1..)?.strip_prefix(b" ")?);
            let rest = std::str::from_utf8(rest).ok()?;
            match kind {
                b'w' if !rest.is_empty() => Some(Arrival::Work(rest.to_string())),
                b'o' => rest.parse().ok().map(Arrival::Outcome),
                _ => None,
            }
        })
        .collect()
}

/// The receiver thread: forwards what arrives until told to stop.
fn receive(
    socket: UnixDatagram,
    stop: &AtomicBool,
    new_work: &broadcast::Sender<String>,
    outcomes: &broadcast::Sender<TaskId>,
) {
    let mut buffer = vec![0; RECEIVE_BUFFER];
    while !stop.load(Ordering::Acquire) {
        match socket.recv(&mut buffer) {
            Ok(n) => {
                for arrival in decode(&buffer[..n], n == buffer.len()) {
                    match arrival {
                        Arrival::Work(cluster) => {
                            let _ = new_work.send(cluster);
                        }
                        Arrival::Outcome(id) => {
                            let _ = outcomes.send(id);
                        }
                    }
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => {
                tracing::warn!(error = %e, "the SQLite wake-up socket failed to receive");
                std::thread::sleep(STOP_CHECK);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::broadcast::Receiver;

    /// A fresh folder holding an (empty) database file; returns the file's path.
    fn fresh_db(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("warren-wake-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join("test.db");
        std::fs::write(&db, b"").unwrap();
        db
    }

    /// A socket with channels of its own, as a process would have.
    struct Process {
        wake: WakeSocket,
        work: Receiver<String>,
        outcomes: Receiver<TaskId>,
    }

    fn process(db: &Path) -> Process {
        let (work_tx, work) = broadcast::channel(64);
        let (outcomes_tx, outcomes) = broadcast::channel(64);
        let wake = WakeSocket::bind(db, work_tx, outcomes_tx).expect("bind");
        Process {
            wake,
            work,
            outcomes,
        }
    }

    fn pending(clusters: &[&str], outcomes: &[i64]) -> Pending {
        Pending {
            clusters: clusters.iter().map(|c| c.to_string()).collect(),
            outcomes: outcomes.iter().map(|&id| TaskId(id)).collect(),
        }
    }

    async fn next<T: Clone>(rx: &mut Receiver<T>) -> T {
        tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("a wake-up within 10 s")
            .expect("open channel")
    }

    #[tokio::test]
    async fn wake_ups_travel_both_ways_and_not_back_to_the_sender() {
        let db = fresh_db("both");
        let mut a = process(&db);
        let mut b = process(&db);
        a.wake.send(&pending(&["mail"], &[7]));
        assert_eq!(next(&mut b.work).await, "mail");
        assert_eq!(next(&mut b.outcomes).await, TaskId(7));
        b.wake.send(&pending(&["default", "default"], &[8, 9]));
        // Had `a` sent its own message to itself, it would have arrived first.
        assert_eq!(next(&mut a.work).await, "default");
        assert_eq!(next(&mut a.outcomes).await, TaskId(8));
        assert_eq!(next(&mut a.outcomes).await, TaskId(9));
        assert!(a.work.try_recv().is_err(), "a cluster is announced once");
        // Nothing to say: nothing sent.
        a.wake.send(&pending(&[], &[]));
        a.wake.send(&pending(&[], &[10]));
        assert_eq!(next(&mut b.outcomes).await, TaskId(10));
        assert!(b.work.try_recv().is_err());
        let _ = std::fs::remove_dir_all(db.parent().unwrap());
    }

    /// A process that binds after `a` listed the folder is found by `a`'s next send,
    /// with the folder's watch or (`watched` false) by its modification time.
    #[cfg_attr(not(target_os = "linux"), allow(unused_variables))]
    async fn bound_later_is_found(label: &str, watched: bool) {
        let db = fresh_db(label);
        let a = process(&db);
        #[cfg(target_os = "linux")]
        {
            a.wake.peers.lock().unwrap().unwatchable = !watched;
        }
        a.wake.send(&pending(&["x"], &[]));
        let mut b = process(&db);
        a.wake.send(&pending(&["y"], &[]));
        assert_eq!(next(&mut b.work).await, "y");
        #[cfg(target_os = "linux")]
        assert_eq!(a.wake.peers.lock().unwrap().watch.is_some(), watched);
        let _ = std::fs::remove_dir_all(db.parent().unwrap());
    }

    #[tokio::test]
    async fn a_process_bound_later_is_found() {
        bound_later_is_found("later", true).await;
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_folder_that_just_changed_is_listed_again_only_when_it_changes() {
        let db = fresh_db("watched");
        let a = process(&db);
        let mut b = process(&db);
        // The folder changed within the last second (two sockets were just bound): its
        // modification time cannot tell whether it changes again, its watch can.
        for n in 0..20 {
            a.wake.send(&pending(&[], &[n]));
            assert_eq!(next(&mut b.outcomes).await, TaskId(n));
        }
        assert_eq!(a.wake.listings.load(Ordering::Relaxed), 1);
        let mut c = process(&db);
        a.wake.send(&pending(&["z"], &[]));
        assert_eq!(next(&mut c.work).await, "z");
        assert_eq!(next(&mut b.work).await, "z");
        assert_eq!(a.wake.listings.load(Ordering::Relaxed), 2);
        drop(c);
        a.wake.send(&pending(&["z"], &[]));
        assert_eq!(a.wake.listings.load(Ordering::Relaxed), 3);
        let _ = std::fs::remove_dir_all(db.parent().unwrap());
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn without_a_watch_the_modification_time_finds_a_process_bound_later() {
        bound_later_is_found("unwatched", false).await;
    }

    #[tokio::test]
    async fn sockets_of_dead_processes_are_removed_on_send() {
        let db = fresh_db("stale");
        let folder = folder_of(&db);
        let a = process(&db);
        let mut b = process(&db);
        // Process ids above any system's maximum: these processes are surely gone.
        let dead = folder.join("99999999-00000000000000ab");
        drop(UnixDatagram::bind(&dead).unwrap());
        let leftover = folder.join("99999998-00000000000000cd");
        std::fs::write(&leftover, b"").unwrap();
        let other = folder.join("notes.txt");
        std::fs::write(&other, b"").unwrap();
        assert!(dead.exists() && leftover.exists());
        a.wake.send(&pending(&["mail"], &[]));
        assert_eq!(next(&mut b.work).await, "mail");
        assert!(!dead.exists(), "the dead socket is removed");
        assert!(!leftover.exists(), "the leftover file is removed");
        assert!(other.exists(), "files of other names are left alone");
        // A refused socket of a live process that may be binding just now stays, and
        // is tried again.
        let binding = folder.join(format!("{}-00000000000000ef", std::process::id()));
        drop(UnixDatagram::bind(&binding).unwrap());
        a.wake.send(&pending(&["mail"], &[]));
        assert!(binding.exists());
        assert!(a.wake.peers.lock().unwrap().listed.is_none());
        let _ = std::fs::remove_dir_all(db.parent().unwrap());
    }

    #[tokio::test]
    async fn dropping_removes_the_socket_and_the_last_one_the_folder() {
        let db = fresh_db("drop");
        let a = process(&db);
        let mut b = process(&db);
        let (a_file, b_file) = (a.wake.file(), b.wake.file());
        assert!(a_file.exists() && b_file.exists());
        drop(a);
        assert!(!a_file.exists());
        assert!(folder_of(&db).exists(), "b is still there");
        // b sends to nobody, and a process coming later still reaches it.
        b.wake.send(&pending(&["x"], &[]));
        let c = process(&db);
        c.wake.send(&pending(&["from c"], &[]));
        assert_eq!(next(&mut b.work).await, "from c");
        drop(b);
        drop(c);
        assert!(
            !folder_of(&db).exists(),
            "the last socket removes the folder"
        );
        let _ = std::fs::remove_dir_all(db.parent().unwrap());
    }

    #[tokio::test]
    async fn an_oversized_message_means_everything() {
        let db = fresh_db("big");
        let a = process(&db);
        let mut b = process(&db);
        let ids: Vec<i64> = (1..=2_000).collect();
        a.wake.send(&pending(&["mail"], &ids));
        assert_eq!(next(&mut b.work).await, ANY_CLUSTER);
        assert_eq!(next(&mut b.outcomes).await, ANY_TASK);
        assert!(b.outcomes.try_recv().is_err());
        // Only outcomes: no "every cluster".
        assert_eq!(encode(&pending(&[], &ids)).unwrap(), b"o -1\n".to_vec());
        // A name that would break a line stands for every cluster.
        assert_eq!(encode(&pending(&["a\nb"], &[])).unwrap(), b"w *\n".to_vec());
        let _ = std::fs::remove_dir_all(db.parent().unwrap());
    }

    #[tokio::test]
    async fn garbage_is_ignored() {
        let db = fresh_db("garbage");
        let mut b = process(&db);
        let raw = UnixDatagram::unbound().unwrap();
        let to = b.wake.file();
        let junk: [&[u8]; 3] = [
            b"\xff\xfe\n\x00",
            b"w \no abc\nx y\nw\xff\xfe\no\no 1 2\nwx\n",
            b"",
        ];
        for junk in junk {
            raw.send_to(junk, &to).unwrap();
        }
        raw.send_to(b"w ok\no 5", &to).unwrap();
        assert_eq!(next(&mut b.work).await, "ok");
        assert_eq!(next(&mut b.outcomes).await, TaskId(5));
        assert_eq!(decode(b"w a b\n", false), vec![Arrival::Work("a b".into())]);
        assert_eq!(decode(b"junk", true).len(), 2);
        let _ = std::fs::remove_dir_all(db.parent().unwrap());
    }

    #[tokio::test]
    async fn a_peer_whose_queue_was_full_is_sent_everything() {
        let db = fresh_db("full");
        let folder = folder_of(&db);
        let a = process(&db);
        // A peer that does not read (yet).
        let slow =
            UnixDatagram::bind(folder.join(format!("{}-0000000000000001", std::process::id())))
                .unwrap();
        slow.set_nonblocking(true).unwrap();
        let owed = || a.wake.peers.lock().unwrap().list.iter().any(|p| p.owed);
        for _ in 0..100_000 {
            a.wake.send(&pending(&["mail"], &[1]));
            if owed() {
                break;
            }
        }
        assert!(owed(), "the peer's queue never filled");
        let mut buffer = [0; 1024];
        while slow.recv(&mut buffer).is_ok() {}
        a.wake.send(&pending(&["mail"], &[1]));
        let n = slow.recv(&mut buffer).unwrap();
        assert_eq!(&buffer[..n], EVERYTHING);
        assert!(!owed());
        a.wake.send(&pending(&["mail"], &[1]));
        let n = slow.recv(&mut buffer).unwrap();
        assert_eq!(&buffer[..n], b"w mail\no 1\n");
        let _ = std::fs::remove_dir_all(db.parent().unwrap());
    }

    #[test]
    fn a_folder_others_can_write_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let db = fresh_db("open");
        let folder = folder_of(&db);
        std::fs::create_dir(&folder).unwrap();
        std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o777)).unwrap();
        let (work, _) = broadcast::channel(1);
        let (outcomes, _) = broadcast::channel(1);
        let error = WakeSocket::bind(&db, work.clone(), outcomes.clone())
            .err()
            .expect("refused");
        assert!(
            error.to_string().contains("writable by group or others"),
            "{error}"
        );
        assert!(WakeSocket::open(&db, work, outcomes).is_none());
        let _ = std::fs::remove_dir_all(db.parent().unwrap());
    }

    /// Socket addresses hold about 100 bytes; a longer folder is reached through its
    /// open handle.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_folder_with_a_long_path_works() {
        let db = fresh_db(&"long".repeat(30));
        assert!(folder_of(&db).as_os_str().len() > MAX_SOCKET_PATH);
        let a = process(&db);
        let mut b = process(&db);
        a.wake.send(&pending(&["far"], &[]));
        assert_eq!(next(&mut b.work).await, "far");
        assert!(b.wake.file().exists());
        drop(b);
        a.wake.send(&pending(&["far"], &[]));
        drop(a);
        assert!(!folder_of(&db).exists());
        let _ = std::fs::remove_dir_all(db.parent().unwrap());
    }
}
