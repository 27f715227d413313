//! The label parsers (`HAPROXY_{n}_*` splitting and application) and the Python-compatible
//! conversions behind them, through their public API.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};

use marathon_lb::compat::{clean_name, float_str, parse_bool, parse_int, server_id};
use marathon_lb::model::labels::{apply, per_port, port_label, SETTING_LABELS};
use marathon_lb::model::{Error, Service};
use proptest::prelude::*;

use crate::property;

/// Label keys made of the pieces that matter (the prefix, indexes with and without leading
/// zeros, huge indexes, setting and template names) and arbitrary text.
fn key() -> impl Strategy<Value = String> {
    let index = prop_oneof![
        Just("0".to_owned()),
        "[1-9][0-9]{0,2}",
        "0[0-9]{1,2}",
        "[0-9]{19,24}",
        Just(String::new()),
        Just("-1".to_owned()),
        ".{0,3}",
    ];
    let name = prop_oneof![
        proptest::sample::select(SETTING_LABELS).prop_map(str::to_owned),
        Just("BACKEND_HEAD".to_owned()),
        Just("FRONTEND_HEAD".to_owned()),
        "[A-Z_]{0,12}",
        ".{0,6}",
    ];
    prop_oneof![
        4 => (index, name).prop_map(|(i, n)| format!("HAPROXY_{i}_{n}")),
        1 => "HAPROXY_[A-Z_]{0,12}",
        1 => ".{0,16}",
    ]
}

/// Label values: integers in Python's forms, `realm:user:password` shapes, booleans, text with
/// line breaks and braces, arbitrary Unicode.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ \t]?[+-]?[0-9_]{0,22}[ \t\n]?",
        "[a-z]{0,3}(:[a-z]{0,3}){0,3}",
        proptest::sample::select(&["true", "T", "yes", "Y", "false", "1", "", " 12 "][..])
            .prop_map(str::to_owned),
        "[a-z{}\r\n ]{0,10}",
        ".{0,12}",
    ]
}

/// Python's `int(str)` for base 10 on ASCII digits, from its grammar: optional whitespace, an optional sign, digits with single underscores between them, optional
/// whitespace; `None` outside `i64`.
fn python_int(text: &str) -> Option<i64> {
    // Unicode spaces (U+0085, U+3000, ...) but not the ASCII separators `\x1c`-`\x1f`, which
    // `str.isspace` counts and `int` does not strip (checked in `python::int_agrees_with_python`).
    let t = text.trim();
    let (sign, digits) = match t.strip_prefix('-') {
        Some(rest) => (-1i128, rest),
        None => (1, t.strip_prefix('+').unwrap_or(t)),
    };
    let groups: Vec<&str> = digits.split('_').collect();
    let well_formed = groups
        .iter()
        .all(|g| !g.is_empty() && g.bytes().all(|b| b.is_ascii_digit()));
    if !well_formed || groups.concat().len() > 30 {
        return None;
    }
    let magnitude: i128 = groups.concat().parse().ok()?;
    i64::try_from(sign * magnitude).ok()
}

fn int_parses_like_python(text: String) -> Result<(), TestCaseError> {
    // Non-ASCII decimal digits (`int("\u{664}")` is 4 in Python) are a known gap.
    if !text.chars().any(|c| c.is_numeric() && !c.is_ascii_digit()) {
        prop_assert_eq!(parse_int(&text), python_int(&text), "{:?}", text);
    }
    Ok(())
}

property!(
    int_parses_like_python,
    prop_oneof![
        "[ \t\n\x0b\x0c\r\x1c-\x1f\u{a0}\u{3000}]{0,2}[+-]{0,2}[0-9_]{0,21}[ \x1c\u{85}]{0,2}",
        Just("-9223372036854775808".to_owned()),
        Just("9223372036854775808".to_owned()),
        ".{0,8}",
    ]
);

/// Only the four ASCII words (any case) are true: no other Unicode text lower-cases to one.
fn bool_words_only(text: String) -> Result<(), TestCaseError> {
    let ascii = matches!(
        text.to_ascii_lowercase().as_str(),
        "true" | "t" | "yes" | "y"
    );
    prop_assert_eq!(parse_bool(&text), ascii, "{:?}", text);
    Ok(())
}

property!(
    bool_words_only,
    prop_oneof!["[tTrRuUeEyYsS\u{130}\u{212a}\u{17f}]{0,4}", ".{0,6}"]
);

/// `(index, NAME)` exactly when the key is `HAPROXY_` + a canonical index + `_` + a name, and
/// the pair spells the key back.
fn port_label_is_canonical(key: String) -> Result<(), TestCaseError> {
    let expected = key.strip_prefix("HAPROXY_").and_then(|rest| {
        let (index, name) = rest.split_once('_')?;
        let canonical = index == "0"
            || (!index.is_empty()
                && !index.starts_with('0')
                && index.bytes().all(|b| b.is_ascii_digit()));
        canonical.then(|| index.parse::<usize>().ok().map(|i| (i, name)))?
    });
    let got = port_label(&key);
    prop_assert_eq!(got, expected);
    if let Some((index, name)) = got {
        prop_assert_eq!(format!("HAPROXY_{index}_{name}"), key);
    }
    Ok(())
}

property!(port_label_is_canonical, key());

type Labels = BTreeMap<String, String>;

fn labels() -> impl Strategy<Value = Labels> {
    proptest::collection::btree_map(key(), value(), 0..12)
}

fn cow(labels: &Labels) -> BTreeMap<Cow<'_, str>, Cow<'_, str>> {
    labels
        .iter()
        .map(|(k, v)| (Cow::from(k.as_str()), Cow::from(v.as_str())))
        .collect()
}

/// Every per-port label lands once, under its index, each list in name order; nothing else.
/// Applying each list gives a service or an error that names the app, the label and its value.
fn labels_split_and_apply(labels: Labels) -> Result<(), TestCaseError> {
    let map = cow(&labels);
    let split = per_port(&map);
    let total: usize = split.values().map(Vec::len).sum();
    let expected = labels.keys().filter(|k| port_label(k).is_some()).count();
    prop_assert_eq!(total, expected);
    for (index, list) in &split {
        prop_assert!(
            list.windows(2).all(|w| w[0].0 <= w[1].0),
            "not sorted: {:?}",
            list
        );
        for (name, value) in list {
            let key = format!("HAPROXY_{index}_{name}");
            prop_assert_eq!(labels.get(&key).map(String::as_str), Some(*value));
        }
        applies_or_names_the_label(*index, list)?;
    }
    Ok(())
}

/// The label of `list` the original rejects first, if any.
fn first_invalid<'l>(list: &[(&'l str, &'l str)]) -> Option<(&'l str, &'l str)> {
    list.iter().copied().find(|(name, value)| match *name {
        "PORT" | "BACKEND_WEIGHT" | "BACKEND_HEALTHCHECK_PORT_INDEX" => parse_int(value).is_none(),
        "AUTH" => value.split(':').count() != 3,
        _ => false,
    })
}

fn applies_or_names_the_label(index: usize, list: &[(&str, &str)]) -> Result<(), TestCaseError> {
    let mut service = Service::new("/group/app".into(), 10_000, None, false);
    let result = apply(&mut service, index, list);
    match (first_invalid(list), result) {
        (None, Ok(())) => {
            if let Some((_, port)) = list.iter().rev().find(|(n, _)| *n == "PORT") {
                prop_assert_eq!(Some(service.service_port), parse_int(port));
            }
        }
        (Some((name, bad)), Err(error)) => {
            let label_name = format!("HAPROXY_{index}_{name}");
            let message = error.to_string();
            prop_assert!(message.contains("/group/app"), "{}", message);
            prop_assert!(message.contains(&label_name), "{}", message);
            let Error::InvalidLabel { label, value, .. } = error else {
                return Err(TestCaseError::fail(format!("not InvalidLabel: {message}")));
            };
            prop_assert_eq!(label, label_name);
            prop_assert_eq!(value, bad);
        }
        (expected, got) => {
            prop_assert!(false, "expected failure on {:?}, got {:?}", expected, got);
        }
    }
    Ok(())
}

property!(labels_split_and_apply, labels());

/// Names are cleaned to `[A-Za-z0-9_-]`, one character for one, idempotently.
fn clean_names(text: String) -> Result<(), TestCaseError> {
    let clean = clean_name(&text);
    prop_assert_eq!(clean.chars().count(), text.chars().count());
    prop_assert!(clean
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    prop_assert_eq!(clean_name(&clean), clean.clone());
    Ok(())
}

property!(clean_names, ".{0,24}");

/// Server ids of one backend: in HAProxy's range, distinct, and the same for the same names.
fn server_ids_are_distinct(names: Vec<String>) -> Result<(), TestCaseError> {
    let mut taken = HashSet::new();
    let ids: Vec<u32> = names.iter().map(|n| server_id(n, &mut taken)).collect();
    prop_assert!(ids.iter().all(|id| (1..=32766).contains(id)), "{:?}", ids);
    prop_assert_eq!(taken.len(), ids.len());
    let mut again = HashSet::new();
    let replay: Vec<u32> = names.iter().map(|n| server_id(n, &mut again)).collect();
    prop_assert_eq!(replay, ids);
    Ok(())
}

property!(
    server_ids_are_distinct,
    proptest::collection::vec("[0-9_]{1,16}", 0..32)
);

/// `repr(float)` reads back as the same float (shortest round trip), for every bit pattern.
fn floats_round_trip(bits: u64) -> Result<(), TestCaseError> {
    let f = f64::from_bits(bits);
    let text = float_str(f);
    if f.is_nan() {
        prop_assert_eq!(text, "nan");
    } else {
        let back: f64 = text
            .parse()
            .map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        prop_assert_eq!(back.to_bits(), f.to_bits(), "{}", text);
    }
    Ok(())
}

property!(floats_round_trip, any::<u64>());
