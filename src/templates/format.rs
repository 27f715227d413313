//! Python `str.format` semantics for marathon-lb templates.
//!
//! Users write templates for the original, so `{name}` placeholders, `{{`/`}}` escapes and the
//! failure cases (unknown placeholder, lone brace) must behave as Python's `str.format` does.
//! Only keyword placeholders are supplied; positional ones (`{}`, `{0}`), attribute/index
//! access and format specs are errors, as they would be (or would render Python object
//! internals) in the original.

use std::fmt;

/// Why a template could not be formatted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormatError {
    /// `{name}` where `name` is not one of the values this template receives.
    UnknownPlaceholder(String),
    /// A `}` that is neither doubled nor closing a placeholder.
    SingleClosingBrace {
        /// Its byte offset in the template, so a long template label can be fixed.
        at: usize,
    },
    /// A `{` that is never closed.
    UnclosedPlaceholder {
        /// Its byte offset in the template.
        at: usize,
    },
    /// A placeholder form the templates do not support (positional, `.attr`, `[i]`, `:spec`).
    Unsupported(String),
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownPlaceholder(name) => write!(f, "unknown placeholder {{{name}}}"),
            Self::SingleClosingBrace { at } => {
                write!(f, "single '}}' encountered in template at byte {at}")
            }
            Self::UnclosedPlaceholder { at } => {
                write!(f, "'{{' without a closing '}}' in template at byte {at}")
            }
            Self::Unsupported(field) => write!(f, "unsupported placeholder {{{field}}}"),
        }
    }
}

impl std::error::Error for FormatError {}

/// Appends `template` to `out`, replacing `{name}` with the value of `name` in `args`.
///
/// # Errors
/// A [`FormatError`] for any placeholder Python's `str.format` would reject with these keyword
/// arguments. `out` may then hold a partial result.
pub fn format_into(
    out: &mut String,
    template: &str,
    args: &[(&str, &str)],
) -> Result<(), FormatError> {
    let mut rest = template;
    while let Some(pos) = rest.find(['{', '}']) {
        out.push_str(&rest[..pos]);
        let brace = rest.as_bytes()[pos];
        let at = template.len() - rest.len() + pos;
        let after = &rest[pos + 1..];
        if brace == b'}' {
            rest = after
                .strip_prefix('}')
                .ok_or(FormatError::SingleClosingBrace { at })?;
            out.push('}');
            continue;
        }
        if let Some(escaped) = after.strip_prefix('{') {
            out.push('{');
            rest = escaped;
            continue;
        }
        let end = closing_brace(after).ok_or(FormatError::UnclosedPlaceholder { at })?;
        let field = &after[..end];
        out.push_str(lookup(field, args)?);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(())
}

/// Formats `template` into a new string; see [`format_into`].
///
/// # Errors
/// As [`format_into`].
pub fn format(template: &str, args: &[(&str, &str)]) -> Result<String, FormatError> {
    let mut out = String::with_capacity(template.len() + 32);
    format_into(&mut out, template, args)?;
    Ok(out)
}

/// Index of the `}` closing a placeholder whose text starts at `s` (nested braces counted).
fn closing_brace(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => return Some(i),
            '}' => depth -= 1,
            _ => {}
        }
    }
    None
}

/// The keyword a placeholder names (`name` or `name!s`), or why it is not supported.
fn field_name(field: &str) -> Result<&str, FormatError> {
    let (name, conversion) = match field.split_once('!') {
        Some((name, conv)) => (name, Some(conv)),
        None => (field, None),
    };
    let positional = name.is_empty() || name.bytes().all(|b| b.is_ascii_digit());
    if positional || name.contains([':', '.', '[']) || conversion.is_some_and(|c| c != "s") {
        return Err(FormatError::Unsupported(field.to_owned()));
    }
    Ok(name)
}

fn value_of<'a>(name: &str, args: &[(&str, &'a str)]) -> Result<&'a str, FormatError> {
    args.iter()
        .find(|(key, _)| *key == name)
        .map(|(_, value)| *value)
        .ok_or_else(|| FormatError::UnknownPlaceholder(name.to_owned()))
}

fn lookup<'a>(field: &str, args: &[(&str, &'a str)]) -> Result<&'a str, FormatError> {
    value_of(field_name(field)?, args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_placeholders_and_unescapes_braces() {
        let out = format("a {x} {{ ssl_fc }} {y}}}", &[("x", "1"), ("y", "2")]).unwrap();
        assert_eq!(out, "a 1 { ssl_fc } 2}");
    }

    #[test]
    fn rejects_what_python_rejects() {
        assert_eq!(
            format("{nope}", &[]),
            Err(FormatError::UnknownPlaceholder("nope".into()))
        );
        assert_eq!(
            format("a } b", &[]),
            Err(FormatError::SingleClosingBrace { at: 2 })
        );
        assert_eq!(
            format("a {b", &[("b", "")]),
            Err(FormatError::UnclosedPlaceholder { at: 2 })
        );
        assert!(matches!(
            format("{}", &[]),
            Err(FormatError::Unsupported(_))
        ));
        assert!(matches!(
            format("{0}", &[]),
            Err(FormatError::Unsupported(_))
        ));
        assert!(matches!(
            format("{x:>4}", &[("x", "1")]),
            Err(FormatError::Unsupported(_))
        ));
    }

    #[test]
    fn explicit_str_conversion_is_allowed() {
        assert_eq!(format("{x!s}", &[("x", "v")]).unwrap(), "v");
    }
}

/// A template split once into literal text and placeholders, so formatting it for thousands
/// of services does no scanning. Parse errors are kept and reported when it is used, as in
/// the original (a broken template that is never needed is harmless).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    text: String,
    pieces: Result<Vec<Piece>, FormatError>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    /// Literal bytes `text[start..end]` (escapes already resolved where split).
    Literal(usize, usize),
    /// A literal brace from `{{` or `}}`.
    Brace(char),
    /// The placeholder whose keyword is `text[start..end]` (already validated).
    Field(usize, usize),
}

impl Template {
    /// Parses `text` (Python `str.format` syntax).
    pub fn new(text: impl Into<String>) -> Self {
        let text = text.into();
        let pieces = parse(&text);
        Self { text, pieces }
    }

    /// The raw text (for templates used verbatim).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Appends the formatted template to `out`.
    ///
    /// # Errors
    /// As [`format_into`]; `out` is left unchanged on error.
    pub fn format_into(&self, out: &mut String, args: &[(&str, &str)]) -> Result<(), FormatError> {
        let pieces = self.pieces.as_ref().map_err(Clone::clone)?;
        let start = out.len();
        for piece in pieces {
            match *piece {
                Piece::Literal(a, b) => out.push_str(&self.text[a..b]),
                Piece::Brace(c) => out.push(c),
                Piece::Field(a, b) => match value_of(&self.text[a..b], args) {
                    Ok(value) => out.push_str(value),
                    Err(e) => {
                        out.truncate(start);
                        return Err(e);
                    }
                },
            }
        }
        Ok(())
    }
}

fn parse(text: &str) -> Result<Vec<Piece>, FormatError> {
    let mut pieces = Vec::new();
    let bytes = text.as_bytes();
    let (mut i, mut literal_start) = (0, 0);
    while i < bytes.len() {
        match bytes[i] {
            b'}' => {
                if bytes.get(i + 1) != Some(&b'}') {
                    return Err(FormatError::SingleClosingBrace { at: i });
                }
                pieces.push(Piece::Literal(literal_start, i));
                pieces.push(Piece::Brace('}'));
                i += 2;
                literal_start = i;
            }
            b'{' if bytes.get(i + 1) == Some(&b'{') => {
                pieces.push(Piece::Literal(literal_start, i));
                pieces.push(Piece::Brace('{'));
                i += 2;
                literal_start = i;
            }
            b'{' => {
                pieces.push(Piece::Literal(literal_start, i));
                let end = closing_brace(&text[i + 1..])
                    .ok_or(FormatError::UnclosedPlaceholder { at: i })?;
                let name = field_name(&text[i + 1..i + 1 + end])?;
                pieces.push(Piece::Field(i + 1, i + 1 + name.len()));
                i += end + 2;
                literal_start = i;
            }
            _ => i += 1,
        }
    }
    pieces.push(Piece::Literal(literal_start, bytes.len()));
    pieces.retain(|p| !matches!(p, Piece::Literal(a, b) if a == b));
    Ok(pieces)
}

#[cfg(test)]
mod template_tests {
    use super::*;

    #[test]
    fn parsed_templates_format_like_the_one_shot_formatter() {
        let cases = [
            "a {x} {{ ssl_fc }} {y}}}",
            "{x}{y}",
            "",
            "plain",
            "{nope}",
            "a } b",
            "{x",
            "{}",
            "{0}",
            "{x!s}",
        ];
        let args = [("x", "1"), ("y", "2")];
        for case in cases {
            let mut out = String::from("pre");
            let parsed = Template::new(case)
                .format_into(&mut out, &args)
                .map(|_| out.clone());
            let direct = format(case, &args).map(|s| format!("pre{s}"));
            assert_eq!(parsed, direct, "{case:?}");
        }
    }
}
