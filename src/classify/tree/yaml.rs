//! YAML request bodies, read into a [`Node`] the way the apiserver reads them, or refused.
//!
//! The apiserver turns a YAML body into JSON with `sigs.k8s.io/yaml` (go-yaml **v2**, YAML
//! 1.1 scalars) and decodes that JSON (`k8s.io/apimachinery` json serializer, `YAMLToJSON`;
//! server-side apply: `yaml.Unmarshal`, the same conversion). This reader agrees with that
//! conversion on everything it accepts, and refuses ([`ReadError::Ambiguous`]) what it would
//! otherwise have to reimplement in full and could get wrong:
//!
//! | construct | go-yaml v2 / the apiserver | here |
//! |---|---|---|
//! | plain scalars | YAML 1.1: `yes`/`on`/`y` are `true`, `no`/`off`/`n` `false`, `~`/`null`/empty `null`; integers through Go's `ParseInt(s, 0, 64)` after removing `_` (`0x10`, `0o10`, `010` octal, `0b10`, `1_000`), then `ParseUint`, then floats (`1e3`, `.5`) | the same resolution (`resolve`) |
//! | floats | `json.Marshal` writes an integral float as an integer (`1e3` → `1000`, `0.0` → `0`), which then decodes into an `int64` field | integral floats below 2^53 are integers (larger ones stay floats: `json.Marshal` rounds their digits) |
//! | `.inf`, `.nan` | `json.Marshal` fails: the request is refused | an error (opaque), as the apiserver refuses it |
//! | quoted and block scalars | strings | strings |
//! | non-string keys | stringified (`1:` → `"1"`, `0x10:` → `"16"`, `yes:` → `"true"`); float keys through a 32-bit `'g'` format; `null` and `uint64` keys fail | integer and boolean keys stringified the same way; float, null, sequence and mapping keys refused |
//! | merge keys `<<` | merged into the mapping (explicit keys win) | refused |
//! | anchors `&a`, aliases `*a` | expanded | refused |
//! | tags (`!!binary`, `!!str`, `!custom`) | applied or ignored, per tag | refused |
//! | a key twice (also `1` and `"1"`) | last wins, or an undefined order when two spellings stringify alike | refused |
//! | more documents after the first | ignored | refused |
//! | NEL, LINE SEPARATOR, PARAGRAPH SEPARATOR | line breaks (YAML 1.1) | refused: a YAML 1.2 parser reads them as text |
//! | nesting | refused past 10,000 levels | refused past [`MAX_NESTING`] ([`ReadError::TooDeep`]) |
//!
//! # Cost
//!
//! libyaml (behind `serde_yaml`) checks every open flow level on every token, so a body of
//! nested `[` costs time quadratic in its depth before any depth limit applies: 140 KB of
//! `[[[…]]]` took 365 ms optimised and seconds in a debug build (go-yaml fixed the same
//! loop for CVE-2019-11254). This reader pulls events from `saphyr-parser`, whose scanner
//! caps flow levels at 255 and whose events arrive as the body is read, so the nesting bound
//! stops the parse after a few hundred bytes: the same body is refused in well under a
//! millisecond. What remains is linear in the body's size (see BENCHMARKS.md); the proxy
//! reads large bodies off its event loop.

use std::borrow::Cow;
use std::collections::HashSet;

use saphyr_parser::{Event, Parser, ScalarStyle, StrInput};

use super::{Node, Number, ReadError, MAX_NESTING};

/// Reads a YAML body (a single document).
pub(crate) fn from_yaml(body: &[u8]) -> Result<Node<'_>, ReadError> {
    let text = std::str::from_utf8(body).map_err(|_| ReadError::NotUtf8)?;
    if let Some(c) = yaml_1_1_break(text) {
        return Err(line_break_refusal(c));
    }
    let mut reader = Reader {
        parser: Parser::new_from_str(text),
        depth: 0,
    };
    reader.document()
}

struct Reader<'a> {
    parser: Parser<'a, StrInput<'a>>,
    /// Collections open around the next event.
    depth: usize,
}

impl<'a> Reader<'a> {
    fn next(&mut self) -> Result<Event<'a>, ReadError> {
        match self.parser.next_event() {
            Some(Ok((event, _))) => Ok(event),
            // The scanner's own flow-level cap (255) is reached before the first event of a
            // body of nothing but `[`: it scans ahead for a possible key.
            Some(Err(e)) if e.info() == "recursion limit exceeded" => Err(ReadError::TooDeep),
            Some(Err(e)) => Err(ReadError::Yaml(e.to_string())),
            None => Err(ReadError::Yaml("the YAML stream ended early".to_owned())),
        }
    }

    /// The stream's first document; a stream without one is `null`, as go-yaml reads it.
    fn document(&mut self) -> Result<Node<'a>, ReadError> {
        self.next()?; // StreamStart
        let node = match self.next()? {
            Event::StreamEnd => return Ok(Node::Null),
            Event::DocumentStart(_) => {
                let first = self.next()?;
                let node = self.node(first)?;
                self.next()?; // DocumentEnd
                node
            }
            other => return Err(unexpected(&other)),
        };
        match self.next()? {
            Event::StreamEnd => Ok(node),
            _ => Err(ReadError::Ambiguous(
                "the body holds more than one YAML document (the apiserver reads only the \
                 first)"
                    .to_owned(),
            )),
        }
    }

    fn node(&mut self, event: Event<'a>) -> Result<Node<'a>, ReadError> {
        match event {
            Event::Scalar(text, style, anchor, tag) => {
                refuse_anchor_or_tag(anchor, tag.is_some())?;
                scalar(text, style)
            }
            Event::SequenceStart(anchor, tag) => {
                refuse_anchor_or_tag(anchor, tag.is_some())?;
                self.enter()?;
                let mut items = Vec::new();
                loop {
                    match self.next()? {
                        Event::SequenceEnd => break,
                        event => items.push(self.node(event)?),
                    }
                }
                self.depth -= 1;
                Ok(Node::Array(items))
            }
            Event::MappingStart(anchor, tag) => {
                refuse_anchor_or_tag(anchor, tag.is_some())?;
                self.enter()?;
                let node = self.mapping()?;
                self.depth -= 1;
                Ok(node)
            }
            Event::Alias(_) => Err(ReadError::Ambiguous(
                "the body uses a YAML alias (*name)".to_owned(),
            )),
            other => Err(unexpected(&other)),
        }
    }

    fn enter(&mut self) -> Result<(), ReadError> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(ReadError::TooDeep);
        }
        Ok(())
    }

    fn mapping(&mut self) -> Result<Node<'a>, ReadError> {
        let mut entries: Vec<(Cow<'a, str>, Node<'a>)> = Vec::new();
        // Borrowed keys are a pointer copy; a set keeps a wide mapping linear.
        let mut seen: HashSet<Cow<'a, str>> = HashSet::new();
        loop {
            let key = match self.next()? {
                Event::MappingEnd => return Ok(Node::Object(entries)),
                Event::Scalar(text, style, anchor, tag) => {
                    refuse_anchor_or_tag(anchor, tag.is_some())?;
                    key(text, style)?
                }
                Event::Alias(_) => {
                    return Err(ReadError::Ambiguous(
                        "the body uses a YAML alias (*name)".to_owned(),
                    ))
                }
                _ => {
                    return Err(ReadError::Ambiguous(
                        "the body has a mapping key that is not a scalar".to_owned(),
                    ))
                }
            };
            if !seen.insert(key.clone()) {
                return Err(ReadError::Ambiguous(format!(
                    "the body sets key {key:?} twice in one mapping"
                )));
            }
            let event = self.next()?;
            let value = self.node(event)?;
            entries.push((key, value));
        }
    }
}

fn unexpected(event: &Event<'_>) -> ReadError {
    ReadError::Yaml(format!("unexpected YAML event {event:?}"))
}

fn refuse_anchor_or_tag(anchor: usize, tagged: bool) -> Result<(), ReadError> {
    if anchor != 0 {
        return Err(ReadError::Ambiguous(
            "the body uses a YAML anchor (&name)".to_owned(),
        ));
    }
    if tagged {
        return Err(ReadError::Ambiguous(
            "the body uses a YAML tag (!name or !!type)".to_owned(),
        ));
    }
    Ok(())
}

/// A value scalar as go-yaml v2 resolves it, then as `json.Marshal` writes it.
fn scalar(text: Cow<'_, str>, style: ScalarStyle) -> Result<Node<'_>, ReadError> {
    if style != ScalarStyle::Plain {
        return Ok(Node::String(text));
    }
    Ok(match resolve(&text) {
        Resolved::Null => Node::Null,
        Resolved::Bool(b) => Node::Bool(b),
        Resolved::Int(i) => Node::Number(Number::Int(i)),
        Resolved::Uint(u) => Node::Number(Number::Uint(u)),
        Resolved::Float(f) if !f.is_finite() => {
            return Err(ReadError::Yaml(format!(
                "{text} has no JSON form (the apiserver refuses it)"
            )))
        }
        Resolved::Float(f) => Node::Number(integral(f).map_or(Number::Float(f), Number::Int)),
        Resolved::String => Node::String(text),
    })
}

/// `json.Marshal` writes an integral float below 1e21 without exponent or fraction, and the
/// apiserver then decodes that text as an integer. Only below 2^53 is the text the float's
/// exact value (`-2^63` is written `-9223372036854776000`, which overflows `int64`); larger
/// ones stay floats, which no integer field accepts.
fn integral(f: f64) -> Option<i64> {
    const TWO_53: f64 = 9_007_199_254_740_992.0;
    (f.fract() == 0.0 && f.abs() < TWO_53).then_some(f as i64)
}

/// Reads a JSON text sent as YAML (kubectl sends server-side apply bodies so) with the
/// faster JSON parser, then gives it the YAML reading where the two differ: numbers
/// (`1e3` and `0.0` are integers once go-yaml has read them) and the YAML 1.1 line breaks.
/// (Repeated keys agree: go-yaml keeps the last, as [`Node::get`] does.)
pub(crate) fn from_json_as_yaml(body: &[u8]) -> Result<Node<'_>, ReadError> {
    let mut node = super::from_json(body)?;
    if let Some(c) = yaml_1_1_break(std::str::from_utf8(body).unwrap_or_default()) {
        return Err(line_break_refusal(c));
    }
    integral_floats(&mut node);
    Ok(node)
}

fn integral_floats(node: &mut Node<'_>) {
    match node {
        Node::Number(Number::Float(f)) => {
            if let Some(i) = integral(*f) {
                *node = Node::Number(Number::Int(i));
            }
        }
        Node::Array(items) => items.iter_mut().for_each(integral_floats),
        Node::Object(entries) => entries.iter_mut().for_each(|(_, v)| integral_floats(v)),
        _ => {}
    }
}

/// The first NEL, LINE SEPARATOR or PARAGRAPH SEPARATOR (UTF-8 `C2 85`, `E2 80 A8`,
/// `E2 80 A9`), found by their lead bytes rather than by decoding every character.
fn yaml_1_1_break(text: &str) -> Option<char> {
    let bytes = text.as_bytes();
    memchr::memchr2_iter(0xC2, 0xE2, bytes).find_map(|at| match bytes.get(at..at + 3) {
        Some([0xC2, 0x85, ..]) => Some('\u{85}'),
        Some([0xE2, 0x80, 0xA8]) => Some('\u{2028}'),
        Some([0xE2, 0x80, 0xA9]) => Some('\u{2029}'),
        _ if bytes.get(at..at + 2) == Some(&[0xC2, 0x85]) => Some('\u{85}'),
        _ => None,
    })
}

fn line_break_refusal(c: char) -> ReadError {
    ReadError::Ambiguous(format!(
        "the body holds U+{:04X}, a line break in YAML 1.1 (the apiserver's reading) but not \
         in YAML 1.2",
        u32::from(c)
    ))
}

/// A key scalar: its text after go-yaml's resolution and `sigs.k8s.io/yaml`'s
/// stringification.
fn key(text: Cow<'_, str>, style: ScalarStyle) -> Result<Cow<'_, str>, ReadError> {
    if style != ScalarStyle::Plain {
        return Ok(text);
    }
    if text == "<<" {
        return Err(ReadError::Ambiguous(
            "the body uses a YAML merge key (<<)".to_owned(),
        ));
    }
    match resolve(&text) {
        Resolved::String => Ok(text),
        Resolved::Bool(b) => Ok(Cow::Borrowed(if b { "true" } else { "false" })),
        Resolved::Int(i) => Ok(Cow::Owned(i.to_string())),
        Resolved::Null | Resolved::Uint(_) | Resolved::Float(_) => Err(ReadError::Ambiguous(
            format!("the body has a mapping key {text:?} that is not a string or an integer"),
        )),
    }
}

/// What a plain scalar is to go-yaml v2 (`resolve.go`).
#[derive(Debug, PartialEq)]
enum Resolved {
    Null,
    Bool(bool),
    Int(i64),
    Uint(u64),
    Float(f64),
    String,
}

fn resolve(text: &str) -> Resolved {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Resolved::Null,
        "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            return Resolved::Bool(true)
        }
        "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            return Resolved::Bool(false)
        }
        ".nan" | ".NaN" | ".NAN" => return Resolved::Float(f64::NAN),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Resolved::Float(f64::INFINITY)
        }
        "-.inf" | "-.Inf" | "-.INF" => return Resolved::Float(f64::NEG_INFINITY),
        _ => {}
    }
    match text.as_bytes()[0] {
        b'.' => match text.parse::<f64>() {
            // Go's ParseFloat fails on overflow (±Inf): the scalar stays a string.
            Ok(f) if f.is_finite() && go_float_syntax(text) => Resolved::Float(f),
            _ => Resolved::String,
        },
        b'0'..=b'9' | b'+' | b'-' => number(text),
        _ => Resolved::String,
    }
}

/// go-yaml's order for a scalar that starts like a number: `ParseInt(s, 0, 64)` and
/// `ParseUint(s, 0, 64)` with every `_` removed, then its float pattern, then `-0b…`.
/// (A timestamp such as `2024-01-02` is tried first but decodes to its text, a string.)
fn number(text: &str) -> Resolved {
    let plain: String = text.chars().filter(|c| *c != '_').collect();
    if let Some(i) = go_parse_int(&plain) {
        return match i64::try_from(i) {
            Ok(i) => Resolved::Int(i),
            Err(_) => match u64::try_from(i) {
                Ok(u) if !plain.starts_with(['+', '-']) => Resolved::Uint(u),
                _ => float_or_string(&plain),
            },
        };
    }
    float_or_string(&plain)
}

fn float_or_string(plain: &str) -> Resolved {
    if go_float_syntax(plain) {
        if let Ok(f) = plain.parse::<f64>() {
            if f.is_finite() {
                return Resolved::Float(f);
            }
        }
    }
    Resolved::String
}

/// Go's `strconv.ParseInt(s, 0, 64)` syntax (sign, then `0x`/`0o`/`0b`/`0` prefix),
/// widened to `i128` so that the caller sees what overflows `i64` and `u64`.
fn go_parse_int(s: &str) -> Option<i128> {
    let (negative, unsigned) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let lower = unsigned.get(..2).map(str::to_ascii_lowercase);
    let (radix, digits) = match lower.as_deref() {
        Some("0x") => (16, &unsigned[2..]),
        Some("0o") => (8, &unsigned[2..]),
        Some("0b") => (2, &unsigned[2..]),
        _ if unsigned.len() > 1 && unsigned.starts_with('0') => (8, &unsigned[1..]),
        _ => (10, unsigned),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = u128::from_str_radix(digits, radix).ok()?;
    if magnitude > u128::from(u64::MAX) {
        return None;
    }
    let value = i128::try_from(magnitude).ok()?;
    Some(if negative { -value } else { value })
}

/// go-yaml's float pattern `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`.
fn go_float_syntax(s: &str) -> bool {
    let s = s.strip_prefix(['+', '-']).unwrap_or(s);
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(at) => (&s[..at], Some(&s[at + 1..])),
        None => (s, None),
    };
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = match mantissa.split_once('.') {
        Some(("", fraction)) => digits(fraction),
        Some((whole, fraction)) => digits(whole) && (fraction.is_empty() || digits(fraction)),
        None => digits(mantissa),
    };
    let exponent_ok = exponent.is_none_or(|e| digits(e.strip_prefix(['+', '-']).unwrap_or(e)));
    mantissa_ok && exponent_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_scalars_resolve_as_go_yaml_v2() {
        use Resolved::*;
        for (text, expected) in [
            ("", Null),
            ("~", Null),
            ("NULL", Null),
            ("nul", String),
            ("yes", Bool(true)),
            ("Y", Bool(true)),
            ("on", Bool(true)),
            ("ON", Bool(true)),
            ("oN", String),
            ("no", Bool(false)),
            ("n", Bool(false)),
            ("Off", Bool(false)),
            ("0", Int(0)),
            ("-0", Int(0)),
            ("+0", Int(0)),
            ("00", Int(0)),
            ("010", Int(8)),
            ("08", Float(8.0)),
            ("0x10", Int(16)),
            ("0X1f", Int(31)),
            ("-0x10", Int(-16)),
            ("0o17", Int(15)),
            ("0b101", Int(5)),
            ("-0b1", Int(-1)),
            ("1_000", Int(1000)),
            ("0x_1_0", Int(16)),
            ("0x", String),
            ("9223372036854775807", Int(i64::MAX)),
            ("9223372036854775808", Uint(9_223_372_036_854_775_808)),
            ("18446744073709551615", Uint(u64::MAX)),
            ("18446744073709551616", Float(18_446_744_073_709_551_616.0)),
            ("1e3", Float(1000.0)),
            ("1E+3", Float(1000.0)),
            ("0.0", Float(0.0)),
            ("-0.0", Float(-0.0)),
            ("0.", Float(0.0)),
            (".5", Float(0.5)),
            (".5e1", Float(5.0)),
            ("1.5", Float(1.5)),
            (".", String),
            ("1e", String),
            ("1e999", String),
            ("1.2.3", String),
            ("2024-01-02", String),
            ("30s", String),
            ("+", String),
            ("-", String),
            ("inf", String),
            ("0x1p-2", String),
        ] {
            assert_eq!(resolve(text), expected, "{text:?}");
        }
        assert!(matches!(resolve(".nan"), Float(f) if f.is_nan()));
        assert_eq!(resolve("-.INF"), Float(f64::NEG_INFINITY));
    }

    #[test]
    fn numbers_read_as_the_json_the_apiserver_decodes() {
        for (yaml, expected) in [
            ("a: 1e3", Some(1000)),
            ("a: 0.0", Some(0)),
            ("a: -0.0", Some(0)),
            ("a: 0x0", Some(0)),
            ("a: 00", Some(0)),
            ("a: 010", Some(8)),
            ("a: 1_0", Some(10)),
            ("a: 1.5", None),
            ("a: '0'", None),
            ("a: \"0\"", None),
            ("a: |\n  0\n", None),
        ] {
            let node = from_yaml(yaml.as_bytes()).unwrap();
            assert_eq!(node.get("a").and_then(Node::as_i64), expected, "{yaml:?}");
        }
        assert!(from_yaml(b"a: .inf").is_err());
        assert_eq!(
            from_yaml(b"a: -9223372036854775808.0")
                .unwrap()
                .get("a")
                .and_then(Node::as_i64),
            None,
            "json.Marshal writes -9223372036854776000, which overflows int64"
        );
        let json = from_json_as_yaml(br#"{"a": 1e3, "b": [0.0, 1.5], "c": "0"}"#).unwrap();
        assert_eq!(json.get("a").and_then(Node::as_i64), Some(1000));
        assert_eq!(
            json.at(&["b"]).and_then(Node::as_array).unwrap()[0].as_i64(),
            Some(0)
        );
        assert_eq!(json.get("c").and_then(Node::as_i64), None);
        assert!(matches!(
            from_json_as_yaml("{\"a\": \"x\u{2028}y\"}".as_bytes()),
            Err(ReadError::Ambiguous(_))
        ));
        for text in ["\u{85}", "a\u{85}", "\u{2029}b", "é\u{2028}", "a\u{85}"] {
            assert!(yaml_1_1_break(text).is_some(), "{text:?}");
        }
        for text in ["", "é", "\u{2027}", "\u{202A}", "\u{84}", "€", "\u{E000}"] {
            assert_eq!(yaml_1_1_break(text), None, "{text:?}");
        }
        assert_eq!(
            from_yaml(b"a: 1.5").unwrap().get("a"),
            Some(&Node::Number(Number::Float(1.5)))
        );
    }

    #[test]
    fn keys_are_stringified_as_sigs_k8s_io_yaml_does() {
        let node = from_yaml(b"1: a\n0x10: b\nyes: c\n'no': d\n").unwrap();
        let keys: Vec<&str> = node
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, _)| k.as_ref())
            .collect();
        assert_eq!(keys, ["1", "16", "true", "no"]);
        for refused in ["~: a", "1.5: a", "18446744073709551615: a"] {
            assert!(
                matches!(from_yaml(refused.as_bytes()), Err(ReadError::Ambiguous(_))),
                "{refused}"
            );
        }
    }

    #[test]
    fn constructs_decoded_differently_are_refused() {
        for body in [
            "<<: {gracePeriodSeconds: 0}",
            "a: 1\n<<:\n  gracePeriodSeconds: 0\n",
            "base: &b {gracePeriodSeconds: 0}\nother: *b\n",
            "a: &x 1\n",
            "gracePeriodSeconds: !!int '0'",
            "gracePeriodSeconds: !!str 0",
            "data: !!binary aGk=",
            "a: !custom 1",
            "a: !!map {b: 1}",
            "gracePeriodSeconds: 30\ngracePeriodSeconds: 0\n",
            "1: a\n'1': b\n",
            "yes: a\n'true': b\n",
            "? [a]\n: 1\n",
            "? {a: 1}\n: 1\n",
            "gracePeriodSeconds: 30\n---\ngracePeriodSeconds: 0\n",
            "gracePeriodSeconds: 30\u{2028}gracePeriodSeconds: 0\n",
            "a: 1\u{85}b: 2\n",
        ] {
            let result = from_yaml(body.as_bytes());
            assert!(
                matches!(result, Err(ReadError::Ambiguous(_))),
                "{body:?}: {result:?}"
            );
        }
        assert_eq!(
            from_yaml(b"'<<': 1")
                .unwrap()
                .get("<<")
                .and_then(Node::as_i64),
            Some(1),
            "a quoted << is an ordinary key"
        );
    }

    #[test]
    fn documents_and_syntax() {
        assert_eq!(from_yaml(b"# only a comment\n").unwrap(), Node::Null);
        assert_eq!(
            from_yaml(b"---\na: 1\n...\n")
                .unwrap()
                .get("a")
                .and_then(Node::as_i64),
            Some(1)
        );
        assert!(matches!(from_yaml(b"a: [1\n"), Err(ReadError::Yaml(_))));
        assert!(matches!(from_yaml(b"\xff: 1"), Err(ReadError::NotUtf8)));
    }
}
