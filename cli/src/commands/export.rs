//! `warden export`: a run's records (or every run's) as JSON lines, for a SIEM or a data
//! warehouse. Field names are stable and documented in `docs/export.md`.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use warden::Timeline;

use crate::output::{self, Usage};

/// The export formats.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum Format {
    /// One JSON object per record: `format`, `run_id`, `index`, `at`, `at_ms`, `prev`,
    /// `digest`, `prev_ok`, `kind`, `text`, `body` (docs/export.md).
    Jsonl,
    /// Apache Parquet, one row per run: versions, outcome, the last gate's confidence
    /// and threshold, the last inference, the review, verification (docs/export.md).
    /// Needs -o FILE.
    Parquet,
}

/// Arguments of `warden export`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The run to export.
    #[arg(required_unless_present = "all")]
    run_id: Option<String>,
    /// Export every run, oldest first.
    #[arg(long, conflicts_with = "run_id")]
    all: bool,
    /// The format.
    #[arg(long, value_enum, default_value = "jsonl")]
    format: Format,
    /// Write to this file (must not exist) instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    out: Option<PathBuf>,
}

/// Runs `warden export`.
pub fn run(db: &Path, keys: output::Keys<'_>, args: &Args) -> anyhow::Result<u8> {
    let journal = output::open_to_read(db, keys)?;
    let runs: Vec<String> = match &args.run_id {
        Some(id) => vec![output::run_id(&journal, id)?],
        None => journal.run_ids().map_err(warden::Error::from)?,
    };
    if let Format::Parquet = args.format {
        let Some(path) = &args.out else {
            return Err(Usage("--format parquet writes a file: give -o FILE".into()).into());
        };
        let rows = runs
            .iter()
            .map(|id| warden::RunRow::of(&journal, id))
            .collect::<Result<Vec<_>, _>>()
            .map_err(warden::Error::from)?;
        parquet_file::write(path, &rows)?;
        eprintln!("{}: {} run(s), one row each", path.display(), rows.len());
        return Ok(output::exit::COMPLETED);
    }
    let sink: Box<dyn Write> = match &args.out {
        Some(path) => Box::new(
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
                .map_err(|e| Usage(format!("cannot create {}: {e}", path.display())))?,
        ),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut sink = BufWriter::new(sink);
    let mut lines = 0u64;
    for run_id in &runs {
        let timeline = Timeline::load(&journal, run_id).map_err(warden::Error::from)?;
        match args.format {
            Format::Parquet => {}
            Format::Jsonl => {
                for line in timeline.export_lines() {
                    serde_json::to_writer(&mut sink, &line).map_err(std::io::Error::from)?;
                    sink.write_all(b"\n")?;
                    lines += 1;
                }
            }
        }
    }
    sink.flush()?;
    if let Some(path) = &args.out {
        eprintln!(
            "{}: {lines} records of {} run(s)",
            path.display(),
            runs.len()
        );
    }
    Ok(output::exit::COMPLETED)
}

/// Writes run rows as an Apache Parquet file (one row group, Snappy), with the columns and
/// types of [`warden::RUN_ROW_COLUMNS`].
mod parquet_file {
    use std::path::Path;
    use std::sync::Arc;

    use parquet::basic::{Compression, ConvertedType, Repetition, Type as Physical};
    use parquet::data_type::{BoolType, ByteArray, ByteArrayType, DoubleType, Int64Type};
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    use parquet::schema::types::Type;
    use serde_json::Value;
    use warden::{ColumnType, RUN_ROW_COLUMNS, RunRow};

    use crate::output::Usage;

    fn schema() -> anyhow::Result<Type> {
        let mut fields = Vec::new();
        for (name, kind) in RUN_ROW_COLUMNS {
            let repetition = if *name == "run_id" {
                Repetition::REQUIRED
            } else {
                Repetition::OPTIONAL
            };
            let (physical, converted) = match kind {
                ColumnType::Text => (Physical::BYTE_ARRAY, ConvertedType::UTF8),
                ColumnType::Integer => (Physical::INT64, ConvertedType::INT_64),
                ColumnType::Float => (Physical::DOUBLE, ConvertedType::NONE),
                ColumnType::Boolean => (Physical::BOOLEAN, ConvertedType::NONE),
            };
            fields.push(Arc::new(
                Type::primitive_type_builder(name, physical)
                    .with_repetition(repetition)
                    .with_converted_type(converted)
                    .build()?,
            ));
        }
        Ok(Type::group_type_builder("warden_run")
            .with_fields(fields)
            .build()?)
    }

    /// The values of one column, and the definition levels of its nulls.
    fn column<'a, T>(
        rows: &'a [Value],
        name: &str,
        get: impl Fn(&'a Value) -> Option<T>,
    ) -> (Vec<T>, Vec<i16>) {
        let mut values = Vec::new();
        let mut levels = Vec::new();
        for row in rows {
            match row.get(name).and_then(&get) {
                Some(value) => {
                    values.push(value);
                    levels.push(1);
                }
                None => levels.push(0),
            }
        }
        (values, levels)
    }

    /// Writes `rows` to `path`, which must not exist.
    pub fn write(path: &Path, rows: &[RunRow]) -> anyhow::Result<()> {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| Usage(format!("cannot create {}: {e}", path.display())))?;
        let rows: Vec<Value> = rows
            .iter()
            .map(serde_json::to_value)
            .collect::<Result<_, _>>()?;
        let properties = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_created_by(format!("warden {}", env!("CARGO_PKG_VERSION")))
            .build();
        let mut writer =
            SerializedFileWriter::new(file, Arc::new(schema()?), Arc::new(properties))?;
        let mut group = writer.next_row_group()?;
        let mut index = 0;
        while let Some(mut writer) = group.next_column()? {
            let Some((name, kind)) = RUN_ROW_COLUMNS.get(index) else {
                anyhow::bail!("the parquet schema has more columns than a run row");
            };
            index += 1;
            let required = *name == "run_id";
            let levels =
                |levels: &[i16]| -> Option<Vec<i16>> { (!required).then(|| levels.to_vec()) };
            match kind {
                ColumnType::Text => {
                    let (values, defs) = column(&rows, name, |v| {
                        v.as_str().map(|s| ByteArray::from(s.as_bytes().to_vec()))
                    });
                    writer.typed::<ByteArrayType>().write_batch(
                        &values,
                        levels(&defs).as_deref(),
                        None,
                    )?;
                }
                ColumnType::Integer => {
                    let (values, defs) = column(&rows, name, Value::as_i64);
                    writer.typed::<Int64Type>().write_batch(
                        &values,
                        levels(&defs).as_deref(),
                        None,
                    )?;
                }
                ColumnType::Float => {
                    let (values, defs) = column(&rows, name, Value::as_f64);
                    writer.typed::<DoubleType>().write_batch(
                        &values,
                        levels(&defs).as_deref(),
                        None,
                    )?;
                }
                ColumnType::Boolean => {
                    let (values, defs) = column(&rows, name, Value::as_bool);
                    writer.typed::<BoolType>().write_batch(
                        &values,
                        levels(&defs).as_deref(),
                        None,
                    )?;
                }
            }
            writer.close()?;
        }
        group.close()?;
        writer.close()?;
        Ok(())
    }
}
