//! The key property: with a random provenance, random recorded facts and a
//! random (honest or tampered) feature vector, a feature reconciles exactly
//! when it matches what its declaration yields, computed here independently.
use std::collections::BTreeMap;

use super::{Facts, Provenance, SourceSpec, ToolFact, reconcile};
use proptest::prelude::*;
use serde_json::{Value, json};

fn cases() -> u32 {
    crate::test_support::cases(300)
}

const INPUT_KEYS: usize = 6; // k0..k5; k6 is never present
const FIELDS: usize = 4; // x0..x3; x4 is never present
const TOOLS: [&str; 2] = ["t0", "t1"];
const IDS: [&str; 2] = ["A", "B"];

/// A JSON value in the facts.
#[derive(Debug, Clone)]
enum J {
    Float(f64),
    Int(i64),
    Bool(bool),
    Str,
}

impl J {
    fn json(&self) -> Value {
        match self {
            J::Float(x) => json!(x),
            J::Int(i) => json!(i),
            J::Bool(b) => json!(b),
            J::Str => json!("12"),
        }
    }
    fn number(&self) -> Option<f64> {
        match self {
            J::Float(x) => Some(*x),
            J::Int(i) => Some(*i as f64),
            J::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
            J::Str => None,
        }
    }
}

/// Test-side expression tree, rendered to text and evaluated by the oracle.
#[derive(Debug, Clone)]
enum T {
    Num(f64),
    Input(usize),
    Src(usize, usize),
    Node(usize),
    Bin(char, Box<T>, Box<T>),
    Neg(Box<T>),
    Min(Vec<T>),
    Max(Vec<T>),
    Clamp(Box<T>, Box<T>, Box<T>),
    Unary(&'static str, Box<T>),
    Pow(Box<T>, i32),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Action {
    Exact,
    Within,
    Beyond,
    JustBeyond,
    Remove,
    NonNumeric,
}

#[derive(Debug, Clone)]
struct Fact {
    tool: usize,
    id: Option<usize>,
    region: i64,
    gap: u64,
    fields: Vec<Option<J>>,
}

#[derive(Debug, Clone)]
struct Scenario {
    nodes: Vec<(bool, T)>, // (is_feature, tree); node i references only nodes < i
    sources: Vec<(usize, usize)>, // (tool, constraint mode)
    input: Vec<Option<J>>,
    id: usize,
    region: i64,
    facts: Vec<Fact>,
    tolerance: f64,
    actions: Vec<Action>,
    extra: bool,
}

fn arb_j() -> impl Strategy<Value = J> {
    prop_oneof![
        6 => (-1000.0..1000.0f64).prop_map(J::Float),
        3 => (-50i64..5000).prop_map(J::Int),
        1 => any::<bool>().prop_map(J::Bool),
        1 => Just(J::Str),
    ]
}

fn arb_tree() -> impl Strategy<Value = T> {
    let leaf = prop_oneof![
        prop_oneof![
            Just(0.0),
            Just(1.0),
            Just(12.0),
            Just(0.119),
            (0.0..100.0f64)
        ]
        .prop_map(T::Num),
        (0..=INPUT_KEYS).prop_map(T::Input),
        (0..3usize, 0..=FIELDS).prop_map(|(s, f)| T::Src(s, f)),
        (0..16usize).prop_map(T::Node),
    ];
    leaf.prop_recursive(4, 24, 3, |inner| {
        let b = || inner.clone().prop_map(Box::new);
        prop_oneof![
            4 => (prop::sample::select(vec!['+', '-', '*', '/']), b(), b()).prop_map(|(o, x, y)| T::Bin(o, x, y)),
            1 => b().prop_map(T::Neg),
            1 => prop::collection::vec(inner.clone(), 1..4).prop_map(T::Min),
            1 => prop::collection::vec(inner.clone(), 1..4).prop_map(T::Max),
            1 => (b(), b(), b()).prop_map(|(x, l, h)| T::Clamp(x, l, h)),
            2 => (prop::sample::select(vec!["abs", "sqrt", "floor", "ceil", "round"]), b())
                .prop_map(|(f, x)| T::Unary(f, x)),
            1 => (b(), -6i32..=12).prop_map(|(x, n)| T::Pow(x, n)),
        ]
    })
}

fn arb_fact() -> impl Strategy<Value = Fact> {
    (
        0..2usize,
        prop::option::weighted(0.9, 0..2usize),
        1i64..=2,
        1u64..4,
        prop::collection::vec(prop::option::weighted(0.9, arb_j()), FIELDS),
    )
        .prop_map(|(tool, id, region, gap, fields)| Fact {
            tool,
            id,
            region,
            gap,
            fields,
        })
}

fn arb_action() -> impl Strategy<Value = Action> {
    prop_oneof![
        6 => Just(Action::Exact),
        2 => Just(Action::Within),
        2 => Just(Action::Beyond),
        1 => Just(Action::JustBeyond),
        1 => Just(Action::Remove),
        1 => Just(Action::NonNumeric),
    ]
}

fn arb_scenario() -> impl Strategy<Value = Scenario> {
    (
        prop::collection::vec((any::<bool>(), arb_tree()), 1..8),
        prop::collection::vec((0..2usize, 0..3usize), 1..4),
        prop::collection::vec(prop::option::weighted(0.9, arb_j()), INPUT_KEYS),
        (0..2usize, 1i64..=2),
        prop::collection::vec(arb_fact(), 0..7),
        prop::sample::select(vec![0.0, 1e-12, 1e-9, 1e-6, 1e-3]),
        prop::collection::vec(arb_action(), 8),
        prop::bool::weighted(0.15),
    )
        .prop_map(
            |(mut nodes, sources, input, (id, region), facts, tolerance, actions, extra)| {
                if let Some(last) = nodes.last_mut() {
                    last.0 = true; // at least one feature
                }
                Scenario {
                    nodes,
                    sources,
                    input,
                    id,
                    region,
                    facts,
                    tolerance,
                    actions,
                    extra,
                }
            },
        )
}

fn node_name(s: &Scenario, i: usize) -> String {
    if s.nodes[i].0 {
        format!("f{i}")
    } else {
        format!("v{i}")
    }
}

fn render(s: &Scenario, at: usize, t: &T) -> String {
    let r = |t: &T| render(s, at, t);
    let list = |ts: &[T]| ts.iter().map(r).collect::<Vec<_>>().join(", ");
    match t {
        T::Num(x) => format!("{x:?}"),
        T::Input(k) => format!("input:/k{k}"),
        T::Src(j, f) => format!("s{}:/x{f}", j % s.sources.len()),
        T::Node(_) if at == 0 => "7".into(),
        T::Node(i) => node_name(s, i % at),
        T::Bin(o, x, y) => format!("({} {o} {})", r(x), r(y)),
        T::Neg(x) => format!("-({})", r(x)),
        T::Min(xs) => format!("min({})", list(xs)),
        T::Max(xs) => format!("max({})", list(xs)),
        T::Clamp(x, l, h) => format!("clamp({}, {}, {})", r(x), r(l), r(h)),
        T::Unary(f, x) => format!("{f}({})", r(x)),
        T::Pow(x, n) => format!("pow({}, {n})", r(x)),
    }
}

fn fin(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

/// Independent oracle: the value a declaration yields, `None` for any error.
fn oracle(
    s: &Scenario,
    chosen: &[Option<usize>],
    vals: &[Option<f64>],
    at: usize,
    t: &T,
) -> Option<f64> {
    let ev = |t: &T| oracle(s, chosen, vals, at, t);
    match t {
        T::Num(x) => Some(*x),
        T::Input(k) => s.input.get(*k)?.as_ref()?.number(),
        T::Src(j, f) => s.facts[chosen[j % s.sources.len()]?]
            .fields
            .get(*f)?
            .as_ref()?
            .number(),
        T::Node(_) if at == 0 => Some(7.0),
        T::Node(i) => vals[i % at],
        T::Bin(o, x, y) => {
            let (a, b) = (ev(x)?, ev(y)?);
            fin(match o {
                '+' => a + b,
                '-' => a - b,
                '*' => a * b,
                _ if b == 0.0 => return None,
                _ => a / b,
            })
        }
        T::Neg(x) => Some(-ev(x)?),
        T::Min(xs) | T::Max(xs) => {
            let vs: Option<Vec<f64>> = xs.iter().map(ev).collect();
            let vs = vs?;
            let pick = |a: f64, b: f64| if matches!(t, T::Min(_)) { b < a } else { b > a };
            vs.iter()
                .copied()
                .reduce(|a, b| if pick(a, b) { b } else { a })
        }
        T::Clamp(x, l, h) => {
            let (x, l, h) = (ev(x)?, ev(l)?, ev(h)?);
            if l > h { None } else { Some(x.max(l).min(h)) }
        }
        T::Unary(f, x) => {
            let x = ev(x)?;
            match *f {
                "abs" => Some(x.abs()),
                "sqrt" if x < 0.0 => None,
                "sqrt" => Some(x.sqrt()),
                "floor" => Some(x.floor()),
                "ceil" => Some(x.ceil()),
                _ => Some(x.round()),
            }
        }
        T::Pow(x, n) => {
            let x = ev(x)?;
            let mut acc = 1.0_f64;
            for _ in 0..n.unsigned_abs() {
                acc = fin(acc * x)?;
            }
            if *n < 0 {
                if acc == 0.0 {
                    return None;
                }
                acc = fin(1.0 / acc)?;
            }
            Some(acc)
        }
    }
}

fn input_json(s: &Scenario) -> Value {
    let mut m = serde_json::Map::new();
    for (k, v) in s.input.iter().enumerate() {
        if let Some(v) = v {
            m.insert(format!("k{k}"), v.json());
        }
    }
    m.insert("applicant_id".into(), json!(IDS[s.id]));
    m.insert("region".into(), json!(s.region));
    Value::Object(m)
}

fn tool_facts(s: &Scenario) -> Vec<ToolFact> {
    let mut call = 0;
    s.facts
        .iter()
        .map(|f| {
            call += f.gap;
            let mut args = serde_json::Map::new();
            if let Some(id) = f.id {
                args.insert("id".into(), json!(IDS[id]));
            }
            args.insert("r".into(), json!(f.region));
            let mut response = serde_json::Map::new();
            for (i, v) in f.fields.iter().enumerate() {
                if let Some(v) = v {
                    response.insert(format!("x{i}"), v.json());
                }
            }
            ToolFact {
                call,
                tool: TOOLS[f.tool].into(),
                args: Value::Object(args),
                response: Value::Object(response),
            }
        })
        .collect()
}

fn source_specs(s: &Scenario) -> BTreeMap<String, SourceSpec> {
    let specs = s.sources.iter().enumerate().map(|(j, (tool, mode))| {
        let args = match mode {
            0 => vec![],
            1 => vec![("/id", "/applicant_id")],
            _ => vec![("/id", "/applicant_id"), ("/r", "/region")],
        };
        let args = args
            .into_iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        (
            format!("s{j}"),
            SourceSpec {
                tool: TOOLS[*tool].into(),
                args,
            },
        )
    });
    specs.collect()
}

/// Oracle source choice: index into `s.facts` of the latest matching fact.
fn oracle_sources(s: &Scenario) -> Vec<Option<usize>> {
    s.sources
        .iter()
        .map(|(tool, mode)| {
            (0..s.facts.len())
                .filter(|&i| {
                    let f = &s.facts[i];
                    f.tool == *tool
                        && (*mode == 0 || f.id == Some(s.id))
                        && (*mode < 2 || f.region == s.region)
                })
                .max() // calls strictly increase with the index
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn reconciles_iff_features_match_their_declared_sources(s in arb_scenario()) {
        let mut lets = BTreeMap::new();
        let mut features = BTreeMap::new();
        for (i, (is_feature, t)) in s.nodes.iter().enumerate() {
            let target = if *is_feature { &mut features } else { &mut lets };
            target.insert(node_name(&s, i), render(&s, i, t));
        }
        let p = Provenance::build(source_specs(&s), lets, features, s.tolerance);
        prop_assert!(p.is_ok(), "{:?}", p.err());
        let Ok(p) = p else { unreachable!() };

        let chosen = oracle_sources(&s);
        let mut vals: Vec<Option<f64>> = Vec::new();
        for (i, (_, t)) in s.nodes.iter().enumerate() {
            let v = oracle(&s, &chosen, &vals, i, t);
            vals.push(v);
        }

        // Build the sent vector and the expected outcome per feature.
        let mut sent = serde_json::Map::new();
        let mut expect: BTreeMap<String, bool> = BTreeMap::new();
        for (i, (is_feature, _)) in s.nodes.iter().enumerate() {
            if !*is_feature {
                continue;
            }
            let name = node_name(&s, i);
            let honest = vals[i].unwrap_or(0.0);
            let bound = s.tolerance * honest.abs().max(1.0);
            let beyond = s.tolerance.max(1e-12) * honest.abs().max(1.0) * (3.0 + i as f64 * 97.0);
            let sign = if i % 2 == 0 { 1.0 } else { -1.0 };
            let (value, ok) = match s.actions[i] {
                Action::Exact => (Some(json!(honest)), true),
                Action::Within => (Some(json!(honest + sign * 0.25 * bound)), true),
                Action::Beyond => match fin(honest + sign * beyond) {
                    Some(v) => (Some(json!(v)), false),
                    None => (None, false),
                },
                Action::JustBeyond => match fin(honest + sign * 1.25 * s.tolerance.max(1e-12) * honest.abs().max(1.0)) {
                    Some(v) => (Some(json!(v)), false),
                    None => (None, false),
                },
                Action::Remove => (None, false),
                // The right value in the wrong JSON type is still refused.
                Action::NonNumeric if honest == 1.0 => (Some(json!(true)), false),
                Action::NonNumeric if honest == 0.0 => (Some(json!(false)), false),
                Action::NonNumeric if i % 2 == 0 => (Some(json!(honest.to_string())), false),
                Action::NonNumeric => (Some(Value::Null), false),
            };
            if let Some(v) = value {
                sent.insert(name.clone(), v);
            }
            expect.insert(name, ok && vals[i].is_some());
        }
        if s.extra {
            sent.insert("undeclared".into(), json!(1.0));
        }

        let input = input_json(&s);
        let tools = tool_facts(&s);
        let r = reconcile(&p, &Facts { input: &input, tools: &tools }, &Value::Object(sent));

        // Sources: the latest matching response, by call number.
        let want_sources: BTreeMap<String, Option<u64>> = chosen
            .iter()
            .enumerate()
            .map(|(j, c)| (format!("s{j}"), c.map(|i| tools[i].call)))
            .collect();
        prop_assert_eq!(&r.sources, &want_sources);

        // Per feature: the expected value is the oracle's, bit for bit, and
        // reconciled matches the independent expectation.
        let got: BTreeMap<String, bool> = r.features.iter().map(|f| (f.name.clone(), f.reconciled)).collect();
        prop_assert_eq!(&got, &expect, "{:#?}", r);
        for f in &r.features {
            let i: usize = f.name[1..].parse().unwrap_or(usize::MAX);
            // `==` is bit equality except that 0.0 == -0.0 (clamp/min/max ties).
            prop_assert_eq!(f.expected.as_ref().ok().copied(), vals[i], "{}", f.name);
        }
        let all = expect.values().all(|ok| *ok) && !s.extra;
        prop_assert_eq!(r.all_reconciled(), all);
        prop_assert_eq!(r.reconciled_count(), expect.values().filter(|ok| **ok).count());
        prop_assert_eq!(r.unexpected.len(), usize::from(s.extra));
    }
}
