use super::*;
use proptest::prelude::*;

fn cases() -> u32 {
    crate::test_support::cases(300)
}

fn no_refs(_: &Reference) -> Result<f64, EvalError> {
    Err(EvalError::UnknownName {
        name: "none".into(),
    })
}

fn ev(text: &str) -> Result<f64, EvalError> {
    parse(text)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .eval(&mut no_refs)
}

fn canon(text: &str) -> String {
    parse(text)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .to_string()
}

fn err_col(text: &str) -> (usize, String) {
    match parse(text) {
        Ok(e) => panic!("{text:?} parsed as {e}"),
        Err(e) => (e.column, e.message),
    }
}

fn agent_pow(x: f64, n: i32) -> f64 {
    let mut acc = 1.0_f64;
    for _ in 0..n.unsigned_abs() {
        acc *= x;
    }
    if n < 0 { 1.0 / acc } else { acc }
}

#[test]
fn precedence_and_associativity() {
    assert_eq!(ev("1 + 2 * 3"), Ok(7.0));
    assert_eq!(ev("(1 + 2) * 3"), Ok(9.0));
    assert_eq!(ev("8 - 3 - 2"), Ok(3.0));
    assert_eq!(ev("8 / 4 / 2"), Ok(1.0));
    assert_eq!(ev("2 * -3"), Ok(-6.0));
    assert_eq!(ev("-2 * 3 + 10"), Ok(4.0));
    assert_eq!(ev("2 - -2"), Ok(4.0));
    assert_eq!(ev("--2"), Ok(2.0));
    assert_eq!(ev(" ( ( 7 ) ) "), Ok(7.0));
    // Source order, no reassociation: (0.1 + 0.2) + 0.3 != 0.1 + (0.2 + 0.3).
    assert_eq!(ev("0.1 + 0.2 + 0.3"), Ok(0.1 + 0.2 + 0.3));
    assert_eq!(ev("0.1 + (0.2 + 0.3)"), Ok(0.1 + (0.2 + 0.3)));
    assert_ne!(ev("0.1 + 0.2 + 0.3"), ev("0.1 + (0.2 + 0.3)"));
}

#[test]
fn canonical_display_examples() {
    assert_eq!(canon("1+2*3"), "1 + 2 * 3");
    assert_eq!(canon("(1+2)*3"), "(1 + 2) * 3");
    assert_eq!(canon("(a+b)+c"), "a + b + c");
    assert_eq!(canon("a+(b+c)"), "a + (b + c)");
    assert_eq!(canon("a-(b-c)"), "a - (b - c)");
    assert_eq!(canon("(a*b)/c"), "a * b / c");
    assert_eq!(canon("a/(b*c)"), "a / (b * c)");
    assert_eq!(canon("-(a*b)"), "-(a * b)");
    assert_eq!(canon("(-a)*b"), "-a * b");
    assert_eq!(canon("- -2"), "--2");
    assert_eq!(canon("a*-b"), "a * -b");
    assert_eq!(canon("((x))"), "x");
    assert_eq!(canon("min( a,b ,\n c)"), "min(a, b, c)");
    assert_eq!(canon("pow(1+r,input:/term)"), "pow(1 + r, input:/term)");
    assert_eq!(canon("700.0"), "700");
    assert_eq!(canon("1e-3"), "0.001");
    assert_eq!(canon("0.119"), "0.119");
    assert_eq!(canon("1E20"), "1e20");
    assert_eq!(canon("0.00000015"), "1.5e-7");
    assert_eq!(canon("1e-400"), "0");
    assert_eq!(canon("input:\"/a\""), "input:/a");
    assert_eq!(canon("input:\"/weird-key/x\""), "input:\"/weird-key/x\"");
    assert_eq!(canon("input:\"\""), "input:\"\"");
    assert_eq!(canon("bureau:/credit_score"), "bureau:/credit_score");
    assert_eq!(canon("input:/a~1b/0 /2"), "input:/a~1b/0 / 2");
}

#[test]
fn references_in_first_appearance_order() {
    let e = parse("b + input:/x * bureau:\"/y z\" - b + input:/x").unwrap();
    let refs: Vec<String> = e.references().iter().map(|r| r.to_string()).collect();
    assert_eq!(refs, ["b", "input:/x", "bureau:\"/y z\""]);
    assert_eq!(
        e.references()[2],
        &Reference::Pointer {
            source: Some("bureau".into()),
            pointer: "/y z".into()
        }
    );
    assert_eq!(
        e.references()[1],
        &Reference::Pointer {
            source: None,
            pointer: "/x".into()
        }
    );
}

#[test]
fn resolver_called_in_source_order() {
    let e = parse("a + max(input:/p, b) * c").unwrap();
    let mut seen = Vec::new();
    let v = e.eval(&mut |r| {
        seen.push(r.to_string());
        Ok(seen.len() as f64)
    });
    assert_eq!(v, Ok(1.0 + 3.0 * 4.0));
    assert_eq!(seen, ["a", "input:/p", "b", "c"]);
}

#[test]
fn parse_errors_have_columns() {
    let cases: &[(&str, usize, &str)] = &[
        ("", 1, "unexpected end"),
        ("1 +", 4, "unexpected end"),
        ("1 + * 2", 5, "unexpected '*'"),
        ("(1 + 2", 7, "expected ')'"),
        ("1 2", 3, "unexpected '2'"),
        ("foo(1)", 1, "unknown function `foo`"),
        ("2 * min()", 5, "at least 1"),
        ("clamp(1, 2)", 1, "exactly 3"),
        ("pow(1, 2, 3)", 1, "exactly 2"),
        ("max(1 2)", 7, "expected ',' or ')'"),
        ("input", 1, "reserved"),
        ("1 + sqrt", 5, "reserved"),
        ("input:a", 7, "JSON pointer"),
        ("input:/a-b", 9, "unquoted pointer"),
        ("input:/a+1", 9, "unquoted pointer"),
        ("x:/a~2", 3, "'~' not followed by 0 or 1"),
        ("x:\"a\"", 3, "must be empty or start with '/'"),
        ("input:\"/a", 7, "unterminated"),
        ("input:\"/a\\q\"", 7, "invalid string literal"),
        ("2e", 1, "malformed number"),
        ("1.", 3, "digit after '.'"),
        ("1.5.2", 1, "malformed number"),
        ("12abc", 1, "malformed number"),
        ("1e999", 1, "out of range"),
        ("3 # 4", 3, "unexpected '#'"),
        // Columns count chars, not bytes: "é" is 2 bytes.
        ("input:\"/é\" + #", 14, "unexpected '#'"),
    ];
    for (text, column, needle) in cases {
        let (c, m) = err_col(text);
        assert_eq!(
            (c, m.contains(needle)),
            (*column, true),
            "{text:?}: column {c}: {m}"
        );
    }
}

#[test]
fn length_and_depth_limits() {
    let ok = format!("1{}", " ".repeat(MAX_LEN - 1));
    assert!(parse(&ok).is_ok());
    let long = format!("1{}", " ".repeat(MAX_LEN));
    assert_eq!(err_col(&long).0, MAX_LEN + 1);
    let nested = |n: usize| format!("{}1{}", "(".repeat(n), ")".repeat(n));
    assert_eq!(ev(&nested(MAX_DEPTH)), Ok(1.0));
    let (c, m) = err_col(&nested(MAX_DEPTH + 1));
    assert_eq!((c, m.contains("nesting")), (MAX_DEPTH + 1, true));
    assert!(parse(&format!("{}1", "-".repeat(MAX_DEPTH))).is_ok());
    assert!(parse(&format!("{}1", "-".repeat(MAX_DEPTH + 1))).is_err());
    let calls = |n: usize| format!("{}1{}", "abs(".repeat(n), ")".repeat(n));
    assert!(parse(&calls(MAX_DEPTH)).is_ok());
    assert!(parse(&calls(MAX_DEPTH + 1)).is_err());
    // Long flat chains are not nesting: 2000 terms evaluate without deep recursion.
    let sum = vec!["1"; 2000].join("+");
    assert_eq!(ev(&sum), Ok(2000.0));
    // Hostile deep input is refused quickly, without overflowing the stack.
    assert!(parse(&"(".repeat(100_000)).is_err());
}

#[test]
fn functions() {
    assert_eq!(ev("min(3, 1, 2)"), Ok(1.0));
    assert_eq!(ev("min(5)"), Ok(5.0));
    assert_eq!(ev("max(3, 1, 2)"), Ok(3.0));
    assert_eq!(ev("max(-5)"), Ok(-5.0));
    assert_eq!(ev("clamp(5, 0, 3)"), Ok(3.0));
    assert_eq!(ev("clamp(-1, 0, 3)"), Ok(0.0));
    assert_eq!(ev("clamp(2, 0, 3)"), Ok(2.0));
    assert_eq!(ev("clamp(2, 3, 3)"), Ok(3.0));
    assert_eq!(
        ev("clamp(1, 3, 0)"),
        Err(EvalError::ClampBounds { lo: 3.0, hi: 0.0 })
    );
    assert_eq!(ev("abs(-2.5)"), Ok(2.5));
    assert_eq!(ev("sqrt(2)"), Ok(std::f64::consts::SQRT_2));
    assert_eq!(ev("sqrt(0)"), Ok(0.0));
    assert_eq!(
        ev("sqrt(-1)"),
        Err(EvalError::SqrtOfNegative { value: -1.0 })
    );
    assert_eq!(ev("floor(-1.5)"), Ok(-2.0));
    assert_eq!(ev("ceil(-1.5)"), Ok(-1.0));
    assert_eq!(ev("round(2.5)"), Ok(3.0));
    assert_eq!(ev("round(-2.5)"), Ok(-3.0));
    assert_eq!(ev("round(2.4999)"), Ok(2.0));
    assert_eq!(ev("round(0.49999999999999994)"), Ok(0.0));
    assert_eq!(ev("pow(2, 10)"), Ok(1024.0));
    assert_eq!(ev("pow(2, -2)"), Ok(0.25));
    assert_eq!(ev("pow(0, 0)"), Ok(1.0));
    assert_eq!(ev("pow(-3, 3)"), Ok(-27.0));
}

#[test]
fn pow_is_the_agent_loop_bit_for_bit() {
    let bases = [
        1.0 + 0.119 / 12.0,
        1.0001,
        0.999,
        1.1,
        -1.05,
        3.7,
        0.5,
        1.0 + 0.0525 / 12.0,
    ];
    for x in bases {
        for n in [-360, -60, -7, -1, 0, 1, 2, 3, 12, 59, 60, 61, 120, 360, 480] {
            let e = parse("pow(x, n)").unwrap();
            let got = e.eval(&mut |r| match r {
                Reference::Name(v) if v == "x" => Ok(x),
                _ => Ok(f64::from(n)),
            });
            let want = agent_pow(x, n);
            assert_eq!(got.map(f64::to_bits), Ok(want.to_bits()), "pow({x}, {n})");
        }
    }
    // The loop differs from powi/powf in general; at least one case must show it,
    // or this test would not distinguish the implementations.
    let differs =
        (1..=600).any(|n| agent_pow(1.0 + 0.119 / 12.0, n) != (1.0_f64 + 0.119 / 12.0).powi(n));
    assert!(differs);
}

#[test]
fn pow_errors() {
    assert_eq!(
        ev("pow(2, 0.5)"),
        Err(EvalError::PowExponent { exponent: 0.5 })
    );
    assert_eq!(
        ev("pow(2, 4097)"),
        Err(EvalError::PowExponent { exponent: 4097.0 })
    );
    assert_eq!(
        ev("pow(2, -4097)"),
        Err(EvalError::PowExponent { exponent: -4097.0 })
    );
    assert_eq!(
        ev("pow(1.0001, 4096)").map(f64::to_bits),
        Ok(agent_pow(1.0001, 4096).to_bits())
    );
    assert_eq!(
        ev("pow(10, 400)"),
        Err(EvalError::NonFinite {
            operation: "pow".into()
        })
    );
    assert_eq!(
        ev("pow(2, -4096)"),
        Err(EvalError::NonFinite {
            operation: "pow".into()
        })
    );
    assert_eq!(ev("pow(0, -1)"), Err(EvalError::DivisionByZero));
}

#[test]
fn evaluation_is_total() {
    assert_eq!(ev("1 / 0"), Err(EvalError::DivisionByZero));
    assert_eq!(ev("1 / (2 - 2)"), Err(EvalError::DivisionByZero));
    assert_eq!(ev("1 / -0"), Err(EvalError::DivisionByZero));
    assert_eq!(ev("0 / 0"), Err(EvalError::DivisionByZero));
    assert_eq!(
        ev("1e308 * 10"),
        Err(EvalError::NonFinite {
            operation: "*".into()
        })
    );
    assert_eq!(
        ev("1e308 + 1e308"),
        Err(EvalError::NonFinite {
            operation: "+".into()
        })
    );
    assert_eq!(
        ev("-1e308 - 1e308"),
        Err(EvalError::NonFinite {
            operation: "-".into()
        })
    );
    assert_eq!(
        ev("1e308 / 1e-10"),
        Err(EvalError::NonFinite {
            operation: "/".into()
        })
    );
    // An overflow inside an argument stops evaluation even if later ops would "fix" it.
    assert_eq!(
        ev("min(1e308 * 10 - 1e308 * 10, 1)"),
        Err(EvalError::NonFinite {
            operation: "*".into()
        })
    );
    let e = parse("1 + x").unwrap();
    assert_eq!(
        e.eval(&mut |_| Ok(f64::NAN)),
        Err(EvalError::NonFinite {
            operation: "x".into()
        })
    );
    assert_eq!(
        e.eval(&mut |_| Ok(f64::INFINITY)),
        Err(EvalError::NonFinite {
            operation: "x".into()
        })
    );
    let missing = EvalError::Missing {
        reference: "x".into(),
    };
    assert_eq!(e.eval(&mut |_| Err(missing.clone())), Err(missing));
}

#[test]
fn eval_error_serde_round_trip() {
    let errors = [
        EvalError::DivisionByZero,
        EvalError::NotANumber {
            reference: "input:/a".into(),
            found: "string".into(),
        },
        EvalError::ClampBounds { lo: 2.0, hi: 1.0 },
    ];
    for e in errors {
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(serde_json::from_str::<EvalError>(&json).unwrap(), e);
        // Recorded in the journal inside a decision's rule: postcard must carry it (an
        // internally tagged enum could not be read back from the journal).
        let bytes = postcard::to_allocvec(&e).unwrap();
        assert_eq!(postcard::from_bytes::<EvalError>(&bytes).unwrap(), e);
    }
    let json = serde_json::to_value(EvalError::DivisionByZero).unwrap();
    assert_eq!(json, serde_json::json!("division_by_zero"));
}

fn arb_number() -> impl Strategy<Value = f64> {
    prop_oneof![
        prop::sample::select(vec![
            0.0, 1.0, 2.0, 0.5, 700.0, 0.119, 1e-3, 12.0, 1e16, 1e-6, 5e-324
        ]),
        any::<f64>().prop_filter_map("finite", |x| x.is_finite().then_some(x.abs())),
        (0u32..100_000).prop_map(f64::from),
    ]
}

fn arb_ref() -> impl Strategy<Value = Reference> {
    let names = prop::sample::select(vec!["a", "b_1", "_x", "payment", "Z9"]);
    let sources = prop::sample::select(vec![None, Some("bureau"), Some("s_2")]);
    let pointers = prop::sample::select(vec![
        "/a",
        "/a/b",
        "/0",
        "/x.y",
        "/a~0b~1c",
        "/",
        "//",
        "",
        "/weird-key/x",
        "/sp ace",
        "/q\"uote",
        "/é",
        "/a\\b",
        "/a\nb",
    ]);
    prop_oneof![
        names.prop_map(|n| Reference::Name(n.to_string())),
        (sources, pointers).prop_map(|(s, p)| Reference::Pointer {
            source: s.map(str::to_string),
            pointer: p.to_string()
        }),
    ]
}

fn arb_node() -> impl Strategy<Value = Node> {
    let leaf = prop_oneof![
        arb_number().prop_map(Node::Num),
        arb_ref().prop_map(Node::Ref)
    ];
    leaf.prop_recursive(5, 48, 4, |inner| {
        let add = prop::sample::select(vec![BinOp::Add, BinOp::Sub]);
        let mul = prop::sample::select(vec![BinOp::Mul, BinOp::Div]);
        let func = prop::sample::select(FUNCS.iter().map(|(f, _)| *f).collect::<Vec<_>>());
        prop_oneof![
            inner.clone().prop_map(|n| Node::Neg(Box::new(n))),
            (
                inner.clone(),
                prop::collection::vec((add, inner.clone()), 1..4)
            )
                .prop_map(|(first, rest)| Node::chain(first, rest)),
            (
                inner.clone(),
                prop::collection::vec((mul, inner.clone()), 1..4)
            )
                .prop_map(|(first, rest)| Node::chain(first, rest)),
            (func, prop::collection::vec(inner, 1..5)).prop_map(|(f, mut args)| {
                let (lo, hi) = f.arity();
                args.truncate(hi);
                while args.len() < lo {
                    args.push(Node::Num(1.0));
                }
                Node::Call(f, args)
            }),
        ]
    })
}

fn arb_text() -> impl Strategy<Value = String> {
    let tokens = prop::sample::select(vec![
        "1",
        "0.5",
        "1e3",
        "2e",
        ".",
        "+",
        "-",
        "*",
        "/",
        "(",
        ")",
        ",",
        " ",
        "input",
        ":",
        "/a",
        "\"",
        "~",
        "~0",
        "min",
        "pow",
        "clamp",
        "x",
        "bureau:/y",
        "input:\"/k\"",
        "\\",
        "é",
        "1e999",
        "_",
    ]);
    prop_oneof![
        any::<String>(),
        prop::collection::vec(tokens, 0..40).prop_map(|t| t.concat()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    /// The parser never panics, and whatever it accepts has a stable canonical form.
    #[test]
    fn parser_never_panics(text in arb_text()) {
        if let Ok(e) = parse(&text) {
            let canonical = e.to_string();
            let again = parse(&canonical);
            prop_assert_eq!(again.as_ref(), Ok(&e), "{}", canonical);
            let _ = e.eval(&mut |_| Ok(1.5));
        }
    }

    /// parse(display(e)) == e for random syntax trees.
    #[test]
    fn display_round_trips(node in arb_node()) {
        let e = Expr { root: node };
        let text = e.to_string();
        prop_assert_eq!(parse(&text), Ok(e.clone()), "{}", text);
        prop_assert_eq!(parse(&text).map(|p| p.to_string()), Ok(text));
    }
}
