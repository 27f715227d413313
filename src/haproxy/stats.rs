//! HAProxy's live view of its proxies and servers: `show stat` over the Runtime API, parsed
//! by column name (the header line names them; columns move between versions).
//!
//! Data flow position: beside the loop. The admin server polls it for the state API, the
//! dashboard and the health rules, so what they show is what HAProxy's own stats page shows.

use std::collections::HashMap;

/// What a `show stat` row describes (its `type` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A frontend (`svname` FRONTEND).
    Frontend,
    /// A backend's aggregate (`svname` BACKEND).
    Backend,
    /// A server of a backend.
    Server,
    /// A listener (socket) of a frontend.
    Listener,
}

/// One row of `show stat`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StatRow {
    /// `pxname`: the proxy (frontend or backend) name.
    pub proxy: String,
    /// `svname`: the server name, or FRONTEND/BACKEND.
    pub name: String,
    /// `type`.
    pub kind: Kind,
    /// `status`: UP, DOWN, MAINT, DRAIN, NOLB, `UP 1/3` (going down), OPEN, `no check`...
    pub status: String,
    /// `check_status`: L4OK, L4CON, L7STS... (`None` without checks).
    pub check_status: Option<String>,
    /// `check_desc`: the check's result in words.
    pub check_desc: Option<String>,
    /// `scur`: current sessions.
    pub sessions: u64,
    /// `stot`: total sessions.
    pub total_sessions: u64,
    /// `addr`: the server's `ip:port`.
    pub address: Option<String>,
    /// `lastchg`: seconds since the last status change.
    pub last_change_s: Option<u64>,
}

/// Why a `show stat` answer could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StatsError {
    /// No `# pxname,...` header line.
    #[error("`show stat` answer has no header line: {0:.200}")]
    NoHeader(String),
    /// A column the parser needs is missing.
    #[error("`show stat` has no `{0}` column")]
    MissingColumn(&'static str),
}

/// Parses a `show stat` answer (CSV with a `# ` header). A value of `-` or empty reads as
/// absent; rows of unknown type are skipped.
///
/// # Errors
/// [`StatsError`] when the header or a required column is missing.
pub fn parse_show_stat(text: &str) -> Result<Vec<StatRow>, StatsError> {
    let mut lines = text.lines().map(str::trim_end).filter(|l| !l.is_empty());
    let header = lines
        .next()
        .and_then(|l| l.strip_prefix("# "))
        .ok_or_else(|| StatsError::NoHeader(text.to_owned()))?;
    let columns: HashMap<&str, usize> = header
        .split(',')
        .enumerate()
        .map(|(i, name)| (name.trim(), i))
        .collect();
    let at = |name: &'static str| {
        columns
            .get(name)
            .copied()
            .ok_or(StatsError::MissingColumn(name))
    };
    let (px, sv, ty, st) = (at("pxname")?, at("svname")?, at("type")?, at("status")?);
    let optional = |name: &str| columns.get(name).copied();
    let (check, desc, scur, stot, addr, lastchg) = (
        optional("check_status"),
        optional("check_desc"),
        optional("scur"),
        optional("stot"),
        optional("addr"),
        optional("lastchg"),
    );
    let mut rows = Vec::new();
    for line in lines.filter(|l| !l.starts_with('#')) {
        let fields: Vec<&str> = line.split(',').collect();
        let get = |i: Option<usize>| -> Option<String> {
            let v = fields.get(i?)?.trim();
            (!v.is_empty() && v != "-").then(|| v.to_owned())
        };
        let number = |i: Option<usize>| get(i).and_then(|v| v.parse::<u64>().ok());
        let kind = match get(Some(ty)).as_deref() {
            Some("0") => Kind::Frontend,
            Some("1") => Kind::Backend,
            Some("2") => Kind::Server,
            Some("3") => Kind::Listener,
            _ => continue,
        };
        rows.push(StatRow {
            proxy: get(Some(px)).unwrap_or_default(),
            name: get(Some(sv)).unwrap_or_default(),
            kind,
            status: get(Some(st)).unwrap_or_default(),
            check_status: get(check),
            check_desc: get(desc),
            sessions: number(scur).unwrap_or(0),
            total_sessions: number(stot).unwrap_or(0),
            address: get(addr),
            last_change_s: number(lastchg),
        });
    }
    Ok(rows)
}

/// The state word of a server or backend status: `UP`, `DOWN`, `MAINT`, `DRAIN`, `NOLB`, or
/// `UP`/`DOWN` for the transitional `UP 1/3`, `DOWN 1/2`; `MAINT (via x/y)` is `MAINT`;
/// `no check` is `UP` (the server is used).
pub fn state_word(status: &str) -> &str {
    if status == "no check" {
        return "UP";
    }
    status.split_whitespace().next().unwrap_or(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Columns reordered and trimmed, as a future HAProxy may send them; a `-` value.
    const SAMPLE: &str =
        "# pxname,svname,scur,stot,status,type,check_status,check_desc,addr,lastchg,\n\
        web_10000,FRONTEND,0,4,OPEN,0,,,,,\n\
        web_10000,10_0_0_1_31000,2,9,UP,2,L4OK,Layer4 check passed,10.0.0.1:31000,12,\n\
        web_10000,10_0_0_2_31001,0,0,DOWN,2,L4CON,Connection refused,10.0.0.2:31001,3,\n\
        web_10000,10_0_0_3_31002,0,0,no check,2,-,-,10.0.0.3:31002,-,\n\
        web_10000,BACKEND,2,9,UP,1,,,,40,\n\n";

    #[test]
    fn rows_are_read_by_column_name() {
        let rows = parse_show_stat(SAMPLE).unwrap();
        assert_eq!(rows.len(), 5);
        let up = &rows[1];
        assert_eq!(
            (up.kind, up.name.as_str(), up.sessions),
            (Kind::Server, "10_0_0_1_31000", 2)
        );
        assert_eq!(up.check_status.as_deref(), Some("L4OK"));
        assert_eq!(up.address.as_deref(), Some("10.0.0.1:31000"));
        let down = &rows[2];
        assert_eq!(state_word(&down.status), "DOWN");
        assert_eq!(down.check_desc.as_deref(), Some("Connection refused"));
        let unchecked = &rows[3];
        assert_eq!(
            (unchecked.check_status.clone(), unchecked.last_change_s),
            (None, None)
        );
        assert_eq!(state_word(&unchecked.status), "UP");
        assert_eq!(rows[4].kind, Kind::Backend);
        assert_eq!(state_word("UP 1/3"), "UP");
        assert_eq!(state_word("MAINT (via a/b)"), "MAINT");
    }

    #[test]
    fn a_missing_header_or_column_is_an_error() {
        assert!(matches!(
            parse_show_stat("Unknown command\n"),
            Err(StatsError::NoHeader(_))
        ));
        assert_eq!(
            parse_show_stat("# pxname,svname,status\nx,y,UP\n"),
            Err(StatsError::MissingColumn("type"))
        );
    }
}
