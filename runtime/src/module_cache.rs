//! The compiled-module cache: an agent is compiled once per (module, wasmtime version and
//! engine configuration) and the native code reused, within a process (in memory) and
//! across processes (on disk, when a cache directory is configured).
//!
//! # Trust model
//!
//! Deserializing a compiled module is trusting native code: whoever can write a cache
//! file can run code in every later `warden` process that loads it. So the directory
//! must be owned by the user running Warden and writable by no one else (it is created
//! with mode 700; an existing directory that others may write is not used, with a
//! warning), each file is written whole under a temporary name and renamed into place
//! (mode 600), and each file carries the BLAKE3 digest of its artifact, checked before
//! use: a file whose bytes were altered or cut short is refused, deleted and compiled
//! again. The digest protects against damage, not against a person who can write the
//! directory, which is why only its owner may. wasmtime checks in turn that the artifact
//! was made by the same wasmtime version with a compatible configuration. Nothing a run
//! records comes from the cache: the journal holds the module as supplied, and replay
//! compiles (or finds in the cache) exactly that.

use std::collections::HashMap;
use std::hash::Hasher;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use wasmtime::{Engine, Module};

/// The magic prefix of a cache file, before the artifact's digest and the artifact.
const MAGIC: &[u8; 16] = b"warden-cwasm-v1\0";

/// Modules compiled in this process, by cache key: replaying a thousand runs of one agent
/// compiles it once. Bounded: beyond this many distinct modules, the oldest is dropped.
const MEMORY_ENTRIES: usize = 64;

/// Why a cache directory cannot be used. Never fatal: the caller compiles without it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError {
    /// The directory could not be created or read.
    #[error("module cache {dir}: {source}")]
    Io {
        /// The directory.
        dir: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Someone other than the owner could write compiled code into it.
    #[error(
        "module cache {dir} is not used: {why} (native code from it would run in this process; `chmod 700` it, or choose another --module-cache)"
    )]
    Unsafe {
        /// The directory.
        dir: PathBuf,
        /// What is wrong.
        why: String,
    },
}

struct Cache {
    dir: Option<PathBuf>,
    memory: HashMap<[u8; 32], Module>,
    order: Vec<[u8; 32]>,
}

fn cache() -> &'static Mutex<Cache> {
    static CACHE: OnceLock<Mutex<Cache>> = OnceLock::new();
    CACHE.get_or_init(|| {
        Mutex::new(Cache {
            dir: None,
            memory: HashMap::new(),
            order: Vec::new(),
        })
    })
}

/// Uses `dir` as this process's on-disk module cache from now on (`None`: memory only),
/// creating it (mode 700) if it does not exist.
///
/// # Errors
/// [`CacheError`] when the directory cannot be made or others may write to it; the cache
/// is then memory only.
pub fn set_module_cache_dir(dir: Option<&Path>) -> Result<(), CacheError> {
    let checked = match dir {
        Some(dir) => Some(checked_dir(dir)?),
        None => None,
    };
    if let Ok(mut cache) = cache().lock() {
        cache.dir = checked;
    }
    Ok(())
}

/// The default cache directory: `$XDG_CACHE_HOME/warden/modules`, else
/// `$HOME/.cache/warden/modules`.
pub fn default_module_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|home| PathBuf::from(home).join(".cache"))
        })?;
    Some(base.join("warden").join("modules"))
}

fn checked_dir(dir: &Path) -> Result<PathBuf, CacheError> {
    let io = |source| CacheError::Io {
        dir: dir.to_path_buf(),
        source,
    };
    if !dir.exists() {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(dir).map_err(io)?;
    }
    let metadata = std::fs::metadata(dir).map_err(io)?;
    if !metadata.is_dir() {
        return Err(CacheError::Unsafe {
            dir: dir.to_path_buf(),
            why: "it is not a directory".into(),
        });
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let me = rustix::process::geteuid().as_raw();
        if metadata.uid() != me {
            return Err(CacheError::Unsafe {
                dir: dir.to_path_buf(),
                why: format!(
                    "it is owned by uid {}, not by this user ({me})",
                    metadata.uid()
                ),
            });
        }
        if metadata.mode() & 0o022 != 0 {
            return Err(CacheError::Unsafe {
                dir: dir.to_path_buf(),
                why: format!(
                    "group or others may write to it (mode {:o})",
                    metadata.mode() & 0o777
                ),
            });
        }
    }
    Ok(dir.to_path_buf())
}

/// Feeds wasmtime's compatibility hash into BLAKE3.
struct Blake3Hasher(blake3::Hasher);

impl Hasher for Blake3Hasher {
    fn finish(&self) -> u64 {
        let bytes = self.0.finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&bytes.as_bytes()[..8]);
        u64::from_le_bytes(first)
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

/// The cache key of `binary` under `engine`: its bytes, the wasmtime version and every
/// configuration setting that changes compiled code.
pub(crate) fn key(engine: &Engine, binary: &[u8]) -> [u8; 32] {
    let mut hasher = Blake3Hasher(blake3::Hasher::new());
    hasher.0.update(b"warden-module-cache-v1\0");
    std::hash::Hash::hash(&engine.precompile_compatibility_hash(), &mut hasher);
    hasher.0.update(&(binary.len() as u64).to_le_bytes());
    hasher.0.update(binary);
    *hasher.0.finalize().as_bytes()
}

/// Compiles `binary` for `engine`, or takes it from the cache.
pub(crate) fn compile(engine: &Engine, binary: &[u8]) -> Result<Module, wasmtime::Error> {
    let key = key(engine, binary);
    let dir = match cache().lock() {
        Ok(cache) => {
            if let Some(module) = cache.memory.get(&key) {
                return Ok(module.clone());
            }
            cache.dir.clone()
        }
        Err(_) => None,
    };
    let file = dir.map(|dir| dir.join(format!("{}.cwasm", hex(&key))));
    let module = match file.as_deref().and_then(|file| load(engine, file)) {
        Some(module) => module,
        None => {
            let module = Module::new(engine, binary)?;
            if let Some(file) = &file {
                store(&module, file);
            }
            module
        }
    };
    if let Ok(mut cache) = cache().lock() {
        if cache.order.len() >= MEMORY_ENTRIES {
            let oldest = cache.order.remove(0);
            cache.memory.remove(&oldest);
        }
        cache.order.push(key);
        cache.memory.insert(key, module.clone());
    }
    Ok(module)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The module in `file`, if it is there, whole and unaltered; a damaged file is removed.
pub(crate) fn load(engine: &Engine, file: &Path) -> Option<Module> {
    let bytes = std::fs::read(file).ok()?;
    let artifact = match bytes.strip_prefix(MAGIC.as_slice()) {
        Some(rest) if rest.len() >= 32 => {
            let (digest, artifact) = rest.split_at(32);
            (blake3::hash(artifact).as_bytes().as_slice() == digest).then_some(artifact)
        }
        _ => None,
    };
    let Some(artifact) = artifact else {
        tracing::warn!(file = %file.display(), "cached module altered or incomplete; compiling again");
        let _ = std::fs::remove_file(file);
        return None;
    };
    // SAFETY: the artifact was written by `store` below (wasmtime's own serialization of
    // a module this engine compiled) into a directory only this user may write, and its
    // digest checks out; wasmtime checks its version and configuration header. See the
    // module documentation for the trust model.
    match unsafe { Module::deserialize(engine, artifact) } {
        Ok(module) => Some(module),
        Err(e) => {
            tracing::warn!(file = %file.display(), error = %e, "cached module refused by wasmtime; compiling again");
            let _ = std::fs::remove_file(file);
            None
        }
    }
}

/// Writes `module` to `file` whole (temporary name, then rename). Failures only cost a
/// later compile.
pub(crate) fn store(module: &Module, file: &Path) {
    let Ok(artifact) = module.serialize() else {
        return;
    };
    let temp = file.with_extension(format!("{}.tmp", std::process::id()));
    let written = (|| -> std::io::Result<()> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut out = options.open(&temp)?;
        out.write_all(MAGIC)?;
        out.write_all(blake3::hash(&artifact).as_bytes())?;
        out.write_all(&artifact)?;
        out.sync_all()?;
        std::fs::rename(&temp, file)
    })();
    if let Err(e) = written {
        tracing::warn!(file = %file.display(), error = %e, "could not store the compiled module");
        let _ = std::fs::remove_file(&temp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAT: &str = r#"(module (func (export "f") (result i32) i32.const 7))"#;

    fn binary() -> Vec<u8> {
        wat::parse_str(WAT).unwrap_or_default()
    }

    #[test]
    fn a_compiled_module_is_stored_reused_and_an_altered_one_refused() {
        let Ok(engine) = crate::engine::engine() else {
            return;
        };
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let cache_dir = dir.path().join("modules");
        let checked = checked_dir(&cache_dir).unwrap_or_else(|e| panic!("{e}"));
        let binary = binary();
        let file = checked.join(format!("{}.cwasm", hex(&key(engine, &binary))));
        let module = Module::new(engine, &binary).unwrap_or_else(|e| panic!("{e}"));
        store(&module, &file);
        assert!(load(engine, &file).is_some(), "a stored module loads");
        // Flip one byte of the artifact: refused and removed.
        let mut bytes = std::fs::read(&file).unwrap_or_default();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x40;
        std::fs::write(&file, &bytes).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            load(engine, &file).is_none(),
            "an altered module is refused"
        );
        assert!(!file.exists(), "and removed, to be compiled again");
        // Cut short: refused.
        store(&module, &file);
        let bytes = std::fs::read(&file).unwrap_or_default();
        std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap_or_else(|e| panic!("{e}"));
        assert!(load(engine, &file).is_none());
    }

    #[cfg(unix)]
    #[test]
    fn a_directory_others_may_write_is_not_used() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap_or_else(|e| panic!("{e}"));
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(checked_dir(&open), Err(CacheError::Unsafe { .. })));
        let made = dir.path().join("new/modules");
        assert!(checked_dir(&made).is_ok());
        let mode = std::fs::metadata(&made)
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or(0);
        assert_eq!(mode, 0o700);
    }

    #[test]
    fn the_key_follows_the_bytes() {
        let Ok(engine) = crate::engine::engine() else {
            return;
        };
        let a = binary();
        let mut b = a.clone();
        b.push(0);
        assert_ne!(key(engine, &a), key(engine, &b));
        assert_eq!(key(engine, &a), key(engine, &a));
    }
}
