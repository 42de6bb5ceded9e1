//! Loading an agent: validate a module, refuse any authority it could reach around the
//! host-call import, and prepare it so that its whole state can be checkpointed.
//!
//! Upholds invariant 2 (no ambient authority): a module that imports anything but
//! `warden.host_call` is refused, and the error names the import. The one exception is a
//! WASI guest (`docs/design.md`, "WASI guests"): loaded for a policy that allows WASI
//! ([`WasiImports::Admitted`]), a module may also import the WASI preview 1 functions
//! Warden answers itself ([`WASI_FUNCTIONS`], in `crate::wasi`), each with its WASI type;
//! any other WASI function (files, sockets, polling) is refused, named. It also makes the
//! checkpoint promise true ("memory + globals + fuel + state is the whole state"): every
//! mutable global is exported under a Warden name (the technique Wizer uses), and modules
//! whose instance state would escape a checkpoint (a start function, table mutation,
//! passive data segments) are refused.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use wasm_encoder::{ExportKind, ExportSection, RawSection};
use wasmparser::{ExternalKind, Operator, Parser, Payload};
use wasmtime::{ExternType, InstancePre, Module, ValType};

use crate::checkpoint::FirstImage;
use crate::digest::{Digest, domain};
use crate::host_call::HostState;
use crate::policy::Policy;
use warden_guest::wire;

/// Prefix of the exports Warden adds for mutable globals: `__warden_global_<index>`.
pub const GLOBAL_EXPORT_PREFIX: &str = "__warden_global_";

/// The import module of WASI preview 1, which `wasm32-wasip1` guests import.
pub const WASI_MODULE: &str = "wasi_snapshot_preview1";

/// The WASI preview 1 functions Warden answers for a WASI guest, each with its core type
/// (parameters `>` results; `i` is i32, `I` i64), as `wasm32-wasip1` declares them.
/// `crate::wasi` defines exactly these (a test checks it).
pub const WASI_FUNCTIONS: &[(&str, &str)] = &[
    ("args_get", "ii>i"),
    ("args_sizes_get", "ii>i"),
    ("clock_res_get", "ii>i"),
    ("clock_time_get", "iIi>i"),
    ("environ_get", "ii>i"),
    ("environ_sizes_get", "ii>i"),
    ("fd_close", "i>i"),
    ("fd_fdstat_get", "ii>i"),
    ("fd_prestat_dir_name", "iii>i"),
    ("fd_prestat_get", "ii>i"),
    ("fd_read", "iiii>i"),
    ("fd_seek", "iIii>i"),
    ("fd_write", "iiii>i"),
    ("proc_exit", "i>"),
    ("random_get", "ii>i"),
    ("sched_yield", ">i"),
];

/// The advice of a refused WASI import when WASI was not admitted.
const WASI_NOT_ALLOWED: &str = ": WASI is available only to an agent whose policy allows WASI guests ([wasi] enabled = true: Warden answers their clocks, randomness and output and journals them; no files or network); otherwise build for wasm32-unknown-unknown against warden-guest";

/// The advice of a refused import of a WASI function Warden does not answer.
const WASI_UNANSWERED: &str = ": Warden answers only the WASI functions a guest needs for clocks, randomness and standard output and error (args_get, args_sizes_get, clock_res_get, clock_time_get, environ_get, environ_sizes_get, fd_close, fd_fdstat_get, fd_prestat_dir_name, fd_prestat_get, fd_read, fd_seek, fd_write, proc_exit, random_get, sched_yield); a WASI guest has no files, sockets, polling or other processes";

/// The advice of a refused import from another WASI module than preview 1.
const WASI_OTHER: &str = ": Warden answers WASI preview 1 (wasi_snapshot_preview1, target wasm32-wasip1) only, for an agent whose policy allows WASI guests; otherwise build for wasm32-unknown-unknown against warden-guest";

/// Whether loading admits a WASI guest: a module that imports WASI preview 1 functions.
/// A policy decides ([`WasiImports::of`]); the default refuses them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WasiImports {
    /// Any WASI import is refused, named, with advice (no policy allows WASI here).
    #[default]
    Refused,
    /// Imports of the WASI functions Warden answers ([`WASI_FUNCTIONS`]) are admitted;
    /// any other WASI import is refused, named.
    Admitted,
}

impl WasiImports {
    /// What `policy` admits: WASI guests only with `[wasi] enabled = true`.
    pub fn of(policy: &Policy) -> WasiImports {
        if policy.wasi {
            WasiImports::Admitted
        } else {
            WasiImports::Refused
        }
    }
}

/// Why a module cannot run as an agent. Each variant names what a developer must change.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The agent file could not be read.
    #[error("cannot read agent module {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The bytes are neither a WebAssembly binary nor WAT text.
    #[error("agent module is not valid WebAssembly text: {0}")]
    Text(String),
    /// The module does not validate, or wasmtime refused it under Warden's engine
    /// configuration (threads, shared memory, memory64 and GC are off).
    #[error("agent module is not a valid WebAssembly module for Warden: {0}")]
    Invalid(String),
    /// The module imports something other than Warden's host-call function.
    #[error(
        "agent module imports `{module}.{name}` ({kind}); an agent may import only `{}.{}`{hint}",
        wire::IMPORT_MODULE,
        wire::IMPORT_NAME
    )]
    ForbiddenImport {
        /// Import module name.
        module: String,
        /// Import field name.
        name: String,
        /// func, memory, table, global or tag.
        kind: &'static str,
        /// Extra advice for common cases (WASI).
        hint: &'static str,
    },
    /// `warden.host_call` is imported with the wrong type.
    #[error(
        "agent module imports `warden.host_call` with type {found}; it must be (i32, i32, i32) -> i64 (build against warden-guest)"
    )]
    ImportSignature {
        /// The type found.
        found: String,
    },
    /// A required export is missing or has the wrong type.
    #[error("agent module must export {expected}; {found}")]
    Export {
        /// What is required.
        expected: &'static str,
        /// What the module has instead.
        found: String,
    },
    /// A WASI function Warden answers is imported with another type than WASI's.
    #[error(
        "agent module imports `{}.{name}` with type {found}; WASI preview 1 declares it as {expected} (parameters > results; i is i32, I is i64): build for wasm32-wasip1",
        WASI_MODULE
    )]
    WasiSignature {
        /// The WASI function.
        name: String,
        /// The type found.
        found: String,
        /// The type WASI declares.
        expected: &'static str,
    },
    /// The module exports a WASI entry point (`_start` of a command, `_initialize` of a
    /// reactor), which Warden would never call.
    #[error(
        "agent module exports `{0}`, a WASI entry point Warden never calls: an agent runs code only inside steps, where every effect is enforced and journaled (build a cdylib that registers its agent with warden_guest::agent!, not a binary)"
    )]
    EntryPoint(String),
    /// The wasmtime engine could not start on this machine.
    #[error("the wasmtime engine could not start")]
    Engine(#[source] wasmtime::Error),
    /// The module has a start function.
    #[error(
        "agent module has a start function (function {0}); agents may run code only inside steps, where every effect is enforced and journaled"
    )]
    StartFunction(u32),
    /// The module has a mutable global holding a reference (a funcref or externref),
    /// whose value a checkpoint cannot capture.
    #[error(
        "agent module has a mutable reference global (global {global}); Warden checkpoints numeric globals only, so make it immutable or a number"
    )]
    UncheckpointableGlobal {
        /// Index of the global.
        global: u32,
    },
    /// The module uses an instruction whose effect a checkpoint cannot capture.
    #[error(
        "agent module uses `{instruction}` (in function {function}); Warden checkpoints memory and globals only, so agents may not mutate tables or use passive data segments"
    )]
    UncheckpointableInstruction {
        /// The instruction's name.
        instruction: &'static str,
        /// Index of the function that uses it.
        function: u32,
    },
}

/// A validated agent, compiled for the process's engine.
#[derive(Debug, Clone)]
pub struct Agent {
    /// Content address of the module as supplied (before Warden's rewriting).
    pub hash: Digest,
    /// The module as supplied; stored in the journal so a run can be replayed from it.
    pub bytes: Arc<[u8]>,
    /// The compiled, rewritten module.
    pub module: Module,
    /// Names of the exports that expose the module's mutable globals, in index order.
    pub globals: Vec<String>,
    /// The WASI functions the module imports, in import order: empty unless it is a WASI
    /// guest (loaded with [`WasiImports::Admitted`]).
    pub wasi: Vec<String>,
    /// The memory of its first instance as first captured, shared by its runs (and by
    /// every clone of this `Agent`).
    first_image: Arc<FirstImage>,
    /// Its imports resolved against the process's linker, once, on its first run (shared
    /// by every clone of this `Agent`).
    prepared: Arc<Prepared>,
}

/// An agent's `InstancePre`, made on its first instantiation.
#[derive(Default)]
pub(crate) struct Prepared(std::sync::OnceLock<InstancePre<HostState>>);

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "Prepared"
        } else {
            "NotPrepared"
        })
    }
}

impl Agent {
    /// Its `InstancePre`: `prepare` makes it on the first call; later calls (of any clone)
    /// reuse it. A failure is returned and not kept, so the next call tries again.
    pub(crate) fn prepared(
        &self,
        prepare: impl FnOnce(&Module) -> Result<InstancePre<HostState>, wasmtime::Error>,
    ) -> Result<&InstancePre<HostState>, wasmtime::Error> {
        if let Some(pre) = self.prepared.0.get() {
            return Ok(pre);
        }
        let pre = prepare(&self.module)?;
        Ok(self.prepared.0.get_or_init(|| pre))
    }

    /// The memory of its first instance as first captured in this process.
    pub(crate) fn first_image(&self) -> Arc<FirstImage> {
        Arc::clone(&self.first_image)
    }

    /// Reads and loads an agent file (`.wasm`, or `.wat` text); a WASI guest is refused
    /// (see [`Agent::from_file_with`]).
    ///
    /// # Errors
    /// [`LoadError`] naming the file, the import, export or instruction at fault.
    pub fn from_file(path: &Path) -> Result<Agent, LoadError> {
        Agent::from_file_with(path, WasiImports::Refused)
    }

    /// Reads and loads an agent file, admitting a WASI guest as `wasi` says (for a run:
    /// [`WasiImports::of`] its policy).
    ///
    /// # Errors
    /// [`LoadError`] naming the file, the import, export or instruction at fault.
    pub fn from_file_with(path: &Path, wasi: WasiImports) -> Result<Agent, LoadError> {
        let bytes = crate::confine::read_file(path).map_err(|source| LoadError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Agent::from_bytes_with(&bytes, wasi)
    }

    /// The digest that names a module binary: the agent digest recorded in every run.
    pub fn digest_of(binary: &[u8]) -> Digest {
        Digest::of(domain::AGENT, binary)
    }

    /// Loads an agent from module bytes (binary or WAT text); a WASI guest is refused.
    ///
    /// # Errors
    /// [`LoadError`] naming the import, export or instruction at fault.
    pub fn from_bytes(bytes: &[u8]) -> Result<Agent, LoadError> {
        Agent::from_bytes_with(bytes, WasiImports::Refused)
    }

    /// Loads an agent from module bytes, admitting a WASI guest as `wasi` says.
    ///
    /// # Errors
    /// [`LoadError`] naming the import, export or instruction at fault.
    pub fn from_bytes_with(bytes: &[u8], wasi: WasiImports) -> Result<Agent, LoadError> {
        let engine = crate::engine::engine().map_err(LoadError::Engine)?;
        let binary = wat::parse_bytes(bytes)
            .map_err(|e| LoadError::Text(wat_error(&e)))?
            .into_owned();
        let scan = scan(&binary)?;
        let rewritten = export_globals(&binary, &scan)?;
        let module = crate::module_cache::compile(engine, &rewritten)
            .map_err(|e| LoadError::Invalid(format!("{e:#}")))?;
        let wasi = check_imports(&module, wasi)?;
        check_exports(&module)?;
        let globals = scan
            .mutable_globals
            .iter()
            .map(|index| format!("{GLOBAL_EXPORT_PREFIX}{index}"))
            .collect();
        Ok(Agent {
            hash: Agent::digest_of(&binary),
            bytes: binary.into(),
            module,
            globals,
            wasi,
            first_image: Arc::default(),
            prepared: Arc::default(),
        })
    }

    /// Whether `policy` lets this agent run: an agent that imports WASI only under a
    /// policy that allows WASI guests. Where an agent is loaded before its policy is
    /// known, or run under another policy than it was loaded for, this is the check.
    ///
    /// # Errors
    /// [`LoadError::ForbiddenImport`] naming its first WASI import, with advice.
    pub fn admitted_by(&self, policy: &Policy) -> Result<(), LoadError> {
        match self.wasi.first() {
            Some(name) if !policy.wasi => Err(LoadError::ForbiddenImport {
                module: WASI_MODULE.to_string(),
                name: name.clone(),
                kind: "func",
                hint: WASI_NOT_ALLOWED,
            }),
            _ => Ok(()),
        }
    }
}

/// A WAT parse error on one line: its message and where (`wat` prints a snippet over
/// several lines, which error output would show escaped).
fn wat_error(error: &wat::Error) -> String {
    let text = error.to_string();
    let mut lines = text.lines();
    let message = lines.next().unwrap_or_default().trim();
    // `--> FILE:LINE:COLUMN`
    let mut place = lines
        .find_map(|l| l.trim().strip_prefix("-->"))
        .map(|place| place.trim().rsplitn(3, ':'))
        .into_iter()
        .flatten();
    match (place.next(), place.next()) {
        (Some(column), Some(line)) => format!("{message} (line {line}, column {column})"),
        _ => message.to_string(),
    }
}

/// What a first pass over the module finds.
struct Scan {
    mutable_globals: Vec<u32>,
}

fn invalid(e: wasmparser::BinaryReaderError) -> LoadError {
    LoadError::Invalid(e.to_string())
}

/// Finds mutable globals, and refuses start functions and instructions that would put
/// instance state outside memory and globals.
fn scan(binary: &[u8]) -> Result<Scan, LoadError> {
    let mut imported_globals = 0u32;
    let mut imported_funcs = 0u32;
    let mut mutable_globals = Vec::new();
    let mut function = 0u32;
    for payload in Parser::new(0).parse_all(binary) {
        match payload.map_err(invalid)? {
            Payload::ImportSection(reader) => {
                for group in reader.into_imports() {
                    match group.map_err(invalid)?.ty {
                        wasmparser::TypeRef::Global(_) => imported_globals += 1,
                        wasmparser::TypeRef::Func(_) | wasmparser::TypeRef::FuncExact(_) => {
                            imported_funcs += 1
                        }
                        _ => {}
                    }
                }
            }
            Payload::GlobalSection(reader) => {
                for (i, global) in reader.into_iter().enumerate() {
                    let ty = global.map_err(invalid)?.ty;
                    let index = imported_globals + i as u32;
                    if ty.mutable && matches!(ty.content_type, wasmparser::ValType::Ref(_)) {
                        return Err(LoadError::UncheckpointableGlobal { global: index });
                    }
                    if ty.mutable {
                        mutable_globals.push(index);
                    }
                }
            }
            Payload::StartSection { func, .. } => return Err(LoadError::StartFunction(func)),
            Payload::CodeSectionEntry(body) => {
                let index = imported_funcs + function;
                function += 1;
                let mut ops = body.get_operators_reader().map_err(invalid)?;
                while !ops.eof() {
                    if let Some(instruction) = uncheckpointable(&ops.read().map_err(invalid)?) {
                        return Err(LoadError::UncheckpointableInstruction {
                            instruction,
                            function: index,
                        });
                    }
                }
            }
            _ => {}
        }
    }
    Ok(Scan { mutable_globals })
}

fn uncheckpointable(op: &Operator<'_>) -> Option<&'static str> {
    Some(match op {
        Operator::TableSet { .. } => "table.set",
        Operator::TableGrow { .. } => "table.grow",
        Operator::TableFill { .. } => "table.fill",
        Operator::TableCopy { .. } => "table.copy",
        Operator::TableInit { .. } => "table.init",
        Operator::ElemDrop { .. } => "elem.drop",
        Operator::MemoryInit { .. } => "memory.init",
        Operator::DataDrop { .. } => "data.drop",
        _ => return None,
    })
}

/// Re-encodes the module with one extra export per mutable global; every other section
/// is copied byte for byte.
fn export_globals(binary: &[u8], scan: &Scan) -> Result<Vec<u8>, LoadError> {
    if scan.mutable_globals.is_empty() {
        return Ok(binary.to_vec());
    }
    let mut module = wasm_encoder::Module::new();
    let mut exported = false;
    for payload in Parser::new(0).parse_all(binary) {
        let payload = payload.map_err(invalid)?;
        if let Payload::ExportSection(reader) = &payload {
            let mut section = ExportSection::new();
            for export in reader.clone() {
                let export = export.map_err(invalid)?;
                section.export(export.name, export_kind(export.kind), export.index);
            }
            for index in &scan.mutable_globals {
                section.export(
                    &format!("{GLOBAL_EXPORT_PREFIX}{index}"),
                    ExportKind::Global,
                    *index,
                );
            }
            module.section(&section);
            exported = true;
        } else if let Some((id, range)) = payload.as_section() {
            let data = binary.get(range).ok_or_else(|| {
                LoadError::Invalid("section extends past the module's end".into())
            })?;
            module.section(&RawSection { id, data });
        }
    }
    if !exported {
        return Err(LoadError::Export {
            expected: "`warden_step` and `memory`",
            found: "it has no export section".into(),
        });
    }
    Ok(module.finish())
}

fn export_kind(kind: ExternalKind) -> ExportKind {
    match kind {
        ExternalKind::Func | ExternalKind::FuncExact => ExportKind::Func,
        ExternalKind::Table => ExportKind::Table,
        ExternalKind::Memory => ExportKind::Memory,
        ExternalKind::Global => ExportKind::Global,
        ExternalKind::Tag => ExportKind::Tag,
    }
}

fn kind_name(ty: &ExternType) -> &'static str {
    match ty {
        ExternType::Func(_) => "func",
        ExternType::Global(_) => "global",
        ExternType::Table(_) => "table",
        ExternType::Memory(_) => "memory",
        ExternType::Tag(_) => "tag",
    }
}

/// Checks every import; returns the WASI functions imported (admitted ones only).
fn check_imports(module: &Module, wasi: WasiImports) -> Result<Vec<String>, LoadError> {
    let mut imported = Vec::new();
    for import in module.imports() {
        let ty = import.ty();
        if import.module() == WASI_MODULE && wasi == WasiImports::Admitted {
            imported.push(check_wasi_import(import.name(), &ty)?);
            continue;
        }
        if import.module() != wire::IMPORT_MODULE || import.name() != wire::IMPORT_NAME {
            let hint = match import.module() {
                WASI_MODULE => WASI_NOT_ALLOWED,
                module if module.starts_with("wasi") => WASI_OTHER,
                _ => "",
            };
            return Err(LoadError::ForbiddenImport {
                module: import.module().to_string(),
                name: import.name().to_string(),
                kind: kind_name(&ty),
                hint,
            });
        }
        let ok = match &ty {
            ExternType::Func(func) => {
                let params: Vec<ValType> = func.params().collect();
                let results: Vec<ValType> = func.results().collect();
                params.len() == 3
                    && params.iter().all(|p| matches!(p, ValType::I32))
                    && matches!(results.as_slice(), [ValType::I64])
            }
            _ => false,
        };
        if !ok {
            return Err(LoadError::ImportSignature {
                found: format!("{ty:?}"),
            });
        }
    }
    Ok(imported)
}

/// An import from `wasi_snapshot_preview1`: one of the functions Warden answers, with its
/// WASI type.
fn check_wasi_import(name: &str, ty: &ExternType) -> Result<String, LoadError> {
    let Some((_, expected)) = WASI_FUNCTIONS.iter().find(|(n, _)| *n == name) else {
        return Err(LoadError::ForbiddenImport {
            module: WASI_MODULE.to_string(),
            name: name.to_string(),
            kind: kind_name(ty),
            hint: WASI_UNANSWERED,
        });
    };
    match ty {
        ExternType::Func(func) if signature(func) == *expected => Ok(name.to_string()),
        other => Err(LoadError::WasiSignature {
            name: name.to_string(),
            found: match other {
                ExternType::Func(func) => signature(func),
                other => kind_name(other).to_string(),
            },
            expected,
        }),
    }
}

/// A function type as [`WASI_FUNCTIONS`] writes it: `iIi>i`.
fn signature(func: &wasmtime::FuncType) -> String {
    let letter = |ty: ValType| match ty {
        ValType::I32 => 'i',
        ValType::I64 => 'I',
        ValType::F32 => 'f',
        ValType::F64 => 'F',
        _ => '?',
    };
    let params: String = func.params().map(letter).collect();
    let results: String = func.results().map(letter).collect();
    format!("{params}>{results}")
}

fn check_exports(module: &Module) -> Result<(), LoadError> {
    for entry in ["_start", "_initialize"] {
        if module.get_export(entry).is_some() {
            return Err(LoadError::EntryPoint(entry.to_string()));
        }
    }
    match module.get_export(wire::STEP_EXPORT) {
        Some(ExternType::Func(func))
            if func.params().len() == 0
                && matches!(
                    func.results().collect::<Vec<_>>().as_slice(),
                    [ValType::I32]
                ) => {}
        Some(other) => {
            return Err(LoadError::Export {
                expected: "`warden_step` as a function () -> i32",
                found: format!("its `warden_step` is {other:?}"),
            });
        }
        None => {
            return Err(LoadError::Export {
                expected: "`warden_step` as a function () -> i32",
                found:
                    "it has no export of that name (register the agent with warden_guest::agent!)"
                        .into(),
            });
        }
    }
    match module.get_export(wire::MEMORY_EXPORT) {
        Some(ExternType::Memory(memory)) if !memory.is_shared() && !memory.is_64() => Ok(()),
        Some(other) => Err(LoadError::Export {
            expected: "`memory` as an unshared 32-bit linear memory",
            found: format!("its `memory` is {other:?}"),
        }),
        None => Err(LoadError::Export {
            expected: "`memory` as an unshared 32-bit linear memory",
            found: "it has no export of that name".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A WAT error is one line that says where: error output shows no escaped newlines.
    #[test]
    fn a_wat_error_is_one_line_naming_line_and_column() {
        let error = Agent::from_bytes(b"(module\n  (func (result i32)\n    i32.bogus))")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("(line 3, column 5)"), "{error}");
        assert!(!error.contains('\n'), "{error}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(crate::test_support::cases(300)))]

        /// Random valid modules (wasm-smith) and random bytes through the loader: it
        /// answers Ok or a typed refusal, and never panics.
        #[test]
        fn the_loader_never_panics_on_generated_modules(seed in proptest::collection::vec(any::<u8>(), 0..4096)) {
            let mut data = arbitrary::Unstructured::new(&seed);
            if let Ok(module) = wasm_smith::Module::new(wasm_smith::Config::default(), &mut data) {
                let bytes = module.to_bytes();
                match Agent::from_bytes(&bytes) {
                    Ok(agent) => prop_assert!(!agent.bytes.is_empty()),
                    Err(error) => prop_assert!(!error.to_string().is_empty()),
                }
            }
            let _ = Agent::from_bytes(&seed);
        }
    }

    /// The refusal of a WASI function Warden does not answer lists those it does.
    #[test]
    fn the_advice_names_every_wasi_function_warden_answers() {
        let names: Vec<&str> = WASI_FUNCTIONS.iter().map(|(name, _)| *name).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(names, sorted, "sorted, each once");
        assert!(WASI_UNANSWERED.contains(&format!("({})", names.join(", "))));
    }

    /// A WASI import loads only when admitted, and then only for a policy that allows it.
    #[test]
    fn a_wasi_guest_loads_only_where_admitted() {
        let wat = r#"(module
            (import "wasi_snapshot_preview1" "random_get" (func (param i32 i32) (result i32)))
            (memory (export "memory") 1)
            (func (export "warden_step") (result i32) i32.const 0))"#;
        assert!(matches!(
            Agent::from_bytes(wat.as_bytes()),
            Err(LoadError::ForbiddenImport { hint, .. }) if hint == WASI_NOT_ALLOWED
        ));
        let agent = Agent::from_bytes_with(wat.as_bytes(), WasiImports::Admitted).expect("loads");
        assert_eq!(agent.wasi, ["random_get"]);
        let text = "[policy]\nname = \"n\"\nversion = \"1\"\ninitial = \"a\"\n\
            [states.a]\ntransitions = [\"b\"]\n[states.b]\nterminal = true\n";
        let plain = Policy::parse(text, "plain").expect("policy");
        let wasi =
            Policy::parse(&format!("{text}[wasi]\nenabled = true\n"), "wasi").expect("policy");
        assert_eq!(WasiImports::of(&plain), WasiImports::Refused);
        assert_eq!(WasiImports::of(&wasi), WasiImports::Admitted);
        assert!(agent.admitted_by(&wasi).is_ok());
        assert!(matches!(
            agent.admitted_by(&plain),
            Err(LoadError::ForbiddenImport { name, .. }) if name == "random_get"
        ));
    }

    #[test]
    fn mutable_globals_are_exported_for_checkpoints() {
        let wat = r#"(module
            (import "warden" "host_call" (func (param i32 i32 i32) (result i64)))
            (global $sp (mut i32) (i32.const 1024))
            (global $k i32 (i32.const 7))
            (global $acc (mut i64) (i64.const 0))
            (memory (export "memory") 1)
            (func (export "warden_step") (result i32) i32.const 0))"#;
        let agent = Agent::from_bytes(wat.as_bytes()).expect("loads");
        assert_eq!(
            agent.globals,
            vec!["__warden_global_0", "__warden_global_2"]
        );
        assert!(agent.module.get_export("__warden_global_2").is_some());
    }
}
