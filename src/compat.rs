//! Small conversions whose exact behaviour users' labels depend on, matching marathon-lb 1.x
//! (which was Python): integer parsing, booleans, number formatting, name cleaning and hashing.

use sha2::{Digest, Sha256};

/// Parses an integer the way Python's `int(str)` does: surrounding whitespace (Unicode's, which
/// is Python's here: `int` does not strip the ASCII separators `\x1c`-`\x1f` that
/// `str.isspace` counts), a sign, and single underscores between digits are accepted. Values
/// outside `i64` are `None`, and so are non-ASCII decimal digits, which Python would read.
pub fn parse_int(text: &str) -> Option<i64> {
    let t = text.trim();
    let (negative, digits) = match t.as_bytes().first()? {
        b'-' => (true, &t[1..]),
        b'+' => (false, &t[1..]),
        _ => (false, t),
    };
    if digits.is_empty()
        || digits.starts_with('_')
        || digits.ends_with('_')
        || digits.contains("__")
    {
        return None;
    }
    // Accumulated with the sign so that `i64::MIN`, whose magnitude is not an `i64`, parses.
    let sign = if negative { -1 } else { 1 };
    let mut value: i64 = 0;
    for b in digits.bytes() {
        match b {
            b'0'..=b'9' => {
                value = value
                    .checked_mul(10)?
                    .checked_add(sign * i64::from(b - b'0'))?
            }
            b'_' => {}
            _ => return None,
        }
    }
    Some(value)
}

/// marathon-lb's boolean labels: true iff the lower-cased value is `true`, `t`, `yes` or `y`.
pub fn parse_bool(text: &str) -> bool {
    matches!(text.to_lowercase().as_str(), "true" | "t" | "yes" | "y")
}

/// Replaces every character outside `[a-zA-Z0-9-]` with `_` (ACL, server and vhost names).
pub fn clean_name(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Formats a JSON number as Python's `str()` of the value `json.loads` gives:
/// integers as is, floats in `repr` form (`10.0`, `0.5`, `1e+16`).
pub fn number_str(n: &serde_json::Number) -> String {
    if n.is_f64() {
        float_str(n.as_f64().unwrap_or_default())
    } else {
        n.to_string()
    }
}

/// Python's `repr(float)`.
pub fn float_str(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf".into() } else { "-inf".into() };
    }
    // Shortest round-trip digits and decimal exponent, e.g. "1.5e16".
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let negative = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let digits = tie_to_even(f.abs(), digits, exp);
    let sign = if negative { "-" } else { "" };
    if !(-4..16).contains(&exp) {
        let (first, rest) = digits.split_at(1);
        let frac = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let exp_sign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{first}{frac}e{exp_sign}{:02}", exp.abs());
    }
    let point = exp + 1; // digits before the decimal point
    if point <= 0 {
        format!("{sign}0.{}{digits}", "0".repeat((-point) as usize))
    } else if point as usize >= digits.len() {
        format!(
            "{sign}{digits}{}.0",
            "0".repeat(point as usize - digits.len())
        )
    } else {
        let (int, frac) = digits.split_at(point as usize);
        format!("{sign}{int}.{frac}")
    }
}

/// The shortest round-trip `digits` (exponent `exp`) of `f >= 0`, with Python's choice when
/// `f` is exactly halfway between two shortest candidates: the one whose last digit is even
/// (Rust's formatter takes the upper one). Such ties need 16 or 17 digits.
fn tie_to_even(f: f64, digits: String, exp: i32) -> String {
    let n = digits.len();
    if n < 15 {
        return digits;
    }
    // A tie shows as `5` then zeros after the n-th digit. 20 more digits rule out nearly every
    // float cheaply; 800 digits (any double's exact expansion) confirm the rest.
    let Some(lower) = halfway_below(f, n, exp, n + 20).and_then(|_| halfway_below(f, n, exp, 800))
    else {
        return digits;
    };
    let lower_is_even = lower
        .bytes()
        .last()
        .is_some_and(|b| (b - b'0').is_multiple_of(2));
    if !lower_is_even || lower == digits {
        return digits;
    }
    let reads_back = format!("{lower}e{}", exp - (n as i32 - 1))
        .parse::<f64>()
        .ok()
        == Some(f);
    if reads_back {
        lower
    } else {
        digits
    }
}

/// The first `n` digits of `f`'s decimal expansion (exponent `exp`) if the digits after them,
/// of `precision` in all, are `5` then zeros: `f` may be halfway between two `n`-digit numbers.
fn halfway_below(f: f64, n: usize, exp: i32, precision: usize) -> Option<String> {
    let text = format!("{f:.precision$e}");
    let (mantissa, text_exp) = text.split_once('e')?;
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    if text_exp.parse::<i32>().ok() != Some(exp) || digits.len() <= n {
        return None;
    }
    let (lower, tail) = digits.split_at(n);
    let halfway = tail.starts_with('5') && tail[1..].bytes().all(|b| b == b'0');
    halfway.then(|| lower.to_owned())
}

/// Largest id the original's hash gives (sha256 modulo 32767, 0 excluded).
const HASHED_IDS: u32 = 32_766;

/// Rehashes tried before probing for a free id. The original rehashes forever, which never ends
/// once a backend has 32,766 servers (and nearly never just before): within this bound the ids
/// are the original's, past it a free id is probed for, so every backend gets distinct ids.
const MAX_REHASHES: usize = 64;

/// A stable HAProxy server id in 1..=32766 from a server name, unique within `taken`
/// (sha256 modulo 32767; on 0 or a collision retry with `"<name> <hexdigest>"`). After
/// [`MAX_REHASHES`] collisions: the next free id probing up from the last hash, wrapping
/// within 1..=32766, and above 32766 only when those are all taken.
pub fn server_id(name: &str, taken: &mut std::collections::HashSet<u32>) -> u32 {
    let mut name = name.to_owned();
    let mut id = 0;
    for _ in 0..=MAX_REHASHES {
        let digest = Sha256::digest(name.as_bytes());
        id = digest
            .iter()
            .fold(0u32, |acc, b| (acc * 256 + u32::from(*b)) % 32767);
        if id > 0 && taken.insert(id) {
            return id;
        }
        name = format!("{name} {}", hex::encode(digest));
    }
    let small = (0..HASHED_IDS)
        .map(|k| (id.max(1) - 1 + k) % HASHED_IDS + 1)
        .find(|id| !taken.contains(id));
    // Above 32766 ids are handed out in order, so the count of those taken is the first guess.
    let above = HASHED_IDS + 1 + (taken.len() as u32).saturating_sub(HASHED_IDS);
    let free = small.unwrap_or_else(|| {
        (above..u32::MAX)
            .chain(HASHED_IDS + 1..above)
            .find(|id| !taken.contains(id))
            .unwrap_or(u32::MAX)
    });
    taken.insert(free);
    free
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ints_parse_like_python() {
        assert_eq!(parse_int(" 42 "), Some(42));
        assert_eq!(parse_int("-1"), Some(-1));
        assert_eq!(parse_int("+7"), Some(7));
        assert_eq!(parse_int("1_000"), Some(1000));
        for bad in ["", "1.5", "abc", "1__0", "_1", "0x10", "- 1"] {
            assert_eq!(parse_int(bad), None, "{bad}");
        }
    }

    /// Found by the `int_parses_like_python` property: Python reads both ends of `i64`. Checked
    /// against `python3` by `int_agrees_with_python`: `int` strips Unicode spaces such as
    /// U+0085 and U+3000, but not `\x1c`-`\x1f`.
    #[test]
    fn ints_at_the_edges_parse_like_python() {
        assert_eq!(parse_int("-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_int("9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_int("9223372036854775808"), None);
        assert_eq!(parse_int("\x1c42\x1f"), None);
        assert_eq!(parse_int("\u{85}7\u{3000}"), Some(7));
    }

    #[test]
    fn booleans_follow_the_original_word_list() {
        for t in ["true", "TRUE", "t", "Yes", "y"] {
            assert!(parse_bool(t));
        }
        for f in ["1", "on", "false", ""] {
            assert!(!parse_bool(f));
        }
    }

    #[test]
    fn floats_print_like_python_repr() {
        assert_eq!(float_str(10.0), "10.0");
        assert_eq!(float_str(0.5), "0.5");
        assert_eq!(float_str(1e16), "1e+16");
        assert_eq!(float_str(1.5e-5), "1.5e-05");
        assert_eq!(float_str(0.0001), "0.0001");
        assert_eq!(float_str(123456.789), "123456.789");
        assert_eq!(float_str(-2.0), "-2.0");
    }

    /// Found by `large_float_agrees_with_python`: this float is exactly halfway between two
    /// 17-digit decimals that both read back as it; Python's repr takes the even one.
    #[test]
    fn floats_halfway_between_two_shortest_forms_take_the_even_one() {
        let f = f64::from_bits(0xc310_3e8a_064d_26a1);
        assert_eq!(float_str(f), "-1143090539874728.2");
        assert_eq!(float_str(-f), "1143090539874728.2");
    }

    #[test]
    fn server_ids_rehash_on_zero_and_collision() {
        // Known from the original: these two names collide on 3580, and this one hashes to 0.
        let mut taken = Default::default();
        assert_eq!(server_id("10_0_3_3_31018", &mut taken), 3580);
        let second = server_id("10_0_3_4_31005", &mut taken);
        assert_ne!(second, 3580);
        let zero = server_id("10_0_7_4_13740", &mut Default::default());
        assert_ne!(zero, 0);
    }

    /// Found by the fuzz run: an app with 32,766 or more tasks on one port hung the pass, as
    /// every id in 1..=32766 was taken and the rehashing never ended.
    #[test]
    fn server_ids_end_when_every_small_id_is_taken() {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // Two small ids left: the next two servers get them, later ones ids above 32766.
            let mut taken: std::collections::HashSet<u32> =
                (1..=32_766).filter(|id| ![5, 700].contains(id)).collect();
            let ids: Vec<u32> = (0..100)
                .map(|i| server_id(&format!("10_0_0_{i}_31000"), &mut taken))
                .collect();
            let _ = tx.send((ids, taken.len()));
        });
        let (ids, taken) = rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("100 server ids within 30 s");
        assert_eq!(taken, 32_766 + 100 - 2);
        assert_eq!(ids[..2].iter().copied().min(), Some(5));
        assert_eq!(ids[..2].iter().copied().max(), Some(700));
        assert_eq!(ids[2..], (32_767..32_865).collect::<Vec<u32>>());
    }

    #[test]
    fn names_are_cleaned() {
        assert_eq!(clean_name("/my.app_x-1"), "_my_app_x-1");
    }
}
