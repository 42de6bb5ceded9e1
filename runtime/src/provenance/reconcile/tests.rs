use super::*;
use serde_json::json;

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn bureau() -> BTreeMap<String, SourceSpec> {
    BTreeMap::from([(
        "bureau".to_string(),
        SourceSpec {
            tool: "credit_bureau".into(),
            args: map(&[("/applicant_id", "/applicant_id")]),
        },
    )])
}

fn build(
    lets: &[(&str, &str)],
    features: &[(&str, &str)],
) -> Result<Provenance, Vec<ProvenanceError>> {
    Provenance::build(bureau(), map(lets), map(features), 1e-9)
}

fn errors(lets: &[(&str, &str)], features: &[(&str, &str)]) -> Vec<String> {
    match build(lets, features) {
        Ok(_) => panic!("expected errors"),
        Err(es) => es.iter().map(ToString::to_string).collect(),
    }
}

fn fact(call: u64, id: &str, score: f64) -> ToolFact {
    ToolFact {
        call,
        tool: "credit_bureau".into(),
        args: json!({"applicant_id": id}),
        response: json!({"score": score, "flag": true, "name": "x", "none": null}),
    }
}

#[test]
fn build_reports_every_error_with_field_paths() {
    let mut sources = bureau();
    sources.insert(
        "bad-name".into(),
        SourceSpec {
            tool: String::new(),
            args: map(&[("a", "/b")]),
        },
    );
    let got = Provenance::build(
        sources,
        map(&[
            ("x", "1 +"),
            ("f", "2"),
            ("bureau", "3"),
            ("y", "nope:/a + zz"),
        ]),
        map(&[("f", "x * 2"), ("g", "y")]),
        f64::NAN,
    );
    let got: Vec<String> = got
        .err()
        .unwrap_or_default()
        .iter()
        .map(ToString::to_string)
        .collect();
    let want = [
        "tolerance: must be finite and >= 0, got NaN",
        "sources.bad-name: source name must be an identifier other than `input`",
        "sources.bad-name.tool: tool name is empty",
        "sources.bad-name.args.a: JSON pointer \"a\" must be empty or start with '/'",
        "let.bureau: `bureau` is also the name of a source",
        "let.f: let `f` shadows feature `f`",
        "let.x: parse error at column 4: unexpected end: expected a number, reference, call or '('",
        "let.y: unknown source `nope` in `nope:/a`",
        "let.y: unknown name `zz`",
    ];
    assert_eq!(got, want);
}

#[test]
fn tolerance_and_features_required() {
    let e = Provenance::build(bureau(), map(&[]), map(&[]), -1.0)
        .err()
        .unwrap_or_default();
    let fields: Vec<&str> = e.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, ["tolerance", "features"]);
    assert!(Provenance::build(bureau(), map(&[]), map(&[("f", "1")]), f64::INFINITY).is_err());
    assert!(Provenance::build(bureau(), map(&[]), map(&[("f", "1")]), 0.0).is_ok());
}

#[test]
fn cycles_are_named() {
    let e = errors(
        &[("a", "b + 1"), ("b", "c"), ("c", "a * 2"), ("s", "s")],
        &[("f", "a"), ("g", "g2"), ("g2", "g")],
    );
    assert_eq!(
        e,
        [
            "let.a: cycle: a -> b -> c -> a",
            "features.g: cycle: g -> g2 -> g",
            "let.s: cycle: s -> s"
        ]
    );
    // A value merely depending on a cycle is not itself reported.
    assert!(!e.iter().any(|m| m.starts_with("features.f")));
}

#[test]
fn let_names_must_be_referenceable() {
    let e = errors(&[("min", "1"), ("input", "2"), ("9x", "3")], &[("f", "1")]);
    assert_eq!(e.len(), 3, "{e:?}");
    // Feature names are the model's and may be anything non-empty.
    assert!(build(&[], &[("debt-to-income", "1"), ("min", "2")]).is_ok());
}

#[test]
fn order_and_accessors() {
    let p = build(
        &[("b", "a2 + 1"), ("a2", "1")],
        &[("z", "b"), ("y", "z + a2")],
    )
    .unwrap();
    assert_eq!(p.features().collect::<Vec<_>>(), ["y", "z"]);
    assert_eq!(p.lets().collect::<Vec<_>>(), ["a2", "b"]);
    assert_eq!(p.order, ["a2", "b", "z", "y"]);
    assert_eq!(p.expr("y").map(ToString::to_string), Some("z + a2".into()));
    assert_eq!(p.tolerance(), 1e-9);
    assert_eq!(p.sources().len(), 1);
}

#[test]
fn canonical_is_formatting_independent() {
    let a = build(&[("r", "(0.119/12)")], &[("f", "(r+1)+bureau:\"/score\"")]).unwrap();
    let b = build(&[("r", "0.119 / 12")], &[("f", "r + 1 + bureau:/score")]).unwrap();
    let c = build(&[("r", "0.119 / 12")], &[("f", "r + (1 + bureau:/score)")]).unwrap();
    assert_eq!(a.canonical(), b.canonical());
    assert_eq!(a.canonical_string(), b.canonical_string());
    assert_ne!(a.canonical_string(), c.canonical_string());
    assert_eq!(
        a.canonical_string(),
        r#"[["tolerance","","1e-9"],["source","bureau","{\"args\":{\"/applicant_id\":\"/applicant_id\"},\"tool\":\"credit_bureau\"}"],["let","r","0.119 / 12"],["feature","f","r + 1 + bureau:/score"]]"#
    );
}

#[test]
fn source_is_latest_matching_response() {
    let p = build(&[], &[("score", "bureau:/score")]).unwrap();
    let input = json!({"applicant_id": "A1"});
    let mut other_tool = fact(9, "A1", 5.0);
    other_tool.tool = "other".into();
    let tools = [
        fact(1, "A1", 600.0),
        fact(2, "A1", 700.0),
        fact(3, "B2", 800.0),
        other_tool,
    ];
    let r = reconcile(
        &p,
        &Facts {
            input: &input,
            tools: &tools,
        },
        &json!({"score": 700}),
    );
    assert!(r.all_reconciled(), "{r:?}");
    assert_eq!(r.sources, BTreeMap::from([("bureau".to_string(), Some(2))]));
    // Call number decides, not slice position; on a tie the later entry wins.
    let tools = [
        fact(5, "A1", 650.0),
        fact(4, "A1", 700.0),
        fact(5, "A1", 660.0),
    ];
    let r = reconcile(
        &p,
        &Facts {
            input: &input,
            tools: &tools,
        },
        &json!({"score": 660}),
    );
    assert!(r.all_reconciled(), "{r:?}");
    // No matching response: the source is unavailable.
    let tools = [fact(1, "B2", 700.0)];
    let r = reconcile(
        &p,
        &Facts {
            input: &input,
            tools: &tools,
        },
        &json!({"score": 700}),
    );
    assert_eq!(r.sources.get("bureau"), Some(&None));
    assert_eq!(
        r.features[0].expected,
        Err(EvalError::SourceUnavailable {
            name: "bureau".into()
        })
    );
    assert!(!r.all_reconciled());
    // A constraint whose input value is absent never matches.
    let r = reconcile(
        &p,
        &Facts {
            input: &json!({}),
            tools: &[fact(1, "A1", 1.0)],
        },
        &json!({"score": 1}),
    );
    assert_eq!(r.sources.get("bureau"), Some(&None));
}

#[test]
fn json_values_and_errors_name_the_reference() {
    let p = build(
        &[],
        &[
            ("a", "bureau:/flag"),
            ("b", "bureau:/name"),
            ("c", "bureau:/none"),
            ("d", "input:/gone"),
        ],
    )
    .unwrap();
    let input = json!({"applicant_id": "A1"});
    let tools = [fact(1, "A1", 700.0)];
    let r = reconcile(
        &p,
        &Facts {
            input: &input,
            tools: &tools,
        },
        &json!({"a": 1, "b": 0, "c": 0, "d": 0}),
    );
    let expected: Vec<_> = r.features.iter().map(|f| f.expected.clone()).collect();
    assert_eq!(
        expected,
        [
            Ok(1.0),
            Err(EvalError::NotANumber {
                reference: "bureau:/name".into(),
                found: "string".into()
            }),
            Err(EvalError::NotANumber {
                reference: "bureau:/none".into(),
                found: "null".into()
            }),
            Err(EvalError::Missing {
                reference: "input:/gone".into()
            }),
        ]
    );
    assert_eq!(r.reconciled_count(), 1);
    assert_eq!(
        r.failures().map(|f| f.name.as_str()).collect::<Vec<_>>(),
        ["b", "c", "d"]
    );
}

#[test]
fn sent_vector_rules() {
    let p = build(
        &[("half", "input:/x / 2")],
        &[("f", "half"), ("g", "f * 2")],
    )
    .unwrap();
    let input = json!({"x": 10});
    let facts = Facts {
        input: &input,
        tools: &[],
    };
    assert!(reconcile(&p, &facts, &json!({"f": 5, "g": 10.0})).all_reconciled());
    // Features referencing features use the host's value, not the agent's.
    let r = reconcile(&p, &facts, &json!({"f": 6, "g": 12}));
    assert_eq!(
        (r.features[0].reconciled, r.features[1].reconciled),
        (false, false)
    );
    assert_eq!(r.features[1].expected, Ok(10.0));
    // Not a number: string, bool, null; missing; extra; not an object.
    for sent in [
        json!({"f": "5", "g": 10}),
        json!({"f": true, "g": 10}),
        json!({"f": null, "g": 10}),
        json!({"g": 10}),
    ] {
        let r = reconcile(&p, &facts, &sent);
        assert_eq!(
            (r.features[0].sent, r.all_reconciled(), r.reconciled_count()),
            (None, false, 1)
        );
    }
    let r = reconcile(&p, &facts, &json!({"f": 5, "g": 10, "zz": 1, "half": 5}));
    assert_eq!((r.all_reconciled(), r.reconciled_count()), (false, 2));
    assert_eq!(r.unexpected, ["half", "zz"]);
    for sent in [json!([5, 10]), json!(null), json!(5)] {
        let r = reconcile(&p, &facts, &sent);
        assert_eq!((r.all_reconciled(), r.reconciled_count()), (false, 0));
    }
}

#[test]
fn tolerance_is_relative_with_floor_of_one() {
    let p = Provenance::build(
        BTreeMap::new(),
        map(&[]),
        map(&[("big", "1000"), ("small", "0.001")]),
        1e-3,
    )
    .unwrap();
    let facts = Facts {
        input: &json!({}),
        tools: &[],
    };
    let check = |big: f64, small: f64| {
        reconcile(&p, &facts, &json!({"big": big, "small": small})).reconciled_count()
    };
    assert_eq!(check(1000.9, 0.0019), 2); // 0.9 <= 1e-3 * 1000; 0.0009 <= 1e-3 * 1
    assert_eq!(check(1001.1, 0.001), 1);
    assert_eq!(check(1000.0, 0.0021), 1);
    let exact =
        Provenance::build(BTreeMap::new(), map(&[]), map(&[("f", "0.1 + 0.2")]), 0.0).unwrap();
    assert!(reconcile(&exact, &facts, &json!({"f": 0.1 + 0.2})).all_reconciled());
    assert!(!reconcile(&exact, &facts, &json!({"f": 0.3})).all_reconciled());
}

#[test]
fn results_serialize_and_describe() {
    let p = build(&[], &[("f", "1 / input:/z")]).unwrap();
    let r = reconcile(
        &p,
        &Facts {
            input: &json!({"z": 0}),
            tools: &[],
        },
        &json!({"f": 2}),
    );
    let text = serde_json::to_string(&r).unwrap();
    assert_eq!(serde_json::from_str::<Reconciliation>(&text).unwrap(), r);
    assert_eq!(
        r.features[0].to_string(),
        "feature `f`: sent 2, expected value unavailable (division by zero): does not reconcile"
    );
}
