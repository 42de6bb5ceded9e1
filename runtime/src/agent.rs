//! Loading an agent: validate a module, refuse any authority it could reach around the
//! host-call import, and prepare it so that its whole state can be checkpointed.
//!
//! Upholds invariant 2 (no ambient authority): a module that imports anything but
//! `warden.host_call` is refused, and the error names the import. It also makes the
//! checkpoint promise true ("memory + globals + fuel + state is the whole state"): every
//! mutable global is exported under a Warden name (the technique Wizer uses), and modules
//! whose instance state would escape a checkpoint (a start function, table mutation,
//! passive data segments) are refused.

use std::path::{Path, PathBuf};

use wasm_encoder::{ExportKind, ExportSection, RawSection};
use wasmparser::{ExternalKind, Operator, Parser, Payload};
use wasmtime::{ExternType, Module, ValType};

use crate::digest::{Digest, domain};
use warden_guest::wire;

/// Prefix of the exports Warden adds for mutable globals: `__warden_global_<index>`.
pub const GLOBAL_EXPORT_PREFIX: &str = "__warden_global_";

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
    pub bytes: Vec<u8>,
    /// The compiled, rewritten module.
    pub module: Module,
    /// Names of the exports that expose the module's mutable globals, in index order.
    pub globals: Vec<String>,
}

impl Agent {
    /// Reads and loads an agent file (`.wasm`, or `.wat` text).
    ///
    /// # Errors
    /// [`LoadError`] naming the file, the import, export or instruction at fault.
    pub fn from_file(path: &Path) -> Result<Agent, LoadError> {
        let bytes = std::fs::read(path).map_err(|source| LoadError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Agent::from_bytes(&bytes)
    }

    /// The digest that names a module binary: the agent digest recorded in every run.
    pub fn digest_of(binary: &[u8]) -> Digest {
        Digest::of(domain::AGENT, binary)
    }

    /// Loads an agent from module bytes (binary or WAT text).
    ///
    /// # Errors
    /// [`LoadError`] naming the import, export or instruction at fault.
    pub fn from_bytes(bytes: &[u8]) -> Result<Agent, LoadError> {
        let engine = crate::engine::engine().map_err(LoadError::Engine)?;
        let binary = wat::parse_bytes(bytes)
            .map_err(|e| LoadError::Text(e.to_string()))?
            .into_owned();
        let scan = scan(&binary)?;
        let rewritten = export_globals(&binary, &scan)?;
        let module = crate::module_cache::compile(engine, &rewritten)
            .map_err(|e| LoadError::Invalid(format!("{e:#}")))?;
        check_imports(&module)?;
        check_exports(&module)?;
        let globals = scan
            .mutable_globals
            .iter()
            .map(|index| format!("{GLOBAL_EXPORT_PREFIX}{index}"))
            .collect();
        Ok(Agent {
            hash: Agent::digest_of(&binary),
            bytes: binary,
            module,
            globals,
        })
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

fn check_imports(module: &Module) -> Result<(), LoadError> {
    for import in module.imports() {
        let ty = import.ty();
        if import.module() != wire::IMPORT_MODULE || import.name() != wire::IMPORT_NAME {
            let hint = if import.module().starts_with("wasi") {
                ": WASI is not available to agents (no clock, randomness, files or network of their own); build for wasm32-unknown-unknown against warden-guest"
            } else {
                ""
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
    Ok(())
}

fn check_exports(module: &Module) -> Result<(), LoadError> {
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
