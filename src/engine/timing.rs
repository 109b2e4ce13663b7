//! Where an `apply` spent its time: waiting for the package tools (apt-get, dpkg) versus
//! bollwerk's own work (planning, validating with the real tools, writing, verifying).

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::exec::CommandTime;

/// The time split of one run, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Timing {
    /// Wall time of the whole run.
    pub wall_ms: u64,
    /// Wall time of the package tools (`apt-get`, `dpkg`, …) the run started.
    pub package_tools_ms: u64,
    /// The rest: bollwerk's own time (`wall_ms - package_tools_ms`), including the validators
    /// and other tools it runs.
    pub own_ms: u64,
    /// How many external commands ran (validators, probes, package tools).
    pub commands: usize,
    /// Their summed wall time (validators may run side by side, so this can exceed their share
    /// of `wall_ms`).
    pub commands_ms: u64,
}

impl Timing {
    /// The split of a run that started at `started` and ran `commands`.
    pub fn new(started: Instant, commands: &[CommandTime]) -> Timing {
        let ms = |d: Duration| d.as_millis() as u64;
        let wall = ms(started.elapsed());
        let package: u64 = commands
            .iter()
            .filter(|c| c.is_package_tool())
            .map(|c| ms(c.took))
            .sum();
        Timing {
            wall_ms: wall,
            package_tools_ms: package.min(wall),
            own_ms: wall.saturating_sub(package),
            commands: commands.len(),
            commands_ms: commands.iter().map(|c| ms(c.took)).sum(),
        }
    }

    /// One line for `-v`: `apply took 1234 ms: 800 ms apt/dpkg, 434 ms bollwerk (…)`.
    pub fn summary(&self, what: &str) -> String {
        format!(
            "{what} took {} ms: {} ms apt/dpkg, {} ms bollwerk's own ({} external commands, {} ms in them)",
            self.wall_ms, self.package_tools_ms, self.own_ms, self.commands, self.commands_ms
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_tools_are_split_from_own_time() {
        let started = Instant::now() - Duration::from_millis(1000);
        let cmds = vec![
            CommandTime {
                program: "/usr/bin/apt-get".into(),
                took: Duration::from_millis(600),
            },
            CommandTime {
                program: "/usr/bin/dpkg".into(),
                took: Duration::from_millis(100),
            },
            CommandTime {
                program: "/usr/sbin/visudo".into(),
                took: Duration::from_millis(50),
            },
            CommandTime {
                program: "/usr/bin/dpkg-query".into(),
                took: Duration::from_millis(20),
            },
        ];
        let t = Timing::new(started, &cmds);
        assert!(t.wall_ms >= 1000);
        assert_eq!(t.package_tools_ms, 700);
        assert_eq!(t.own_ms, t.wall_ms - 700);
        assert_eq!(t.commands, 4);
        assert_eq!(t.commands_ms, 770);
        assert!(t.summary("apply").contains("700 ms apt/dpkg"));
    }
}
