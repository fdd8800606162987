//! The spool: usage events the event log could not take, kept in an
//! append-only file (one JSON envelope per line, fsync'd before it counts
//! as written) until they can be replayed, in order.
//!
//! A crash while appending can leave a torn last line; it is skipped on
//! replay with a warning (its event was never acknowledged as spooled). A
//! crash mid-replay means the replayed part is sent again; event ids make
//! that harmless (the log drops repeats in its window, the ledger beyond it).

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

/// The spool file.
pub struct Spool {
    path: PathBuf,
    file: File,
    /// Lines written and not yet replayed.
    pending: u64,
}

impl Spool {
    /// Opens (creating) the spool at `path`, counting what it already holds.
    pub fn open(path: &Path) -> std::io::Result<Spool> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(path)?;
        // A line torn by a crash would glue itself to the next append: cut it off.
        let text = std::fs::read(path)?;
        let whole = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        if whole < text.len() {
            tracing::warn!(
                bytes = text.len() - whole,
                "dropping a torn last line from the usage spool"
            );
            file.set_len(whole as u64)?;
        }
        let pending = BufReader::new(File::open(path)?).lines().count() as u64;
        Ok(Spool {
            path: path.to_owned(),
            file,
            pending,
        })
    }

    /// Events waiting for replay.
    pub fn pending(&self) -> u64 {
        self.pending
    }

    /// Appends `lines` (each one encoded envelope) and syncs them to disk.
    pub fn append(&mut self, lines: &[Vec<u8>]) -> std::io::Result<()> {
        let mut buffer = Vec::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
        for line in lines {
            buffer.extend_from_slice(line);
            buffer.push(b'\n');
        }
        self.file.write_all(&buffer)?;
        self.file.sync_data()?;
        self.pending += lines.len() as u64;
        Ok(())
    }

    /// Everything spooled, oldest first; a torn last line is left out.
    pub fn read_all(&self) -> std::io::Result<Vec<Vec<u8>>> {
        let text = std::fs::read(&self.path)?;
        let mut lines: Vec<Vec<u8>> = text
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(<[u8]>::to_vec)
            .collect();
        if !text.ends_with(b"\n") {
            if let Some(torn) = lines.pop() {
                tracing::warn!(
                    bytes = torn.len(),
                    "skipping a torn last line in the usage spool"
                );
            }
        }
        Ok(lines)
    }

    /// Empties the spool once everything in it was replayed.
    pub fn clear(&mut self) -> std::io::Result<()> {
        self.file.set_len(0)?;
        self.file.sync_all()?;
        self.pending = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_survive_reopening_and_a_torn_tail_is_skipped() {
        let dir = std::env::temp_dir().join(format!("spool-{}", uuid::Uuid::new_v4().simple()));
        let path = dir.join("usage.spool");
        let mut spool = Spool::open(&path).unwrap();
        spool
            .append(&[b"{\"a\":1}".to_vec(), b"{\"a\":2}".to_vec()])
            .unwrap();
        drop(spool);
        let spool = Spool::open(&path).unwrap();
        assert_eq!(spool.pending(), 2);
        // A crash mid-write leaves half a line.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"a\":")
            .unwrap();
        assert_eq!(
            spool.read_all().unwrap(),
            vec![b"{\"a\":1}".to_vec(), b"{\"a\":2}".to_vec()]
        );
        drop(spool);
        // Reopened, the torn part is cut off, so the next append is a line of its own.
        let mut spool = Spool::open(&path).unwrap();
        spool.append(&[b"{\"a\":3}".to_vec()]).unwrap();
        assert_eq!(spool.read_all().unwrap().len(), 3);
        spool.clear().unwrap();
        assert!(spool.read_all().unwrap().is_empty());
        assert_eq!(Spool::open(&path).unwrap().pending(), 0);
        std::fs::remove_dir_all(dir).ok();
    }
}
