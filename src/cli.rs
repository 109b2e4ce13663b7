//! The command line: clap definitions, shared by the binary, the man page and completions.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Host provisioning and hardening: plan, apply, roll back, audit.
#[derive(Debug, Parser)]
#[command(name = "bollwerk", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// Options for every command.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Options accepted by every command.
#[derive(Debug, Args, Clone)]
pub struct GlobalArgs {
    /// Target root directory: `/` for this host, or a chroot / image tree.
    #[arg(
        long,
        global = true,
        default_value = "/",
        value_name = "DIR",
        env = "BOLLWERK_ROOT"
    )]
    pub root: PathBuf,
    /// More log output on stderr (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Less output (warnings only, then errors only).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub quiet: u8,
    /// Colour in text output.
    #[arg(long, global = true, value_enum, default_value_t = Color::Auto)]
    pub color: Color,
    /// Treat the binaries inside `--root DIR` as hostile: read-only commands (`plan`, `audit`,
    /// `facts`, …) run them as `nobody` without capabilities. By default they run as root
    /// without capabilities; `apply` always runs them as root. Every command in a root other
    /// than `/` runs jailed (own PID, mount and network namespaces, pivot_root).
    #[arg(long, global = true, env = "BOLLWERK_UNTRUSTED_ROOT")]
    pub untrusted_root: bool,
}

/// When to use colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Color {
    /// Only on a terminal (and not with `NO_COLOR`).
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

pub use crate::format::Format;

/// A profile argument.
#[derive(Debug, Args, Clone)]
pub struct ProfileArg {
    /// Profile: a path to a TOML file or a built-in name (see `bollwerk profiles`). Default:
    /// the profile first boot stored (`/var/lib/bollwerk/profile.toml` in the root).
    #[arg(short, long, value_name = "PATH|NAME")]
    pub profile: Option<String>,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a profile; exit 0, or 2 with file:line:column, key and hint.
    Validate(ProfileArg),
    /// Show the changes `apply` would make, as diffs (exit 0: nothing to do, 1: changes pending).
    Plan {
        /// The profile.
        #[command(flatten)]
        profile: ProfileArg,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Apply a profile: validate, back up, write atomically, journal, reload, verify.
    Apply {
        /// The profile.
        #[command(flatten)]
        profile: ProfileArg,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: Format,
        /// Apply even when a safety check (lockout guard) refuses.
        #[arg(long)]
        force: bool,
        /// Live host only: restore the previous state unless `bollwerk confirm` runs within
        /// this time ("120s", "5m"), like a confirmed commit (network, issue 3).
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
        confirm: Option<std::time::Duration>,
    },
    /// Restore every file of a run byte-identically (default: the latest apply run that
    /// changed something and is not rolled back yet).
    Rollback {
        /// The run to roll back (see `bollwerk runs`).
        run_id: Option<String>,
        /// Restore even paths that changed since the run (those changes are lost).
        #[arg(long)]
        force: bool,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// List the run journal.
    Runs {
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// List the built-in profiles.
    Profiles,
    /// Built-in profiles and the profile reference.
    #[command(subcommand)]
    Profile(ProfileCommand),
    /// Print the JSON Schema of profiles (for editors).
    Schema,
    /// Print the facts bollwerk reads from the target.
    Facts {
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    // -- network (issue 3): confirm --
    /// Keep what `apply --confirm` applied (stops the revert timer); `--revert` restores the
    /// previous state now (what the timer does at the deadline).
    Confirm {
        /// Restore the previous state now instead of keeping the new one.
        #[arg(long)]
        revert: bool,
    },
    /// Load kernel parameters from sysctl.d-format files into the running kernel (the handler
    /// `apply` runs on live systems; only with `--root /`).
    #[command(hide = true)]
    SysctlLoad {
        /// Files, as paths inside the root.
        files: Vec<String>,
    },

    // -- audit (issue 5): audit, checks, install-units --
    /// Audit the target against the CIS Ubuntu 22.04 check catalog, read-only (exit 0:
    /// compliant, 1: findings, 2: bad input, 3: failure).
    Audit(crate::audit::cmd::AuditArgs),
    /// The check catalog: ids, CIS numbers, rationale, the profile key that fixes each.
    #[command(subcommand)]
    Checks(crate::audit::cmd::ChecksCommand),
    /// Install the periodic audit units (bollwerk-audit.service/.timer) into the root.
    InstallUnits(crate::audit::cmd::InstallUnitsArgs),

    // -- fleet (issue 15): report merge --
    /// Reports of many hosts: `report merge` combines JSON audit reports into a fleet report.
    #[command(subcommand)]
    Report(crate::audit::merge::ReportCommand),

    // -- firstboot (issue 6): firstboot --
    /// First boot: read instance data (NoCloud, ConfigDrive, Hetzner/OpenStack/EC2 metadata)
    /// and provision this instance once (profile, host keys, network, marker).
    Firstboot(crate::firstboot::FirstbootArgs),
    /// Print shell completions.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff).
    Man,
}

/// `bollwerk profile …`.
#[derive(Debug, Subcommand)]
pub enum ProfileCommand {
    /// Print a built-in profile.
    Show {
        /// Its name.
        name: String,
    },
    /// Print the profile reference (Markdown, generated from the schema; docs/profile.md).
    Reference,
}

/// Sets up `tracing` on stderr from `-v`/`-q` and `RUST_LOG`.
pub fn init_logging(g: &GlobalArgs) {
    let level = match (g.verbose as i8) - (g.quiet as i8) {
        i8::MIN..=-2 => "error",
        -1 => "warn",
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    // `RUST_LOG` in the `target=level,…` form (tracing's `Targets` filter); else -v/-q.
    let filter: tracing_subscriber::filter::Targets = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            format!("bollwerk={level}")
                .parse()
                .unwrap_or_else(|_| tracing_subscriber::filter::Targets::new())
        });
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none(),
        )
        .with_target(false)
        .without_time();
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .try_init();
}
