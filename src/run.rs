//! The stages of a pass before HAProxy: apps body -> services -> config (model and render,
//! [`build_body`]), then `haproxy -c` with isolation of rejected apps ([`check`]). The pass
//! itself, in order, is [`crate::pass::run`].

use std::sync::Arc;

use crate::config::Config;
use crate::haproxy::{self, isolate, target, ApplyError, ValidateError, Validated};
use crate::marathon::types;
use crate::model::invalid::{LeftOut, PortClaims};
use crate::model::{self, network::Resolver, HealthMemory};
pub use crate::pass::source::{read_apps_file, FetchError};
use crate::render::{self, Rendered};
use crate::templates::Templates;

/// Why a pass failed. The last good config on disk is untouched by every one of these.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The apps body could not be fetched.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// The apps body is not valid JSON of the expected shape.
    #[error("{origin}: {error}")]
    Parse {
        /// Where the body came from (file path or Marathon URL).
        origin: String,
        /// The parse error.
        error: types::Error,
    },
    /// An app's labels or deployment group are invalid.
    #[error(transparent)]
    Model(#[from] model::Error),
    /// A template could not be rendered.
    #[error(transparent)]
    Render(#[from] render::Error),
    /// HAProxy rejected the config.
    #[error(transparent)]
    Validate(#[from] ValidateError),
    /// The config could not be written or HAProxy not reloaded.
    #[error(transparent)]
    Apply(#[from] ApplyError),
    /// The managed HAProxy could not start or reload (it keeps serving its last config).
    #[error("HAProxy reload failed: {0}")]
    Reload(haproxy::process::Error),
}

impl From<target::Error> for Error {
    fn from(error: target::Error) -> Self {
        match error {
            target::Error::Apply(e) => Error::Apply(e),
            target::Error::Validate(e) => Error::Validate(e),
            target::Error::Reload(e) => Error::Reload(e),
        }
    }
}

/// State kept between passes.
#[derive(Debug)]
pub struct Memory {
    /// Cached DNS answers for agent hosts ([`dns_ipv4`]).
    pub resolver: Resolver,
    /// Last known task health.
    pub health: HealthMemory,
    /// Which app bound each service port in the last rendered config (live mode): the holder
    /// keeps its port against a newcomer.
    pub port_claims: PortClaims,
    /// The services of the last rendered config (live mode): an app whose new definition is
    /// invalid keeps serving these.
    pub previous: Arc<Vec<Arc<model::Service>>>,
    /// The last render's parts (live mode): a pass renders again only what changed.
    pub incremental: render::Incremental,
    /// Each app's last model result (live mode, [`Apps::Each`]): a pass models again only
    /// the apps whose JSON changed.
    pub model: model::ModelCache,
    /// The last live pass's service order: reused while the services keep their keys.
    pub order: model::Order,
}

/// Parses, models and renders an apps body. Pass the body by value to free it early.
///
/// # Errors
/// [`Error::Parse`], [`Error::Model`] or [`Error::Render`].
pub fn render_body(
    body: impl AsRef<[u8]>,
    origin: &str,
    config: &Config,
    templates: &Templates,
    memory: &mut Memory,
) -> Result<Rendered, Error> {
    Ok(build_body(body, origin, config, templates, memory)?.rendered)
}

impl Default for Memory {
    /// Agent host names resolved over DNS ([`dns_ipv4`]).
    fn default() -> Self {
        Self {
            resolver: Resolver::new(dns_ipv4),
            health: HealthMemory::default(),
            port_claims: PortClaims::default(),
            previous: Arc::default(),
            incremental: render::Incremental::default(),
            model: model::ModelCache::default(),
            order: model::Order::default(),
        }
    }
}

/// The first IPv4 address of `host` from the system resolver (`gethostbyname`, as the
/// original): the lookup the binary gives the model.
pub fn dns_ipv4(host: &str) -> Option<String> {
    use std::net::ToSocketAddrs;
    (host, 0)
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.find(|a| a.is_ipv4()))
        .map(|a| a.ip().to_string())
}

mod live;
#[cfg(test)]
mod tests;

/// Why [`parse_and_model`] failed.
enum Parsed {
    Body(types::Error),
    Model(model::Error),
}

/// One app's JSON as Marathon lists it, and a revision that changes whenever the JSON does
/// (handed out by the live model's store; [`model::ModelCache`] keys on it).
#[derive(Debug)]
pub struct AppJson {
    /// The app id.
    pub id: String,
    /// The app, as an element of `/v2/apps`.
    pub json: Box<serde_json::value::RawValue>,
    /// Unique to this JSON of this app in the process.
    pub revision: u64,
}

/// The apps a pass models.
#[derive(Debug, Clone)]
pub enum Apps {
    /// A `/v2/apps` body: a full fetch or the apps file.
    Body(bytes::Bytes),
    /// The live model's apps in Marathon's order, each modeled again only when its revision
    /// is new.
    Each(Vec<Arc<AppJson>>),
}

impl Apps {
    /// Size of the apps' JSON in bytes.
    pub fn bytes(&self) -> usize {
        match self {
            Apps::Body(body) => body.len(),
            Apps::Each(apps) => apps.iter().map(|a| a.json.get().len()).sum(),
        }
    }
}

/// Models each app of the live model, reusing the last result of every app whose revision
/// did not change (the order, the port assigner and deployment groups are as for a body).
fn model_each(
    apps: &[Arc<AppJson>],
    config: &Config,
    memory: &mut Memory,
) -> Result<Modeled, Parsed> {
    let Memory {
        resolver,
        health,
        model: cache,
        order,
        ..
    } = memory;
    let mut builder = model::Builder::new(&config.model, resolver, health);
    cache.start_pass();
    for (index, app) in apps.iter().enumerate() {
        let decode = || types::decode_one(app.json.get(), index);
        if !config.model.leave_out_invalid {
            builder.push(decode().map_err(|e| Parsed::Body(types::Error::App(e)))?);
            continue;
        }
        let decode = || decode().map_err(|e| undecodable(&e));
        builder.push_revision(cache, &app.id, app.revision, decode);
    }
    let reuse = cache.end_pass();
    tracing::debug!(
        reused = reuse.reused,
        modeled = reuse.modeled,
        "modeled the live model's apps"
    );
    builder.finish_ordered(order).map_err(Parsed::Model)
}

/// Services modeled from a body, and the apps left out (live mode).
type Modeled = (Vec<Arc<model::Service>>, Vec<LeftOut>);

/// Parses the body on a second thread and models each app as it arrives: the two steps
/// overlap, and the parsed apps are dropped one by one instead of all being held at once.
/// A malformed body wins over an invalid app (it is found only once parsing ends). An element
/// that is not a valid app is left out in live mode, and fails the run otherwise.
fn parse_and_model(body: &[u8], config: &Config, memory: &mut Memory) -> Result<Modeled, Parsed> {
    /// Apps handed over at once: one wake-up of the modeling thread per batch, not per app.
    const BATCH: usize = 64;
    type Item<'a> = Result<types::App<'a>, types::AppError>;
    std::thread::scope(|scope| {
        let (batches, parsed_batches) = std::sync::mpsc::sync_channel::<Vec<Item>>(8);
        let parser = scope.spawn(move || {
            let mut batch = Vec::with_capacity(BATCH);
            // A failed send means the receiver panicked, which the join below reports.
            let parsed = types::for_each_app(body, |app| {
                batch.push(app);
                if batch.len() == BATCH {
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                    let _ = batches.send(full);
                }
            });
            let _ = batches.send(batch);
            parsed
        });
        let leave_out = config.model.leave_out_invalid;
        let mut builder =
            model::Builder::new(&config.model, &mut memory.resolver, &mut memory.health);
        let mut first_bad: Option<types::AppError> = None;
        let mut released = crate::pass::mapped::Released::default();
        for batch in parsed_batches {
            let start = batch_start(body, &batch);
            for item in batch {
                match item {
                    Ok(app) => builder.push(app),
                    Err(e) if leave_out => builder.leave_out(undecodable(&e)),
                    Err(e) => {
                        first_bad.get_or_insert(e);
                    }
                }
            }
            // The apps before this batch are modeled: a mapped body's pages can go.
            if let Some(start) = start {
                crate::pass::mapped::release(body, start, &mut released);
            }
        }
        let parsed = match parser.join() {
            Ok(parsed) => parsed,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        parsed.map_err(Parsed::Body)?;
        if let Some(e) = first_bad {
            return Err(Parsed::Body(types::Error::App(e)));
        }
        builder.finish_all().map_err(Parsed::Model)
    })
}

/// Where in `body` the first app of `batch` starts, as far as a borrowed app id tells.
fn batch_start(body: &[u8], batch: &[Result<types::App, types::AppError>]) -> Option<usize> {
    batch.iter().find_map(|item| match &item.as_ref().ok()?.id {
        std::borrow::Cow::Borrowed(id) => (id.as_ptr() as usize)
            .checked_sub(body.as_ptr() as usize)
            .filter(|at| *at <= body.len()),
        std::borrow::Cow::Owned(_) => None,
    })
}

/// An element of `apps` that is not a valid app, as a report.
fn undecodable(e: &types::AppError) -> LeftOut {
    let label = e
        .field
        .as_deref()
        .and_then(|f| f.strip_prefix("labels."))
        .map(str::to_owned);
    LeftOut {
        app_id: e.report_id(),
        labels: label.into_iter().collect(),
        reason: e.to_string(),
    }
}

/// A rendered config with the services it came from (isolation re-renders subsets of them).
#[derive(Debug)]
pub struct Built {
    /// The load-balanced services, sorted (shared with the pass memory in live mode).
    pub services: Arc<Vec<Arc<model::Service>>>,
    /// Their config and maps.
    pub rendered: Rendered,
    /// Apps (or service ports) left out for invalid input (live mode only; one-shot fails).
    pub left_out: Vec<LeftOut>,
}

/// Parses, models and renders an apps body, keeping the services.
///
/// # Errors
/// [`Error::Parse`], [`Error::Model`] or [`Error::Render`].
pub fn build_body(
    body: impl AsRef<[u8]>,
    origin: &str,
    config: &Config,
    templates: &Templates,
    memory: &mut Memory,
) -> Result<Built, Error> {
    let started = std::time::Instant::now();
    let apps_bytes = body.as_ref().len();
    let modeled = parse_and_model(body.as_ref(), config, memory);
    // The services own what they need: free the body (often tens of MB) before rendering.
    drop(body);
    let modeled = modeled.map_err(|e| e.into_error(origin))?;
    render_modeled(modeled, config, templates, memory, (started, apps_bytes))
}

/// Models and renders `apps` (a body, or the live model's apps), keeping the services.
///
/// # Errors
/// [`Error::Parse`], [`Error::Model`] or [`Error::Render`].
pub fn build(
    apps: Apps,
    origin: &str,
    config: &Config,
    templates: &Templates,
    memory: &mut Memory,
) -> Result<Built, Error> {
    let apps = match apps {
        Apps::Body(body) => return build_body(body, origin, config, templates, memory),
        Apps::Each(apps) => apps,
    };
    let started = std::time::Instant::now();
    let apps_bytes = apps.iter().map(|a| a.json.get().len()).sum();
    let modeled = model_each(&apps, config, memory).map_err(|e| e.into_error(origin))?;
    drop(apps);
    render_modeled(modeled, config, templates, memory, (started, apps_bytes))
}

impl Parsed {
    fn into_error(self, origin: &str) -> Error {
        match self {
            Parsed::Body(error) => Error::Parse {
                origin: origin.to_owned(),
                error,
            },
            Parsed::Model(e) => Error::Model(e),
        }
    }
}

/// Renders modeled services (live mode: keeping the last good services of left-out apps),
/// and remembers them for the next pass. `timing`: when the pass started, and its input size.
fn render_modeled(
    (mut services, mut left_out): Modeled,
    config: &Config,
    templates: &Templates,
    memory: &mut Memory,
    (started, apps_bytes): (std::time::Instant, usize),
) -> Result<Built, Error> {
    let modeled = started.elapsed();
    let rendered = if config.model.leave_out_invalid {
        live::keep_and_render(&mut services, &mut left_out, config, templates, memory)?
    } else {
        render::render(&services, templates, &config.render)?
    };
    let services = Arc::new(services);
    if config.model.leave_out_invalid {
        drop_in_background(std::mem::replace(&mut memory.previous, services.clone()));
        memory.incremental.commit(&services);
    }
    tracing::debug!(
        apps_bytes,
        services = services.len(),
        kept_bytes = rendered.incremental.as_ref().map_or(0, |d| d.kept),
        parse_and_model_ms = modeled.as_secs_f64() * 1e3,
        render_ms = (started.elapsed() - modeled).as_secs_f64() * 1e3,
        "rendered"
    );
    Ok(Built {
        services,
        rendered,
        left_out,
    })
}

/// A config that passed `haproxy -c` (or whose check was skipped), with what was left out.
#[derive(Debug)]
pub struct Checked {
    /// The config to write.
    pub validated: Validated,
    /// Apps HAProxy rejected, left out of `validated`.
    pub rejected: Vec<isolate::RejectedApp>,
    /// HAProxy warnings that point into an app's section.
    pub warnings: Vec<isolate::AppWarning>,
    /// `haproxy -c` runs it took.
    pub checks_run: usize,
}

/// Validates a built config with `haproxy -c`; when HAProxy rejects it (and
/// `--skip-config-cleanup` is not set), leaves out the offending apps and validates the rest.
///
/// # Errors
/// [`Error::Validate`] when no valid config can be made (a global problem), or the check
/// cannot run; [`Error::Render`] when re-rendering a subset fails.
pub fn check(built: Built, config: &Config, templates: &Templates) -> Result<Checked, Error> {
    let nothing_left_out = |validated| Checked {
        validated,
        rejected: Vec::new(),
        warnings: Vec::new(),
        checks_run: 0,
    };
    if config.validation.skip {
        drop_in_background(built.services);
        return Ok(nothing_left_out(Validated::unchecked(built.rendered)));
    }
    let output = &config.output;
    let validate =
        |r: &Rendered| haproxy::validate_verbose(r, &output.paths, output.map, "haproxy");
    if !config.validation.cleanup {
        let output = validate(&built.rendered)?;
        return Ok(Checked {
            checks_run: 1,
            ..nothing_left_out(output.validated)
        });
    }
    let render = |subset: &[Arc<model::Service>]| render::render(subset, templates, &config.render);
    let isolation = isolate::isolate_rendered(&built.services, built.rendered, render, validate)
        .map_err(|e| match e {
            isolate::Error::Render(e) => Error::Render(e),
            isolate::Error::Check(e) => Error::Validate(e),
            isolate::Error::Global { alerts } => {
                Error::Validate(ValidateError::Rejected { alerts })
            }
        })?;
    for app in &isolation.rejected {
        tracing::error!(app_id = %app.app_id, labels = ?app.labels, error = %app.error_line, "left out an app HAProxy rejects");
    }
    for warning in &isolation.warnings {
        tracing::warn!(app_id = %warning.app_id, "{}", warning.line);
    }
    Ok(Checked {
        validated: isolation.validated,
        rejected: isolation.rejected,
        warnings: isolation.warnings,
        checks_run: isolation.checks_run,
    })
}

/// Frees `value` (services, a described state) on another thread: for 10,000 apps that is
/// a few milliseconds the write and reload need not wait for.
pub(crate) fn drop_in_background<T: Send + 'static>(value: T) {
    // If no thread can be started, the closure (and the value) is dropped right here.
    let _ = std::thread::Builder::new()
        .name("drop-services".into())
        .spawn(move || drop(value));
}
