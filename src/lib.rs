//! marathon-lb

pub mod marathon;
