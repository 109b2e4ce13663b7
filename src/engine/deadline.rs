//! The activation deadline of this process: `apply --confirm` arms it, and the apply engine
//! activates nothing more once it has passed (the caller then reverts). Kept in the engine so
//! the engine needs nothing from the modules that arm it.

use std::sync::Mutex;
use std::time::SystemTime;

use crate::error::{Error, Result};

static DEADLINE: Mutex<Option<SystemTime>> = Mutex::new(None);

/// Sets (`Some`) or clears (`None`) the deadline.
pub fn set(deadline: Option<SystemTime>) {
    if let Ok(mut d) = DEADLINE.lock() {
        *d = deadline;
    }
}

/// The armed deadline, if any.
pub fn get() -> Option<SystemTime> {
    DEADLINE.lock().ok().and_then(|d| *d)
}

/// True when this process armed a deadline that has passed.
pub fn passed() -> bool {
    get().is_some_and(|d| SystemTime::now() >= d)
}

/// Called before each activation step and handler.
///
/// # Errors
/// [`Error::Runtime`] once the armed deadline has passed: nothing more may be activated.
pub fn check() -> Result<()> {
    if passed() {
        return Err(Error::Runtime(
            "the --confirm window passed while applying: nothing more is activated".into(),
        ));
    }
    Ok(())
}
