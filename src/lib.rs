//! marathon-lb
