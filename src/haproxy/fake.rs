//! A recording [`Target`] for tests: plans like the managed target (the same [`Served`]
//! rules), applies nothing, records every call with its (tokio) time, and fails the calls a
//! test tells it to.

use std::sync::{Arc, Mutex};

use tokio::time::Instant;

use super::plan;
use super::process::{self, ReloadReason};
use super::runtime::RuntimeError;
use super::target::{Applied, Error, RuntimeFailed, RuntimeFailure, Served, Step, Target};
use super::Validated;
use crate::config::Config;
use crate::render::Rendered;

/// One call a pass made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// [`Target::runtime`] with this many operations.
    Runtime(usize),
    /// [`Target::reload`] for this reason (or a start, reported as [`ReloadReason::Initial`]).
    Reload(ReloadReason),
    /// [`Target::reload_existing`].
    ReloadExisting,
}

/// What the fake recorded, shared with the test while a loop owns the fake.
#[derive(Debug, Clone, Default)]
pub struct Record(Arc<Mutex<Vec<(Instant, Call, bool)>>>);

impl Record {
    /// The calls so far, with whether each succeeded.
    pub fn calls(&self) -> Vec<(Call, bool)> {
        let calls = self.0.lock().unwrap();
        calls.iter().map(|(_, c, ok)| (c.clone(), *ok)).collect()
    }

    /// When each call was made.
    pub fn times(&self) -> Vec<Instant> {
        self.0.lock().unwrap().iter().map(|(at, ..)| *at).collect()
    }

    fn push(&self, call: Call, ok: bool) {
        self.0.lock().unwrap().push((Instant::now(), call, ok));
    }
}

/// The fake target.
#[derive(Debug, Default)]
pub struct Fake {
    /// What the fake HAProxy serves.
    pub served: Served,
    /// Whether the fake HAProxy runs (a reload starts it).
    pub alive: bool,
    /// The next this many Runtime API updates fail.
    pub runtime_failures: usize,
    /// The next this many reloads fail.
    pub reload_failures: usize,
    /// The calls.
    pub record: Record,
}

impl Target for Fake {
    fn plan(&self, next: &Rendered) -> Step {
        self.served.plan(self.alive, next)
    }

    async fn runtime(&mut self, ops: &[plan::Op], next: Rendered) -> Result<(), RuntimeFailed> {
        let fail = self.runtime_failures > 0;
        self.record.push(Call::Runtime(ops.len()), !fail);
        if fail {
            self.runtime_failures -= 1;
            let error = RuntimeError::Mismatch("fake".into());
            return Err(RuntimeFailed {
                error: RuntimeFailure::Api(error),
                next,
            });
        }
        self.served.serves(next);
        Ok(())
    }

    async fn reload(
        &mut self,
        validated: Validated,
        reason: ReloadReason,
    ) -> Result<Applied, Error> {
        let reason = if self.alive {
            reason
        } else {
            ReloadReason::Initial
        };
        let fail = self.reload_failures > 0;
        self.record.push(Call::Reload(reason), !fail);
        if fail {
            self.reload_failures -= 1;
            self.served.forget();
            return Err(Error::Reload(process::Error::NotRunning));
        }
        self.alive = true;
        self.served.serves(validated.into_rendered());
        Ok(Applied::Reloaded { reason })
    }

    async fn reload_existing(&mut self, _config: &Config) -> Result<(), Error> {
        self.record.push(Call::ReloadExisting, true);
        Ok(())
    }
}
