//! The signer's own record of the last tree head it signed for each journal, kept beside
//! the signing key (`<key>.heads`), where a person who can write only the journal file
//! cannot reach.
//!
//! A journal's stored head is in the journal: someone who can write the file can put an
//! earlier genuine head back (every pack and every `warden log head` hands one out), cut
//! the log and the runs back to match it, and wait for the next signed write to extend
//! that. The stored head cannot tell an earlier head from the latest; this record can.
//! Before a signed write, the log must extend the last head recorded here for the same
//! key and journal; after it, the new head is recorded. One line per (key, journal):
//! `<key id> <size> <root hex> <journal path, hex of its bytes>`.
//!
//! A journal is named by the path the operator gave, made absolute, its `.` and `..`
//! taken out as written (`/srv/w/../w/j.redb` is `/srv/w/j.redb`: a path spelled another
//! way must not find no record), but with no symlink resolved: whoever can write the journal's directory may point a symlink anywhere, but
//! cannot change which record the operator's path reads (a record keyed by where a
//! symlink led could be steered to a name with no record, or to one the attacker wrote
//! into the path itself). The path is stored as hex, so no byte of it can break a line.
//!
//! The record is written after the journal's commit is durable and is not itself
//! synced: after a crash it may lag the journal (an older head the journal extends),
//! never lead it. Writers of several journals under one key update it one at a time (a
//! lock on `<file>.lock`), with a temporary file and a rename, so a reader never sees
//! half of it and no update is lost. A line that does not parse is ignored (the file is
//! the operator's).

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::seal::hex;
use crate::seal::merkle::Hash;
use crate::seal::signing::KeyId;

/// `path` with its `.` components dropped and each `..` taking out the name before it, as
/// written (no symlink is followed: the operator's path names the journal).
fn lexical(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                if !matches!(out.components().next_back(), Some(Component::Normal(_))) || !out.pop()
                {
                    out.push(component);
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// Where the heads one key signed are recorded, and which journal this is.
#[derive(Debug)]
pub(super) struct KeptHeads {
    file: PathBuf,
    journal: String,
    key: String,
    /// This journal's line, once read: while the journal is open no other process writes
    /// to it (redb's lock), so the file is read once, not on every transaction.
    last: std::sync::Mutex<Option<Option<(u64, Hash)>>>,
}

impl KeptHeads {
    /// The record in `file` for `journal` (the operator's path made absolute, no symlink
    /// resolved) signed by `key`.
    pub(super) fn new(file: PathBuf, journal: &Path, key: KeyId) -> KeptHeads {
        let journal =
            lexical(&std::path::absolute(journal).unwrap_or_else(|_| journal.to_path_buf()));
        KeptHeads {
            file,
            journal: hex::encode(journal.as_os_str().as_encoded_bytes()),
            key: key.to_string(),
            last: std::sync::Mutex::new(None),
        }
    }

    /// The file the heads are recorded in.
    pub(super) fn file(&self) -> &Path {
        &self.file
    }

    /// The last head recorded for this key and journal: (size, root).
    pub(super) fn last(&self) -> Option<(u64, Hash)> {
        let mut cached = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *cached.get_or_insert_with(|| self.read())
    }

    /// This journal's line as the file holds it.
    fn read(&self) -> Option<(u64, Hash)> {
        let text = std::fs::read_to_string(&self.file).ok()?;
        text.lines().rev().find_map(|line| {
            let (key, size, root, journal) = parse(line)?;
            (key == self.key && journal == self.journal).then_some((size, root))
        })
    }

    /// Records (size, root) as the last head signed for this key and journal.
    ///
    /// # Errors
    /// The file cannot be written.
    pub(super) fn record(&self, size: u64, root: &Hash) -> std::io::Result<()> {
        let mut lock_name = self.file.as_os_str().to_owned();
        lock_name.push(".lock");
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(false);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let lock = options.open(PathBuf::from(lock_name))?;
        // Held until `lock` drops, after the rename.
        lock.lock()?;
        let old = std::fs::read_to_string(&self.file).unwrap_or_default();
        let mut text: String = old
            .lines()
            .filter(|line| {
                parse(line).is_none_or(|(key, _, _, journal)| {
                    !(key == self.key && journal == self.journal)
                })
            })
            .flat_map(|line| [line, "\n"])
            .collect();
        text.push_str(&format!(
            "{} {size} {} {}\n",
            self.key,
            hex::encode(root),
            self.journal
        ));
        let temp = self
            .file
            .with_extension(format!("heads.{}.new", std::process::id()));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&temp)?;
        file.write_all(text.as_bytes())?;
        drop(file);
        std::fs::rename(&temp, &self.file)?;
        *self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Some((size, *root)));
        Ok(())
    }
}

/// A line: (key id, size, root, journal path as hex).
fn parse(line: &str) -> Option<(&str, u64, Hash, &str)> {
    let mut parts = line.split(' ');
    let key = parts.next()?;
    let size = parts.next()?.parse().ok()?;
    let root = hex::decode_array::<32>(parts.next()?).ok()?;
    let journal = parts.next()?;
    parts.next().is_none().then_some((key, size, root, journal))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One journal spelled with `.`, `..` or doubled separators finds one record. (Found
    /// by a reviewer: a signed write through `/dir/../dir/j.redb` passed the rollback
    /// check that `/dir/j.redb` failed.)
    #[test]
    fn a_journal_spelled_another_way_finds_its_record() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("k.heads");
        let key = KeyId([1; 8]);
        let named = dir.path().join("warden.redb");
        KeptHeads::new(file.clone(), &named, key)
            .record(7, &[3; 32])
            .expect("record");
        let name = dir.path().file_name().expect("name").to_os_string();
        for spelled in [
            dir.path().join("..").join(&name).join("warden.redb"),
            dir.path().join(".").join("warden.redb"),
            PathBuf::from(format!("{}//warden.redb", dir.path().display())),
        ] {
            assert_eq!(
                KeptHeads::new(file.clone(), &spelled, key).last(),
                Some((7, [3; 32])),
                "{}",
                spelled.display()
            );
        }
    }

    /// A journal reached through a symlink keeps the record of the path the operator
    /// named, and no byte of a path can forge a line.
    #[test]
    fn the_record_is_the_operators_path_and_cannot_be_forged_through_it() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("k.heads");
        let key = KeyId([1; 8]);
        let named = dir.path().join("warden.redb");
        std::fs::write(dir.path().join("elsewhere.redb"), b"").expect("target");
        #[cfg(unix)]
        std::os::unix::fs::symlink(dir.path().join("elsewhere.redb"), &named).expect("link");
        let kept = KeptHeads::new(file.clone(), &named, key);
        kept.record(7, &[3; 32]).expect("record");
        assert_eq!(
            KeptHeads::new(file.clone(), &named, key).last(),
            Some((7, [3; 32]))
        );
        let target = KeptHeads::new(file.clone(), &dir.path().join("elsewhere.redb"), key);
        assert_eq!(target.last(), None);
        let forged = dir.path().join(format!(
            "x\n{key} 0 {} {}",
            hex::encode(&[0; 32]),
            named.display()
        ));
        KeptHeads::new(file.clone(), &forged, key)
            .record(1, &[4; 32])
            .expect("record");
        assert_eq!(
            KeptHeads::new(file.clone(), &named, key).last(),
            Some((7, [3; 32]))
        );
        let text = std::fs::read_to_string(&file).expect("file");
        assert_eq!(text.lines().count(), 2, "{text}");
    }
}
