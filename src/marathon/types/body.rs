//! The `/v2/apps` body, decoded one app at a time.
//!
//! Two kinds of problems are told apart. A body that is not a listing at all (not JSON, no
//! `apps` list, `apps` null or of another type: what a Marathon without a leader or a proxy's
//! error page answers) is an [`Error`] for the whole body: reading it as "zero apps" would
//! remove every frontend. A single element of `apps` that is not a valid app (a label of the
//! wrong JSON type, `labels` that are not an object, ...) is an [`AppError`] naming that app
//! and the field; the caller decides whether it fails the run (one-shot) or only leaves that
//! app out (live mode). Each element is first delimited as raw JSON (borrowed from the body,
//! no copy), then decoded on its own, so one bad element cannot derail the others.

use std::fmt;

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use super::{App, BodyStr, Str};

/// Why an apps body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The body is not JSON, or not a JSON object.
    #[error("malformed Marathon apps JSON: {0}")]
    Parse(serde_json::Error),
    /// The body is an object without a list under `apps` (e.g. `{"message": "Leader not found"}`).
    #[error("Marathon's answer has no apps list (\"apps\" is {found}){}", said(.message))]
    NoAppsList {
        /// What was found under `apps`: `missing`, `null`, `a string`, ...
        found: &'static str,
        /// The body's `message`, when it has one (Marathon's error answers do).
        message: Option<String>,
    },
    /// One app could not be decoded (only when the caller treats that as fatal).
    #[error(transparent)]
    App(#[from] AppError),
}

impl From<serde_json::Error> for Error {
    fn from(error: serde_json::Error) -> Self {
        Error::Parse(error)
    }
}

fn said(message: &Option<String>) -> String {
    message
        .as_ref()
        .map_or(String::new(), |m| format!("; it says {m:?}"))
}

/// One element of `apps` that is not a valid app.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.describe())]
pub struct AppError {
    /// Position in the `apps` list.
    pub index: usize,
    /// The element's `id`, when it has a string one.
    pub app_id: Option<String>,
    /// Path of the offending field inside the app, e.g. `labels.HAPROXY_0_PORT`.
    pub field: Option<String>,
    /// What is wrong with it.
    pub reason: String,
}

impl AppError {
    fn describe(&self) -> String {
        let who = match &self.app_id {
            Some(id) => format!("app {} (apps[{}])", id.escape_debug(), self.index),
            None => format!("apps[{}] (no string id)", self.index),
        };
        match &self.field {
            Some(field) => format!("{who}: field {}: {}", field.escape_debug(), self.reason),
            None => format!("{who}: {}", self.reason),
        }
    }

    /// The id to report the app under (`apps[N]` when it has none).
    pub fn report_id(&self) -> String {
        self.app_id
            .clone()
            .unwrap_or_else(|| format!("apps[{}]", self.index))
    }
}

/// The whole `/v2/apps` response.
#[derive(Debug, Clone, Default)]
pub struct AppsBody<'a> {
    /// Every app Marathon knows, in Marathon's order.
    pub apps: Vec<App<'a>>,
}

impl<'a> AppsBody<'a> {
    /// Parses a `/v2/apps` body, failing on the first invalid app.
    ///
    /// # Errors
    /// [`Error`] when the body is not a listing or an app is invalid.
    pub fn parse(text: &'a [u8]) -> Result<Self, Error> {
        let mut apps = Vec::new();
        let mut first_error = None;
        for_each_app(text, |app| match app {
            Ok(app) => apps.push(app),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        })?;
        match first_error {
            Some(e) => Err(Error::App(e)),
            None => Ok(Self { apps }),
        }
    }
}

/// Parses a `/v2/apps` body, handing each app (or why that element is not one) to `each` as
/// soon as it is parsed, in Marathon's order: the caller can model one app while the next one
/// parses, and the whole list never needs to be in memory at once.
///
/// The body is first read in one pass, each app decoded in place (the common case: no
/// invalid app, no extra cost). When that fails, it is read again element by element: each
/// element is delimited as raw JSON and decoded on its own, so a bad one becomes an
/// [`AppError`] and the others still decode; the apps already handed over are skipped.
///
/// # Errors
/// [`Error::Parse`] or [`Error::NoAppsList`] when the body is not a listing (apps before the
/// error may already have been handed over). Never [`Error::App`].
pub fn for_each_app<'a>(
    text: &'a [u8],
    mut each: impl FnMut(Result<App<'a>, AppError>),
) -> Result<(), Error> {
    let mut handed = 0;
    let found = match walk(text, &mut each, &mut handed, None) {
        Ok(found) => found,
        Err(_) => {
            let skip = handed;
            walk(text, &mut each, &mut handed, Some(skip))?
        }
    };
    match found {
        (Some(Shape::List), _) => Ok(()),
        (Some(Shape::Other(found)), message) => Err(Error::NoAppsList { found, message }),
        (None, message) => Err(Error::NoAppsList {
            found: "missing",
            message,
        }),
    }
}

/// One read of the body: fast (`tolerant: None`) or element by element, skipping the first
/// `tolerant` elements.
fn walk<'a, F: FnMut(Result<App<'a>, AppError>)>(
    text: &'a [u8],
    each: &mut F,
    handed: &mut usize,
    tolerant: Option<usize>,
) -> Result<Found, serde_json::Error> {
    let body = Body {
        each,
        handed,
        tolerant,
    };
    // Validating UTF-8 once up front lets serde_json skip validating every string (2x faster).
    match std::str::from_utf8(text) {
        Ok(text) => {
            let mut de = serde_json::Deserializer::from_str(text);
            let found = body.deserialize(&mut de)?;
            de.end()?;
            Ok(found)
        }
        Err(_) => {
            let mut de = serde_json::Deserializer::from_slice(text);
            let found = body.deserialize(&mut de)?;
            de.end()?;
            Ok(found)
        }
    }
}

/// What the body held under `apps`, and its `message`.
type Found = (Option<Shape>, Option<String>);

/// What the body held under `apps`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    List,
    Other(&'static str),
}

/// The top-level object: `apps` goes to the callback, `message` is kept for the error when
/// there is no list, anything else is skipped.
struct Body<'f, F> {
    each: &'f mut F,
    /// Apps handed over so far by the fast read.
    handed: &'f mut usize,
    /// `Some(skip)`: the element-by-element read.
    tolerant: Option<usize>,
}

impl<'de, F: FnMut(Result<App<'de>, AppError>)> DeserializeSeed<'de> for Body<'_, F> {
    type Value = Found;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Found, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, F: FnMut(Result<App<'de>, AppError>)> Visitor<'de> for Body<'_, F> {
    type Value = Found;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a Marathon apps listing object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Found, A::Error> {
        let (mut shape, mut message) = (None, None);
        while let Some(BodyStr(key)) = map.next_key()? {
            if key == "apps" {
                if shape.is_some() {
                    return Err(serde::de::Error::duplicate_field("apps"));
                }
                shape = Some(map.next_value_seed(AppList {
                    each: &mut *self.each,
                    handed: &mut *self.handed,
                    tolerant: self.tolerant,
                })?);
            } else if key == "message" {
                let value: serde_json::Value = map.next_value()?;
                message = Some(match value {
                    serde_json::Value::String(text) => text,
                    other => other.to_string(),
                });
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok((shape, message))
    }
}

/// The `apps` value: a list is handed over element by element; anything else only named.
struct AppList<'f, F> {
    each: &'f mut F,
    handed: &'f mut usize,
    tolerant: Option<usize>,
}

impl<'de, F: FnMut(Result<App<'de>, AppError>)> DeserializeSeed<'de> for AppList<'_, F> {
    type Value = Shape;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Shape, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, F: FnMut(Result<App<'de>, AppError>)> Visitor<'de> for AppList<'_, F> {
    type Value = Shape;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of apps")
    }

    fn visit_unit<E>(self) -> Result<Shape, E> {
        Ok(Shape::Other("null"))
    }

    fn visit_none<E>(self) -> Result<Shape, E> {
        Ok(Shape::Other("null"))
    }

    fn visit_bool<E>(self, _: bool) -> Result<Shape, E> {
        Ok(Shape::Other("a boolean"))
    }

    fn visit_i64<E>(self, _: i64) -> Result<Shape, E> {
        Ok(Shape::Other("a number"))
    }

    fn visit_u64<E>(self, _: u64) -> Result<Shape, E> {
        Ok(Shape::Other("a number"))
    }

    fn visit_f64<E>(self, _: f64) -> Result<Shape, E> {
        Ok(Shape::Other("a number"))
    }

    fn visit_str<E>(self, _: &str) -> Result<Shape, E> {
        Ok(Shape::Other("a string"))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Shape, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Shape::Other("an object"))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Shape, A::Error> {
        let Some(skip) = self.tolerant else {
            while let Some(app) = seq.next_element::<App<'de>>()? {
                (self.each)(Ok(app));
                *self.handed += 1;
            }
            return Ok(Shape::List);
        };
        let mut index = 0;
        while let Some(raw) = seq.next_element::<&'de RawValue>()? {
            if index >= skip {
                (self.each)(decode_app(raw, index));
            }
            index += 1;
        }
        Ok(Shape::List)
    }
}

/// Decodes one element of `apps`, borrowing its strings from the body.
fn decode_app(raw: &RawValue, index: usize) -> Result<App<'_>, AppError> {
    decode_one(raw.get(), index)
}

/// Decodes one app's JSON, element `index` of a listing, borrowing its strings from `text`.
///
/// # Errors
/// [`AppError`]: the element is not a valid app (the field and why).
pub fn decode_one(text: &str, index: usize) -> Result<App<'_>, AppError> {
    let mut de = serde_json::Deserializer::from_str(text);
    App::deserialize(&mut de).map_err(|_| explain(text, index))
}

/// Why an element is not an app: decoded again (only on this rare path) to find the field
/// that failed and the app's id.
fn explain(text: &str, index: usize) -> AppError {
    let mut de = serde_json::Deserializer::from_str(text);
    let (field, reason) = match serde_path_to_error::deserialize::<_, App>(&mut de) {
        Ok(_) => (None, "not a valid app".to_owned()),
        Err(e) => {
            let path = e.path().to_string();
            let reason = without_position(e.into_inner().to_string());
            ((path != ".").then_some(path), reason)
        }
    };
    #[derive(Deserialize)]
    struct IdOnly<'a> {
        #[serde(borrow)]
        id: Option<Str<'a>>,
    }
    let app_id = serde_json::from_str::<IdOnly>(text)
        .ok()
        .and_then(|i| i.id)
        .map(|id| id.into_owned());
    AppError {
        index,
        app_id,
        field,
        reason,
    }
}

/// Drops serde_json's " at line L column C": positions inside one element mean little to
/// an operator, the field path says where.
fn without_position(mut message: String) -> String {
    if let Some(at) = message.rfind(" at line ") {
        message.truncate(at);
    }
    message
}
