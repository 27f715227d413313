//! `marathon-lb zdd`: zero-downtime blue/green deployments through Marathon's API, draining
//! each old task on every load balancer before it is killed (zdd.py's job, fit for
//! production).
//!
//! - [`cli`]: the command line (zdd.py's flags, auth and log flags, our additions).
//! - [`plan`]: the new colour's definition and labels. Pure.
//! - [`api`]: the Marathon calls.
//! - [`stats`]: the load balancers' servers from HAProxy's stats CSV, by column name.
//! - [`swap`]: the step loop: wait for the new app, kill drained old tasks, grow the new
//!   app, delete the old one; gates and rollback.
//!
//! Exit codes are zdd.py's: 0 done, 1 not confirmed, 2 other error, 3 invalid arguments,
//! 4 missing field in the app JSON, 5 load balancer unreadable, 6 Marathon unreadable,
//! 7 create failed, 8 delete failed, 9 scale failed; and ours: 10 a gate or `--max-wait`
//! failed (rolled back unless `--no-rollback`), 11 the rollback failed too.

pub mod api;
pub mod cli;
pub mod dry_run;
pub mod gate;
pub mod plan;
pub mod stats;
pub mod swap;

use std::ffi::OsString;
use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser;
use serde_json::Value;

use crate::marathon::auth::Credentials;
use api::{ApiError, Marathon};
pub use cli::ZddArgs;
use stats::Balancers;

/// Why zdd stopped; each maps to zdd.py's exit status.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The operator answered no.
    #[error("not confirmed, stopping")]
    Declined,
    /// Anything else (zdd.py's unknown exceptions).
    #[error("{0}")]
    Other(String),
    /// Flags that do not go together.
    #[error("{0}")]
    InvalidArg(String),
    /// The app JSON lacks something.
    #[error("{message} (field {field})")]
    MissingField {
        /// What is wrong.
        message: String,
        /// The field.
        field: String,
    },
    /// A load balancer's stats could not be read.
    #[error("error while querying marathon-lb {0}")]
    LbEndpoint(#[from] stats::LbError),
    /// Marathon could not be read.
    #[error("error while querying Marathon {0}")]
    Marathon(ApiError),
    /// The new app could not be created.
    #[error("error while creating the app {0}")]
    AppCreate(ApiError),
    /// The old app could not be deleted.
    #[error("error while deleting the app {0}")]
    AppDelete(ApiError),
    /// An app could not be scaled (or its tasks killed).
    #[error("error while scaling the app {0}")]
    AppScale(ApiError),
    /// A gate or `--max-wait` failed; `rolled_back` says whether the previous colour serves
    /// everything again.
    #[error("{reason}{}", if *rolled_back { "; rolled back to the previous colour" } else { "" })]
    Gate {
        /// What failed.
        reason: String,
        /// Whether the rollback completed.
        rolled_back: bool,
    },
    /// The rollback after a failed gate failed too.
    #[error("{reason}; the rollback failed: {rollback}")]
    RollbackFailed {
        /// What failed first.
        reason: String,
        /// Why the rollback failed.
        rollback: String,
    },
}

impl Error {
    /// zdd.py's exit status for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Declined => 1,
            Error::Other(_) => 2,
            Error::InvalidArg(_) => 3,
            Error::MissingField { .. } => 4,
            Error::LbEndpoint(_) => 5,
            Error::Marathon(_) => 6,
            Error::AppCreate(_) => 7,
            Error::AppDelete(_) => 8,
            Error::AppScale(_) => 9,
            Error::Gate { .. } => 10,
            Error::RollbackFailed { .. } => 11,
        }
    }
}

/// Runs `marathon-lb zdd` with `args` (the first is the program name, e.g. `zdd`).
pub fn main(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let args = ZddArgs::parse_from(args);
    args.log.init();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("marathon-lb zdd: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("marathon-lb zdd: error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// The whole command: checks, then a new deploy or the completion of one in progress.
///
/// # Errors
/// See [`Error`].
pub async fn run(args: ZddArgs) -> Result<(), Error> {
    // Missing required flags exit 2, as zdd.py's argparse does.
    let required = |flag: &str| Error::Other(format!("argument {flag} is required"));
    let url = args
        .marathon
        .as_ref()
        .ok_or_else(|| required("--marathon/-m"))?;
    if args.marathon_lb.is_empty() {
        return Err(required("--marathon-lb/-l"));
    }
    let json = args.json.as_ref().ok_or_else(|| required("--json/-j"))?;
    if args.complete_cur && args.complete_prev {
        return Err(Error::InvalidArg(
            "--complete-cur and --complete-prev exclude each other".into(),
        ));
    }
    if args.steps.iter().any(|s| *s == 0 || *s > 100) || !args.steps.is_sorted() {
        return Err(Error::InvalidArg(
            "--steps takes increasing percentages from 1 to 100".into(),
        ));
    }
    let text = std::fs::read_to_string(json)
        .map_err(|e| Error::Other(format!("cannot read {}: {e}", json.display())))?;
    let app: Value = serde_json::from_str(&text)
        .map_err(|e| Error::Other(format!("{} is not JSON: {e}", json.display())))?;
    plan::validate(&app)?;
    let marathon = Marathon::new(
        url,
        credentials(&args)?,
        args.auth.marathon_ca_cert.as_deref(),
    )
    .map_err(Error::Marathon)?;
    let balancers = Balancers::resolve(&args.marathon_lb).await?;
    let group = plan::group(&app).unwrap_or_default().to_owned();
    let mut previous: Vec<Value> = marathon
        .apps()
        .await
        .map_err(Error::Marathon)?
        .into_iter()
        .filter(|a| plan::group(a) == Some(group.as_str()))
        .collect();
    plan::sort_deploys(&mut previous);
    let deploy = swap::Deploy::new(&marathon, &balancers, &args);
    if previous.len() > 1 {
        return deploy.resume(previous).await;
    }
    if args.complete_cur || args.complete_prev {
        return Err(Error::InvalidArg(
            "Cannot use --complete-cur, --complete-prev flags when config is not hybrid".into(),
        ));
    }
    let now = plan::now_iso();
    // With --steps the new colour starts at the first hop.
    let initial = match (args.steps.first(), previous.last()) {
        (Some(share), Some(last)) if args.new_instances == 0 => {
            swap::hops(&[*share], plan::instances(last))[0]
        }
        _ => args.initial_instances,
    };
    let prepared = plan::prepare(app, &previous, initial, args.new_instances, &now)?;
    let mut out = std::io::stdout().lock();
    let shown = serde_json::to_string_pretty(&sorted(&prepared.app)).unwrap_or_default();
    let _ = writeln!(out, "{shown}");
    if args.dry_run {
        let _ = write!(
            out,
            "{}",
            dry_run::plan_text(&args, &prepared, previous.last())
        );
        return Ok(());
    }
    drop(out);
    if !args.force && !confirm("Continue with deployment?") {
        return Err(Error::Declined);
    }
    marathon
        .create(&prepared.app)
        .await
        .map_err(Error::AppCreate)?;
    match previous.pop() {
        None => Ok(()), // the first deploy: nothing to swap
        Some(old) => {
            let new_id = plan::id(&prepared.app).to_owned();
            deploy
                .swap_or_roll_back(&new_id, plan::id(&old), false)
                .await
        }
    }
}

/// `value` with object keys sorted (zdd.py prints `sort_keys=True`).
fn sorted(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), sorted(&map[k])))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

/// The Marathon credentials from the auth flags (as the main command reads them).
fn credentials(args: &ZddArgs) -> Result<Credentials, Error> {
    args.auth
        .auth()
        .credentials()
        .map_err(|e| Error::InvalidArg(e.to_string()))
}

/// Asks `question` on the terminal; Enter means yes.
pub fn confirm(question: &str) -> bool {
    let stdin = std::io::stdin();
    loop {
        print!("{question} [Y/n] ");
        let _ = std::io::stdout().flush();
        let mut answer = String::new();
        match stdin.read_line(&mut answer) {
            Ok(0) | Err(_) => return false,
            Ok(_) => {}
        }
        match answer.trim().to_ascii_lowercase().as_str() {
            "" | "y" | "ye" | "yes" => return true,
            "n" | "no" => return false,
            _ => println!("Please respond with 'yes' or 'no' (or 'y' or 'n')."),
        }
    }
}
