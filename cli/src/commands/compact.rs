//! `warden compact`: return the journal file's free space to the file system.

use std::path::Path;

use crate::output;

/// Runs `warden compact`.
pub fn run(db: &Path) -> anyhow::Result<u8> {
    let before = std::fs::metadata(db).map(|m| m.len()).unwrap_or(0);
    let mut journal = output::open_unsigned(db)?;
    journal.compact().map_err(warden::Error::from)?;
    drop(journal);
    let after = std::fs::metadata(db).map(|m| m.len()).unwrap_or(0);
    println!("{}: {before} bytes -> {after} bytes", db.display());
    Ok(output::exit::COMPLETED)
}
