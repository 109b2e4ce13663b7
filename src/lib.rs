//! bollwerk: host provisioning and hardening against a target root.
//!
//! The same code hardens a live host (`--root /`), a chroot or an image: every path goes
//! through [`root::Root`], every external command through [`exec::Runner`]. A run is
//! profile → facts → [`modules`] plan → [`engine::Plan`] → [`engine::apply`] (validate,
//! back up, write atomically, journal) → verify; [`engine::journal`] rolls runs back.

pub mod app;
pub mod audit;
pub mod cli;
pub mod engine;
pub mod error;
pub mod etcdb;
pub mod exec;
pub mod facts;
pub mod firstboot;
pub mod format;
pub mod modules;
pub mod profile;
pub mod root;
pub mod sshd_config;
pub mod sshkeys;
pub mod state;

pub use error::{Error, ExitStatus, Result};
