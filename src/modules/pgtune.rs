//! PGTune's formulas (le0pard/pgtune, Linux): PostgreSQL settings from RAM, CPUs, workload,
//! storage and connections. Pure functions, so the reference cases are unit tests.
//!
//! Values are computed in kB with PGTune's integer steps and written like PGTune does: in GB
//! or MB when that loses nothing, else kB (`2GB`, `512MB`, `10280kB`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What the database mostly does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    /// Web application: many short queries.
    #[default]
    Web,
    /// Online transaction processing.
    Oltp,
    /// Data warehouse: few large queries.
    Dw,
    /// Mixed.
    Mixed,
    /// A developer's desktop.
    Desktop,
}

impl Workload {
    /// The profile's word for it.
    pub fn label(self) -> &'static str {
        match self {
            Workload::Web => "web",
            Workload::Oltp => "oltp",
            Workload::Dw => "dw",
            Workload::Mixed => "mixed",
            Workload::Desktop => "desktop",
        }
    }
}

/// Where the data lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum Storage {
    /// SSD.
    #[default]
    Ssd,
    /// Spinning disks.
    Hdd,
    /// NVMe SSD.
    Nvme,
    /// Network storage.
    San,
}

impl Storage {
    /// The profile's word for it.
    pub fn label(self) -> &'static str {
        match self {
            Storage::Ssd => "ssd",
            Storage::Hdd => "hdd",
            Storage::Nvme => "nvme",
            Storage::San => "san",
        }
    }
}

/// The inputs of one computation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TuneInput {
    /// PostgreSQL (major, minor); minor is 0 from 10 on.
    pub version: (u32, u32),
    /// Memory for the database in bytes.
    pub memory: u64,
    /// CPUs, if known.
    pub cpus: Option<u32>,
    /// `max_connections` (default per workload).
    pub connections: Option<u32>,
    /// Workload.
    pub workload: Workload,
    /// Storage.
    pub storage: Storage,
}

const KB_PER_MB: u64 = 1024;
const KB_PER_GB: u64 = 1024 * 1024;

/// PGTune's `formatValue`: the largest unit that divides the kB value exactly.
pub fn format_kb(kb: u64) -> String {
    if kb.is_multiple_of(KB_PER_GB) {
        format!("{}GB", kb / KB_PER_GB)
    } else if kb.is_multiple_of(KB_PER_MB) {
        format!("{}MB", kb / KB_PER_MB)
    } else {
        format!("{kb}kB")
    }
}

/// The default `max_connections` of a workload.
pub fn default_connections(w: Workload) -> u32 {
    match w {
        Workload::Web => 200,
        Workload::Oltp => 300,
        Workload::Dw => 40,
        Workload::Desktop => 20,
        Workload::Mixed => 100,
    }
}

/// Computes the settings, in PGTune's order.
pub fn pgtune(i: &TuneInput) -> Vec<(&'static str, String)> {
    let v = |major: u32| i.version.0 >= major;
    let mem = i.memory / 1024;
    let w = i.workload;
    let conns = i.connections.unwrap_or_else(|| default_connections(w)) as u64;
    let shared_buffers = if w == Workload::Desktop {
        mem / 16
    } else {
        mem / 4
    };
    let effective_cache = if w == Workload::Desktop {
        mem / 4
    } else {
        mem * 3 / 4
    };
    let mut maintenance = if w == Workload::Dw { mem / 8 } else { mem / 16 };
    maintenance = maintenance.min(8 * KB_PER_GB);
    let mut wal_buffers = 3 * shared_buffers / 100;
    wal_buffers = wal_buffers.min(16 * KB_PER_MB);
    if wal_buffers > 14 * KB_PER_MB && wal_buffers < 16 * KB_PER_MB {
        wal_buffers = 16 * KB_PER_MB;
    }
    wal_buffers = wal_buffers.max(32);
    let parallel: Vec<(&'static str, u64)> = match i.cpus {
        Some(c) if c >= 4 => {
            let c = c as u64;
            let mut per_gather = c.div_ceil(2);
            if w != Workload::Dw {
                per_gather = per_gather.min(4);
            }
            let mut out = vec![
                ("max_worker_processes", c),
                ("max_parallel_workers_per_gather", per_gather),
            ];
            if v(10) {
                out.push(("max_parallel_workers", c));
            }
            if v(11) {
                out.push(("max_parallel_maintenance_workers", c.div_ceil(2).min(4)));
            }
            out
        }
        _ => Vec::new(),
    };
    let workers_for_work_mem = parallel
        .iter()
        .find(|(k, _)| *k == "max_worker_processes")
        .map_or(8, |(_, n)| *n);
    let base = (mem.saturating_sub(shared_buffers)) / ((conns + workers_for_work_mem) * 3);
    let mut work_mem = match w {
        Workload::Web | Workload::Oltp => base,
        Workload::Dw | Workload::Mixed => base / 2,
        Workload::Desktop => base / 6,
    };
    work_mem = work_mem.max(4 * KB_PER_MB);
    let (min_wal, max_wal) = match w {
        Workload::Web | Workload::Mixed => (1024, 4096),
        Workload::Oltp => (2048, 8192),
        Workload::Dw => (4096, 16384),
        Workload::Desktop => (100, 2048),
    };
    let mut out: Vec<(&'static str, String)> = vec![
        ("max_connections", conns.to_string()),
        ("shared_buffers", format_kb(shared_buffers)),
        ("effective_cache_size", format_kb(effective_cache)),
        ("maintenance_work_mem", format_kb(maintenance)),
        ("checkpoint_completion_target", "0.9".into()),
        ("wal_buffers", format_kb(wal_buffers)),
        (
            "default_statistics_target",
            if w == Workload::Dw { "500" } else { "100" }.into(),
        ),
        (
            "random_page_cost",
            if i.storage == Storage::Hdd {
                "4"
            } else {
                "1.1"
            }
            .into(),
        ),
        (
            "effective_io_concurrency",
            match i.storage {
                Storage::Hdd => "2",
                Storage::Ssd => "200",
                Storage::San => "300",
                Storage::Nvme => "1000",
            }
            .into(),
        ),
        ("work_mem", format_kb(work_mem)),
        (
            "huge_pages",
            if shared_buffers >= 2 * KB_PER_GB {
                "try"
            } else {
                "off"
            }
            .into(),
        ),
    ];
    if v(12) && matches!(w, Workload::Web | Workload::Oltp | Workload::Mixed) {
        out.push(("jit", "off".into()));
    }
    if v(15) {
        out.push(("wal_compression", "lz4".into()));
    } else if v(10) {
        out.push(("wal_compression", "on".into()));
    }
    match i.cpus {
        Some(c) if c >= 32 => out.push(("autovacuum_max_workers", "5".into())),
        Some(c) if c >= 16 => out.push(("autovacuum_max_workers", "4".into())),
        _ => {}
    }
    if maintenance >= 2 * KB_PER_GB {
        out.push(("autovacuum_work_mem", format_kb(2 * KB_PER_GB)));
    }
    out.push(("min_wal_size", format_kb(min_wal * KB_PER_MB)));
    out.push(("max_wal_size", format_kb(max_wal * KB_PER_MB)));
    out.extend(parallel.into_iter().map(|(k, n)| (k, n.to_string())));
    if w == Workload::Desktop {
        out.push(("wal_level", "minimal".into()));
        out.push(("max_wal_senders", "0".into()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const GB: u64 = 1 << 30;

    fn tune(
        mem_gb: u64,
        cpus: Option<u32>,
        conns: Option<u32>,
        w: Workload,
    ) -> Vec<(&'static str, String)> {
        pgtune(&TuneInput {
            version: (15, 0),
            memory: mem_gb * GB,
            cpus,
            connections: conns,
            workload: w,
            storage: Storage::Ssd,
        })
    }

    /// (memory GB, CPUs, connections, workload, expected settings; `None`: not set).
    type Case = (
        u64,
        Option<u32>,
        Option<u32>,
        Workload,
        &'static [(&'static str, Option<&'static str>)],
    );

    fn get<'a>(t: &'a [(&'static str, String)], k: &str) -> Option<&'a str> {
        t.iter().find(|(n, _)| *n == k).map(|(_, v)| v.as_str())
    }

    /// Reference cases: the 8 GB web server, and the expectations of PGTune's own
    /// test suite (src/features/configuration/__tests__/configurationSlice.test.js).
    #[test]
    fn reference_cases() {
        // 8 GB / 4 CPU / SSD / web / 200 connections.
        let t = tune(8, Some(4), Some(200), Workload::Web);
        let want = [
            ("max_connections", "200"),
            ("shared_buffers", "2GB"),
            ("effective_cache_size", "6GB"),
            ("maintenance_work_mem", "512MB"),
            ("checkpoint_completion_target", "0.9"),
            ("wal_buffers", "16MB"),
            ("default_statistics_target", "100"),
            ("random_page_cost", "1.1"),
            ("effective_io_concurrency", "200"),
            // (8 GB − 2 GB) / ((200 + 4 workers) × 3) = 10280 kB ≈ 10 MB
            ("work_mem", "10280kB"),
            ("huge_pages", "try"),
            ("jit", "off"),
            ("wal_compression", "lz4"),
            ("min_wal_size", "1GB"),
            ("max_wal_size", "4GB"),
            ("max_worker_processes", "4"),
            ("max_parallel_workers_per_gather", "2"),
            ("max_parallel_workers", "4"),
            ("max_parallel_maintenance_workers", "2"),
        ];
        assert_eq!(
            t,
            want.iter()
                .map(|(k, v)| (*k, v.to_string()))
                .collect::<Vec<_>>()
        );
        // Table of (memory GB, cpus, connections, workload) → expected values.
        let cases: &[Case] = &[
            // PGTune: maintenance_work_mem caps at 8 GB, autovacuum_work_mem at 2 GB.
            (
                256,
                Some(4),
                None,
                Workload::Web,
                &[
                    ("maintenance_work_mem", Some("8GB")),
                    ("autovacuum_work_mem", Some("2GB")),
                    ("shared_buffers", Some("64GB")),
                ],
            ),
            (
                16,
                None,
                None,
                Workload::Web,
                &[
                    ("maintenance_work_mem", Some("1GB")),
                    ("huge_pages", Some("try")),
                    ("max_worker_processes", None),
                    // no parallel settings: PostgreSQL's default of 8 workers counts
                    // (16 GB − 4 GB) / ((200 + 8) × 3) = 20164 kB
                    ("work_mem", Some("20164kB")),
                ],
            ),
            // huge pages only from 2 GB shared_buffers on.
            (
                4,
                Some(2),
                None,
                Workload::Web,
                &[("huge_pages", Some("off")), ("autovacuum_work_mem", None)],
            ),
            // 9999 connections on 4 GB floor work_mem at 4 MB.
            (
                4,
                Some(4),
                Some(9999),
                Workload::Web,
                &[("work_mem", Some("4MB"))],
            ),
            // 12 CPUs: 4 workers per gather at most (not for dw), maintenance workers ≤ 4.
            (
                32,
                Some(12),
                None,
                Workload::Oltp,
                &[
                    ("max_connections", Some("300")),
                    ("max_parallel_workers_per_gather", Some("4")),
                    ("max_parallel_maintenance_workers", Some("4")),
                    ("min_wal_size", Some("2GB")),
                    ("max_wal_size", Some("8GB")),
                ],
            ),
            (
                64,
                Some(31),
                None,
                Workload::Dw,
                &[
                    ("max_connections", Some("40")),
                    ("max_parallel_workers_per_gather", Some("16")),
                    ("default_statistics_target", Some("500")),
                    ("maintenance_work_mem", Some("8GB")),
                    ("jit", None),
                    ("autovacuum_max_workers", Some("4")),
                ],
            ),
            (
                2,
                Some(1),
                None,
                Workload::Desktop,
                &[
                    ("max_connections", Some("20")),
                    ("shared_buffers", Some("128MB")),
                    ("effective_cache_size", Some("512MB")),
                    ("wal_level", Some("minimal")),
                    ("max_wal_senders", Some("0")),
                    ("min_wal_size", Some("100MB")),
                ],
            ),
            (
                1,
                Some(2),
                Some(100),
                Workload::Mixed,
                &[
                    ("shared_buffers", Some("256MB")),
                    ("effective_cache_size", Some("768MB")),
                    ("maintenance_work_mem", Some("64MB")),
                    ("wal_buffers", Some("7864kB")),
                    ("work_mem", Some("4MB")),
                ],
            ),
        ];
        for (mem, cpus, conns, w, want) in cases {
            let t = tune(*mem, *cpus, *conns, *w);
            for (k, v) in *want {
                assert_eq!(get(&t, k), *v, "{mem} GB {cpus:?} CPUs {w:?}: {k}");
            }
        }
    }

    #[test]
    fn storage_and_versions() {
        let mut i = TuneInput {
            version: (14, 0),
            memory: 8 * GB,
            cpus: Some(12),
            connections: None,
            workload: Workload::Web,
            storage: Storage::Hdd,
        };
        let t = pgtune(&i);
        assert_eq!(get(&t, "random_page_cost"), Some("4"));
        assert_eq!(get(&t, "effective_io_concurrency"), Some("2"));
        assert_eq!(get(&t, "wal_compression"), Some("on"));
        i.storage = Storage::Nvme;
        assert_eq!(get(&pgtune(&i), "effective_io_concurrency"), Some("1000"));
        i.storage = Storage::San;
        assert_eq!(get(&pgtune(&i), "effective_io_concurrency"), Some("300"));
        i.version = (10, 0);
        let t = pgtune(&i);
        assert_eq!(get(&t, "max_parallel_workers"), Some("12"));
        assert_eq!(get(&t, "max_parallel_maintenance_workers"), None);
        assert_eq!(get(&t, "jit"), None);
        i.version = (9, 6);
        let t = pgtune(&i);
        assert_eq!(get(&t, "max_parallel_workers"), None);
        assert_eq!(get(&t, "wal_compression"), None);
    }

    #[test]
    fn formatting() {
        assert_eq!(format_kb(2 * 1024 * 1024), "2GB");
        assert_eq!(format_kb(512 * 1024), "512MB");
        assert_eq!(format_kb(10280), "10280kB");
    }
}
