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
    /// The 1-based line of each record's key in the file.
    lines: BTreeMap<String, usize>,
}

impl Fixture {
    /// Parses `bytes` (the content of `path`): a JSON object whose values are objects.
    /// Every record that is not an object is reported, each with its line.
    pub(super) fn parse(
        path: &Path,
        bytes: &[u8],
        key: String,
    ) -> Result<Fixture, Vec<BindingsError>> {
        let document: Value = serde_json::from_slice(bytes).map_err(|e| {
            vec![BindingsError::Syntax {
                path: path.to_path_buf(),
                line: e.line(),
                column: e.column(),
                message: format!("fixture must be a JSON object of records: {e}"),
            }]
        })?;
        let Value::Object(records) = document else {
            return Err(vec![BindingsError::Syntax {
                path: path.to_path_buf(),
                line: 1,
                column: 1,
                message: format!(
                    "fixture must be a JSON object of records, found {}; write {{\"<{key}>\": {{...}}, ...}}: each record under the value of `{key}` that looks it up",
                    kind(&document)
                ),
            }]);
        };
        let text = String::from_utf8_lossy(bytes);
        let lines: BTreeMap<String, usize> = top_level_keys(&text)
            .into_iter()
            .map(|(id, offset)| (id, line_of(&text, offset)))
            .collect();
        let mut problems = Vec::new();
        let mut parsed = BTreeMap::new();
        for (id, record) in records {
            if !record.is_object() {
                problems.push(BindingsError::Fixture {
                    path: path.to_path_buf(),
                    line: lines.get(&id).copied().unwrap_or(1),
                    problem: format!(
                        "a record must be a JSON object of the tool's answer, found {}; write {{...}}",
                        kind(&record)
                    ),
                    record: id,
                });
                continue;
            }
            parsed.insert(id, record.to_string());
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Fixture {
            key,
            records: parsed,
            lines,
        })
    }

    /// The argument whose string value is looked up.
    pub(super) fn key(&self) -> &str {
        &self.key
    }

    /// Every record: its id, its compact JSON and the line of its id in the file.
    pub(super) fn records(&self) -> impl Iterator<Item = (&str, &str, usize)> {
        self.records.iter().map(|(id, json)| {
            (
                id.as_str(),
                json.as_str(),
                self.lines.get(id).copied().unwrap_or(1),
            )
        })
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

/// A JSON value's kind, for messages.
fn kind(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string {}", Value::String(s.clone())),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "an object".into(),
    }
}

/// The 1-based line of byte `offset`.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()
        .iter()
        .take(offset)
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The keys of a JSON object's top level, each with the byte offset of its opening
/// quote. The text is valid JSON (it parsed); structural characters are ASCII, so bytes
/// are scanned.
fn top_level_keys(text: &str) -> Vec<(String, usize)> {
    let bytes = text.as_bytes();
    let mut keys = Vec::new();
    let mut depth = 0usize;
    let mut expect_key = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                let start = i;
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                if depth == 1 && expect_key {
                    let token = text.get(start..=i.min(bytes.len() - 1)).unwrap_or("");
                    if let Ok(key) = serde_json::from_str::<String>(token) {
                        keys.push((key, start));
                    }
                    expect_key = false;
                }
            }
            b'{' | b'[' => {
                depth += 1;
                expect_key = depth == 1;
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            b',' if depth == 1 => expect_key = true,
            _ => {}
        }
        i += 1;
    }
    keys
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
        let errors = Fixture::parse(Path::new("f.json"), b"{\n  \"A-1\": {,}\n}", "k".into())
            .expect_err("syntax");
        let message = errors[0].to_string();
        assert!(message.starts_with("f.json:2:"), "{message}");
        let errors = Fixture::parse(
            Path::new("f.json"),
            b"{\n  \"A-1\": 3,\n  \"A-2\": {\"x\": {\"A-3\": 1}},\n  \"A-3\": [1]\n}",
            "k".into(),
        )
        .expect_err("shape");
        let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(messages.len(), 2, "{messages:?}");
        assert!(
            messages[0].starts_with("f.json:2: record \"A-1\": ")
                && messages[0].contains("the number 3"),
            "{messages:?}"
        );
        assert!(
            messages[1].starts_with("f.json:4: record \"A-3\": "),
            "{messages:?}"
        );
    }

    #[test]
    fn a_list_of_records_is_refused_saying_what_shape_to_write() {
        let errors = Fixture::parse(Path::new("f.json"), br#"[{"id": "A-1"}]"#, "id".into())
            .expect_err("a list");
        let message = errors[0].to_string();
        assert!(
            message.contains("found a list") && message.contains("\"<id>\""),
            "{message}"
        );
    }

    #[test]
    fn records_know_their_lines() {
        let fixture = Fixture::parse(
            Path::new("f.json"),
            b"{\n \"a\\\"b\": {\"k\": \"}\"},\n\n \"c\": {}\n}",
            "k".into(),
        )
        .expect("parse");
        let lines: Vec<(&str, usize)> = fixture.records().map(|(id, _, line)| (id, line)).collect();
        assert_eq!(lines, [("a\"b", 2), ("c", 4)]);
    }
}
