//! A small, total, deterministic expression language over `f64`.
//!
//! Policies use it to say how each model feature is derived from recorded
//! facts (the run input and earlier tool responses).
//!
//! # Grammar
//!
//! ```text
//! expr      := sum                                   (at most 4096 chars)
//! sum       := product (('+' | '-') product)*        left-associative
//! product   := unary (('*' | '/') unary)*            left-associative
//! unary     := '-' unary | primary
//! primary   := number | reference | call | '(' sum ')'
//! number    := digit+ ('.' digit+)? (('e' | 'E') ('+' | '-')? digit+)?
//! call      := function '(' (sum (',' sum)*)? ')'
//! function  := 'min' | 'max' | 'clamp' | 'abs' | 'sqrt'
//!            | 'floor' | 'ceil' | 'round' | 'pow'
//! reference := 'input' ':' pointer                   into the run input
//!            | source ':' pointer                    into a declared source's response
//!            | name                                  a let or another feature
//! source    := ident
//! name      := ident                                 not 'input' nor a function name
//! ident     := [A-Za-z_] [A-Za-z0-9_]*
//! pointer   := '/' [A-Za-z0-9_.~/]*                  RFC 6901, unquoted
//!            | json-string                           RFC 6901 in a JSON string literal
//!                                                    (`input:""` is the whole document)
//! ```
//!
//! Whitespace (ASCII) may appear between tokens, but not inside a reference.
//! An unquoted pointer must be followed by whitespace, `,`, `)` or the end of
//! the text, so `input:/a-b` is an error rather than a silent subtraction:
//! write `input:"/a-b"` for that key, or `input:/a - b` for the subtraction.
//! In pointers `~0` stands for `~` and `~1` for `/`; any other `~` is an error.
//! `-2` is unary minus applied to `2`. Nesting (parentheses, calls, unary
//! minus) deeper than 64 is refused.
//!
//! Function arities: `min`/`max` ≥ 1, `clamp(x, lo, hi)`, `pow(x, n)`, the
//! others exactly 1. `round` rounds half away from zero. `pow(x, n)` needs an
//! integral `n` in `[-4096, 4096]` and is computed by repeated multiplication
//! from `1.0` (then `1.0 / acc` for negative `n`), bit for bit like the loop an
//! agent would write. There is deliberately no `exp`, `ln`, trig, etc.
//!
//! # Evaluation
//!
//! [`Expr::eval`] is total: plain `f64` operations in source order (no fused
//! multiply-add, no reassociation); every failure is an [`EvalError`], and no
//! NaN or infinity ever escapes.
//!
//! # Canonical form
//!
//! [`Expr`]'s `Display` is canonical: it depends only on the syntax tree
//! (minimal parentheses, single spaces around binary operators, `", "` between
//! arguments, shortest round-trip numbers with exponent form outside
//! `[1e-6, 1e16)`, pointers quoted only when needed),
//! and `parse(&e.to_string()) == Ok(e)` whenever the text stays within the
//! length limit. `(a + b) + c` and `a + b + c` are the same tree (same
//! left-to-right evaluation), while `a + (b + c)` is a different one.

use std::fmt;

use serde::{Deserialize, Serialize};

mod parser;

/// Longest accepted expression text, in chars.
pub const MAX_LEN: usize = 4096;
/// Deepest accepted nesting of parentheses, calls and unary minus.
pub const MAX_DEPTH: usize = 64;
/// Largest accepted `|n|` in `pow(x, n)`.
pub const MAX_POW_EXPONENT: f64 = 4096.0;

/// A reference to a value outside the expression.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reference {
    /// An RFC 6901 pointer into the run input (`source: None`) or into the
    /// response of a declared source.
    Pointer {
        /// The source name; `None` for the run input.
        source: Option<String>,
        /// The JSON pointer (validated RFC 6901 syntax).
        pointer: String,
    },
    /// A named intermediate value (a `let`) or another feature.
    Name(String),
}

/// A parsed expression. Its `Display` is the canonical text.
#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    root: Node,
}

/// Syntax tree. Invariant: a `Chain` has a non-empty `rest` whose operators
/// share one precedence level, and its `first` is not a chain of that level.
#[derive(Debug, Clone, PartialEq)]
enum Node {
    Num(f64),
    Ref(Reference),
    Neg(Box<Node>),
    Chain(Box<Node>, Vec<(BinOp, Node)>),
    Call(Func, Vec<Node>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Func {
    Min,
    Max,
    Clamp,
    Abs,
    Sqrt,
    Floor,
    Ceil,
    Round,
    Pow,
}

/// A syntax error, located by a 1-based column counted in chars.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("column {column}: {message}")]
pub struct ParseError {
    /// 1-based column, in chars, where the problem was found.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

/// Why an expression has no value. Every evaluation failure is one of these.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
pub enum EvalError {
    /// A division whose divisor is zero.
    #[error("division by zero")]
    DivisionByZero,
    /// An operation (or a resolved reference) produced NaN or an infinity.
    #[error("non-finite result of {operation}")]
    NonFinite {
        /// The operator, function or reference concerned.
        operation: String,
    },
    /// `sqrt` of a negative number.
    #[error("sqrt of negative number {value}")]
    SqrtOfNegative {
        /// The argument.
        value: f64,
    },
    /// `pow` exponent not an integer in `[-4096, 4096]`.
    #[error("pow exponent {exponent} is not an integer in [-4096, 4096]")]
    PowExponent {
        /// The exponent given.
        exponent: f64,
    },
    /// `clamp(x, lo, hi)` with `lo > hi`.
    #[error("clamp bounds out of order: lo {lo} > hi {hi}")]
    ClampBounds {
        /// Lower bound given.
        lo: f64,
        /// Upper bound given.
        hi: f64,
    },
    /// A pointer that does not resolve to any value.
    #[error("{reference} is missing")]
    Missing {
        /// Canonical text of the reference.
        reference: String,
    },
    /// A pointer that resolves to a string, null, array or object.
    #[error("{reference} is {found}, not a number")]
    NotANumber {
        /// Canonical text of the reference.
        reference: String,
        /// JSON type found (`string`, `null`, `array`, `object`).
        found: String,
    },
    /// A source with no matching successful tool response in this run.
    #[error("source {name} has no matching tool response in this run")]
    SourceUnavailable {
        /// The source name.
        name: String,
    },
    /// A bare name the resolver does not know.
    #[error("unknown name {name}")]
    UnknownName {
        /// The name.
        name: String,
    },
}

/// Parses expression text. See the module documentation for the grammar.
pub fn parse(text: &str) -> Result<Expr, ParseError> {
    parser::parse(text).map(|root| Expr { root })
}

/// True if `s` is an identifier: `[A-Za-z_][A-Za-z0-9_]*`.
pub fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// True if `s` cannot be used as a bare name: `input` or a function name.
pub fn is_reserved(s: &str) -> bool {
    s == "input" || Func::from_name(s).is_some()
}

/// Checks RFC 6901 syntax: empty, or `/`-prefixed with `~` only in `~0`/`~1`.
pub fn validate_pointer(pointer: &str) -> Result<(), String> {
    if !pointer.is_empty() && !pointer.starts_with('/') {
        return Err(format!(
            "JSON pointer {pointer:?} must be empty or start with '/'"
        ));
    }
    let mut chars = pointer.chars();
    while let Some(c) = chars.next() {
        if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
            return Err(format!(
                "JSON pointer {pointer:?} has '~' not followed by 0 or 1"
            ));
        }
    }
    Ok(())
}

fn is_pointer_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '~' | '/')
}

impl Expr {
    /// The distinct references in the expression, in order of first appearance.
    pub fn references(&self) -> Vec<&Reference> {
        let mut out = Vec::new();
        self.root.collect_refs(&mut out);
        out
    }

    /// Evaluates left to right, asking `resolve` for each reference as it is
    /// reached. The first error (from `resolve` or from arithmetic) is returned.
    pub fn eval(
        &self,
        resolve: &mut dyn FnMut(&Reference) -> Result<f64, EvalError>,
    ) -> Result<f64, EvalError> {
        self.root.eval(resolve)
    }
}

impl std::str::FromStr for Expr {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        parse(s)
    }
}

impl BinOp {
    fn prec(self) -> u8 {
        match self {
            BinOp::Add | BinOp::Sub => PREC_SUM,
            BinOp::Mul | BinOp::Div => PREC_PRODUCT,
        }
    }
    fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
        }
    }
    fn apply(self, a: f64, b: f64) -> Result<f64, EvalError> {
        let v = match self {
            BinOp::Add => a + b,
            BinOp::Sub => a - b,
            BinOp::Mul => a * b,
            BinOp::Div if b == 0.0 => return Err(EvalError::DivisionByZero),
            BinOp::Div => a / b,
        };
        finite(v, self.symbol())
    }
}

const PREC_SUM: u8 = 1;
const PREC_PRODUCT: u8 = 2;
const PREC_NEG: u8 = 3;
const PREC_ATOM: u8 = 4;

const FUNCS: [(Func, &str); 9] = [
    (Func::Min, "min"),
    (Func::Max, "max"),
    (Func::Clamp, "clamp"),
    (Func::Abs, "abs"),
    (Func::Sqrt, "sqrt"),
    (Func::Floor, "floor"),
    (Func::Ceil, "ceil"),
    (Func::Round, "round"),
    (Func::Pow, "pow"),
];

impl Func {
    fn from_name(name: &str) -> Option<Func> {
        FUNCS.iter().find(|(_, n)| *n == name).map(|(f, _)| *f)
    }
    fn name(self) -> &'static str {
        FUNCS
            .iter()
            .find(|(f, _)| *f == self)
            .map_or("?", |(_, n)| n)
    }
    /// (minimum, maximum) argument count.
    fn arity(self) -> (usize, usize) {
        match self {
            Func::Min | Func::Max => (1, usize::MAX),
            Func::Clamp => (3, 3),
            Func::Pow => (2, 2),
            _ => (1, 1),
        }
    }
    fn apply(self, args: &[f64]) -> Result<f64, EvalError> {
        let v = match (self, args) {
            (Func::Min, [first, rest @ ..]) => rest
                .iter()
                .fold(*first, |acc, &v| if v < acc { v } else { acc }),
            (Func::Max, [first, rest @ ..]) => rest
                .iter()
                .fold(*first, |acc, &v| if v > acc { v } else { acc }),
            (Func::Clamp, &[x, lo, hi]) => {
                if lo > hi {
                    return Err(EvalError::ClampBounds { lo, hi });
                }
                if x < lo {
                    lo
                } else if x > hi {
                    hi
                } else {
                    x
                }
            }
            (Func::Abs, &[x]) => x.abs(),
            (Func::Sqrt, &[x]) if x < 0.0 => return Err(EvalError::SqrtOfNegative { value: x }),
            (Func::Sqrt, &[x]) => x.sqrt(),
            (Func::Floor, &[x]) => x.floor(),
            (Func::Ceil, &[x]) => x.ceil(),
            (Func::Round, &[x]) => x.round(),
            (Func::Pow, &[x, n]) => return pow(x, n),
            // Arity is checked at parse time; stay total regardless.
            _ => {
                return Err(EvalError::NonFinite {
                    operation: self.name().to_string(),
                });
            }
        };
        finite(v, self.name())
    }
}

/// `pow(x, n)` exactly as the agent-side loop computes it.
fn pow(x: f64, n: f64) -> Result<f64, EvalError> {
    if n != n.trunc() || n.abs() > MAX_POW_EXPONENT {
        return Err(EvalError::PowExponent { exponent: n });
    }
    let mut acc = 1.0_f64;
    // n is integral and |n| <= 4096, so the cast is exact.
    for _ in 0..(n.abs() as u32) {
        acc = finite(acc * x, "pow")?;
    }
    if n < 0.0 {
        if acc == 0.0 {
            return Err(EvalError::DivisionByZero);
        }
        acc = finite(1.0 / acc, "pow")?;
    }
    Ok(acc)
}

fn finite(v: f64, operation: &str) -> Result<f64, EvalError> {
    if v.is_finite() {
        Ok(v)
    } else {
        Err(EvalError::NonFinite {
            operation: operation.to_string(),
        })
    }
}

impl Node {
    /// Builds a chain, flattening a same-level chain in first position
    /// (`(a + b) + c` is `a + b + c`: both evaluate left to right).
    fn chain(first: Node, rest: Vec<(BinOp, Node)>) -> Node {
        let Some(level) = rest.first().map(|(op, _)| op.prec()) else {
            return first;
        };
        match first {
            Node::Chain(inner_first, mut inner_rest)
                if inner_rest.first().map(|(op, _)| op.prec()) == Some(level) =>
            {
                inner_rest.extend(rest);
                Node::Chain(inner_first, inner_rest)
            }
            other => Node::Chain(Box::new(other), rest),
        }
    }

    fn prec(&self) -> u8 {
        match self {
            Node::Chain(_, rest) => rest.first().map_or(PREC_ATOM, |(op, _)| op.prec()),
            Node::Neg(_) => PREC_NEG,
            Node::Num(_) | Node::Ref(_) | Node::Call(..) => PREC_ATOM,
        }
    }

    fn collect_refs<'a>(&'a self, out: &mut Vec<&'a Reference>) {
        match self {
            Node::Num(_) => {}
            Node::Ref(r) => {
                if !out.contains(&r) {
                    out.push(r);
                }
            }
            Node::Neg(inner) => inner.collect_refs(out),
            Node::Chain(first, rest) => {
                first.collect_refs(out);
                rest.iter().for_each(|(_, n)| n.collect_refs(out));
            }
            Node::Call(_, args) => args.iter().for_each(|n| n.collect_refs(out)),
        }
    }

    fn eval(
        &self,
        resolve: &mut dyn FnMut(&Reference) -> Result<f64, EvalError>,
    ) -> Result<f64, EvalError> {
        match self {
            Node::Num(x) => finite(*x, "number"),
            Node::Ref(r) => {
                let v = resolve(r)?;
                if v.is_finite() {
                    Ok(v)
                } else {
                    Err(EvalError::NonFinite {
                        operation: r.to_string(),
                    })
                }
            }
            Node::Neg(inner) => Ok(-inner.eval(resolve)?),
            Node::Chain(first, rest) => {
                let mut acc = first.eval(resolve)?;
                for (op, node) in rest {
                    let v = node.eval(resolve)?;
                    acc = op.apply(acc, v)?;
                }
                Ok(acc)
            }
            Node::Call(func, args) => {
                let mut values = Vec::with_capacity(args.len());
                for arg in args {
                    values.push(arg.eval(resolve)?);
                }
                func.apply(&values)
            }
        }
    }
}

/// Shortest round-trip text; exponent form outside `[1e-6, 1e16)`.
fn format_number(x: f64) -> String {
    let a = x.abs();
    if a == 0.0 || (1e-6..1e16).contains(&a) {
        format!("{x}")
    } else {
        format!("{x:e}")
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Name(name) => f.write_str(name),
            Reference::Pointer { source, pointer } => {
                f.write_str(source.as_deref().unwrap_or("input"))?;
                f.write_str(":")?;
                if pointer.starts_with('/') && pointer.chars().all(is_pointer_char) {
                    f.write_str(pointer)
                } else {
                    let quoted = serde_json::to_string(pointer).map_err(|_| fmt::Error)?;
                    f.write_str(&quoted)
                }
            }
        }
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.root.fmt(f)
    }
}

fn write_operand(f: &mut fmt::Formatter<'_>, node: &Node, parens: bool) -> fmt::Result {
    if parens {
        write!(f, "({node})")
    } else {
        write!(f, "{node}")
    }
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Node::Num(x) => f.write_str(&format_number(*x)),
            Node::Ref(r) => r.fmt(f),
            Node::Neg(inner) => {
                f.write_str("-")?;
                write_operand(f, inner, inner.prec() < PREC_NEG)
            }
            Node::Chain(first, rest) => {
                let level = self.prec();
                write_operand(f, first, first.prec() < level)?;
                for (op, node) in rest {
                    write!(f, " {} ", op.symbol())?;
                    write_operand(f, node, node.prec() <= level)?;
                }
                Ok(())
            }
            Node::Call(func, args) => {
                write!(f, "{}(", func.name())?;
                for (i, arg) in args.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    arg.fmt(f)?;
                }
                f.write_str(")")
            }
        }
    }
}

#[cfg(test)]
mod tests;
