use super::*;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn sel(text: &str) -> CalicoSelector {
    match CalicoSelector::parse(text) {
        Ok(s) => s,
        Err(e) => panic!("{text:?} should parse: {e}"),
    }
}

fn m(text: &str, pairs: &[(&str, &str)]) -> bool {
    sel(text).matches(&labels(pairs))
}

fn err(text: &str) -> SelectorError {
    match CalicoSelector::parse(text) {
        Ok(s) => panic!("{text:?} should be rejected, parsed as {s}"),
        Err(e) => e,
    }
}

/// Asserts the error position and that the message mentions `needle`.
fn err_at(text: &str, position: usize, needle: &str) {
    let e = err(text);
    assert_eq!(e.position, position, "{text:?}: {e}");
    assert!(e.message.contains(needle), "{text:?}: {e} lacks {needle:?}");
}

#[test]
fn equality_and_inequality() {
    assert!(m("a == 'b'", &[("a", "b")]));
    assert!(m("a == \"b\"", &[("a", "b"), ("c", "d")]));
    assert!(!m("a == 'b'", &[("a", "c")]));
    assert!(!m("a == 'b'", &[]));
    assert!(m("a != 'b'", &[("a", "c")]));
    assert!(!m("a != 'b'", &[("a", "b")]));
    assert!(m("a == ''", &[("a", "")]));
}

#[test]
fn set_membership() {
    assert!(m("a in {'x', \"y\"}", &[("a", "y")]));
    assert!(!m("a in {'x', 'y'}", &[("a", "z")]));
    assert!(!m("a in {}", &[("a", "")]));
    assert!(m("a not in {'x'}", &[("a", "z")]));
    assert!(!m("a not in {'x', 'z'}", &[("a", "z")]));
    assert!(m("a not in {}", &[("a", "z")]));
    assert!(m("a in {\"'\", '\"', \"c\"}", &[("a", "\"")]));
    assert!(
        m("a in {'x',}", &[("a", "x")]),
        "Calico accepts a trailing comma"
    );
}

#[test]
fn has_and_not_has() {
    assert!(m("has(a)", &[("a", "")]));
    assert!(!m("has(a)", &[("b", "x")]));
    assert!(m("!has(a)", &[("b", "x")]));
    assert!(!m("! has( a )", &[("a", "x")]));
    assert_eq!(sel("!has(a)"), sel("!(has(a))"));
}

#[test]
fn string_operators() {
    assert!(m("a contains 'a'", &[("a", "bab")]));
    assert!(!m("a contains 'a'", &[("a", "b")]));
    assert!(m("a starts with 'a'", &[("a", "abb")]));
    assert!(!m("a starts with 'a'", &[("a", "baa")]));
    assert!(m("a ends with 'a'", &[("a", "bba")]));
    assert!(!m("a ends with 'a'", &[("a", "aab")]));
    assert!(m("a contains ''", &[("a", "")]));
}

#[test]
fn missing_key_rules() {
    // Only `!=` and `not in` match a resource without the key.
    assert!(m("a != 'x'", &[]));
    assert!(m("a not in {'x'}", &[]));
    for text in [
        "a == 'x'",
        "a in {'x'}",
        "has(a)",
        "a contains ''",
        "a starts with ''",
    ] {
        assert!(!m(text, &[("b", "x")]), "{text}");
    }
    assert!(!m("a ends with ''", &[]));
}

#[test]
fn all_global_and_empty() {
    for text in [
        "",
        " ",
        "\t ",
        "all()",
        " all( ) ",
        "(all())",
        "!!all()",
        "all() || a == 'b'",
    ] {
        assert!(sel(text).is_all(), "{text:?}");
        assert!(sel(text).matches(&labels(&[("a", "c")])), "{text:?}");
    }
    assert_eq!(sel(""), sel("all()"));
    assert!(!sel("has(a)").is_all());
    assert!(!sel("!all()").is_all());
    assert!(!sel("global()").is_all());
    assert!(sel("global()").is_global());
    assert!(sel(" ( global( ) )").is_global());
    assert!(!sel("global() && all()").is_global());
    assert!(!sel("global()").matches(&labels(&[])));
    assert!(sel("!global()").matches(&labels(&[])));
}

#[test]
fn precedence() {
    let ab = &[("a", "a1"), ("b", "b1")];
    assert_eq!(sel("!a == 'x'"), sel("!(a == 'x')"));
    assert_eq!(sel("!a in {\"a\"}"), sel("!(a in {\"a\"})"));
    assert!(m("!a in {\"a\"}", &[("a", "b")]));
    assert_eq!(
        sel("!a == 'a1' && b == 'b1'"),
        sel("(!(a == 'a1')) && b == 'b1'")
    );
    assert!(!m("!a == 'a1' && b == 'b1'", ab));
    assert!(!m("! a == 'a1' || ! b == 'b1'", ab));
    assert!(!m("a != 'a1' && !b == 'b1'", ab));
    // && binds tighter than ||.
    assert_eq!(
        sel("a == 'x' || b == 'y' && c == 'z'"),
        sel("a == 'x' || (b == 'y' && c == 'z')")
    );
    assert!(m("a == 'x' || b == 'y' && c == 'z'", &[("a", "x")]));
    assert!(!m("(a == 'x' || b == 'y') && c == 'z'", &[("a", "x")]));
    // Runs of `!` collapse to their parity.
    assert_eq!(sel("!!has(a)"), sel("has(a)"));
    assert_eq!(sel("!! ! has(a)"), sel("!has(a)"));
    assert!(!m("!!! has(a)", &[("a", "b")]));
    assert!(m("!(!has(a) || has(b))", &[("a", "a")]));
    assert!(m("!(has(b) || !has(a))", &[("a", "a")]));
}

#[test]
fn quotes_and_keys() {
    assert!(m("a == \"it's\"", &[("a", "it's")]));
    assert!(m("a == 'say \"hi\"'", &[("a", "say \"hi\"")]));
    assert!(m("a == 'x y'", &[("a", "x y")]));
    assert!(m("a == 'é'", &[("a", "é")]));
    for key in [
        "app",
        "k8s-app",
        "projectcalico.org/namespace",
        "kubernetes.io/metadata.name",
        "a.b/c-d_e",
    ] {
        assert!(m(&format!("{key} == 'v'"), &[(key, "v")]), "{key}");
        assert!(m(&format!("has({key})"), &[(key, "v")]), "{key}");
    }
    // Keywords are only keywords where Calico's tokenizer looks for them.
    assert!(m(
        "in == 'x' && has == 'y' && all == 'z'",
        &[("in", "x"), ("has", "y"), ("all", "z")]
    ));
    assert!(m("a startswith 'x'", &[("a", "xy")]));
    assert!(m("a notin {'x'}", &[("a", "y")]));
    assert!(m("a!='x'&&b in{'y'}", &[("b", "y")]));
}

#[test]
fn canonical_display() {
    let cases = [
        ("", "all()"),
        (" (all() )", "all()"),
        ("! (has( b)||! has(a ))", "!(has(b) || !has(a))"),
        (
            "! (a == \"b\"&&! c != \"d\")",
            "!(a == \"b\" && !c != \"d\")",
        ),
        ("a == '\"'", "a == '\"'"),
        ("a contains \"'\"", "a contains \"'\""),
        ("a startswith '\"'", "a starts with '\"'"),
        ("a endswith \"'\"", "a ends with \"'\""),
        ("a!='\"'", "a != '\"'"),
        (
            "a in {\"z\", \"z\", \"x\", 'y', \"x\", \"a\"}",
            "a in {\"a\", \"x\", \"y\", \"z\"}",
        ),
        ("a not in {}", "a not in {}"),
        ("!(k == 'v')", "!k == \"v\""),
        (
            "!(!(k == 'v' && has(t) || all()) && (a in {'b', 'c'}))",
            "!(!((k == \"v\" && has(t)) || all()) && a in {\"b\", \"c\"})",
        ),
        ("global()", "global()"),
    ];
    for (input, canonical) in cases {
        let s = sel(input);
        assert_eq!(s.to_string(), canonical, "{input:?}");
        assert_eq!(sel(canonical), s, "{input:?} round trip");
    }
}

#[test]
fn error_positions() {
    err_at(")", 0, "found ')'");
    err_at("a == 'b' && )", 12, "found ')'");
    err_at("a == 'abc", 5, "unterminated string");
    err_at("'FOO", 0, "unterminated string");
    err_at("\"FOO'", 0, "unterminated string");
    err_at("(a == 'foo'", 11, "')'");
    err_at("(", 1, "found the end");
    err_at("a in {'x'", 9, "'}'");
    err_at("a in {'x' 'y'}", 10, "',' or '}'");
    err_at("foo in {\"\", ||", 12, "a string or '}'");
    err_at("a == 'b' c", 9, "found label 'c'");
    err_at("a == 'b')", 8, "found ')'");
    err_at("a", 1, "an operator");
    err_at("a ", 2, "an operator");
    err_at("b == b", 5, "a string after '=='");
    err_at("b contains b", 11, "a string after 'contains'");
    err_at("a ==", 4, "a string");
    err_at("foo != ||", 7, "a string");
    err_at("foo in \"\"", 7, "'{'");
    err_at("a in", 4, "'{'");
    err_at("has", 3, "an operator");
    err_at("has(", 4, "label key inside");
    err_at("has()", 4, "label key inside");
    err_at("has(a", 5, "')'");
    err_at("has (a)", 4, "an operator");
    err_at("all(", 4, "')'");
    err_at("global(x)", 7, "')'");
    err_at("()", 1, "found ')'");
    err_at("has(foo) &&", 11, "found the end");
    err_at("a == 'b' &&   ", 14, "found the end");
    err_at("!", 1, "found the end");
    err_at("'b1' == b", 0, "found string");
    err_at("a b", 2, "an operator");
    err_at("a starts 'x'", 9, "'with'");
    err_at("a not {'x'}", 6, "'in'");
    err_at("foo == \"bar\" &", 13, "'&&'");
    err_at("foo == \"bar\" |", 13, "'||'");
    err_at("a = 'b'", 2, "'=='");
    err_at("%", 0, "unexpected character '%'");
    err_at("a == \"b\" || %", 12, "unexpected character");
    err_at("a == 'b' && é", 12, "unexpected character 'é'");
    err_at("a == 'b'\n&& c == 'd'", 8, "unexpected character '\\n'");
    // A parse error before a bad token is reported at its own place, not at the bad token.
    err_at(") 'abc", 0, "found ')'");
    assert_eq!(
        err("a").to_string(),
        format!("at position 1: {}", err("a").message)
    );
}

#[test]
fn nesting_limit() {
    let nested = |n: usize| format!("{}has(a){}", "(".repeat(n), ")".repeat(n));
    assert!(m(&nested(100), &[("a", "")]));
    err_at(&nested(101), 100, "nested deeper than 100");
    assert!(!m(&format!("{}has(a)", "!".repeat(99)), &[("a", "")]));
    assert!(m(&format!("{}has(a)", "!".repeat(100)), &[("a", "")]));
    err_at(
        &format!("{}has(a)", "!".repeat(101)),
        100,
        "nested deeper than 100",
    );
    err_at(
        &format!("{}has(a)", "!(".repeat(51)),
        100,
        "nested deeper than 100",
    );
    // Far past the limit: an error, not a stack overflow.
    err_at(&"(".repeat(100_000), 100, "nested deeper than 100");
    err_at(&"!".repeat(100_000), 100, "nested deeper than 100");
    assert!(m(&vec!["has(a)"; 10_000].join(" && "), &[("a", "")]));
}

/// Feeds truncations of valid selectors and pseudo-random token soup to the parser. It must
/// never panic; whatever it accepts must survive a trip through the canonical form.
#[test]
fn never_panics() {
    let valid = [
        "a == 'b' && (c != \"d\" || !has(e)) && f in {'x', \"y\"}",
        "!a not in {} || k8s-app starts with 'kube' && x ends with 'é' || y contains \"'\"",
        "  all( ) && !global() || !!! has( projectcalico.org/name )",
        "a startswith 'x' && b endswith \"y\" && c notin {'z',}",
    ];
    let mut inputs: Vec<String> = Vec::new();
    for text in valid {
        for i in (0..=text.len()).filter(|&i| text.is_char_boundary(i)) {
            inputs.push(text[..i].to_string());
            inputs.push(text[i..].to_string());
        }
    }
    let pieces = [
        "a",
        "b.c/d",
        " ",
        "\t",
        "\n",
        "==",
        "!=",
        "=",
        "!",
        "&&",
        "&",
        "||",
        "|",
        "(",
        ")",
        "{",
        "}",
        ",",
        "'",
        "\"",
        "'x'",
        "\"y\"",
        "in",
        "not",
        "not in",
        "contains",
        "starts",
        "with",
        "ends with",
        "has(",
        "has",
        "all(",
        "all()",
        "global()",
        "é",
        "%",
        "",
    ];
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..20_000 {
        let len = next() % 14;
        inputs.push(
            (0..len)
                .map(|_| pieces[(next() % pieces.len() as u64) as usize])
                .collect(),
        );
    }
    for input in &inputs {
        match CalicoSelector::parse(input) {
            Ok(s) => {
                let canonical = s.to_string();
                assert_eq!(
                    CalicoSelector::parse(&canonical).as_ref(),
                    Ok(&s),
                    "{input:?}"
                );
                s.matches(&labels(&[("a", "x")]));
            }
            Err(e) => assert!(e.position <= input.len(), "{input:?}: {e}"),
        }
    }
}
