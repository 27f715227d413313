//! marathon-lb

pub mod fake_marathon;
pub mod marathon;
