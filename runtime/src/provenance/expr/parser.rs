//! Recursive-descent parser for [`super`]'s grammar. Recursion is bounded
//! by [`MAX_DEPTH`]; the text length by [`MAX_LEN`].

use super::{
    BinOp, Func, MAX_DEPTH, MAX_LEN, Node, ParseError, Reference, is_pointer_char, is_reserved,
    validate_pointer,
};

/// Parses a whole expression text into its syntax tree.
pub(super) fn parse(text: &str) -> Result<Node, ParseError> {
    if text.chars().take(MAX_LEN + 1).count() > MAX_LEN {
        return Err(ParseError {
            column: MAX_LEN + 1,
            message: format!("expression longer than {MAX_LEN} characters"),
        });
    }
    let mut p = Parser {
        chars: text.chars().collect(),
        pos: 0,
        depth: 0,
    };
    let root = p.sum()?;
    p.skip_ws();
    match p.peek() {
        None => Ok(root),
        Some(c) => p.fail(format!("unexpected {c:?}: expected an operator or the end")),
    }
}

/// Recursive-descent parser; recursion is bounded by `MAX_DEPTH`.
struct Parser {
    chars: Vec<char>,
    pos: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            self.pos += 1;
        }
    }

    fn fail<T>(&self, message: String) -> Result<T, ParseError> {
        self.fail_at(self.pos, message)
    }

    fn fail_at<T>(&self, pos: usize, message: String) -> Result<T, ParseError> {
        Err(ParseError {
            column: pos + 1,
            message,
        })
    }

    fn enter(&mut self, pos: usize) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return self.fail_at(pos, format!("nesting deeper than {MAX_DEPTH}"));
        }
        Ok(())
    }

    fn take_while(&mut self, pred: impl Fn(char) -> bool) -> String {
        let start = self.pos;
        while self.peek().is_some_and(&pred) {
            self.pos += 1;
        }
        self.chars[start..self.pos].iter().collect()
    }

    fn sum(&mut self) -> Result<Node, ParseError> {
        self.chain(&[('+', BinOp::Add), ('-', BinOp::Sub)], Parser::product)
    }

    fn product(&mut self) -> Result<Node, ParseError> {
        self.chain(&[('*', BinOp::Mul), ('/', BinOp::Div)], Parser::unary)
    }

    fn chain(
        &mut self,
        ops: &[(char, BinOp)],
        operand: fn(&mut Parser) -> Result<Node, ParseError>,
    ) -> Result<Node, ParseError> {
        let first = operand(self)?;
        let mut rest = Vec::new();
        loop {
            self.skip_ws();
            let Some(&(_, op)) = ops.iter().find(|(c, _)| Some(*c) == self.peek()) else {
                break;
            };
            self.pos += 1;
            rest.push((op, operand(self)?));
        }
        Ok(Node::chain(first, rest))
    }

    fn unary(&mut self) -> Result<Node, ParseError> {
        self.skip_ws();
        if self.peek() != Some('-') {
            return self.primary();
        }
        self.enter(self.pos)?;
        self.pos += 1;
        let inner = self.unary()?;
        self.depth -= 1;
        Ok(Node::Neg(Box::new(inner)))
    }

    fn primary(&mut self) -> Result<Node, ParseError> {
        self.skip_ws();
        let start = self.pos;
        match self.peek() {
            None => self.fail("unexpected end: expected a number, reference, call or '('".into()),
            Some(c) if c.is_ascii_digit() => self.number(),
            Some('(') => {
                self.enter(start)?;
                self.pos += 1;
                let inner = self.sum()?;
                self.skip_ws();
                if self.peek() != Some(')') {
                    return self.fail(format!("expected ')' to close '(' at column {}", start + 1));
                }
                self.pos += 1;
                self.depth -= 1;
                Ok(inner)
            }
            Some(c) if c.is_ascii_alphabetic() || c == '_' => {
                let ident = self.take_while(|c| c.is_ascii_alphanumeric() || c == '_');
                if self.peek() == Some(':') {
                    self.pos += 1;
                    return self.pointer(ident);
                }
                self.skip_ws();
                if self.peek() == Some('(') {
                    return self.call(&ident, start);
                }
                if is_reserved(&ident) {
                    return self.fail_at(
                        start,
                        format!("`{ident}` is reserved and cannot be used as a name"),
                    );
                }
                Ok(Node::Ref(Reference::Name(ident)))
            }
            Some(c) => self.fail(format!(
                "unexpected {c:?}: expected a number, reference, call or '('"
            )),
        }
    }

    fn number(&mut self) -> Result<Node, ParseError> {
        let start = self.pos;
        self.take_while(|c| c.is_ascii_digit());
        if self.peek() == Some('.') {
            self.pos += 1;
            if self.take_while(|c| c.is_ascii_digit()).is_empty() {
                return self.fail("expected a digit after '.'".into());
            }
        }
        if matches!(self.peek(), Some('e' | 'E')) {
            let mark = self.pos;
            self.pos += 1;
            if matches!(self.peek(), Some('+' | '-')) {
                self.pos += 1;
            }
            if self.take_while(|c| c.is_ascii_digit()).is_empty() {
                self.pos = mark;
            }
        }
        if self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        {
            return self.fail_at(start, "malformed number".into());
        }
        let text: String = self.chars[start..self.pos].iter().collect();
        match text.parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(Node::Num(v)),
            _ => self.fail_at(start, format!("number {text} is out of range")),
        }
    }

    fn pointer(&mut self, ident: String) -> Result<Node, ParseError> {
        let start = self.pos;
        let pointer = if self.peek() == Some('"') {
            self.pos += 1;
            loop {
                match self.peek() {
                    None => return self.fail_at(start, "unterminated string".into()),
                    Some('\\') => self.pos += 2,
                    Some('"') => break,
                    Some(_) => self.pos += 1,
                }
            }
            self.pos += 1;
            let literal: String = self.chars[start..self.pos].iter().collect();
            match serde_json::from_str::<String>(&literal) {
                Ok(s) => s,
                Err(e) => return self.fail_at(start, format!("invalid string literal: {e}")),
            }
        } else {
            let p = self.take_while(is_pointer_char);
            if !p.starts_with('/') {
                return self.fail_at(
                    start,
                    "expected a JSON pointer starting with '/' or a quoted pointer".into(),
                );
            }
            if self
                .peek()
                .is_some_and(|c| !(c.is_ascii_whitespace() || c == ',' || c == ')'))
            {
                return self.fail(
                    "an unquoted pointer must be followed by a space, ',' or ')'; quote it for other key characters"
                        .into(),
                );
            }
            p
        };
        if let Err(message) = validate_pointer(&pointer) {
            return self.fail_at(start, message);
        }
        let source = if ident == "input" { None } else { Some(ident) };
        Ok(Node::Ref(Reference::Pointer { source, pointer }))
    }

    fn call(&mut self, name: &str, start: usize) -> Result<Node, ParseError> {
        let Some(func) = Func::from_name(name) else {
            return self.fail_at(start, format!("unknown function `{name}`"));
        };
        self.enter(start)?;
        self.pos += 1; // '('
        let mut args = Vec::new();
        self.skip_ws();
        if self.peek() == Some(')') {
            self.pos += 1;
        } else {
            loop {
                args.push(self.sum()?);
                self.skip_ws();
                match self.peek() {
                    Some(',') => self.pos += 1,
                    Some(')') => {
                        self.pos += 1;
                        break;
                    }
                    _ => return self.fail(format!("expected ',' or ')' in call to `{name}`")),
                }
            }
        }
        self.depth -= 1;
        let (lo, hi) = func.arity();
        if args.len() < lo || args.len() > hi {
            let want = match (lo, hi) {
                (lo, usize::MAX) => format!("at least {lo}"),
                (lo, hi) if lo == hi => format!("exactly {lo}"),
                (lo, hi) => format!("{lo} to {hi}"),
            };
            let n = args.len();
            return self.fail_at(start, format!("`{name}` takes {want} argument(s), got {n}"));
        }
        Ok(Node::Call(func, args))
    }
}
