//! The fixture tool provider: answers from a JSON file of records keyed by one argument.
//!
//! Invariant: a fixture answers every call from what was parsed at load time, and the
//! same arguments always get the same bytes (each record is serialized once, compactly,
//! with its keys in sorted order).

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;
use warden_guest::{CallError, CallErrorKind};

use super::{BindingsError, call_error};

/// A parsed fixture: the argument to look up and the compact JSON of each record.
#[derive(Debug)]
pub(super) struct Fixture {
    key: String,
    records: BTreeMap<String, String>,
}

impl Fixture {
    /// Parses `bytes` (the content of `path`): a JSON object whose values are objects.
    pub(super) fn parse(path: &Path, bytes: &[u8], key: String) -> Result<Fixture, BindingsError> {
        let records: serde_json::Map<String, Value> =
            serde_json::from_slice(bytes).map_err(|e| BindingsError::Syntax {
                path: path.to_path_buf(),
                line: e.line(),
                column: e.column(),
                message: format!("fixture must be a JSON object of records: {e}"),
            })?;
        let records = records
            .into_iter()
            .map(|(id, record)| {
                if !record.is_object() {
                    return Err(BindingsError::Fixture {
                        path: path.to_path_buf(),
                        record: id,
                        problem: format!("a record must be a JSON object, found {record}"),
                    });
                }
                Ok((id, record.to_string()))
            })
            .collect::<Result<_, _>>()?;
        Ok(Fixture { key, records })
    }

    /// Looks up the record named by the `key` argument.
    pub(super) fn call(&self, args_json: &str) -> Result<String, CallError> {
        let bad_arguments = || {
            call_error(
                CallErrorKind::InvalidArguments,
                format!(
                    "arguments must be a JSON object with a string field {:?}",
                    self.key
                ),
            )
        };
        let args: Value = serde_json::from_str(args_json).map_err(|_| bad_arguments())?;
        let Some(Value::String(id)) = args.get(&self.key) else {
            return Err(bad_arguments());
        };
        self.records.get(id).cloned().ok_or_else(|| {
            call_error(
                CallErrorKind::NotFound,
                format!("no record for {} = {}", self.key, Value::String(id.clone())),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> Fixture {
        let json = br#"{
            "A-1": {"credit_score": 712, "delinquencies_24m": 0, "revolving_utilization": 0.25},
            "A-2": {"credit_score": 590}
        }"#;
        Fixture::parse(Path::new("bureau.json"), json, "applicant_id".into()).expect("parse")
    }

    #[test]
    fn a_known_key_returns_its_record_as_compact_json() {
        let result = fixture()
            .call(r#"{"applicant_id": "A-1", "purpose": "car"}"#)
            .expect("hit");
        assert_eq!(
            result,
            r#"{"credit_score":712,"delinquencies_24m":0,"revolving_utilization":0.25}"#
        );
    }

    #[test]
    fn an_unknown_key_is_not_found_and_named() {
        let error = fixture()
            .call(r#"{"applicant_id": "A-9"}"#)
            .expect_err("miss");
        assert_eq!(error.kind, CallErrorKind::NotFound);
        assert_eq!(error.message, r#"no record for applicant_id = "A-9""#);
    }

    #[test]
    fn arguments_without_the_key_as_a_string_are_invalid() {
        for args in [
            r#"{"id": "A-1"}"#,
            r#"{"applicant_id": 1}"#,
            "[1]",
            "not json",
        ] {
            let error = fixture().call(args).expect_err(args);
            assert_eq!(error.kind, CallErrorKind::InvalidArguments, "{args}");
            assert!(
                error.message.contains("\"applicant_id\""),
                "{}",
                error.message
            );
        }
    }

    #[test]
    fn a_broken_fixture_names_the_file_line_and_column() {
        let error = Fixture::parse(Path::new("f.json"), b"{\n  \"A-1\": {,}\n}", "k".into())
            .expect_err("syntax");
        let message = error.to_string();
        assert!(message.starts_with("f.json:2:"), "{message}");
        let error =
            Fixture::parse(Path::new("f.json"), br#"{"A-1": 3}"#, "k".into()).expect_err("shape");
        assert!(error.to_string().contains("record \"A-1\""), "{error}");
    }
}
