//! JSON as the contract needs it: numbers compared exactly by value, equality by value,
//! the canonical text the policy hash covers, short descriptions of values for messages,
//! and where each value is written in a JSON text (for diagnostics with a line).

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde_json::{Number, Value};

/// A JSON number as read: an integer (every `u64` and `i64` fits) or a float.
#[derive(Clone, Copy, Debug)]
enum Num {
    Int(i128),
    Float(f64),
}

fn num(n: &Number) -> Num {
    if let Some(u) = n.as_u64() {
        Num::Int(i128::from(u))
    } else if let Some(i) = n.as_i64() {
        Num::Int(i128::from(i))
    } else {
        // Without serde_json's arbitrary precision, every number is one of the three.
        Num::Float(n.as_f64().unwrap_or(0.0))
    }
}

/// Compares two JSON numbers by value, exactly: no integer is rounded to a float.
pub(super) fn compare(a: &Number, b: &Number) -> Ordering {
    match (num(a), num(b)) {
        (Num::Int(x), Num::Int(y)) => x.cmp(&y),
        (Num::Float(x), Num::Float(y)) => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
        (Num::Float(x), Num::Int(y)) => float_vs_int(x, y),
        (Num::Int(x), Num::Float(y)) => float_vs_int(y, x).reverse(),
    }
}

/// `x` against `n`, exactly. JSON numbers are finite.
fn float_vs_int(x: f64, n: i128) -> Ordering {
    // Beyond ±1.7e38 a float is beyond every i128, hence every JSON integer.
    const BOUND: f64 = 1.7e38;
    if x >= BOUND {
        return Ordering::Greater;
    }
    if x <= -BOUND {
        return Ordering::Less;
    }
    let floor = x.floor();
    // In range, and integral: the conversion is exact.
    match (floor as i128).cmp(&n) {
        Ordering::Equal if x > floor => Ordering::Greater,
        other => other,
    }
}

/// Whether a number is an integer: JSON Schema counts `2.0` as one.
pub(super) fn is_integer(n: &Number) -> bool {
    match num(n) {
        Num::Int(_) => true,
        Num::Float(x) => x.fract() == 0.0,
    }
}

/// Equality as JSON Schema defines it (`enum`, `const`): numbers by value, objects
/// regardless of key order.
pub(super) fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => compare(x, y) == Ordering::Equal,
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| equal(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(key, a)| y.get(key).is_some_and(|b| equal(a, b)))
        }
        _ => a == b,
    }
}

/// The canonical text of a JSON value: keys sorted by their bytes, no insignificant
/// space, integral numbers written as integers (`1.0` as `1`), other numbers in
/// serde_json's shortest round-trip form.
pub(super) fn canonical(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Number(n) => out.push_str(&canonical_number(n)),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::Object(fields) => {
            let mut sorted: Vec<(&String, &Value)> = fields.iter().collect();
            sorted.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (i, (key, value)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(value, out);
            }
            out.push('}');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

fn canonical_number(n: &Number) -> String {
    match num(n) {
        Num::Int(i) => i.to_string(),
        // An integral float inside i128 is that integer exactly.
        Num::Float(x) if x.fract() == 0.0 && x.abs() < 1.7e38 => (x as i128).to_string(),
        Num::Float(_) => n.to_string(),
    }
}

/// The longest text of a value a message quotes, in characters.
const QUOTE_CHARS: usize = 40;

/// A value as a message names it: scalars quoted (long strings shortened), containers by
/// kind: `a string ("12000")`, `a number (2.5)`, `an object`.
pub(super) fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_string(),
        Value::Bool(b) => format!("a boolean ({b})"),
        Value::Number(n) => format!("a number ({n})"),
        Value::String(_) => format!("a string ({})", quote(value)),
        Value::Array(items) => format!("an array of {} items", items.len()),
        Value::Object(_) => "an object".to_string(),
    }
}

/// A value's JSON text, shortened to [`QUOTE_CHARS`] characters.
pub(super) fn quote(value: &Value) -> String {
    let text = match value {
        Value::Array(_) | Value::Object(_) => canonical(value),
        scalar => scalar.to_string(),
    };
    if text.chars().count() <= QUOTE_CHARS {
        text
    } else {
        let short: String = text.chars().take(QUOTE_CHARS).collect();
        format!("{short}...")
    }
}

/// A JSON pointer's reference token for `key` (RFC 6901: `~` as `~0`, `/` as `~1`).
pub(super) fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// Where the values of a JSON text are written: by JSON pointer, the byte offset of the
/// member's key (or of the value, for an array element or the whole text); and the keys
/// written twice in one object.
#[derive(Debug, Default)]
pub(crate) struct Positions {
    at: BTreeMap<String, usize>,
    /// Pointers of members whose key is written twice in their object (each repeat).
    pub duplicates: Vec<(String, usize)>,
}

impl Positions {
    /// The byte offset of the value at `pointer`, or of its nearest written ancestor (a
    /// missing field is reported where its object is).
    pub(crate) fn offset(&self, pointer: &str) -> usize {
        let mut pointer = pointer;
        loop {
            if let Some(offset) = self.at.get(pointer) {
                return *offset;
            }
            match pointer.rfind('/') {
                Some(cut) => pointer = &pointer[..cut],
                None => return 0,
            }
        }
    }
}

/// Deeper than this, the scan stops: serde_json refuses such texts anyway, and the scan
/// must not exhaust the stack on any text.
const MAX_DEPTH: usize = 256;

/// Where each value of `text` is written. Meant for text serde_json accepted; on any
/// other it stops where it cannot go on, keeping what it found, and never panics.
pub(crate) fn positions(text: &str) -> Positions {
    let mut scanner = Scanner {
        bytes: text.as_bytes(),
        text,
        at: 0,
        out: Positions::default(),
    };
    scanner.value(&mut String::new(), None, 0);
    scanner.out
}

struct Scanner<'a> {
    bytes: &'a [u8],
    text: &'a str,
    at: usize,
    out: Positions,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn skip_space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    /// Stops the scan.
    fn stop(&mut self) {
        self.at = self.bytes.len();
    }

    fn value(&mut self, pointer: &mut String, key_at: Option<usize>, depth: usize) {
        self.skip_space();
        self.out
            .at
            .entry(pointer.clone())
            .or_insert(key_at.unwrap_or(self.at));
        if depth > MAX_DEPTH {
            return self.stop();
        }
        match self.peek() {
            Some(b'{') => self.object(pointer, depth),
            Some(b'[') => self.array(pointer, depth),
            Some(b'"') => {
                self.string();
            }
            Some(_) => {
                while !matches!(
                    self.peek(),
                    None | Some(b',' | b']' | b'}' | b' ' | b'\t' | b'\n' | b'\r')
                ) {
                    self.at += 1;
                }
            }
            None => {}
        }
    }

    /// Skips a string token; returns its text, quotes included.
    fn string(&mut self) -> &str {
        let start = self.at;
        self.at += 1;
        loop {
            match self.peek() {
                None => break,
                Some(b'\\') => self.at += 2,
                Some(b'"') => {
                    self.at += 1;
                    break;
                }
                Some(_) => self.at += 1,
            }
        }
        self.at = self.at.min(self.bytes.len());
        self.text.get(start..self.at).unwrap_or("")
    }

    fn object(&mut self, pointer: &mut String, depth: usize) {
        self.at += 1;
        let mut seen = std::collections::BTreeSet::new();
        loop {
            self.skip_space();
            match self.peek() {
                Some(b'}') => {
                    self.at += 1;
                    return;
                }
                Some(b'"') => {}
                _ => return self.stop(),
            }
            let key_at = self.at;
            let raw = self.string();
            let key = serde_json::from_str::<String>(raw)
                .unwrap_or_else(|_| raw.trim_matches('"').to_string());
            self.skip_space();
            if self.peek() != Some(b':') {
                return self.stop();
            }
            self.at += 1;
            let len = pointer.len();
            pointer.push('/');
            pointer.push_str(&escape(&key));
            if !seen.insert(key) {
                self.out.duplicates.push((pointer.clone(), key_at));
            }
            self.value(pointer, Some(key_at), depth + 1);
            pointer.truncate(len);
            self.skip_space();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b'}') => {
                    self.at += 1;
                    return;
                }
                _ => return self.stop(),
            }
        }
    }

    fn array(&mut self, pointer: &mut String, depth: usize) {
        self.at += 1;
        let mut index = 0usize;
        loop {
            self.skip_space();
            if self.peek() == Some(b']') {
                self.at += 1;
                return;
            }
            if self.peek().is_none() {
                return;
            }
            let len = pointer.len();
            pointer.push('/');
            pointer.push_str(&index.to_string());
            self.value(pointer, None, depth + 1);
            pointer.truncate(len);
            self.skip_space();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b']') => {
                    self.at += 1;
                    return;
                }
                // Each turn moves past a comma or ends: the scan always ends.
                _ => return self.stop(),
            }
            index += 1;
        }
    }
}
