//! Parser and matcher for Calico (`projectcalico.org/v3`) label selectors.
//!
//! The accepted language follows libcalico-go's `selector/tokenizer` and `selector/parser`
//! (projectcalico/calico@87c15906) rather than the prose of the docs, so that a selector Calico
//! rejects is rejected here and one it accepts means the same thing. Deliberate differences:
//! errors carry the byte offset where they were found, nesting is bounded, and `global()`
//! matches no label set (see [`CalicoSelector::matches`]).

use std::collections::BTreeMap;
use std::fmt;

/// Deepest nesting of `(` and `!` accepted, so hostile input cannot overflow the stack.
const MAX_DEPTH: usize = 100;

/// What may follow a label key; shared by the tokenizer and the parser so both say the same.
const OPERATORS: &str = "an operator (==, !=, in, not in, contains, starts with, ends with)";

/// A parsed Calico selector expression.
#[derive(Clone, Debug, PartialEq)]
pub struct CalicoSelector {
    root: Node,
}

/// A syntax error: the byte offset in the text where it was found, and what was expected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SelectorError {
    /// Byte offset into the selector text (the text's length when the input ended too early).
    pub position: usize,
    /// What was expected there and what was found instead.
    pub message: String,
}

impl fmt::Display for SelectorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at position {}: {}", self.position, self.message)
    }
}

impl std::error::Error for SelectorError {}

fn error(position: usize, message: impl Into<String>) -> SelectorError {
    let message = message.into();
    SelectorError { position, message }
}

/// Comparison of one label's value with one string literal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Contains,
    StartsWith,
    EndsWith,
}

impl Op {
    /// The operator as written; indexed by declaration order.
    fn text(self) -> &'static str {
        ["==", "!=", "contains", "starts with", "ends with"][self as usize]
    }
}

/// The AST. Parentheses leave no node of their own and runs of `!` collapse to their parity,
/// as in Calico, so equal ASTs mean equal canonical forms.
#[derive(Clone, Debug, PartialEq)]
enum Node {
    All,
    Global,
    Has(String),
    Cmp(String, Op, String),
    /// `key in {..}` when the flag is true, `key not in {..}` when false. The values are
    /// sorted and de-duplicated, which makes equality and display canonical.
    In(String, Vec<String>, bool),
    Not(Box<Node>),
    And(Vec<Node>),
    Or(Vec<Node>),
}

impl Node {
    fn eval(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            Node::All => true,
            Node::Global => false,
            Node::Has(key) => labels.contains_key(key),
            Node::Cmp(key, op, want) => match (labels.get(key), op) {
                // `!=` is the one comparison that a missing label satisfies.
                (None, Op::Ne) => true,
                (None, _) => false,
                (Some(have), Op::Eq) => have == want,
                (Some(have), Op::Ne) => have != want,
                (Some(have), Op::Contains) => have.contains(want.as_str()),
                (Some(have), Op::StartsWith) => have.starts_with(want.as_str()),
                (Some(have), Op::EndsWith) => have.ends_with(want.as_str()),
            },
            // A missing label is in no set, so `not in` matches it, like `!=`.
            Node::In(key, set, positive) => {
                let found = labels
                    .get(key)
                    .is_some_and(|v| set.binary_search(v).is_ok());
                found == *positive
            }
            Node::Not(inner) => !inner.eval(labels),
            Node::And(terms) => terms.iter().all(|t| t.eval(labels)),
            Node::Or(terms) => terms.iter().any(|t| t.eval(labels)),
        }
    }

    fn is_all(&self) -> bool {
        match self {
            Node::All => true,
            Node::Not(inner) => matches!(&**inner, Node::Not(x) if x.is_all()),
            Node::And(terms) => terms.iter().all(Node::is_all),
            Node::Or(terms) => terms.iter().any(Node::is_all),
            _ => false,
        }
    }
}

/// Quotes a literal the way Calico's `String()` does: double quotes unless the value holds one.
/// A value can never hold both kinds, since literals have no escapes.
fn quote(value: &str) -> String {
    let q = if value.contains('"') { '\'' } else { '"' };
    format!("{q}{value}{q}")
}

fn join<T: fmt::Display>(items: &[T], sep: &str) -> String {
    items.iter().map(T::to_string).collect::<Vec<_>>().join(sep)
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Node::All => f.write_str("all()"),
            Node::Global => f.write_str("global()"),
            Node::Has(key) => write!(f, "has({key})"),
            Node::Cmp(key, op, value) => write!(f, "{key} {} {}", op.text(), quote(value)),
            Node::Not(inner) => write!(f, "!{inner}"),
            Node::In(key, set, positive) => {
                let op = if *positive { "in" } else { "not in" };
                let values: Vec<String> = set.iter().map(|v| quote(v)).collect();
                write!(f, "{key} {op} {{{}}}", values.join(", "))
            }
            Node::And(terms) => write!(f, "({})", join(terms, " && ")),
            Node::Or(terms) => write!(f, "({})", join(terms, " || ")),
        }
    }
}

impl fmt::Display for CalicoSelector {
    /// Calico's canonical form: `&&`/`||` groups parenthesised, sets sorted, `"` preferred.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.root.fmt(f)
    }
}

impl CalicoSelector {
    /// Parses a selector; an empty or blank text is `all()`. Blanks are spaces and tabs only,
    /// as in Calico, whose tokenizer rejects newlines.
    pub fn parse(text: &str) -> Result<Self, SelectorError> {
        let (tokens, at) = (tokenize(text), 0);
        let mut parser = Parser { text, tokens, at };
        if parser.eat(&Tok::Eof) {
            return Ok(CalicoSelector { root: Node::All });
        }
        let root = parser.list(0, true)?;
        parser.expect(&Tok::Eof, "'&&', '||' or the end of the selector")?;
        Ok(CalicoSelector { root })
    }

    /// True when every label set matches (an empty/whitespace-only selector, or `all()`).
    /// Judged on the expression's shape (`all()` combined with `&&`, `||`, `!!`), not by
    /// solving it, so a tautology such as `has(a) || !has(a)` is not recognised.
    pub fn is_all(&self) -> bool {
        self.root.is_all()
    }

    /// True when the expression is exactly `global()` (parentheses around it are allowed).
    pub fn is_global(&self) -> bool {
        self.root == Node::Global
    }

    /// Whether the labels match. `global()` matches nothing here (it only means "non-namespaced
    /// resources" in a rule's namespaceSelector, which the caller handles with is_global()).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.root.eval(labels)
    }
}

/// A token. Single-byte punctuation and the checked pairs `&&`/`||` are `Sym` with their byte;
/// `has(k)`, `all()` and `global()` arrive as finished AST nodes.
#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Label(String),
    Str(String),
    Term(Node),
    Cmp(Op),
    /// `in` (true) or `not in` (false).
    In(bool),
    Sym(u8),
    Eof,
    /// A tokenizer error. It ends the token list, so a parse error earlier in the text is
    /// reported first; this one is reported when the parser reaches it.
    Bad(SelectorError),
}

/// A token with the byte range of its text.
type Token = (usize, usize, Tok);

fn is_key_byte(b: &u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'/' | b'-')
}

/// Blanks are spaces and tabs only: Calico's tokenizer rejects newlines.
fn is_blank(b: &u8) -> bool {
    matches!(b, b' ' | b'\t')
}

/// The index of the first byte at or after `i` that is not `kept`.
fn skip(bytes: &[u8], i: usize, kept: fn(&u8) -> bool) -> usize {
    let rest = bytes.get(i..).unwrap_or_default();
    i + rest.iter().take_while(|b| kept(b)).count()
}

/// Splits the text into tokens, ending with `Eof` or `Bad`. Every index used is just past an
/// ASCII byte or a closing quote, so all slices fall on char boundaries.
fn tokenize(text: &str) -> Vec<Token> {
    let mut tokens: Vec<Token> = Vec::new();
    let mut start = 0;
    loop {
        start = skip(text.as_bytes(), start, is_blank);
        if start >= text.len() {
            tokens.push((start, start, Tok::Eof));
            return tokens;
        }
        let after_label = matches!(tokens.last(), Some((_, _, Tok::Label(_))));
        match next_token(text, start, after_label) {
            Ok((tok, end)) => tokens.push((start, end, tok)),
            Err(e) => {
                tokens.push((e.position, e.position, Tok::Bad(e)));
                return tokens;
            }
        }
        start = tokens.last().map_or(text.len(), |t| t.1);
    }
}

/// Reads the token at `i` (`i < text.len()`, not a blank); returns it and the index past it.
fn next_token(text: &str, i: usize, after_label: bool) -> Result<(Tok, usize), SelectorError> {
    let bytes = text.as_bytes();
    let rest = &text[i..];
    let second = bytes.get(i + 1).copied();
    let byte = bytes[i];
    match byte {
        b'(' | b')' | b'{' | b'}' | b',' => Ok((Tok::Sym(byte), i + 1)),
        b'"' | b'\'' => match rest[1..].find(byte as char) {
            // No escape sequences: the literal ends at the next quote of the same kind.
            Some(len) => Ok((Tok::Str(rest[1..1 + len].to_string()), i + len + 2)),
            None => Err(error(i, "unterminated string literal")),
        },
        b'!' if second == Some(b'=') => Ok((Tok::Cmp(Op::Ne), i + 2)),
        b'!' => Ok((Tok::Sym(byte), i + 1)),
        b'=' | b'&' | b'|' if second == Some(byte) => match byte {
            b'=' => Ok((Tok::Cmp(Op::Eq), i + 2)),
            _ => Ok((Tok::Sym(byte), i + 2)),
        },
        b'=' | b'&' | b'|' => Err(error(i, format!("expected '{0}{0}'", byte as char))),
        _ if after_label => operator_word(text, i),
        // Calico knows `has`, `all` and `global` only when `(` follows at once.
        _ if rest.starts_with("has(") => {
            let start = skip(bytes, i + 4, is_blank);
            let end = skip(bytes, start, is_key_byte);
            let close = skip(bytes, end, is_blank);
            let has = Node::Has(text[start..end].into());
            match (end > start, bytes.get(close)) {
                (false, _) => Err(error(start, "expected a label key inside 'has(...)'")),
                (true, Some(b')')) => Ok((Tok::Term(has), close + 1)),
                _ => Err(error(close, "expected ')' to close 'has('")),
            }
        }
        _ if rest.starts_with("all(") || rest.starts_with("global(") => {
            let (node, name) = match rest.starts_with("all(") {
                true => (Node::All, "all"),
                false => (Node::Global, "global"),
            };
            let close = skip(bytes, i + name.len() + 1, is_blank);
            match bytes.get(close) {
                Some(b')') => Ok((Tok::Term(node), close + 1)),
                _ => Err(error(close, format!("expected ')' after '{name}('"))),
            }
        }
        _ if is_key_byte(&byte) => {
            let end = skip(bytes, i, is_key_byte);
            Ok((Tok::Label(text[i..end].to_string()), end))
        }
        _ => {
            let c = rest.chars().next().unwrap_or('?');
            Err(error(i, format!("unexpected character {c:?}")))
        }
    }
}

/// Reads a word operator after a label key. Like Calico this matches prefixes, not whole words,
/// and allows any or no blanks inside the two-word operators, so `a notin {}` and
/// `a startswith 'x'` are accepted (Calico's canonicalisation tests rely on the latter).
fn operator_word(text: &str, i: usize) -> Result<(Tok, usize), SelectorError> {
    let rest = &text[i..];
    if rest.starts_with("contains") {
        return Ok((Tok::Cmp(Op::Contains), i + "contains".len()));
    }
    for (first, second, tok) in [
        ("starts", "with", Tok::Cmp(Op::StartsWith)),
        ("ends", "with", Tok::Cmp(Op::EndsWith)),
        ("not", "in", Tok::In(false)),
    ] {
        if rest.starts_with(first) {
            let j = skip(text.as_bytes(), i + first.len(), is_blank);
            return match text[j..].starts_with(second) {
                true => Ok((tok, j + second.len())),
                false => Err(error(j, format!("expected '{second}' after '{first}'"))),
            };
        }
    }
    match rest.starts_with("in") {
        true => Ok((Tok::In(true), i + 2)),
        false => Err(error(i, format!("expected {OPERATORS} after the key"))),
    }
}

/// Recursive-descent parser over the token list; `at` never moves past the final `Eof`/`Bad`.
struct Parser<'a> {
    text: &'a str,
    tokens: Vec<Token>,
    at: usize,
}

/// Stand-in for a token past the end, which `bump` makes unreachable.
static PAST_END: Token = (0, 0, Tok::Eof);

impl Parser<'_> {
    fn token(&self, at: usize) -> &Token {
        self.tokens.get(at).unwrap_or(&PAST_END)
    }

    fn tok(&self) -> &Tok {
        &self.token(self.at).2
    }

    fn bump(&mut self) {
        self.at = (self.at + 1).min(self.tokens.len().saturating_sub(1));
    }

    /// Returns the current token and moves past it.
    fn next(&mut self) -> Tok {
        let tok = self.tok().clone();
        self.bump();
        tok
    }

    fn eat(&mut self, want: &Tok) -> bool {
        let found = self.tok() == want;
        if found {
            self.bump();
        }
        found
    }

    fn expect(&mut self, want: &Tok, expected: &str) -> Result<(), SelectorError> {
        match self.eat(want) {
            true => Ok(()),
            false => Err(self.unexpected(self.at, expected)),
        }
    }

    /// The error for finding token `at` where `expected` was due. A tokenizer error there wins,
    /// since that is the real problem at that spot.
    fn unexpected(&self, at: usize, expected: &str) -> SelectorError {
        let (start, end, tok) = self.token(at);
        let text = &self.text[*start..*end];
        let found = match tok {
            Tok::Bad(e) => return e.clone(),
            Tok::Eof => "the end of the selector".to_string(),
            Tok::Label(key) => format!("label '{key}'"),
            Tok::Str(_) => format!("string {text}"),
            _ => format!("'{text}'"),
        };
        error(*start, format!("expected {expected}, found {found}"))
    }

    /// A `||` list of `&&` lists (`or`) or an `&&` list of operations, so `&&` binds tighter.
    /// A single item stands alone: Calico makes no one-element `&&`/`||` node either.
    fn list(&mut self, depth: usize, or: bool) -> Result<Node, SelectorError> {
        let item = |p: &mut Self| {
            if or {
                p.list(depth, false)
            } else {
                p.operation(depth)
            }
        };
        let mut terms = vec![item(self)?];
        while self.eat(&Tok::Sym(if or { b'|' } else { b'&' })) {
            terms.push(item(self)?);
        }
        Ok(match (terms.len(), or) {
            (1, _) => terms.swap_remove(0),
            (_, true) => Node::Or(terms),
            _ => Node::And(terms),
        })
    }

    /// One term with its leading `!`s: a match, `has`, `all()`, `global()` or a parenthesised
    /// expression. `!` applies to the whole term, so `!a == 'x'` is `!(a == 'x')`.
    fn operation(&mut self, mut depth: usize) -> Result<Node, SelectorError> {
        let mut negated = false;
        while *self.tok() == Tok::Sym(b'!') {
            depth += 1;
            if depth > MAX_DEPTH {
                return Err(too_deep(self.token(self.at).0));
            }
            negated = !negated;
            self.bump();
        }
        let at = self.at;
        let node = match self.next() {
            Tok::Term(node) => node,
            Tok::Label(key) => self.label_match(key)?,
            Tok::Sym(b'(') if depth >= MAX_DEPTH => return Err(too_deep(self.token(at).0)),
            Tok::Sym(b'(') => {
                let inner = self.list(depth + 1, true)?;
                self.expect(&Tok::Sym(b')'), "'&&', '||' or ')'")?;
                inner
            }
            _ => {
                let want = "a label key, 'has(', 'all()', 'global()', '!' or '('";
                return Err(self.unexpected(at, want));
            }
        };
        Ok(if negated {
            Node::Not(Box::new(node))
        } else {
            node
        })
    }

    /// The operator and operand after a label key.
    fn label_match(&mut self, key: String) -> Result<Node, SelectorError> {
        let at = self.at;
        match self.next() {
            Tok::Cmp(op) => match self.next() {
                Tok::Str(value) => Ok(Node::Cmp(key, op, value)),
                _ => Err(self.unexpected(at + 1, &format!("a string after '{}'", op.text()))),
            },
            Tok::In(positive) => Ok(Node::In(key, self.set(positive)?, positive)),
            _ => Err(self.unexpected(at, &format!("{OPERATORS} after label '{key}'"))),
        }
    }

    /// `{'a', "b"}`, possibly empty; like Calico, a trailing comma after a value is allowed.
    fn set(&mut self, positive: bool) -> Result<Vec<String>, SelectorError> {
        let op = if positive { "in" } else { "not in" };
        let want = format!("'{{' to start the set after '{op}'");
        self.expect(&Tok::Sym(b'{'), &want)?;
        let mut values = Vec::new();
        let mut want = "a string or '}'";
        while let Tok::Str(value) = self.tok() {
            values.push(value.clone());
            self.bump();
            if !self.eat(&Tok::Sym(b',')) {
                want = "',' or '}'";
                break;
            }
        }
        self.expect(&Tok::Sym(b'}'), want)?;
        values.sort();
        values.dedup();
        Ok(values)
    }
}

fn too_deep(pos: usize) -> SelectorError {
    error(pos, format!("'(' and '!' nested deeper than {MAX_DEPTH}"))
}

#[cfg(test)]
mod tests;
