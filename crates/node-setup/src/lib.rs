//! Setting up and checking an orun node: the hardened systemd unit the agent runs under, and
//! `orun doctor` (on the node).

pub mod doctor;
pub mod unit;
