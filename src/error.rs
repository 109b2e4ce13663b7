//! Process exit statuses, in one place, and the crate's top-level error type.
//!
//! Every command maps its outcome to an [`ExitStatus`] exactly once (in `main.rs`); the numbers are
//! documented in the README and must not change without a major version.

use std::path::PathBuf;

/// The exit statuses of the `bollwerk` binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ExitStatus {
    /// 0: success; nothing pending (`plan`), compliant (`audit`).
    Ok,
    /// 1: changes pending (`plan`) or findings (`audit`).
    Pending,
    /// 2: bad input (profile, arguments) or refused as unsafe; nothing on the host changed.
    Refused,
    /// 3: runtime failure; whatever was applied is recorded in the run journal.
    Failure,
}

impl ExitStatus {
    /// The numeric process exit code.
    pub fn code(self) -> u8 {
        match self {
            ExitStatus::Ok => 0,
            ExitStatus::Pending => 1,
            ExitStatus::Refused => 2,
            ExitStatus::Failure => 3,
        }
    }
}

/// Errors of the library, grouped by how the process must exit.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The profile (or a command-line argument) is invalid. Exit 2.
    #[error(transparent)]
    Profile(crate::profile::ProfileError),
    /// Bad command-line usage that clap could not catch (e.g. an unknown run id). Exit 2.
    #[error("{0}")]
    Usage(String),
    /// The plan was refused because applying it could lock the operator out or is otherwise unsafe. Exit 2.
    #[error("refused: {reason}\n  hint: {hint}")]
    Unsafe {
        /// What would happen.
        reason: String,
        /// Which profile key to change (or `--force`).
        hint: String,
    },
    /// Reading or writing a file under the target root failed. Exit 3.
    #[error("{action} {}", path.display())]
    Io {
        /// What was being done ("reading", "writing", ...).
        action: &'static str,
        /// The full path on the host.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// An external command failed or could not run. Exit 3.
    #[error(transparent)]
    Exec(#[from] crate::exec::ExecError),
    /// A candidate configuration was rejected by its validator; nothing was activated. Exit 3.
    #[error("validation of {path} failed ({validator}): {output}")]
    Validation {
        /// The target path of the rejected candidate.
        path: String,
        /// The validator that rejected it (e.g. `sshd -t`).
        validator: String,
        /// What the validator printed.
        output: String,
    },
    /// Another bollwerk run holds the lock on this root. Exit 3.
    #[error("{} is locked: {holder}", path.display())]
    Locked {
        /// The lock file.
        path: PathBuf,
        /// What is known about the holder.
        holder: String,
    },
    /// Anything else that went wrong at run time. Exit 3.
    #[error("{0}")]
    Runtime(String),
}

impl Error {
    /// How the process should exit for this error.
    pub fn exit_status(&self) -> ExitStatus {
        match self {
            Error::Profile(_) | Error::Usage(_) | Error::Unsafe { .. } => ExitStatus::Refused,
            _ => ExitStatus::Failure,
        }
    }

    /// Shorthand for an [`Error::Io`].
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

impl From<crate::profile::ProfileError> for Error {
    fn from(e: crate::profile::ProfileError) -> Self {
        Error::Profile(e)
    }
}

/// Result type of the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;
