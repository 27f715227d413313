//! The `marathon-lb` binary: parse flags, then run one pass, or keep the config current.

#![deny(unsafe_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use futures::StreamExt;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, watch};

use marathon_lb::admin::{self, AdminState};
use marathon_lb::config::{Cli, Config, Input, LiveOptions, ManagedOptions, MarathonOptions};
use marathon_lb::haproxy::process::rundir;
use marathon_lb::haproxy::{CommandReload, Managed, SupervisorConfig, Target};
use marathon_lb::marathon::client::{Client, ClientConfig};
use marathon_lb::marathon::watch::{self as events, WatchConfig, WatchEvent};
use marathon_lb::metrics::Metrics;
use marathon_lb::pass::{self, Memory, Source};
use marathon_lb::reconcile::{self, Reconciler, Status, Timing, Trigger};
use marathon_lb::templates::Templates;

fn main() -> ExitCode {
    allocator::tune();
    marathon_lb::status::started();
    if std::env::args_os().nth(1).is_some_and(|a| a == "zdd") {
        return marathon_lb::zdd::main(std::env::args_os().skip(1));
    }
    // `sse`/`poll` first: the original image's `run` conventions (src/container.rs).
    let args = match marathon_lb::container::prepare(std::env::args_os().collect()) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("marathon-lb: error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let cli = Cli::parse_from(args);
    if cli.longhelp {
        print!("{}", marathon_lb::longhelp::text());
        return ExitCode::SUCCESS;
    }
    cli.log.init();
    let config = match cli.validate(|k| std::env::var(k).ok()) {
        Ok(config) => config,
        Err(usage) => clap::Error::raw(
            clap::error::ErrorKind::ArgumentConflict,
            format!("{usage}\n"),
        )
        .exit(),
    };
    marathon_lb::haproxy::exec::configure(config.exec.clone());
    for name in &config.exec.extra_env {
        if marathon_lb::haproxy::exec::looks_secret(name) {
            tracing::warn!(name = %name, "--haproxy-env passes a name that looks like a credential to HAProxy");
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("marathon-lb: error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("marathon-lb: error: {}", describe(&e));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes on one line. An error either prints its cause or returns it as
/// its `source`, never both, so each cause appears once.
fn describe(error: &anyhow::Error) -> String {
    let causes: Vec<String> = error.chain().map(ToString::to_string).collect();
    causes.join(": ")
}

async fn run(config: Config) -> anyhow::Result<()> {
    let templates = Templates::load(Some(Path::new("templates")), |k| std::env::var(k).ok())
        .context("loading templates")?;
    let source = match (&config.source.input, &config.live) {
        (Input::File(path), None) => Source::MappedFile(path.clone()),
        (Input::File(path), Some(_)) => Source::File(path.clone()),
        (Input::Marathon(marathon), _) => Source::Marathon(Arc::new(marathon_client(
            marathon,
            config.source.max_body_bytes,
        )?)),
    };
    if let Some(live_options) = config.live.clone() {
        allocator::purge_lazily();
        marathon_lb::haproxy::record::keep_records();
        live(Arc::new(config), live_options, Arc::new(templates), source).await
    } else {
        allocator::purge_promptly();
        if let Err(error) = marathon_lb::haproxy::exec::disable_huge_pages() {
            tracing::debug!(%error, "transparent huge pages stay on");
        }
        once(&config, &templates, &source).await
    }
}

/// The original's behaviour without `--sse`: one pass, then exit.
async fn once(config: &Config, templates: &Templates, source: &Source) -> anyhow::Result<()> {
    let inputs = pass::Inputs {
        config,
        templates,
        source,
        describe_services: false,
    };
    let mut target = CommandReload::new(config, Metrics::new());
    pass::run(inputs, &mut Memory::default(), &mut target).await?;
    Ok(())
}

fn marathon_client(marathon: &MarathonOptions, max_body_bytes: u64) -> anyhow::Result<Client> {
    let credentials = marathon.auth.credentials()?;
    let mut client_config = ClientConfig::new(marathon.urls.iter().cloned())
        .credentials(credentials)
        .max_body_bytes(max_body_bytes)
        .stall_timeout(marathon.stall_timeout);
    if let Some(ca) = &marathon.ca_cert {
        client_config = client_config.ca_cert(ca);
    }
    Ok(Client::new(client_config)?)
}

/// Live mode: run the reconcile loop fed by events, polls, file changes and signals.
async fn live(
    config: Arc<Config>,
    options: LiveOptions,
    templates: Arc<Templates>,
    source: Source,
) -> anyhow::Result<()> {
    let managed_options = config.apply.managed();
    // First, before any listener: a second instance on this run dir must change nothing.
    let _run_dir_lock = managed_options.map(lock_run_dir).transpose()?;
    if managed_options.is_some() {
        // The Lua scripts and directories the head names (src/provision.rs).
        let head = templates.global(marathon_lb::templates::Name::Head);
        marathon_lb::provision::provide_logged(head)?;
    }
    marathon_lb::haproxy::reaper::spawn_if_pid1();
    // Bound before anything starts (HAProxy included): a taken address is a start-up error.
    let admin_addr = match options.admin_addr.as_str() {
        "off" | "" => None,
        addr => Some(
            addr.parse::<SocketAddr>()
                .with_context(|| format!("--admin-addr {addr}"))?,
        ),
    };
    let admin_listener = match admin_addr {
        Some(addr) => Some(admin::bind(addr).await?),
        None => None,
    };
    let (triggers, trigger_rx) = mpsc::unbounded_channel();
    let (status_tx, status_rx) = watch::channel(Status::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let timing = Timing {
        debounce: Duration::from_millis(1),
        resync_every: options.resync_every,
        max_backoff: options.max_backoff,
    };
    let _ = triggers.send(Trigger::Resync);

    let mut feeders = tokio::task::JoinSet::new();
    spawn_triggers(
        &options,
        &source,
        &triggers,
        &status_tx,
        stop_tx,
        &mut feeders,
    );
    let admin_triggers = triggers.clone();
    drop(triggers);

    let metrics = Metrics::new();
    let managed_target = managed_options
        .map(|o| managed(o, &config, admin_addr, &metrics))
        .transpose()?;
    if let Some(listener) = admin_listener {
        let mut state = AdminState::new(status_rx.clone(), metrics.clone(), admin_triggers)
            .listing_invalid_apps()
            .with_marathon_unreachable_after(options.marathon_unreachable_after);
        if let Some(link) = managed_target.as_ref().and_then(haproxy_link) {
            state = state.with_haproxy(link, admin::live::DEFAULT_EVERY);
        }
        spawn_admin(listener, state, stop_rx.clone(), &mut feeders);
    }
    let parts = Parts {
        config: config.clone(),
        templates,
        source,
        status: status_tx,
        metrics: metrics.clone(),
        timing,
    };
    if let Some(target) = managed_target {
        parts.run(target, trigger_rx, stop_rx).await;
    } else {
        let target = CommandReload::new(&config, metrics);
        parts.run(target, trigger_rx, stop_rx).await;
    }
    feeders.shutdown().await;
    Ok(())
}

/// A reconcile loop waiting for its target.
struct Parts {
    config: Arc<Config>,
    templates: Arc<Templates>,
    source: Source,
    status: watch::Sender<Status>,
    metrics: Metrics,
    timing: Timing,
}

impl Parts {
    async fn run(
        self,
        target: impl Target,
        triggers: mpsc::UnboundedReceiver<Trigger>,
        stop: watch::Receiver<bool>,
    ) {
        let reconciler = Reconciler {
            config: self.config,
            templates: self.templates,
            source: self.source,
            target,
            status: self.status,
            metrics: self.metrics,
            timing: self.timing,
        };
        reconciler.run(triggers, stop).await;
    }
}

/// Creates and locks `--run-dir` (managed mode).
fn lock_run_dir(options: &ManagedOptions) -> anyhow::Result<rundir::RunDirLock> {
    std::fs::create_dir_all(&options.run_dir)
        .with_context(|| format!("creating --run-dir {}", options.run_dir.display()))?;
    Ok(rundir::lock(&options.run_dir)?)
}

/// The feeders of the trigger channel: Marathon's event stream or the watched apps file, the
/// poll timer, and the signals (which also own the stop switch).
fn spawn_triggers(
    options: &LiveOptions,
    source: &Source,
    triggers: &mpsc::UnboundedSender<Trigger>,
    status: &watch::Sender<Status>,
    stop: watch::Sender<bool>,
    feeders: &mut tokio::task::JoinSet<()>,
) {
    match source {
        Source::Marathon(client) if options.follow => {
            let backoff = options.max_backoff;
            let events = forward_events(client.clone(), backoff, triggers.clone(), status.clone());
            feeders.spawn(events);
        }
        Source::File(path) if options.follow => {
            let every = Duration::from_millis(250);
            feeders.spawn(reconcile::watch_file(path.clone(), every, triggers.clone()));
        }
        _ => {}
    }
    if let Some(every) = options.poll_every {
        feeders.spawn(reconcile::poll(every, triggers.clone()));
    }
    feeders.spawn(forward_signals(triggers.clone(), stop));
}

/// Serves the admin endpoints on the listener bound at start, until the stop switch turns.
fn spawn_admin(
    listener: tokio::net::TcpListener,
    state: AdminState,
    mut stop: watch::Receiver<bool>,
    feeders: &mut tokio::task::JoinSet<()>,
) {
    let shutdown = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    feeders.spawn(async move {
        if let Err(e) = admin::serve_on(listener, state, shutdown).await {
            tracing::error!(error = %e, "admin server failed");
        }
    });
}

/// The sockets the admin server reads HAProxy's live state from (managed mode with a
/// Runtime API socket).
fn haproxy_link(managed: &Managed) -> Option<admin::HaproxyLink> {
    let settings = managed.settings();
    Some(admin::HaproxyLink {
        runtime_socket: settings.runtime_socket.clone()?,
        master_socket: settings.master_socket.clone(),
    })
}

/// The supervised HAProxy of managed mode (no `--command`).
fn managed(
    options: &ManagedOptions,
    config: &Config,
    admin_addr: Option<SocketAddr>,
    metrics: &Metrics,
) -> anyhow::Result<Managed> {
    let run_dir = &options.run_dir;
    std::fs::create_dir_all(run_dir)
        .with_context(|| format!("creating --run-dir {}", run_dir.display()))?;
    // HAProxy reads a socket path without a leading '/' as host:port: use absolute paths.
    let run_dir = std::fs::canonicalize(run_dir)
        .with_context(|| format!("resolving --run-dir {}", run_dir.display()))?;
    let mut settings = SupervisorConfig::new(&config.output.paths.config, &run_dir);
    settings.haproxy_bin = options.haproxy_bin.clone();
    settings.drain_timeout = options.drain_timeout;
    settings.reload_interval = options.reload_interval;
    settings.max_reload_retries = options.max_reload_retries;
    // Our own exit should not wait for long tunnels: they get a short grace, then go
    // (6 s + 3 s after SIGTERM at most: a SIGTERM is honoured within 10 s).
    settings.stop_timeout = Duration::from_secs(6);
    if let Some(addr) = admin_addr {
        // The Lua service behind /_mlb_signal/* posts to the admin server; 0.0.0.0 is not dialable.
        let host = if addr.ip().is_unspecified() {
            "127.0.0.1".to_string()
        } else {
            addr.ip().to_string()
        };
        settings.env.push((
            "MARATHON_LB_ADMIN_ADDR".into(),
            format!("{host}:{}", addr.port()),
        ));
    }
    Ok(Managed::new(
        settings,
        config.output.clone(),
        metrics.clone(),
        Duration::from_secs(5),
    ))
}

/// Marathon's event stream -> triggers: a full resync on every (re)connect, each relevant
/// event for the incremental live model.
async fn forward_events(
    client: Arc<Client>,
    max_backoff: Duration,
    triggers: mpsc::UnboundedSender<Trigger>,
    status: watch::Sender<Status>,
) {
    let mut stream = events::watch(
        client,
        WatchConfig::default().backoff(Duration::from_secs(1), max_backoff),
    );
    while let Some(event) = stream.next().await {
        match event {
            WatchEvent::Connected { url } => {
                tracing::info!(%url, "event stream connected");
                status.send_modify(|s| {
                    s.marathon_connected = true;
                    s.marathon.stream(true, std::time::SystemTime::now());
                });
            }
            WatchEvent::Relevant(kind, data) => {
                tracing::debug!(%kind, "relevant event");
                status.send_modify(|s| {
                    s.marathon
                        .event(&kind.to_string(), std::time::SystemTime::now())
                });
                if triggers.send(Trigger::Event(data.into())).is_err() {
                    return;
                }
                continue;
            }
            WatchEvent::Disconnected { error, retry_in } => {
                tracing::warn!(error = %error.chain(), retry_in_ms = retry_in.as_millis() as u64, "event stream down");
                status.send_modify(|s| {
                    s.marathon_connected = false;
                    s.marathon.stream(false, std::time::SystemTime::now());
                });
                continue;
            }
        }
        // (Re)connected: events may have been missed, so fetch all apps.
        if triggers.send(Trigger::Resync).is_err() {
            return;
        }
    }
}

/// SIGHUP = resync, SIGUSR1 = re-apply the current config, SIGTERM/SIGINT = stop.
async fn forward_signals(triggers: mpsc::UnboundedSender<Trigger>, stop: watch::Sender<bool>) {
    let (Ok(mut hup), Ok(mut usr1), Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::hangup()),
        signal(SignalKind::user_defined1()),
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    loop {
        let trigger = tokio::select! {
            _ = hup.recv() => Trigger::Resync,
            _ = usr1.recv() => Trigger::ReloadExisting,
            _ = term.recv() => break,
            _ = int.recv() => break,
        };
        tracing::info!(?trigger, "signal received");
        let _ = triggers.send(trigger);
    }
    tracing::info!("stopping");
    let _ = stop.send(true);
}

/// mimalloc: the render path allocates millions of small strings; it is markedly faster there.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Makes mimalloc commit its arenas lazily, so peak RSS tracks the memory actually used rather
/// than whole arena chunks. Freed memory goes back to the OS after mimalloc's default purge
/// delay (1 s): a pass reuses what the previous step freed (the apps body, parsed apps) instead
/// of faulting in and zeroing fresh pages, which is most of a pass's system time. The option
/// number is that of v3 `mimalloc.h` (the default build); the test below checks it against the
/// documented default.
mod allocator {
    /// `mi_option_arena_eager_commit` (default 2).
    pub const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
    /// `mi_option_purge_delay` in ms (default 1000).
    pub const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

    pub fn tune() {
        // SAFETY: a plain setter of mimalloc's global options; a valid option id (see the test).
        #[allow(unsafe_code)]
        unsafe {
            libmimalloc_sys::mi_option_set(ARENA_EAGER_COMMIT, 0);
        }
    }

    /// One-shot runs hold parse, model and render garbage in turn, each on other threads (the
    /// parser's, the render workers'), which cannot reuse each other's freed pages: returning
    /// freed pages at once keeps the peak RSS of 10,000 apps near 60 MB instead of 72-80 MB, at
    /// the price of re-faulting some pages (measured: no slower at 10,000 apps).
    pub fn purge_promptly() {
        // SAFETY: a plain setter of mimalloc's global options; a valid option id (see the test).
        #[allow(unsafe_code)]
        unsafe {
            libmimalloc_sys::mi_option_set(PURGE_DELAY, 0);
        }
    }

    /// Live passes come seconds apart and each needs about what the last one freed (at
    /// 10,000 apps, tens of MB): keeping freed pages for 30 s instead of 1 s spares every
    /// pass faulting in and zeroing them again (a quarter of an event's latency, measured).
    pub fn purge_lazily() {
        // SAFETY: a plain setter of mimalloc's global options; a valid option id (see the test).
        #[allow(unsafe_code)]
        unsafe {
            libmimalloc_sys::mi_option_set(PURGE_DELAY, 30_000);
        }
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn option_ids_match_the_linked_mimalloc() {
            // SAFETY: read-only queries of global options.
            #[allow(unsafe_code)]
            let (eager, purge) = unsafe {
                (
                    libmimalloc_sys::mi_option_get(super::ARENA_EAGER_COMMIT),
                    libmimalloc_sys::mi_option_get(super::PURGE_DELAY),
                )
            };
            // The test binary does not call `tune`: these are the defaults.
            assert_eq!((eager, purge), (2, 1000), "mimalloc option ids changed");
        }
    }
}
