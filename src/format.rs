//! The output format of command results on stdout, shared by the CLI and the commands
//! (`audit`, `firstboot`) without those importing the CLI.

/// Output format of results on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum Format {
    /// Human-readable text.
    #[default]
    Text,
    /// One JSON document (versioned schema).
    Json,
}
