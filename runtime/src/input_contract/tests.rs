//! Tests of the input contract: each keyword's verdicts and recorded words (the wording
//! is part of the journal format), refusal of every keyword not enforced, exact number
//! comparison, canonical form, positions, and properties: compiling and checking never
//! panic, on any JSON.

use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;

fn contract(schema: Value) -> InputContract {
    InputContract::compile(&schema).unwrap_or_else(|e| panic!("{schema}: {e:?}"))
}

/// The violations of `input`, as `pointer keyword: message` lines.
fn violations(schema: Value, input: Value) -> Vec<String> {
    match contract(schema).check(&input) {
        Ok(()) => Vec::new(),
        Err(rejection) => rejection
            .violations
            .iter()
            .map(|v| format!("{} {}: {}", v.pointer, v.keyword, v.message))
            .collect(),
    }
}

fn problems(schema: Value) -> Vec<(String, String)> {
    match InputContract::compile(&schema) {
        Ok(_) => panic!("{schema} compiled"),
        Err(problems) => problems
            .into_iter()
            .map(|p| (p.pointer, p.message))
            .collect(),
    }
}

fn loan_schema() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "A loan application",
        "type": "object",
        "required": ["applicant_id", "requested_amount", "annual_income"],
        "properties": {
            "applicant_id": {"type": "string", "minLength": 1, "maxLength": 8},
            "requested_amount": {"type": "number", "exclusiveMinimum": 0},
            "annual_income": {"type": "number", "exclusiveMinimum": 0, "maximum": 1e7},
            "term_months": {"type": "integer", "minimum": 1, "maximum": 600},
            "purpose": {"enum": ["car", "home improvement", "medical"]},
            "channel": {"const": "branch"},
            "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 2},
            "co_applicant_id": {"type": ["string", "null"]}
        },
        "additionalProperties": false
    })
}

#[test]
fn a_valid_application_passes() {
    let input = json!({
        "applicant_id": "A-1", "requested_amount": 1500.5, "annual_income": 42000,
        "term_months": 36.0, "purpose": "car", "channel": "branch", "tags": ["x"],
        "co_applicant_id": null
    });
    assert_eq!(violations(loan_schema(), input), Vec::<String>::new());
}

/// The words of every keyword, pinned: they are recorded, and replay compares them.
#[test]
fn each_keyword_names_the_pointer_and_says_what_is_wrong() {
    let input = json!({
        "requested_amount": "15000", "annual_income": 0, "term_months": 36.5,
        "purpose": "boat", "channel": "web", "tags": [1, "b", "c"], "applicant_id": "",
        "co_applicant_id": 7, "extra": true
    });
    assert_eq!(
        violations(loan_schema(), input),
        [
            "/annual_income exclusiveMinimum: 0 is not greater than 0",
            "/applicant_id minLength: 0 characters, fewer than the minimum of 1",
            "/channel const: must be \"branch\", found a string (\"web\")",
            "/co_applicant_id type: expected a string or null, found a number (7)",
            "/purpose enum: a string (\"boat\") is not one of the values allowed: \"car\", \"home improvement\", \"medical\"",
            "/requested_amount type: expected a number, found a string (\"15000\")",
            "/tags maxItems: 3 items, more than the maximum of 2",
            "/tags/0 type: expected a string, found a number (1)",
            "/term_months type: expected an integer, found a number (36.5)",
            "/extra additionalProperties: a field the contract does not allow",
        ]
    );
    assert_eq!(
        violations(loan_schema(), json!({"annual_income": 2e7})),
        [
            "/applicant_id required: required field `applicant_id` is missing",
            "/requested_amount required: required field `requested_amount` is missing",
            "/annual_income maximum: 20000000.0 is greater than the maximum 10000000.0",
        ]
    );
    assert_eq!(
        violations(loan_schema(), json!([1])),
        [" type: expected an object, found an array of 1 items"]
    );
    let bounds = json!({"minimum": 1, "exclusiveMaximum": 10, "maxLength": 2, "minItems": 1});
    assert_eq!(
        violations(bounds.clone(), json!(0)),
        [" minimum: 0 is less than the minimum 1"]
    );
    assert_eq!(
        violations(bounds.clone(), json!(10)),
        [" exclusiveMaximum: 10 is not less than 10"]
    );
    assert_eq!(
        violations(bounds.clone(), json!("héé")),
        [" maxLength: 3 characters, more than the maximum of 2"]
    );
    assert_eq!(
        violations(bounds, json!([])),
        [" minItems: 0 items, fewer than the minimum of 1"]
    );
    assert_eq!(
        violations(json!(false), json!(1)),
        [" false: the contract allows no value here"]
    );
    assert_eq!(
        violations(json!({"properties": {"x": false}}), json!({"x": 1})),
        ["/x properties: the contract allows no value here"]
    );
}

#[test]
fn pointers_escape_tilde_and_slash() {
    let schema = json!({"properties": {"a/b": {"type": "string"}, "c~d": {"type": "string"}}});
    assert_eq!(
        violations(schema, json!({"a/b": 1, "c~d": 2})),
        [
            "/a~1b type: expected a string, found a number (1)",
            "/c~0d type: expected a string, found a number (2)",
        ]
    );
}

#[test]
fn only_the_first_violations_are_kept_and_all_are_counted() {
    let items: Vec<Value> = (0..40).map(|i| json!(i)).collect();
    let schema = contract(json!({"items": {"type": "string"}}));
    let Err(rejection) = schema.check(&Value::Array(items)) else {
        panic!("numbers are not strings")
    };
    assert_eq!(rejection.violations.len(), MAX_RECORDED_VIOLATIONS);
    assert_eq!(rejection.total, 40);
    assert_eq!(rejection.violations[15].pointer, "/15");
}

#[test]
fn numbers_compare_by_value_exactly() {
    // 2^53 + 1 is not a float: a float comparison would round it to 2^53.
    let schema = json!({"maximum": 9_007_199_254_740_992_u64});
    assert_eq!(
        violations(schema.clone(), json!(9_007_199_254_740_992_u64)).len(),
        0
    );
    assert_eq!(
        violations(schema, json!(9_007_199_254_740_993_u64)).len(),
        1
    );
    assert_eq!(violations(json!({"minimum": 0.5}), json!(0)).len(), 1);
    assert_eq!(violations(json!({"minimum": -1}), json!(-0.5)).len(), 0);
    assert_eq!(
        violations(json!({"maximum": u64::MAX}), json!(1.9e19)).len(),
        1
    );
    assert_eq!(
        violations(json!({"minimum": i64::MIN}), json!(-1e300)).len(),
        1
    );
    assert_eq!(violations(json!({"const": 1}), json!(1.0)).len(), 0);
    assert_eq!(
        violations(json!({"enum": [{"a": [1.0]}]}), json!({"a": [1]})).len(),
        0
    );
    assert_eq!(violations(json!({"type": "integer"}), json!(-3.0)).len(), 0);
}

#[test]
fn every_keyword_not_enforced_is_refused_where_it_is() {
    let refused = problems(json!({
        "type": "object",
        "properties": {"id": {"type": "string", "pattern": "^A-"}},
        "oneOf": [],
        "requried": ["id"]
    }));
    assert_eq!(refused.len(), 3, "{refused:?}");
    let pointers: Vec<&str> = refused.iter().map(|(p, _)| p.as_str()).collect();
    assert!(pointers.contains(&"/properties/id/pattern"), "{refused:?}");
    assert!(pointers.contains(&"/oneOf"), "{refused:?}");
    let misspelt = refused
        .iter()
        .find(|(p, _)| p == "/requried")
        .unwrap_or_else(|| panic!("{refused:?}"));
    assert!(
        misspelt.1.contains("correct its spelling"),
        "{}",
        misspelt.1
    );
    let pattern = &refused
        .iter()
        .find(|(p, _)| p.ends_with("pattern"))
        .map(|(_, m)| m);
    assert!(
        pattern.is_some_and(|m| m.contains("does not enforce")),
        "{pattern:?}"
    );
}

#[test]
fn malformed_keywords_are_refused_with_their_place() {
    let refused = problems(json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": ["string", "int", "string"],
        "minimum": "1",
        "minLength": -1,
        "maxItems": 1.5,
        "enum": [],
        "required": ["a", "a", 3],
        "items": [{"type": "string"}],
        "properties": {"x": 3, "y": {"$schema": "https://json-schema.org/draft/2020-12/schema"}},
        "title": 1
    }));
    let at: Vec<&str> = refused.iter().map(|(p, _)| p.as_str()).collect();
    for expected in [
        "/$schema",
        "/type/1",
        "/type/2",
        "/minimum",
        "/minLength",
        "/maxItems",
        "/enum",
        "/required/1",
        "/required/2",
        "/items",
        "/properties/x",
        "/properties/y/$schema",
        "/title",
    ] {
        assert!(at.contains(&expected), "{expected} not in {refused:#?}");
    }
    assert_eq!(refused.len(), 13, "{refused:#?}");
    assert!(problems(json!("object"))[0].1.contains("found a string"));
}

#[test]
fn the_canonical_form_ignores_layout_and_key_order_not_meaning() {
    let a: Value =
        serde_json::from_str(r#"{"type":"object","properties":{"b":{"minimum":1.0},"a":{}}}"#)
            .unwrap_or_else(|e| panic!("{e}"));
    let b: Value = serde_json::from_str(
        "{ \"properties\": { \"a\": {}, \"b\": { \"minimum\": 1 } },\n  \"type\": \"object\" }",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(contract(a.clone()).canonical(), contract(b).canonical());
    assert_eq!(
        contract(a).canonical(),
        r#"{"properties":{"a":{},"b":{"minimum":1}},"type":"object"}"#
    );
    assert_ne!(
        contract(json!({"minimum": 1})).canonical(),
        contract(json!({"minimum": 1.5})).canonical()
    );
}

#[test]
fn positions_point_at_keys_elements_and_nearest_ancestors() {
    let text = "{\n  \"a\": {\"b\": [10, {\"c\": 1}]},\n  \"x~/\": 2,\n  \"a\": 3\n}";
    let found = positions(text);
    let line_of = |pointer: &str| text[..found.offset(pointer)].matches('\n').count() + 1;
    assert_eq!(found.offset(""), 0);
    assert_eq!(&text[found.offset("/a")..found.offset("/a") + 3], "\"a\"");
    assert_eq!(
        &text[found.offset("/a/b/0")..found.offset("/a/b/0") + 2],
        "10"
    );
    assert_eq!(
        &text[found.offset("/a/b/1/c")..found.offset("/a/b/1/c") + 3],
        "\"c\""
    );
    assert_eq!(line_of("/x~0~1"), 3);
    // A field that is not written is placed at its object.
    assert_eq!(found.offset("/a/b/1/missing"), found.offset("/a/b/1"));
    assert_eq!(found.duplicates.len(), 1);
    assert_eq!(found.duplicates[0].0, "/a");
    assert_eq!(text[..found.duplicates[0].1].matches('\n').count() + 1, 4);
}

/// Any JSON value, nested a few levels.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_map(|x| serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)),
        "[a-z~/]{0,6}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Keys that are often keywords, so that generated objects are often schemas.
fn key() -> impl Strategy<Value = String> {
    let keywords: Vec<String> = [
        "type",
        "enum",
        "const",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "minLength",
        "maxLength",
        "items",
        "minItems",
        "maxItems",
        "required",
        "properties",
        "additionalProperties",
        "title",
        "a",
        "b",
        "pattern",
    ]
    .map(String::from)
    .to_vec();
    prop_oneof![prop::sample::select(keywords), "[a-z]{1,3}"]
}

/// Schemas that compile: built from enforced keywords only.
fn any_schema() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        any::<bool>().prop_map(Value::Bool),
        prop::sample::select(vec![
            "null", "boolean", "object", "array", "number", "string", "integer"
        ])
        .prop_map(|t| json!({"type": t})),
        any::<i32>().prop_map(|n| json!({"minimum": n})),
        any::<f64>()
            .prop_filter("finite", |x| x.is_finite())
            .prop_map(|x| json!({"exclusiveMaximum": x})),
        (0u64..5).prop_map(|n| json!({"maxLength": n, "minItems": n})),
        any_json().prop_map(|v| json!({"const": v})),
        prop::collection::vec(any_json(), 1..4).prop_map(|v| json!({"enum": v})),
        prop::collection::vec("[a-c]", 0..3).prop_map(|mut names| {
            names.sort();
            names.dedup();
            json!({"required": names})
        }),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            inner.clone().prop_map(|s| json!({"items": s})),
            inner
                .clone()
                .prop_map(|s| json!({"additionalProperties": s})),
            prop::collection::btree_map("[a-c]", inner, 0..3)
                .prop_map(|m| json!({"properties": m})),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(crate::test_support::cases(1_000)))]

    #[test]
    fn compiling_any_json_never_panics(schema in any_json()) {
        let _ = InputContract::compile(&schema);
    }

    #[test]
    fn checking_any_input_never_panics_and_is_deterministic(
        schema in any_schema(),
        input in any_json(),
    ) {
        let contract = InputContract::compile(&schema)
            .map_err(|e| TestCaseError::fail(format!("{schema}: {e:?}")))?;
        let first = contract.check(&input);
        prop_assert_eq!(&first, &contract.check(&input));
        if let Err(rejection) = first {
            prop_assert!(rejection.total as usize >= rejection.violations.len());
            prop_assert!(!rejection.violations.is_empty());
        }
        // The canonical form compiles to the same contract.
        let again: Value = serde_json::from_str(contract.canonical())
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let again = InputContract::compile(&again)
            .map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
        prop_assert_eq!(again.canonical(), contract.canonical());
    }

    #[test]
    fn positions_never_panic_on_any_text(text in "[\\[\\]{}\":,\\\\ a-z0-9é]{0,64}") {
        let found = positions(&text);
        prop_assert!(found.offset("/a/0") <= text.len());
    }

    #[test]
    fn positions_find_every_value_of_any_json(value in any_json()) {
        let text = serde_json::to_string_pretty(&value)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let found = positions(&text);
        prop_assert!(found.duplicates.is_empty());
        prop_assert!(found.offset("") <= text.len());
    }
}
