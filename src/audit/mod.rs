//! The compliance audit: the check catalog ([`check`], [`catalog`]), the result model
//! ([`result`]). Read-only: nothing in this module writes to the target.

pub mod catalog;
pub mod check;
pub mod result;
