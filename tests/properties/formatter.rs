//! The `str.format` template formatter, against templates and values of any shape.

use marathon_lb::templates::{format, FormatError, Template};
use proptest::prelude::*;

use crate::property;

/// The keywords the generated arguments may bind.
pub const KEYS: &[&str] = &["x", "y", "host", "backend"];

/// Templates made of the formatter's building blocks (escapes, lone braces, placeholders of
/// every form, nested braces) and arbitrary text.
pub fn template() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("{".to_owned()),
        Just("}".to_owned()),
        Just("{{".to_owned()),
        Just("}}".to_owned()),
        Just("{x}".to_owned()),
        Just("{y}".to_owned()),
        Just("{host}".to_owned()),
        Just("{x!s}".to_owned()),
        Just("{x!r}".to_owned()),
        Just("{x!}".to_owned()),
        Just("{0}".to_owned()),
        Just("{}".to_owned()),
        Just("{x:>4}".to_owned()),
        Just("{x.a}".to_owned()),
        Just("{x[0]}".to_owned()),
        Just("{nope}".to_owned()),
        Just("{ x}".to_owned()),
        Just("{x{y}}".to_owned()),
        Just("\u{e9}\n".to_owned()),
        ".{0,6}",
        "[a-z {}!:.\\[\\]0-9]{0,6}",
    ];
    proptest::collection::vec(token, 0..16).prop_map(|t| t.concat())
}

/// Keyword arguments: a subset of [`KEYS`] with any values (braces included).
pub fn args() -> impl Strategy<Value = Vec<(String, String)>> {
    proptest::collection::vec((proptest::sample::select(KEYS), ".{0,8}"), 0..4)
        .prop_map(|pairs| pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

fn borrowed(args: &[(String, String)]) -> Vec<(&str, &str)> {
    args.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// Any template with any values: a string or an error, never a panic. The one-shot formatter
/// and the pre-parsed [`Template`] agree on the output and on failing; a `Template` that fails
/// leaves the output untouched; every error names the placeholder or the byte offset.
fn any_template_formats_or_fails(
    (text, args): (String, Vec<(String, String)>),
) -> Result<(), TestCaseError> {
    let args = borrowed(&args);
    let direct = format(&text, &args);
    let mut out = String::from("pre");
    let parsed = Template::new(text.as_str()).format_into(&mut out, &args);
    match (&direct, &parsed) {
        (Ok(direct), Ok(())) => prop_assert_eq!(format!("pre{direct}"), out),
        (Err(_), Err(_)) => prop_assert_eq!(out, "pre", "a failed Template wrote output"),
        _ => prop_assert!(false, "format: {:?}, Template: {:?}", direct, parsed),
    }
    for error in [direct.err(), parsed.err()].into_iter().flatten() {
        names_what_is_wrong(&text, &error)?;
    }
    Ok(())
}

/// The error's message names the placeholder it rejects, or the offset of the stray brace,
/// and that offset does hold that brace.
fn names_what_is_wrong(text: &str, error: &FormatError) -> Result<(), TestCaseError> {
    let message = error.to_string();
    match error {
        FormatError::UnknownPlaceholder(name) | FormatError::Unsupported(name) => {
            prop_assert!(message.contains(&format!("{{{name}}}")), "{}", message);
            prop_assert!(text.contains(name.as_str()), "{} not in {:?}", name, text);
        }
        FormatError::SingleClosingBrace { at } => {
            prop_assert_eq!(text.as_bytes().get(*at), Some(&b'}'), "{}", message);
            prop_assert!(message.contains(&at.to_string()), "{}", message);
        }
        FormatError::UnclosedPlaceholder { at } => {
            prop_assert_eq!(text.as_bytes().get(*at), Some(&b'{'), "{}", message);
            prop_assert!(message.contains(&at.to_string()), "{}", message);
        }
    }
    Ok(())
}

property!(any_template_formats_or_fails, (template(), args()));

/// Text without braces formats to itself, whatever the arguments.
fn no_braces_formats_to_itself(
    (text, args): (String, Vec<(String, String)>),
) -> Result<(), TestCaseError> {
    let args = borrowed(&args);
    prop_assert_eq!(format(&text, &args), Ok(text.clone()));
    let mut out = String::new();
    prop_assert_eq!(
        Template::new(text.as_str()).format_into(&mut out, &args),
        Ok(())
    );
    prop_assert_eq!(out, text);
    Ok(())
}

property!(no_braces_formats_to_itself, ("[^{}]{0,40}", args()));

/// Doubling every brace of any text escapes it: it formats back to the text.
fn escaped_text_round_trips(
    (text, args): (String, Vec<(String, String)>),
) -> Result<(), TestCaseError> {
    let args = borrowed(&args);
    let escaped = text.replace('{', "{{").replace('}', "}}");
    prop_assert_eq!(format(&escaped, &args), Ok(text.clone()));
    let mut out = String::new();
    prop_assert_eq!(Template::new(escaped).format_into(&mut out, &args), Ok(()));
    prop_assert_eq!(out, text);
    Ok(())
}

property!(escaped_text_round_trips, ("[{}a-z\u{e9} ]{0,40}", args()));

/// One piece of a well-formed template.
#[derive(Debug, Clone)]
enum Piece {
    /// Text without braces.
    Text(String),
    /// `{{` or `}}`.
    Brace(char),
    /// `{key}` or `{key!s}` for a key in [`KEYS`].
    Field(&'static str, bool),
}

/// A template assembled from pieces formats to the pieces' expected output: text as is, one
/// brace per escape, each value verbatim (braces in values are not reinterpreted). A key the
/// arguments lack is an unknown placeholder named in the error.
fn assembled_template_formats_piecewise(
    (pieces, values): (Vec<Piece>, Vec<(bool, String)>),
) -> Result<(), TestCaseError> {
    let args: Vec<(&str, &str)> = KEYS
        .iter()
        .zip(&values)
        .filter(|(_, (present, _))| *present)
        .map(|(k, (_, v))| (*k, v.as_str()))
        .collect();
    let (mut text, mut expected, mut missing) = (String::new(), String::new(), None);
    for piece in &pieces {
        match piece {
            Piece::Text(t) => {
                text.push_str(t);
                expected.push_str(t);
            }
            Piece::Brace(c) => {
                text.extend([*c, *c]);
                expected.push(*c);
            }
            Piece::Field(key, conversion) => {
                text.push_str(&format!("{{{key}{}}}", if *conversion { "!s" } else { "" }));
                match args.iter().find(|(k, _)| k == key) {
                    Some((_, value)) => expected.push_str(value),
                    None => {
                        missing.get_or_insert(*key);
                    }
                }
            }
        }
    }
    let want = match missing {
        None => Ok(expected),
        Some(key) => Err(FormatError::UnknownPlaceholder(key.to_owned())),
    };
    prop_assert_eq!(format(&text, &args), want.clone());
    let mut out = String::new();
    let parsed = Template::new(text)
        .format_into(&mut out, &args)
        .map(|()| out);
    prop_assert_eq!(parsed, want);
    Ok(())
}

fn piece() -> impl Strategy<Value = Piece> {
    prop_oneof![
        "[^{}]{0,8}".prop_map(Piece::Text),
        prop_oneof![Just('{'), Just('}')].prop_map(Piece::Brace),
        (proptest::sample::select(KEYS), any::<bool>()).prop_map(|(k, c)| Piece::Field(k, c)),
    ]
}

property!(
    assembled_template_formats_piecewise,
    (
        proptest::collection::vec(piece(), 0..12),
        proptest::collection::vec((any::<bool>(), ".{0,8}"), KEYS.len())
    )
);

/// Errors found in the wild, each with the offset it must name.
#[test]
fn brace_errors_name_their_offset() {
    for (text, error) in [
        ("a } b", FormatError::SingleClosingBrace { at: 2 }),
        ("{x}}", FormatError::SingleClosingBrace { at: 3 }),
        ("ab {x", FormatError::UnclosedPlaceholder { at: 3 }),
        ("\u{e9}{{ {", FormatError::UnclosedPlaceholder { at: 5 }),
    ] {
        assert_eq!(format(text, &[("x", "1")]), Err(error.clone()), "{text:?}");
        let mut out = String::new();
        assert_eq!(
            Template::new(text).format_into(&mut out, &[("x", "1")]),
            Err(error.clone()),
            "{text:?}"
        );
    }
}
