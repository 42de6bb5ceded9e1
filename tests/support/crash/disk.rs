//! A journal that cannot be written: read-only (even for root) or on a full disk.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Undoes `chattr +i` or a read-only bind mount when dropped.
pub enum ReadOnly {
    Immutable(PathBuf),
    Mounted(PathBuf),
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        let _ = match self {
            ReadOnly::Immutable(path) => Command::new("chattr").arg("-i").arg(path).status(),
            ReadOnly::Mounted(path) => Command::new("umount").arg("-l").arg(path).status(),
        };
    }
}

/// Makes the database `db` (in directory `dir`) read-only, even for root: chmod 0444,
/// and when that does not stop writes (root ignores it), `chattr +i` on the file, or else
/// a read-only bind mount of the directory. Says why when none of it works.
pub fn make_read_only(dir: &Path, db: &Path) -> Result<Option<ReadOnly>, String> {
    use std::os::unix::fs::PermissionsExt;
    let writable = || std::fs::OpenOptions::new().write(true).open(db).is_ok();
    std::fs::set_permissions(db, std::fs::Permissions::from_mode(0o444))
        .map_err(|e| format!("chmod 0444: {e}"))?;
    if !writable() {
        return Ok(None);
    }
    let chattr = Command::new("chattr").arg("+i").arg(db).output();
    if chattr.as_ref().is_ok_and(|o| o.status.success()) {
        let guard = ReadOnly::Immutable(db.to_path_buf());
        if !writable() {
            return Ok(Some(guard));
        }
    }
    let bind = Command::new("mount")
        .arg("--bind")
        .arg(dir)
        .arg(dir)
        .status();
    if bind.is_ok_and(|s| s.success()) {
        let guard = ReadOnly::Mounted(dir.to_path_buf());
        let ro = Command::new("mount")
            .args(["-o", "remount,bind,ro"])
            .arg(dir)
            .status();
        if ro.is_ok_and(|s| s.success()) && !writable() {
            return Ok(Some(guard));
        }
    }
    Err(format!(
        "running as root, chmod 0444 does not stop writes, and neither `chattr +i` ({}) nor a read-only bind mount is available",
        chattr.map_or_else(
            |e| e.to_string(),
            |o| String::from_utf8_lossy(&o.stderr).trim().to_string()
        )
    ))
}

/// Unmounts a tmpfs when dropped.
pub struct Tmpfs(PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Mounts a tmpfs of `size` (as `mount -o size=` takes it) on the directory `dir`; says
/// why when that is not possible (not root, no mount command).
pub fn mount_tmpfs(dir: &Path, size: &str) -> Result<Tmpfs, String> {
    let mount = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir)
        .output();
    match mount {
        Ok(o) if o.status.success() => Ok(Tmpfs(dir.to_path_buf())),
        other => Err(other.map_or_else(
            |e| e.to_string(),
            |o| String::from_utf8_lossy(&o.stderr).trim().to_string(),
        )),
    }
}
