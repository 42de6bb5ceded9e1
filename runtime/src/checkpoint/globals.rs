//! The mutable globals of a checkpoint: read from the instance, and written back.

use wasmtime::{AsContextMut, Instance, Val};

use super::{CheckpointError, GlobalValue};

/// Reads the mutable globals the loader exported.
pub fn read_globals(
    mut store: impl AsContextMut,
    instance: &Instance,
    names: &[String],
) -> Result<Vec<GlobalValue>, CheckpointError> {
    let mut values = Vec::with_capacity(names.len());
    for name in names {
        let global = instance
            .get_global(&mut store, name)
            .ok_or_else(|| CheckpointError::GlobalMissing { name: name.clone() })?;
        values.push(match global.get(&mut store) {
            Val::I32(v) => GlobalValue::I32(v),
            Val::I64(v) => GlobalValue::I64(v),
            Val::F32(v) => GlobalValue::F32(v),
            Val::F64(v) => GlobalValue::F64(v),
            Val::V128(v) => GlobalValue::V128(v.as_u128()),
            _ => return Err(CheckpointError::GlobalReference { name: name.clone() }),
        });
    }
    Ok(values)
}

/// Writes globals back, in the order [`read_globals`] read them.
pub fn write_globals(
    mut store: impl AsContextMut,
    instance: &Instance,
    names: &[String],
    values: &[GlobalValue],
) -> Result<(), CheckpointError> {
    if names.len() != values.len() {
        return Err(CheckpointError::GlobalCount {
            checkpoint: values.len(),
            agent: names.len(),
        });
    }
    for (name, value) in names.iter().zip(values) {
        let global = instance
            .get_global(&mut store, name)
            .ok_or_else(|| CheckpointError::GlobalMissing { name: name.clone() })?;
        let val = match *value {
            GlobalValue::I32(v) => Val::I32(v),
            GlobalValue::I64(v) => Val::I64(v),
            GlobalValue::F32(v) => Val::F32(v),
            GlobalValue::F64(v) => Val::F64(v),
            GlobalValue::V128(v) => Val::V128(v.into()),
        };
        global
            .set(&mut store, val)
            .map_err(|source| CheckpointError::GlobalSet {
                name: name.clone(),
                source,
            })?;
    }
    Ok(())
}
