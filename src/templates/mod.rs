//! The ~50 HAProxy config templates: built-in defaults, then overrides.
//!
//! Data flow position: `render` asks this module for the text of a template, globally or for
//! one service port. Precedence, lowest to highest (as in marathon-lb 1.x): built-in default,
//! a file `./templates/HAPROXY_<NAME>`, a non-empty environment variable `HAPROXY_<NAME>` (with
//! literal `\n` turned into newlines), then for per-port templates the app label
//! `HAPROXY_{n}_<NAME>`, which the model collects.

mod defaults;
pub mod format;
mod head;

use std::path::Path;

pub use defaults::{Name, TEMPLATES};
pub use format::{format, format_into, FormatError, Template};

/// Static facts about one template.
#[derive(Debug)]
pub struct TemplateSpec {
    /// Name without the `HAPROXY_` prefix, e.g. `BACKEND_HEAD`.
    pub name: &'static str,
    /// Built-in text (empty for `HEAD`, which is assembled from its parts and the default options).
    pub default: &'static str,
    /// Whether an app label `HAPROXY_{n}_<NAME>` may override it for one service port.
    pub per_port: bool,
    /// Whether the text goes through `str.format` (`false`: pasted verbatim, braces kept).
    pub formatted: bool,
}

impl Name {
    /// The static facts of this template.
    pub fn spec(self) -> &'static TemplateSpec {
        &TEMPLATES[self as usize]
    }

    /// Looks a template up by its name without the `HAPROXY_` prefix.
    pub fn from_name(name: &str) -> Option<Name> {
        Name::ALL.iter().copied().find(|n| n.spec().name == name)
    }

    /// The full global name, e.g. `HAPROXY_BACKEND_HEAD`.
    pub fn full_name(self) -> String {
        format!("HAPROXY_{}", self.spec().name)
    }
}

/// Options of the default `HAPROXY_HEAD` when `HAPROXY_GLOBAL_DEFAULT_OPTIONS` is unset.
pub const DEFAULT_GLOBAL_OPTIONS: &str = "redispatch,http-server-close,dontlognull";

/// The global text of every template after file and environment overrides.
#[derive(Debug, Clone, PartialEq)]
pub struct Templates {
    /// Indexed by `Name as usize`.
    global: Vec<Template>,
}

/// Why the templates could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file in the templates directory exists but cannot be read.
    #[error("cannot read template file {path}: {error}")]
    ReadFile {
        /// The file.
        path: String,
        /// The I/O error.
        error: std::io::Error,
    },
}

impl Templates {
    /// The built-in defaults, ignoring files and the environment.
    pub fn builtin() -> Self {
        Self::load(None, |_| None).unwrap_or_else(|_| unreachable!("no files are read"))
    }

    /// Loads every template: default, then `dir/HAPROXY_<NAME>`, then the variable `env("HAPROXY_<NAME>")`.
    ///
    /// # Errors
    /// [`Error::ReadFile`] when an override file exists but cannot be read.
    pub fn load(dir: Option<&Path>, env: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let mut global = Vec::with_capacity(TEMPLATES.len());
        for name in Name::ALL {
            let full = name.full_name();
            let mut text = if name == Name::Head {
                default_head(env("HAPROXY_GLOBAL_DEFAULT_OPTIONS").as_deref())
            } else {
                name.spec().default.to_owned()
            };
            if let Some(dir) = dir {
                let path = dir.join(&full);
                match std::fs::read_to_string(&path) {
                    Ok(file_text) => text = file_text,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) if path.is_dir() => drop(e),
                    Err(error) => {
                        return Err(Error::ReadFile {
                            path: path.display().to_string(),
                            error,
                        })
                    }
                }
            }
            if let Some(value) = env(&full).filter(|v| !v.is_empty()) {
                text = value.replace("\\n", "\n");
            }
            global.push(Template::new(text));
        }
        Ok(Self { global })
    }

    /// The global text of a template.
    pub fn global(&self, name: Name) -> &str {
        self.global[name as usize].text()
    }

    /// The global template, parsed.
    pub fn get(&self, name: Name) -> &Template {
        &self.global[name as usize]
    }
}

/// The default `HAPROXY_HEAD` with `option` lines for a comma list of options
/// (trimmed, de-duplicated and sorted, as the original does).
pub fn default_head(options: Option<&str>) -> String {
    let options = options.unwrap_or(DEFAULT_GLOBAL_OPTIONS);
    let mut lines: Vec<String> = options
        .split(',')
        .map(|o| format!("  option            {}\n", o.trim()))
        .collect();
    lines.sort();
    lines.dedup();
    let mut head = String::from(head::HEAD_BEFORE_OPTIONS);
    lines.iter().for_each(|l| head.push_str(l));
    head.push_str(head::HEAD_AFTER_OPTIONS);
    head
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn there_are_53_templates_and_names_round_trip() {
        assert_eq!(TEMPLATES.len(), 53);
        for name in Name::ALL {
            assert_eq!(Name::from_name(name.spec().name), Some(name));
        }
    }

    #[test]
    fn default_head_lists_sorted_unique_options() {
        let head = default_head(Some(" redispatch ,dontlognull,redispatch"));
        assert!(head.contains(
            "  timeout tarpit          60s\n  option            dontlognull\n  option            redispatch\nlisten stats\n"
        ));
    }

    #[test]
    fn env_beats_file_beats_default_and_empty_env_is_unset() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("HAPROXY_BACKEND_HEAD"), "from file\n").unwrap();
        std::fs::write(dir.path().join("HAPROXY_FRONTEND_HEAD"), "file\n").unwrap();
        let t = Templates::load(Some(dir.path()), |k| match k {
            "HAPROXY_FRONTEND_HEAD" => Some("env\\nline".into()),
            "HAPROXY_BACKEND_HEAD" => Some(String::new()),
            _ => None,
        })
        .unwrap();
        assert_eq!(t.global(Name::BackendHead), "from file\n");
        assert_eq!(t.global(Name::FrontendHead), "env\nline");
        assert_eq!(
            t.global(Name::BackendStickyOptions),
            Name::BackendStickyOptions.spec().default
        );
    }
}
