//! Port conflicts across live passes: the holder of a port keeps it, and a pass whose claims
//! are those of the last pass reuses its resolution instead of sorting 10,000 claims again.

use std::sync::Arc;

use super::{conflict, conflicts, Clashes, LeftOut, PortHolders};
use crate::model::Service;

/// [`super::resolve_port_conflicts`] across live passes: the holders of the last pass, and
/// the last resolution.
#[derive(Debug, Default)]
pub struct PortClaims {
    holders: PortHolders,
    last: Option<Resolution>,
}

/// What the last pass resolved, reusable while every service makes the same claim.
#[derive(Debug)]
struct Resolution {
    /// Its services, in order: the claims they made.
    services: Vec<Arc<Service>>,
    dropped: Vec<bool>,
    clashes: Clashes,
    /// It ended with the holders it started from, so the same claims give the same answer
    /// again. (A new holder sorts first next time; when services are not in app order, that
    /// can change which of its rivals stay.)
    settled: bool,
}

impl PortClaims {
    /// [`super::resolve_port_conflicts`] with the holders of the last pass: the kept
    /// services, and the services left out.
    pub fn resolve(
        &mut self,
        services: Vec<Arc<Service>>,
        selected: impl Fn(&Service) -> bool,
        reserved: &[(i64, &str)],
    ) -> (Vec<Arc<Service>>, Vec<LeftOut>) {
        let reusable = self
            .last
            .as_ref()
            .filter(|last| last.settled && same_claims(&last.services, &services, &selected));
        let (dropped, clashes) = match reusable {
            Some(last) => (last.dropped.clone(), last.clashes.clone()),
            None => {
                let (dropped, clashes, holders) =
                    conflicts(&services, &self.holders, &selected, reserved);
                let settled = holders == self.holders;
                self.holders = holders;
                self.last = Some(Resolution {
                    services: Vec::new(),
                    dropped: dropped.clone(),
                    clashes: clashes.clone(),
                    settled,
                });
                (dropped, clashes)
            }
        };
        let left_out = clashes
            .iter()
            .map(|(i, by)| conflict(&services[*i], by))
            .collect();
        if let Some(last) = &mut self.last {
            last.services.clone_from(&services);
        }
        let kept = services
            .into_iter()
            .zip(dropped)
            .filter_map(|(s, d)| (!d).then_some(s))
            .collect();
        (kept, left_out)
    }
}

/// Whether each service claims what the one at its position claimed: the same port, app,
/// address, and whether the config binds it at all. Unchanged services are the same `Arc`.
fn same_claims(
    old: &[Arc<Service>],
    new: &[Arc<Service>],
    selected: impl Fn(&Service) -> bool,
) -> bool {
    old.len() == new.len()
        && old.iter().zip(new).all(|(a, b)| {
            Arc::ptr_eq(a, b)
                || (a.service_port == b.service_port
                    && a.app_id == b.app_id
                    && a.bind_addr == b.bind_addr
                    && selected(a) == selected(b))
        })
}
