//! Logging set-up of the binary: the `--log-level` filter, where lines go and how they look.
//!
//! Lines go to stderr, human-readable. Colour only for a person at a terminal, and never
//! when `NO_COLOR` is set (no-color.org): a file or a pipe gets plain text. HAProxy's own
//! messages (tracing target `haproxy`) pass at the same level as ours. `MARATHON_LB_LOG`
//! (an `EnvFilter` directive) overrides the level.

/// Installs the global subscriber for `level` (the original's names: DEBUG, INFO, WARNING,
/// ERROR, CRITICAL; already validated by the command line).
pub fn init(level: &str) {
    let level = match level.to_ascii_uppercase().as_str() {
        "DEBUG" => "debug",
        "WARNING" | "WARN" => "warn",
        "ERROR" | "CRITICAL" | "FATAL" => "error",
        _ => "info",
    };
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("MARATHON_LB_LOG").unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new(format!("marathon_lb={level},haproxy={level}"))
        });
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .init();
}
