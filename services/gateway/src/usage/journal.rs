//! The usage journal: the gateway's write-ahead log of usage events.
//!
//! Every usage event is appended here (one `write` of one line, into the
//! page cache) before the response that incurred it completes, so a killed
//! process, even `kill -9`, loses nothing it served. The publisher sends
//! the journal to the event log in order and deletes what the log has
//! taken. While the log is down the journal grows on disk, not in memory.
//! The publisher syncs the current segment to disk every second, which
//! bounds what a machine crash (not a process crash) can take.
//!
//! Layout, under `data_dir/usage/<gateway id>/` (directories 0700, files 0600):
//! - `lock`: held (an exclusive `flock`) by the process using the identity;
//! - `configured`: present when the id came from the configuration, so no
//!   other gateway adopts it as its own;
//! - `seq`: the next origin sequence number, saved before a segment is
//!   deleted and at shutdown, so numbering continues across restarts;
//! - `0000000001.wal`, …: segments, one JSON envelope per line.
//!
//! At start a gateway claims its identity (the configured id, else the
//! first unconfigured identity no process holds, else a new one), then takes
//! over the journal of every other identity no process holds (a gateway
//! stopped during an outage, whatever id it ran under): it copies their
//! lines into its own journal, saves their `seq`, and deletes their
//! segments. Two gateways sharing a data dir each hold their own identity
//! and never touch the other's. Spool files of earlier versions
//! (`usage-*.spool` in the data dir) are taken over the same way.

use std::fs::{File, TryLockError};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::Notify;

use crate::files::{create_private_dir, private_options, sync_dir, write_private};

/// A segment is closed once it holds this much and everything in it was sent.
pub const SEGMENT_BYTES: u64 = 8 * 1024 * 1024;
/// Bytes written and not yet being sent past which the publisher stops
/// lingering: at a rate that writes this much within the linger, waiting
/// longer only adds lag (an append's fixed costs are spread thin already).
pub const FILLED_BYTES: usize = 256 * 1024;
/// How long a configured identity waits for another process's take-over
/// of its journal to finish.
const CLAIM_WAIT: Duration = Duration::from_secs(10);

/// Why the journal cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("usage journal {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("gateway id `{0}`: use 1 to 64 letters, digits, `.`, `_` or `-`, starting with a letter or digit")]
    BadId(String),
    #[error("gateway id `{id}` is in use by another process on {dir} (each gateway on a data dir needs its own id)")]
    InUse { id: String, dir: PathBuf },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> JournalError + '_ {
    move |source| JournalError::Io {
        path: path.to_owned(),
        source,
    }
}

/// One segment file.
pub struct Segment {
    /// Its number (its name).
    pub number: u64,
    file: File,
}

impl Segment {
    /// Syncs what was written to disk.
    pub fn sync(&self) -> std::io::Result<()> {
        self.file.sync_data()
    }
}

/// What the journal found and took over when it opened.
#[derive(Debug, Default, Clone, Copy)]
pub struct Opened {
    /// Lines already in this identity's segments.
    pub own_lines: u64,
    /// Lines copied from other identities' journals and old spools.
    pub taken_over: u64,
}

/// One identity's journal.
pub struct Journal {
    id: String,
    dir: PathBuf,
    _lock: File,
    current: ArcSwap<Segment>,
    next_seq: AtomicU64,
    written: AtomicU64,
    write_errors: AtomicU64,
    /// Woken on every append, for the publisher.
    pub appended: Notify,
    /// Bytes written since the publisher last began to send.
    unsent: AtomicUsize,
    /// Wakes the publisher's waiters when `unsent` reaches [`FILLED_BYTES`].
    pub filled: Notify,
    /// What opening found.
    pub opened: Opened,
}

impl Journal {
    /// Claims an identity under `data_dir/usage` (`configured`, or adopted,
    /// or new), takes over unheld journals and opens a fresh segment.
    pub fn open(data_dir: &Path, configured: Option<&str>) -> Result<Journal, JournalError> {
        let root = data_dir.join("usage");
        create_private_dir(&root).map_err(io(&root))?;
        let (id, dir, lock) = claim(&root, configured)?;
        let mut next_seq = read_seq(&dir)?;
        let mut opened = Opened::default();
        let segments = segment_numbers(&dir).map_err(io(&dir))?;
        for &number in &segments {
            let path = segment_path(&dir, number);
            for line in complete_lines(&std::fs::read(&path).map_err(io(&path))?) {
                opened.own_lines += 1;
                if let Some(seq) = own_seq(line, &id) {
                    next_seq = next_seq.max(seq + 1);
                }
            }
        }
        let number = segments.last().map_or(1, |n| n + 1);
        let path = segment_path(&dir, number);
        let file = private_options()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        let segment = Segment { number, file };
        opened.taken_over = take_over(&root, data_dir, &id, &segment)?;
        sync_dir(Some(&dir)).map_err(io(&dir))?;
        let journal = Journal {
            id,
            dir,
            _lock: lock,
            current: ArcSwap::from_pointee(segment),
            next_seq: AtomicU64::new(next_seq),
            written: AtomicU64::new(opened.own_lines + opened.taken_over),
            write_errors: AtomicU64::new(0),
            appended: Notify::new(),
            unsent: AtomicUsize::new(0),
            filled: Notify::new(),
            opened,
        };
        journal.save_seq().map_err(io(&journal.dir))?;
        Ok(journal)
    }

    /// The gateway id this journal belongs to.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The identity's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Takes the next origin sequence number.
    pub fn take_seq(&self) -> u64 {
        self.next_seq.fetch_add(1, Ordering::Relaxed)
    }

    /// The next origin sequence number, not taken.
    pub fn next_seq(&self) -> u64 {
        self.next_seq.load(Ordering::Relaxed)
    }

    /// Lines written since start, those found at start included.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Appends that failed (the line went to the publisher's memory instead).
    pub fn write_errors(&self) -> u64 {
        self.write_errors.load(Ordering::Relaxed)
    }

    /// Appends one line (an encoded envelope ending in `\n`) with a single
    /// `write`, which the kernel keeps whole among concurrent appenders.
    pub fn append(&self, line: &[u8]) -> std::io::Result<()> {
        let segment = self.current.load_full();
        let result = match (&segment.file).write(line) {
            Ok(n) if n == line.len() => Ok(()),
            Ok(n) => {
                // A torn line (the disk is full): end it, so the next line
                // stays readable; the reader skips the torn one.
                let _ = (&segment.file).write(b"\n");
                Err(std::io::Error::new(
                    std::io::ErrorKind::WriteZero,
                    format!("wrote {n} of {} bytes", line.len()),
                ))
            }
            Err(e) => Err(e),
        };
        drop(segment);
        match &result {
            Ok(()) => {
                self.written.fetch_add(1, Ordering::Relaxed);
                self.appended.notify_one();
                let before = self.unsent.fetch_add(line.len(), Ordering::Relaxed);
                if before < FILLED_BYTES && before + line.len() >= FILLED_BYTES {
                    self.filled.notify_waiters();
                }
            }
            Err(_) => {
                self.write_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        result
    }

    /// Whether the bytes written since the publisher last began to send
    /// have reached [`FILLED_BYTES`].
    pub fn is_filled(&self) -> bool {
        self.unsent.load(Ordering::Relaxed) >= FILLED_BYTES
    }

    /// The publisher begins to send what is written: counting toward
    /// [`FILLED_BYTES`] starts again.
    pub fn sending(&self) {
        self.unsent.store(0, Ordering::Relaxed);
    }

    /// The segment appends go to now.
    pub fn current(&self) -> Arc<Segment> {
        self.current.load_full()
    }

    /// Starts a new segment for appends; returns the old one, which writers
    /// may still hold for a moment (its strong count tells).
    pub fn rotate(&self) -> std::io::Result<Arc<Segment>> {
        let number = self.current.load().number + 1;
        let path = segment_path(&self.dir, number);
        let file = private_options().create(true).append(true).open(&path)?;
        sync_dir(Some(&self.dir))?;
        Ok(self.current.swap(Arc::new(Segment { number, file })))
    }

    /// Segment numbers on disk, oldest first.
    pub fn segments(&self) -> std::io::Result<Vec<u64>> {
        segment_numbers(&self.dir)
    }

    /// Reads segment `number` from `offset`, at most `max` bytes.
    pub fn read(&self, number: u64, offset: u64, max: usize) -> std::io::Result<Vec<u8>> {
        read_at(&segment_path(&self.dir, number), offset, max)
    }

    /// The size of segment `number` (0 when gone).
    pub fn size(&self, number: u64) -> u64 {
        std::fs::metadata(segment_path(&self.dir, number)).map_or(0, |m| m.len())
    }

    /// Deletes a segment whose every line the log has taken, saving the
    /// sequence first so numbering never goes back.
    pub fn delete(&self, number: u64) -> std::io::Result<()> {
        self.save_seq()?;
        match std::fs::remove_file(segment_path(&self.dir, number)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        sync_dir(Some(&self.dir))
    }

    /// Saves the next sequence number (also at shutdown).
    pub fn save_seq(&self) -> std::io::Result<()> {
        write_seq(&self.dir, self.next_seq())
    }

    /// Keeps a line the log refuses even alone (see the publisher), so it
    /// is not lost, only set aside for an operator.
    pub fn set_aside(&self, line: &[u8]) -> std::io::Result<()> {
        let path = self.dir.join("rejected.jsonl");
        let mut file = private_options().create(true).append(true).open(path)?;
        file.write_all(line)?;
        if !line.ends_with(b"\n") {
            file.write_all(b"\n")?;
        }
        file.sync_data()
    }
}

/// A journal under a data dir that no running gateway holds, with events in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeftBehind {
    pub gateway: String,
    pub events: u64,
    pub bytes: u64,
}

/// Journals under `data_dir/usage` (and old spools) that hold events while
/// no process holds them: usage waiting for a gateway to start there.
pub fn left_behind(data_dir: &Path) -> Result<Vec<LeftBehind>, JournalError> {
    let root = data_dir.join("usage");
    let mut found = Vec::new();
    if root.is_dir() {
        for (id, dir) in identities(&root)? {
            let Some(_lock) = try_lock(&dir)? else {
                continue;
            };
            let (mut events, mut bytes) = (0, 0);
            for number in segment_numbers(&dir).map_err(io(&dir))? {
                let path = segment_path(&dir, number);
                let content = std::fs::read(&path).map_err(io(&path))?;
                bytes += content.len() as u64;
                events += complete_lines(&content).count() as u64;
            }
            if events > 0 {
                found.push(LeftBehind {
                    gateway: id,
                    events,
                    bytes,
                });
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir(data_dir) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(id) = name
                .strip_prefix("usage-")
                .and_then(|n| n.strip_suffix(".spool"))
            {
                let content = std::fs::read(entry.path()).unwrap_or_default();
                let events = complete_lines(&content).count() as u64;
                if events > 0 {
                    found.push(LeftBehind {
                        gateway: id.to_owned(),
                        events,
                        bytes: content.len() as u64,
                    });
                }
            }
        }
    }
    Ok(found)
}

/// Claims this process's identity: `(id, dir, held lock)`.
fn claim(root: &Path, configured: Option<&str>) -> Result<(String, PathBuf, File), JournalError> {
    if let Some(id) = configured {
        if !valid_id(id) {
            return Err(JournalError::BadId(id.to_owned()));
        }
        let dir = root.join(id);
        create_private_dir(&dir).map_err(io(&dir))?;
        let marker = dir.join("configured");
        write_private(&marker, b"").map_err(io(&marker))?;
        let deadline = std::time::Instant::now() + CLAIM_WAIT;
        loop {
            if let Some(lock) = try_lock(&dir)? {
                return Ok((id.to_owned(), dir, lock));
            }
            if std::time::Instant::now() >= deadline {
                return Err(JournalError::InUse {
                    id: id.to_owned(),
                    dir,
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    for (id, dir) in identities(root)? {
        if dir.join("configured").exists() {
            continue;
        }
        if let Some(lock) = try_lock(&dir)? {
            return Ok((id, dir, lock));
        }
    }
    let id = format!("gw-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let dir = root.join(&id);
    create_private_dir(&dir).map_err(io(&dir))?;
    let lock = try_lock(&dir)?.ok_or_else(|| JournalError::InUse {
        id: id.clone(),
        dir: dir.clone(),
    })?;
    Ok((id, dir, lock))
}

/// The identity's lock, if no other process holds it.
fn try_lock(dir: &Path) -> Result<Option<File>, JournalError> {
    let path = dir.join("lock");
    let file = private_options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io(&path))?;
    match file.try_lock() {
        Ok(()) => {
            // Informational: who holds it.
            let _ = file.set_len(0);
            let _ = (&file).write_all(format!("{}\n", std::process::id()).as_bytes());
            Ok(Some(file))
        }
        Err(TryLockError::WouldBlock) => Ok(None),
        Err(TryLockError::Error(e)) => Err(io(&path)(e)),
    }
}

/// Copies every unheld journal but `own` (and old spools) into `into`;
/// returns the lines copied.
fn take_over(root: &Path, data_dir: &Path, own: &str, into: &Segment) -> Result<u64, JournalError> {
    let mut copied = 0;
    for (id, dir) in identities(root)? {
        if id == own {
            continue;
        }
        let Some(_lock) = try_lock(&dir)? else {
            continue;
        };
        let segments = segment_numbers(&dir).map_err(io(&dir))?;
        if segments.is_empty() {
            continue;
        }
        let mut next_seq = read_seq(&dir)?;
        for &number in &segments {
            let path = segment_path(&dir, number);
            let bytes = std::fs::read(&path).map_err(io(&path))?;
            let mut lines = Vec::with_capacity(bytes.len() + 1);
            for line in complete_lines(&bytes) {
                if let Some(seq) = own_seq(line, &id) {
                    next_seq = next_seq.max(seq + 1);
                }
                lines.extend_from_slice(line);
                lines.push(b'\n');
                copied += 1;
            }
            (&into.file).write_all(&lines).map_err(io(&dir))?;
        }
        into.file.sync_data().map_err(io(&dir))?;
        write_seq(&dir, next_seq).map_err(io(&dir))?;
        for number in segments {
            let path = segment_path(&dir, number);
            std::fs::remove_file(&path).map_err(io(&path))?;
        }
        sync_dir(Some(&dir)).map_err(io(&dir))?;
        tracing::info!(gateway = %id, events = copied, "took over the usage journal of a gateway no longer running");
    }
    copied += take_over_spools(data_dir, into)?;
    Ok(copied)
}

/// Spool files of earlier versions (`usage-<id>.spool`), one envelope per line.
fn take_over_spools(data_dir: &Path, into: &Segment) -> Result<u64, JournalError> {
    let mut copied = 0;
    let entries = match std::fs::read_dir(data_dir) {
        Ok(entries) => entries,
        Err(e) => return Err(io(data_dir)(e)),
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !(name.starts_with("usage-") && name.ends_with(".spool")) {
            continue;
        }
        let path = entry.path();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io(&path))?;
        if file.try_lock().is_err() {
            continue;
        }
        let bytes = std::fs::read(&path).map_err(io(&path))?;
        let mut lines = Vec::new();
        for line in complete_lines(&bytes) {
            lines.extend_from_slice(line);
            lines.push(b'\n');
            copied += 1;
        }
        (&into.file).write_all(&lines).map_err(io(&path))?;
        into.file.sync_data().map_err(io(&path))?;
        std::fs::remove_file(&path).map_err(io(&path))?;
        tracing::info!(spool = %path.display(), "took over an old usage spool");
    }
    sync_dir(Some(data_dir)).map_err(io(data_dir))?;
    Ok(copied)
}

/// Identity directories under `root`, by name.
fn identities(root: &Path) -> Result<Vec<(String, PathBuf)>, JournalError> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(root).map_err(io(root))?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if valid_id(&name) && entry.path().is_dir() {
            found.push((name, entry.path()));
        }
    }
    found.sort();
    Ok(found)
}

/// Whether `id` may name a gateway (and its directory).
pub fn valid_id(id: &str) -> bool {
    let bytes = id.as_bytes();
    (1..=64).contains(&bytes.len())
        && bytes[0].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn segment_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{number:010}.wal"))
}

fn segment_numbers(dir: &Path) -> std::io::Result<Vec<u64>> {
    let mut numbers = Vec::new();
    for entry in std::fs::read_dir(dir)?.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if let Some(n) = name.strip_suffix(".wal").and_then(|n| n.parse().ok()) {
            numbers.push(n);
        }
    }
    numbers.sort_unstable();
    Ok(numbers)
}

fn read_seq(dir: &Path) -> Result<u64, JournalError> {
    let path = dir.join("seq");
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(text.trim().parse::<u64>().unwrap_or(1).max(1)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(1),
        Err(e) => Err(io(&path)(e)),
    }
}

fn write_seq(dir: &Path, next: u64) -> std::io::Result<()> {
    write_private(&dir.join("seq"), format!("{next}\n").as_bytes())
}

fn read_at(path: &Path, offset: u64, max: usize) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    file.seek(SeekFrom::Start(offset))?;
    let mut out = Vec::new();
    file.take(max as u64).read_to_end(&mut out)?;
    Ok(out)
}

/// The complete lines of `bytes` (a torn last line is left out), empty ones skipped.
pub fn complete_lines(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let end = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    bytes[..end]
        .split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
}

/// The origin sequence of a usage line written by gateway `id`. Usage
/// envelopes end with `"origin":{"gateway":"<id>","seq":N…}}`, which the
/// event's own writer guarantees; anything else is not this gateway's.
fn own_seq(line: &[u8], id: &str) -> Option<u64> {
    let needle = b"\"origin\":{\"gateway\":\"";
    let start = line.windows(needle.len()).rposition(|w| w == needle)? + needle.len();
    let rest = &line[start..];
    let rest = rest.strip_prefix(id.as_bytes())?;
    let rest = rest.strip_prefix(b"\",\"seq\":")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("journal-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn line(gateway: &str, seq: u64) -> Vec<u8> {
        format!("{{\"id\":\"x\",\"data\":{{\"origin\":{{\"gateway\":\"{gateway}\",\"seq\":{seq}}}}}}}\n")
            .into_bytes()
    }

    #[test]
    fn a_restarted_gateway_keeps_its_identity_its_lines_and_its_numbering() {
        let data = temp();
        let first = Journal::open(&data, None).unwrap();
        let id = first.id().to_owned();
        for _ in 0..3 {
            let seq = first.take_seq();
            first.append(&line(&id, seq)).unwrap();
        }
        // Killed: nothing saved but the lines.
        drop(first);
        let again = Journal::open(&data, None).unwrap();
        assert_eq!(again.id(), id);
        assert_eq!(again.opened.own_lines, 3);
        assert_eq!(
            again.take_seq(),
            4,
            "numbering continues after the journal's lines"
        );
        std::fs::remove_dir_all(data).ok();
    }

    #[test]
    fn a_second_process_gets_its_own_identity_and_takes_over_only_unheld_journals() {
        let data = temp();
        let a = Journal::open(&data, None).unwrap();
        let seq = a.take_seq();
        a.append(&line(a.id(), seq)).unwrap();
        // `a` still runs: `b` neither adopts nor empties its journal.
        let b = Journal::open(&data, None).unwrap();
        assert_ne!(a.id(), b.id());
        assert_eq!(b.opened.taken_over, 0);
        let a_id = a.id().to_owned();
        drop(a);
        drop(b);
        // A configured gateway starting now takes both journals over.
        let c = Journal::open(&data, Some("gw-configured")).unwrap();
        assert_eq!(c.opened.taken_over, 1);
        let copied = std::fs::read(segment_path(c.dir(), c.current().number)).unwrap();
        assert_eq!(copied, line(&a_id, 1));
        // The adopted identity's numbering was saved before its lines moved.
        assert_eq!(read_seq(&data.join("usage").join(&a_id)).unwrap(), 2);
        // Its own id cannot be claimed twice.
        match Journal::open(&data, Some("gw-configured")) {
            Err(JournalError::InUse { .. }) => {}
            other => panic!("{:?}", other.map(|j| j.id().to_owned())),
        }
        assert!(matches!(
            Journal::open(&data, Some("../escape")),
            Err(JournalError::BadId(_))
        ));
        std::fs::remove_dir_all(data).ok();
    }

    #[test]
    fn old_spool_files_are_taken_over() {
        let data = temp();
        std::fs::write(
            data.join("usage-gw-old.spool"),
            [line("gw-old", 7), b"{\"torn".to_vec()].concat(),
        )
        .unwrap();
        let j = Journal::open(&data, None).unwrap();
        assert_eq!(j.opened.taken_over, 1);
        assert!(!data.join("usage-gw-old.spool").exists());
        std::fs::remove_dir_all(data).ok();
    }

    #[test]
    fn the_origin_sequence_is_read_only_for_the_named_gateway() {
        assert_eq!(own_seq(&line("gw-a", 42), "gw-a"), Some(42));
        assert_eq!(own_seq(&line("gw-a", 42), "gw-ab"), None);
        assert_eq!(own_seq(&line("gw-ab", 42), "gw-a"), None);
        assert_eq!(own_seq(b"{}", "gw-a"), None);
        let lines: Vec<&[u8]> = complete_lines(b"a\n\nb\nc").collect();
        assert_eq!(lines, [b"a".as_slice(), b"b".as_slice()]);
    }
}
