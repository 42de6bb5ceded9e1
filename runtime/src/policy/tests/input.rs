//! Tests of the input contract in the policy: `[input] schema`, its diagnostics (file,
//! line, column and the place in the schema), and its place in the canonical hash.

use super::*;

/// The reference example with an input contract.
fn with_schema(schema: &str) -> String {
    format!("{EXAMPLE}\n[input]\nschema = '''\n{schema}\n'''\n")
}

const SCHEMA: &str = r#"{
  "type": "object",
  "required": ["applicant_id", "annual_income"],
  "properties": {
    "applicant_id": { "type": "string", "minLength": 1 },
    "annual_income": { "type": "number", "exclusiveMinimum": 0 }
  }
}"#;

/// A policy of edition-1 shape: nothing added since.
const EDITION_1: &str = "[policy]\nname = \"n\"\nversion = \"1\"\ninitial = \"a\"\n\
    [states.a]\ntransitions = [\"b\"]\n[states.b]\nterminal = true\n";

/// Policies without a contract keep the hash they had before contracts existed: these
/// digests were computed by the Warden that had none.
#[test]
fn a_policy_without_a_contract_keeps_its_hash() {
    let v2 = parse(EXAMPLE).unwrap_or_else(|e| panic!("{e}")).hash();
    assert_eq!(
        v2.to_string(),
        "0f7fae916cddf73f12ba3307781df8b676485486e8324987342d0ef02c9a8fb4"
    );
    let v1 = parse(EDITION_1).unwrap_or_else(|e| panic!("{e}")).hash();
    assert_eq!(
        v1.to_string(),
        "c282d24815039d9d776efdb3250878d8cb43fccb540fc13d752b65584550fe3b"
    );
}

#[test]
fn the_hash_covers_the_contract_and_ignores_its_layout() {
    let without = parse(EXAMPLE).unwrap_or_else(|e| panic!("{e}"));
    let with = parse(&with_schema(SCHEMA)).unwrap_or_else(|e| panic!("{e}"));
    assert!(with.input_contract.is_some());
    assert_ne!(with.hash(), without.hash());
    // Layout, key order and `1.0` for `1` are not meaning.
    let relaid = SCHEMA
        .replace("\n  ", " ")
        .replace("\"exclusiveMinimum\": 0", "\"exclusiveMinimum\": 0.0");
    let relaid = parse(&with_schema(&relaid)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(relaid.hash(), with.hash());
    let reordered = r#"{"properties": {"annual_income": {"exclusiveMinimum": 0, "type": "number"},
        "applicant_id": {"minLength": 1, "type": "string"}},
        "required": ["applicant_id", "annual_income"], "type": "object"}"#;
    let reordered = parse(&with_schema(reordered)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(reordered.hash(), with.hash());
    // Any change of meaning is a new contract: a bound, the order of `required` (which
    // orders the violations recorded), a title.
    let mut seen = BTreeSet::from([without.hash(), with.hash()]);
    for (from, to) in [
        ("\"minLength\": 1", "\"minLength\": 2"),
        (
            "[\"applicant_id\", \"annual_income\"]",
            "[\"annual_income\", \"applicant_id\"]",
        ),
        (
            "\"type\": \"object\",",
            "\"type\": \"object\", \"title\": \"t\",",
        ),
    ] {
        let edited = parse(&with_schema(&SCHEMA.replace(from, to)))
            .unwrap_or_else(|e| panic!("{from} -> {to}: {e}"));
        assert!(seen.insert(edited.hash()), "{from} -> {to} kept the hash");
    }
    // An edition-1 policy with a contract hashes under the new domain too.
    let v1 = parse(EDITION_1).unwrap_or_else(|e| panic!("{e}"));
    let text = format!("{EDITION_1}[input]\nschema = '{{}}'\n");
    let v1_contract = parse(&text).unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(v1.hash(), v1_contract.hash());
}

#[test]
fn a_keyword_not_enforced_is_refused_at_its_line_with_its_place_in_the_schema() {
    let schema = SCHEMA.replace(
        "\"minLength\": 1 }",
        "\"minLength\": 1, \"pattern\": \"^A-\" }",
    );
    let text = with_schema(&schema);
    let d = only(&text);
    assert_eq!(d.field, "input.schema#/properties/applicant_id/pattern");
    assert_eq!(d.line, line_of(&text, "\"pattern\""));
    let column = text
        .lines()
        .nth(d.line - 1)
        .and_then(|l| l.find("\"pattern\""))
        .map(|c| c + 1);
    assert_eq!(Some(d.column), column);
    let shown = d.to_string();
    assert!(
        shown.starts_with(&format!(
            "test.toml:{}:{}: input.schema#/properties/applicant_id/pattern: `pattern` is a JSON Schema keyword Warden does not enforce",
            d.line, d.column
        )),
        "{shown}"
    );
}

#[test]
fn every_schema_problem_is_reported_at_once() {
    let schema = r#"{
  "type": "objekt",
  "requried": ["a"],
  "properties": { "a": { "minimum": "1" } }
}"#;
    let text = with_schema(schema);
    let all = diagnostics(&text);
    let fields: Vec<(&str, usize)> = all.iter().map(|d| (d.field.as_str(), d.line)).collect();
    assert_eq!(
        fields,
        [
            ("input.schema#/type", line_of(&text, "objekt")),
            ("input.schema#/requried", line_of(&text, "requried")),
            (
                "input.schema#/properties/a/minimum",
                line_of(&text, "\"minimum\"")
            ),
        ],
        "{}",
        diagnostic::render_all(&all)
    );
    // A key written twice: the schema does not say one thing, and nothing else is judged.
    let text = with_schema("{ \"type\": \"object\",\n  \"type\": \"string\", \"pattern\": \"x\" }");
    let d = only(&text);
    assert_eq!(
        (d.field.as_str(), d.line),
        ("input.schema#/type", line_of(&text, "\"string\""))
    );
    assert!(d.problem.to_string().contains("written twice"), "{d}");
}

#[test]
fn a_schema_that_is_not_json_is_placed_where_json_breaks() {
    let text = with_schema("{\n  \"type\": \"object\",\n  \"required\": [\"a\"\n}");
    let d = only(&text);
    assert_eq!(d.field, "input.schema");
    assert!(
        d.problem.to_string().starts_with("the schema is not JSON"),
        "{d}"
    );
    // The line of the `}` where a `]` was due (the last line before the closing `'''`).
    assert_eq!(d.line, text.lines().count() - 1);
}

#[test]
fn the_input_table_holds_a_schema_and_nothing_else() {
    let missing = only(&format!("{EXAMPLE}\n[input]\n"));
    assert_eq!(missing.field, "input.schema");
    assert!(matches!(missing.problem, Problem::Missing { .. }));

    let table = only(&format!("{EXAMPLE}\n[input.schema]\ntype = \"object\"\n"));
    assert_eq!(table.field, "input.schema");
    assert!(
        matches!(table.problem, Problem::WrongType { .. }),
        "{table}"
    );

    let unknown = only(&format!(
        "{EXAMPLE}\n[input]\nschema = '{{}}'\nschema_file = \"s.json\"\n"
    ));
    assert_eq!(unknown.field, "input.schema_file");
    assert!(matches!(unknown.problem, Problem::UnknownField { .. }));
}

#[test]
fn a_schema_in_an_escaped_string_is_placed_at_the_string() {
    let text = format!("{EXAMPLE}\n[input]\nschema = \"{{\\\"pattern\\\": \\\"x\\\"}}\"\n");
    let d = only(&text);
    assert_eq!(d.field, "input.schema#/pattern");
    assert_eq!((d.line, d.column), (line_of(&text, "schema = "), 10));
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(crate::test_support::cases(500)))]

    /// Whatever the schema text, the policy parses or reports, never panics, and every
    /// diagnostic is placed inside the file.
    #[test]
    fn any_schema_text_parses_or_is_reported(schema in "[\\[\\]{}\":,0-9a-zA-Z$ \\n\\\\-]{0,80}") {
        let text = with_schema(&schema);
        if let Err(PolicyError::Invalid { diagnostics }) = parse(&text) {
            for d in diagnostics {
                proptest::prop_assert!(d.line >= 1 && d.line <= text.lines().count() + 1, "{d}");
            }
        }
    }
}
