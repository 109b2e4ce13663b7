//! Instance data discovery: NoCloud (seed directories, `ds=nocloud` on the kernel command line
//! or DMI serial, `cidata` volumes), ConfigDrive (`config-2`, OpenStack layout as Proxmox and
//! OVH write it) and metadata services over HTTP (Hetzner, OpenStack, EC2 with IMDSv2).
//!
//! First match wins, local sources first: when a local seed exists, no network access happens.
//! Metadata services are only asked when the DMI data names the cloud (or `--datasource` forces
//! one), with short timeouts and bounded retries, so a machine that is not in a cloud does not
//! wait at boot. Volumes are mounted read-only in a private directory and unmounted right after.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::cloudconfig::{MetaData, parse_meta_data};
use crate::error::{Error, Result};
use crate::exec::{Cmd, Runner};
use crate::root::{RelPath, Root};

/// Largest instance-data file read (user-data included).
pub const MAX_FILE: usize = 16 << 20;

/// Largest metadata service response (1 MiB: user-data is capped at 1 MiB too).
pub const MAX_RESPONSE: usize = 1 << 20;

/// The default metadata service address.
pub const DEFAULT_METADATA_URL: &str = "http://169.254.169.254";

/// Kinds of datasource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// NoCloud: seed directory, `ds=nocloud` or a `cidata` volume.
    Nocloud,
    /// OpenStack ConfigDrive (`config-2` volume).
    Configdrive,
    /// Hetzner Cloud metadata service.
    Hetzner,
    /// OpenStack metadata service.
    Openstack,
    /// EC2-compatible metadata service (IMDSv2 token first).
    Ec2,
}

impl Kind {
    /// True for metadata services reached over the network.
    pub fn is_network(self) -> bool {
        matches!(self, Kind::Hetzner | Kind::Openstack | Kind::Ec2)
    }
}

/// Network configuration as the datasource delivered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkText {
    /// cloud-init network-config v1/v2 (YAML).
    Yaml(String),
    /// Debian `interfaces` text (Proxmox ConfigDrive).
    Eni(String),
    /// OpenStack `network_data.json`.
    OpenStack(String),
    /// A YAML document with the config under a key (Hetzner's metadata `network-config`).
    YamlKey(String, String),
}

/// Everything a datasource delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceData {
    /// Which datasource, and where (`NoCloud /dev/vdb (cidata)`).
    pub source: String,
    /// The kind.
    pub kind: Kind,
    /// Parsed meta-data.
    pub meta: MetaData,
    /// Raw user-data, if any.
    pub user_data: Option<Vec<u8>>,
    /// Network configuration, if any.
    pub network: Option<NetworkText>,
}

/// What discovery found.
#[derive(Debug)]
pub enum Found {
    /// Instance data.
    Data(Box<InstanceData>),
    /// A metadata service is indicated but network sources were not allowed in this stage.
    NeedsNetwork(Kind),
    /// No datasource at all.
    Nothing,
}

/// Inputs of discovery.
pub struct Discovery<'a> {
    /// Target root (seed directories, `proc/cmdline`, `sys/class/dmi/id`).
    pub root: &'a Root,
    /// Runs `blkid`, `mount`, `umount`.
    pub runner: &'a dyn Runner,
    /// A seed directory given on the command line (NoCloud or ConfigDrive layout).
    pub seed: Option<PathBuf>,
    /// Force this datasource.
    pub force: Option<Kind>,
    /// Base URL of metadata services.
    pub metadata_url: String,
    /// Whether metadata services may be asked.
    pub allow_network: bool,
    /// Whether block devices are probed (only on the live system).
    pub scan_devices: bool,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Attempts per request.
    pub attempts: u32,
}

type Reader<'r> = dyn Fn(&str) -> Result<Option<Vec<u8>>> + 'r;

fn read_limited(path: &Path) -> Result<Option<Vec<u8>>> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("reading instance data", path, e)),
        Ok(m) if m.len() as usize > MAX_FILE => {
            return Err(Error::Runtime(format!(
                "{} is larger than {} MiB",
                path.display(),
                MAX_FILE >> 20
            )));
        }
        Ok(_) => {}
    }
    std::fs::read(path)
        .map(Some)
        .map_err(|e| Error::io("reading instance data", path, e))
}

fn utf8(what: &str, b: Vec<u8>) -> Result<String> {
    String::from_utf8(b).map_err(|_| Error::Runtime(format!("{what} is not UTF-8 text")))
}

/// Reads a NoCloud or ConfigDrive tree through `read` (paths relative to the tree).
///
/// # Errors
/// When a file cannot be read or meta-data is invalid.
fn read_tree(read: &Reader, source: &str) -> Result<Option<InstanceData>> {
    if let Some(md) = read("openstack/latest/meta_data.json")? {
        let text = utf8("meta_data.json", md)?;
        let meta = parse_meta_data(&text).map_err(|e| Error::Runtime(format!("{source}: {e}")))?;
        let mut network = read("openstack/latest/network_data.json")?
            .map(|b| utf8("network_data.json", b))
            .transpose()?
            .map(NetworkText::OpenStack);
        if network.is_none() {
            let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            if let Some(cp) = v["network_config"]["content_path"].as_str() {
                let rel = format!("openstack/{}", cp.trim_start_matches('/'));
                if RelPath::new(&rel).is_ok()
                    && let Some(b) = read(&rel)?
                {
                    network = Some(NetworkText::Eni(utf8(&rel, b)?));
                }
            }
        }
        return Ok(Some(InstanceData {
            source: format!("ConfigDrive {source}"),
            kind: Kind::Configdrive,
            meta,
            user_data: read("openstack/latest/user_data")?,
            network,
        }));
    }
    let Some(md) = read("meta-data")? else {
        return Ok(None);
    };
    let meta = parse_meta_data(&utf8("meta-data", md)?)
        .map_err(|e| Error::Runtime(format!("{source}: {e}")))?;
    Ok(Some(InstanceData {
        source: format!("NoCloud {source}"),
        kind: Kind::Nocloud,
        meta,
        user_data: read("user-data")?,
        network: read("network-config")?
            .map(|b| utf8("network-config", b))
            .transpose()?
            .map(NetworkText::Yaml),
    }))
}

/// Reads a seed tree on the host file system.
///
/// # Errors
/// As [`read_tree`].
pub fn read_host_dir(dir: &Path, source: &str) -> Result<Option<InstanceData>> {
    let read = |rel: &str| read_limited(&dir.join(rel));
    read_tree(&read, source)
}

fn read_root_dir(root: &Root, dir: &RelPath, source: &str) -> Result<Option<InstanceData>> {
    let read = |rel: &str| -> Result<Option<Vec<u8>>> {
        let p = dir.join(rel).map_err(Error::Runtime)?;
        root.read(&p)
    };
    read_tree(&read, source)
}

/// `ds=nocloud;s=…;i=…;h=…` from the kernel command line or the DMI serial.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NocloudArgs {
    /// Seed URL (`file:///…` or `http(s)://…/`).
    pub seed: Option<String>,
    /// Instance id override.
    pub instance_id: Option<String>,
    /// Host name override.
    pub hostname: Option<String>,
}

/// Parses `ds=nocloud[-net][;k=v…]` out of a kernel command line or DMI serial.
pub fn parse_ds_arg(text: &str) -> Option<NocloudArgs> {
    for word in text.split_whitespace() {
        let Some(rest) = word.strip_prefix("ds=") else {
            continue;
        };
        let mut parts = rest.split(';');
        let name = parts.next().unwrap_or("");
        if !matches!(name, "nocloud" | "nocloud-net" | "NoCloud" | "NoCloud-Net") {
            continue;
        }
        let mut a = NocloudArgs::default();
        for p in parts {
            match p.split_once('=') {
                Some(("s" | "seedfrom", v)) => a.seed = Some(v.to_string()),
                Some(("i" | "instance-id", v)) => a.instance_id = Some(v.to_string()),
                Some(("h" | "local-hostname", v)) => a.hostname = Some(v.to_string()),
                _ => {}
            }
        }
        return Some(a);
    }
    None
}

/// DMI strings bollwerk uses to recognise clouds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dmi {
    /// `sys_vendor`.
    pub sys_vendor: String,
    /// `product_name`.
    pub product_name: String,
    /// `product_serial`.
    pub product_serial: String,
    /// `chassis_asset_tag`.
    pub chassis_asset_tag: String,
    /// `bios_vendor`.
    pub bios_vendor: String,
}

impl Dmi {
    /// Reads `sys/class/dmi/id/*` of the root (the live `/sys` when the root is `/`).
    pub fn read(root: &Root) -> Dmi {
        let r = |f: &str| {
            RelPath::new(&format!("sys/class/dmi/id/{f}"))
                .ok()
                .and_then(|p| root.read_string(&p).ok().flatten())
                .map(|s| s.trim().to_string())
                .unwrap_or_default()
        };
        Dmi {
            sys_vendor: r("sys_vendor"),
            product_name: r("product_name"),
            product_serial: r("product_serial"),
            chassis_asset_tag: r("chassis_asset_tag"),
            bios_vendor: r("bios_vendor"),
        }
    }

    /// The metadata service the DMI data points to.
    pub fn cloud(&self) -> Option<Kind> {
        if self.sys_vendor == "Hetzner" {
            return Some(Kind::Hetzner);
        }
        if self.product_name.starts_with("OpenStack")
            || self.chassis_asset_tag == "OpenTelekomCloud"
            || self.chassis_asset_tag.starts_with("OpenStack")
        {
            return Some(Kind::Openstack);
        }
        if self.sys_vendor == "Amazon EC2"
            || self.bios_vendor == "Amazon EC2"
            || self.product_name.starts_with("Amazon EC2")
        {
            return Some(Kind::Ec2);
        }
        None
    }
}

impl Discovery<'_> {
    /// Finds instance data; the first source that has some wins.
    ///
    /// # Errors
    /// When a source exists but cannot be read (a broken seed is an error, not "nothing").
    pub fn discover(&self) -> Result<Found> {
        let local_forced = matches!(
            self.force,
            None | Some(Kind::Nocloud) | Some(Kind::Configdrive)
        );
        if let Some(dir) = &self.seed {
            return match read_host_dir(dir, &dir.display().to_string())? {
                Some(d) => Ok(Found::Data(Box::new(d))),
                None => Err(Error::Runtime(format!(
                    "{} has neither meta-data (NoCloud) nor openstack/latest/meta_data.json (ConfigDrive)",
                    dir.display()
                ))),
            };
        }
        if local_forced {
            for dir in [
                "var/lib/cloud/seed/nocloud",
                "var/lib/cloud/seed/nocloud-net",
            ] {
                let rel = RelPath::new(dir).map_err(Error::Runtime)?;
                if let Some(d) = read_root_dir(self.root, &rel, &format!("/{dir}"))? {
                    return Ok(Found::Data(Box::new(d)));
                }
            }
            let cmdline = self
                .root
                .read_string(&RelPath::lit("proc/cmdline"))?
                .unwrap_or_default();
            let dmi = Dmi::read(self.root);
            if let Some(args) = parse_ds_arg(&cmdline).or_else(|| parse_ds_arg(&dmi.product_serial))
                && let Some(found) = self.read_ds_args(&args)?
            {
                return Ok(found);
            }
            if self.scan_devices {
                for (labels, kind) in [
                    (&["cidata", "CIDATA"][..], Kind::Nocloud),
                    (&["config-2", "CONFIG-2"][..], Kind::Configdrive),
                ] {
                    if self.force.is_some_and(|f| f != kind) {
                        continue;
                    }
                    for label in labels {
                        if let Some(dev) = self.find_label(label)? {
                            let d = self.read_device(&dev, label)?;
                            return match d {
                                Some(d) => Ok(Found::Data(Box::new(d))),
                                None => Err(Error::Runtime(format!(
                                    "{dev} (label {label}) holds no meta-data"
                                ))),
                            };
                        }
                    }
                }
            }
        }
        let kind = match self.force {
            Some(k) if k.is_network() => Some(k),
            Some(_) => None,
            None => Dmi::read(self.root).cloud(),
        };
        let Some(kind) = kind else {
            return Ok(Found::Nothing);
        };
        if !self.allow_network {
            return Ok(Found::NeedsNetwork(kind));
        }
        let http = Http::new(self.timeout, self.attempts)?;
        let base = self.metadata_url.trim_end_matches('/');
        let d = match kind {
            Kind::Hetzner => hetzner(&http, base)?,
            Kind::Openstack => openstack(&http, base)?,
            Kind::Ec2 => ec2(&http, base)?,
            Kind::Nocloud | Kind::Configdrive => return Ok(Found::Nothing),
        };
        Ok(Found::Data(Box::new(d)))
    }

    fn read_ds_args(&self, a: &NocloudArgs) -> Result<Option<Found>> {
        let mut data = match a.seed.as_deref() {
            Some(s) if s.starts_with("file://") => {
                let dir = s.trim_start_matches("file://");
                let rel = RelPath::new(dir)
                    .map_err(|e| Error::Runtime(format!("ds=nocloud seed {s}: {e}")))?;
                match read_root_dir(self.root, &rel, s)? {
                    Some(d) => d,
                    None => {
                        return Err(Error::Runtime(format!(
                            "ds=nocloud seed {s} has no meta-data"
                        )));
                    }
                }
            }
            Some(s) if s.starts_with("http://") || s.starts_with("https://") => {
                if !self.allow_network {
                    return Ok(Some(Found::NeedsNetwork(Kind::Nocloud)));
                }
                let http = Http::new(self.timeout, self.attempts)?;
                let base = if s.ends_with('/') {
                    s.to_string()
                } else {
                    format!("{s}/")
                };
                let md = http
                    .get(&format!("{base}meta-data"), &[])?
                    .ok_or_else(|| Error::Runtime(format!("{base}meta-data: not found")))?;
                InstanceData {
                    source: format!("NoCloud {s}"),
                    kind: Kind::Nocloud,
                    meta: parse_meta_data(&utf8("meta-data", md)?).map_err(Error::Runtime)?,
                    user_data: http.get(&format!("{base}user-data"), &[])?,
                    network: http
                        .get(&format!("{base}network-config"), &[])?
                        .map(|b| utf8("network-config", b))
                        .transpose()?
                        .map(NetworkText::Yaml),
                }
            }
            Some(s) => {
                return Err(Error::Runtime(format!(
                    "ds=nocloud seed {s}: only file:// and http(s):// are supported"
                )));
            }
            None if a.instance_id.is_some() => InstanceData {
                source: "NoCloud (kernel command line)".into(),
                kind: Kind::Nocloud,
                meta: MetaData::default(),
                user_data: None,
                network: None,
            },
            None => return Ok(None),
        };
        if let Some(i) = &a.instance_id {
            data.meta.instance_id = Some(i.clone());
        }
        if let Some(h) = &a.hostname {
            data.meta.local_hostname = Some(h.clone());
        }
        Ok(Some(Found::Data(Box::new(data))))
    }

    fn find_label(&self, label: &str) -> Result<Option<String>> {
        let cmd = Cmd::host(
            "/sbin/blkid",
            &["-l", "-o", "device", "-t", &format!("LABEL={label}")],
        )
        .timeout(Duration::from_secs(10));
        let out = self.runner.run(self.root, &cmd)?;
        // blkid exits 2 when nothing matches.
        Ok(out
            .stdout
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with("/dev/"))
            .map(str::to_string))
    }

    fn read_device(&self, dev: &str, label: &str) -> Result<Option<InstanceData>> {
        let base = if Path::new("/run").is_dir() {
            "/run"
        } else {
            "/tmp"
        };
        let dir = tempfile::Builder::new()
            .prefix("bollwerk-seed-")
            .tempdir_in(base)
            .map_err(|e| Error::io("creating a mount point in", base, e))?;
        let mnt = dir.path().to_string_lossy().into_owned();
        self.runner.run_ok(
            self.root,
            &Cmd::host("/bin/mount", &["-o", "ro,nosuid,nodev,noexec", dev, &mnt])
                .timeout(Duration::from_secs(30)),
        )?;
        let result = read_host_dir(dir.path(), &format!("{dev} ({label})"));
        let umount = self.runner.run_ok(
            self.root,
            &Cmd::host("/bin/umount", &[&mnt]).timeout(Duration::from_secs(30)),
        );
        let data = result?;
        umount?;
        Ok(data)
    }
}

/// A small HTTP client with bounded retries.
struct Http {
    client: reqwest::blocking::Client,
    attempts: u32,
    timeout: Duration,
}

impl Http {
    fn new(timeout: Duration, attempts: u32) -> Result<Http> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::blocking::Client::builder()
            .connect_timeout(timeout.min(Duration::from_secs(3)))
            .timeout(timeout)
            // Metadata services answer directly: a redirect is not followed.
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(concat!("bollwerk/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Runtime(format!("initialising the HTTP client: {e}")))?;
        Ok(Http {
            client,
            attempts: attempts.max(1),
            timeout,
        })
    }

    /// GET (or PUT when `put`), retrying transport errors and 5xx; 404 is `None`.
    fn request(&self, put: bool, url: &str, headers: &[(&str, &str)]) -> Result<Option<Vec<u8>>> {
        let mut last = String::new();
        for attempt in 0..self.attempts {
            if attempt > 0 {
                std::thread::sleep(Duration::from_millis(250 * u64::from(attempt)));
            }
            let mut req = if put {
                self.client.put(url)
            } else {
                self.client.get(url)
            };
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            let started = std::time::Instant::now();
            match req.send() {
                Ok(resp) => {
                    let st = resp.status();
                    if st.as_u16() == 404 {
                        return Ok(None);
                    }
                    if st.is_success() {
                        // Streamed with a cap (never buffered whole first); the client's
                        // timeout bounds a slow body.
                        let len = resp.content_length();
                        let mut resp = resp;
                        let deadline = started + self.timeout;
                        return crate::sshkeys::read_capped(&mut resp, len, MAX_RESPONSE, deadline)
                            .map(Some)
                            .map_err(|e| refused_response(url, e));
                    }
                    last = format!("HTTP {st}");
                    if st.is_client_error() {
                        return Err(Error::Runtime(format!("{url}: {last}")));
                    }
                }
                Err(e) => last = e.to_string(),
            }
        }
        Err(Error::Runtime(format!(
            "{url}: {last} (after {} attempts)",
            self.attempts
        )))
    }

    fn get(&self, url: &str, headers: &[(&str, &str)]) -> Result<Option<Vec<u8>>> {
        self.request(false, url, headers)
    }
}

/// A response over the size limit or still trickling in at the deadline is hostile input:
/// refused (exit 2); a transport error while reading stays a failure (exit 3).
fn refused_response(url: &str, e: String) -> Error {
    if e.contains("limit") || e.contains("in time") {
        Error::Unsafe {
            reason: format!("{url}: {e}"),
            hint: format!(
                "metadata responses are limited to {MAX_RESPONSE} bytes within the request timeout; check the metadata service"
            ),
        }
    } else {
        Error::Runtime(format!("{url}: {e}"))
    }
}

fn require(what: &str, v: Option<Vec<u8>>) -> Result<String> {
    let b = v.ok_or_else(|| Error::Runtime(format!("{what}: not found (404)")))?;
    utf8(what, b)
}

fn hetzner(http: &Http, base: &str) -> Result<InstanceData> {
    let url = format!("{base}/hetzner/v1/metadata");
    let text = require(&url, http.get(&url, &[])?)?;
    let meta = parse_meta_data(&text).map_err(|e| Error::Runtime(format!("{url}: {e}")))?;
    let has_net = super::yaml::parse(&text)
        .ok()
        .flatten()
        .is_some_and(|d| d.get("network-config").is_some());
    let user_data = http
        .get(&format!("{base}/hetzner/v1/userdata"), &[])?
        .filter(|b| !b.is_empty());
    Ok(InstanceData {
        source: format!("Hetzner metadata {base}"),
        kind: Kind::Hetzner,
        meta,
        user_data,
        network: has_net.then(|| NetworkText::YamlKey(text, "network-config".into())),
    })
}

fn openstack(http: &Http, base: &str) -> Result<InstanceData> {
    let url = format!("{base}/openstack/latest/meta_data.json");
    let text = require(&url, http.get(&url, &[])?)?;
    let meta = parse_meta_data(&text).map_err(|e| Error::Runtime(format!("{url}: {e}")))?;
    Ok(InstanceData {
        source: format!("OpenStack metadata {base}"),
        kind: Kind::Openstack,
        meta,
        user_data: http.get(&format!("{base}/openstack/latest/user_data"), &[])?,
        network: http
            .get(&format!("{base}/openstack/latest/network_data.json"), &[])?
            .map(|b| utf8("network_data.json", b))
            .transpose()?
            .map(NetworkText::OpenStack),
    })
}

fn ec2(http: &Http, base: &str) -> Result<InstanceData> {
    // IMDSv2: a session token first; fall back to IMDSv1 only when the service has no tokens.
    let token = match http.request(
        true,
        &format!("{base}/latest/api/token"),
        &[("X-aws-ec2-metadata-token-ttl-seconds", "300")],
    ) {
        Ok(Some(t)) => Some(utf8("IMDSv2 token", t)?.trim().to_string()),
        Ok(None) => None,
        Err(e) if e.to_string().contains("HTTP 405") || e.to_string().contains("HTTP 403") => None,
        Err(e) => return Err(e),
    };
    let hdr: Vec<(&str, &str)> = match &token {
        Some(t) => vec![("X-aws-ec2-metadata-token", t.as_str())],
        None => Vec::new(),
    };
    let md = |p: &str| -> Result<Option<String>> {
        http.get(&format!("{base}/latest/meta-data/{p}"), &hdr)?
            .map(|b| utf8(p, b).map(|s| s.trim().to_string()))
            .transpose()
    };
    let instance_id = md("instance-id")?
        .ok_or_else(|| Error::Runtime(format!("{base}/latest/meta-data/instance-id: not found")))?;
    let mut keys = Vec::new();
    if let Some(list) = md("public-keys/")? {
        for line in list.lines() {
            let idx = line.split('=').next().unwrap_or("").trim();
            if idx.is_empty() || !idx.chars().all(|c| c.is_ascii_digit()) {
                continue;
            }
            if let Some(k) = md(&format!("public-keys/{idx}/openssh-key"))? {
                keys.push(k);
            }
        }
    }
    Ok(InstanceData {
        source: format!(
            "EC2 metadata {base} ({})",
            if token.is_some() { "IMDSv2" } else { "IMDSv1" }
        ),
        kind: Kind::Ec2,
        meta: MetaData {
            instance_id: Some(instance_id),
            local_hostname: md("local-hostname")?,
            public_keys: keys,
        },
        user_data: http.get(&format!("{base}/latest/user-data"), &hdr)?,
        network: None,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::io::{BufRead, BufReader, Write};
    use std::sync::{Arc, Mutex};

    /// A canned HTTP server on 127.0.0.1: `(METHOD path)` → (status, body); records requests.
    pub struct Mock {
        pub url: String,
        pub log: Arc<Mutex<Vec<String>>>,
    }

    pub fn mock(routes: Vec<(&str, u16, &str)>) -> Mock {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let routes: BTreeMap<String, (u16, String)> = routes
            .into_iter()
            .map(|(k, s, b)| (k.to_string(), (s, b.to_string())))
            .collect();
        let log = Arc::new(Mutex::new(Vec::new()));
        let l2 = log.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().take(200) {
                let Ok(mut s) = stream else { continue };
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut first = String::new();
                if r.read_line(&mut first).is_err() {
                    continue;
                }
                let mut headers = Vec::new();
                loop {
                    let mut h = String::new();
                    if r.read_line(&mut h).is_err() || h.trim().is_empty() {
                        break;
                    }
                    headers.push(h.trim().to_ascii_lowercase());
                }
                let mut w = first.split_whitespace();
                let key = format!("{} {}", w.next().unwrap_or(""), w.next().unwrap_or(""));
                let token = headers
                    .iter()
                    .any(|h| h.starts_with("x-aws-ec2-metadata-token:"));
                l2.lock()
                    .unwrap()
                    .push(format!("{key}{}", if token { " +token" } else { "" }));
                let (status, body) = routes.get(&key).cloned().unwrap_or((404, String::new()));
                let _ = write!(
                    s,
                    "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Mock { url, log }
    }

    fn disc<'a>(
        root: &'a Root,
        runner: &'a crate::exec::FakeRunner,
        force: Option<Kind>,
        url: &str,
    ) -> Discovery<'a> {
        Discovery {
            root,
            runner,
            seed: None,
            force,
            metadata_url: url.to_string(),
            allow_network: true,
            scan_devices: false,
            timeout: Duration::from_secs(2),
            attempts: 2,
        }
    }

    const KEY: &str = super::super::cloudconfig::tests::KEY;

    #[test]
    fn hetzner_metadata_service() {
        let md = format!(
            "hostname: web-1\ninstance-id: 4711\npublic-keys:\n- {KEY}\nnetwork-config:\n  version: 1\n  config:\n  - type: physical\n    name: eth0\n    mac_address: '96:00:00:00:00:01'\n    subnets:\n    - type: dhcp\n"
        );
        let m = mock(vec![
            ("GET /hetzner/v1/metadata", 200, &md),
            (
                "GET /hetzner/v1/userdata",
                200,
                "#cloud-config\nruncmd: [true]\n",
            ),
        ]);
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path()).unwrap();
        let fr = crate::exec::FakeRunner::new();
        let Found::Data(d) = disc(&root, &fr, Some(Kind::Hetzner), &m.url)
            .discover()
            .unwrap()
        else {
            panic!("no data")
        };
        assert_eq!(d.meta.instance_id.as_deref(), Some("4711"));
        assert_eq!(d.meta.local_hostname.as_deref(), Some("web-1"));
        assert_eq!(d.meta.public_keys, vec![KEY.to_string()]);
        assert!(matches!(d.network, Some(NetworkText::YamlKey(_, _))));
        assert!(d.user_data.unwrap().starts_with(b"#cloud-config"));
    }

    #[test]
    fn hetzner_detected_by_dmi_and_not_asked_without_network() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("sys/class/dmi/id")).unwrap();
        std::fs::write(dir.path().join("sys/class/dmi/id/sys_vendor"), "Hetzner\n").unwrap();
        let root = Root::new(dir.path()).unwrap();
        let fr = crate::exec::FakeRunner::new();
        let mut d = disc(&root, &fr, None, "http://127.0.0.1:9");
        d.allow_network = false;
        assert!(matches!(
            d.discover().unwrap(),
            Found::NeedsNetwork(Kind::Hetzner)
        ));
    }

    #[test]
    fn ec2_uses_imdsv2_token() {
        let m = mock(vec![
            ("PUT /latest/api/token", 200, "TOKEN123"),
            ("GET /latest/meta-data/instance-id", 200, "i-0abc"),
            (
                "GET /latest/meta-data/local-hostname",
                200,
                "ip-10-0-0-5.ec2.internal",
            ),
            ("GET /latest/meta-data/public-keys/", 200, "0=mykey"),
            ("GET /latest/meta-data/public-keys/0/openssh-key", 200, KEY),
        ]);
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path()).unwrap();
        let fr = crate::exec::FakeRunner::new();
        let Found::Data(d) = disc(&root, &fr, Some(Kind::Ec2), &m.url)
            .discover()
            .unwrap()
        else {
            panic!()
        };
        assert_eq!(d.meta.instance_id.as_deref(), Some("i-0abc"));
        assert_eq!(d.meta.public_keys, vec![KEY.to_string()]);
        assert_eq!(d.user_data, None, "404 user-data is no user-data");
        assert!(d.source.contains("IMDSv2"));
        let log = m.log.lock().unwrap().clone();
        assert_eq!(log[0], "PUT /latest/api/token");
        assert!(log[1..].iter().all(|l| l.ends_with("+token")), "{log:?}");
    }

    #[test]
    fn openstack_metadata_service_and_retries_are_bounded() {
        let m = mock(vec![
            (
                "GET /openstack/latest/meta_data.json",
                200,
                r#"{"uuid":"os-1","hostname":"vm.novalocal"}"#,
            ),
            ("GET /openstack/latest/user_data", 200, "#cloud-config\n"),
        ]);
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path()).unwrap();
        let fr = crate::exec::FakeRunner::new();
        let Found::Data(d) = disc(&root, &fr, Some(Kind::Openstack), &m.url)
            .discover()
            .unwrap()
        else {
            panic!()
        };
        assert_eq!(d.meta.instance_id.as_deref(), Some("os-1"));
        assert_eq!(d.network, None);
        // A service that errors is retried a bounded number of times, then it is an error.
        let bad = mock(vec![("GET /openstack/latest/meta_data.json", 500, "boom")]);
        let e = disc(&root, &fr, Some(Kind::Openstack), &bad.url)
            .discover()
            .unwrap_err();
        assert!(e.to_string().contains("after 2 attempts"), "{e}");
        assert_eq!(bad.log.lock().unwrap().len(), 2);
    }

    #[test]
    fn seed_dir_in_root_and_configdrive_tree() {
        let dir = tempfile::tempdir().unwrap();
        let seed = dir.path().join("var/lib/cloud/seed/nocloud");
        std::fs::create_dir_all(&seed).unwrap();
        std::fs::write(seed.join("meta-data"), "instance-id: iid-local\n").unwrap();
        std::fs::write(seed.join("user-data"), "#cloud-config\n").unwrap();
        let root = Root::new(dir.path()).unwrap();
        let fr = crate::exec::FakeRunner::new();
        // No network access when a local seed exists: the URL is unroutable.
        let Found::Data(d) = disc(&root, &fr, None, "http://192.0.2.1")
            .discover()
            .unwrap()
        else {
            panic!()
        };
        assert_eq!(d.kind, Kind::Nocloud);
        assert_eq!(d.meta.instance_id.as_deref(), Some("iid-local"));

        let cd = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(cd.path().join("openstack/latest")).unwrap();
        std::fs::create_dir_all(cd.path().join("openstack/content")).unwrap();
        std::fs::write(
            cd.path().join("openstack/latest/meta_data.json"),
            r#"{"uuid": "pve-1", "network_config": {"content_path": "/content/0000"}}"#,
        )
        .unwrap();
        std::fs::write(
            cd.path().join("openstack/content/0000"),
            "auto eth0\niface eth0 inet dhcp\n",
        )
        .unwrap();
        let d = read_host_dir(cd.path(), "test").unwrap().unwrap();
        assert_eq!(d.kind, Kind::Configdrive);
        assert!(matches!(d.network, Some(NetworkText::Eni(_))));
    }

    #[test]
    fn kernel_command_line_seed() {
        let a =
            parse_ds_arg("BOOT_IMAGE=/vmlinuz ro ds=nocloud;s=file:///seed/;i=iid-9;h=node9 quiet")
                .unwrap();
        assert_eq!(a.seed.as_deref(), Some("file:///seed/"));
        assert_eq!(a.instance_id.as_deref(), Some("iid-9"));
        assert_eq!(a.hostname.as_deref(), Some("node9"));
        assert!(parse_ds_arg("ro quiet").is_none());
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("proc")).unwrap();
        std::fs::create_dir_all(dir.path().join("seed")).unwrap();
        std::fs::write(
            dir.path().join("proc/cmdline"),
            "ro ds=nocloud;s=file:///seed/;i=iid-9\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("seed/meta-data"),
            "instance-id: from-file\n",
        )
        .unwrap();
        let root = Root::new(dir.path()).unwrap();
        let fr = crate::exec::FakeRunner::new();
        let Found::Data(d) = disc(&root, &fr, None, "http://192.0.2.1")
            .discover()
            .unwrap()
        else {
            panic!()
        };
        assert_eq!(
            d.meta.instance_id.as_deref(),
            Some("iid-9"),
            "command line wins"
        );
    }

    /// A hostile metadata service on 127.0.0.1: every request gets `head`, then `body` is
    /// called with the stream until it returns (or the client hangs up).
    fn hostile(head: &'static str, body: fn(&mut std::net::TcpStream)) -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            for stream in listener.incoming().take(20) {
                let Ok(mut s) = stream else { continue };
                std::thread::spawn(move || {
                    let mut r = BufReader::new(s.try_clone().unwrap());
                    let mut line = String::new();
                    while r.read_line(&mut line).is_ok_and(|n| n > 0) {
                        if line == "\r\n" {
                            break;
                        }
                        line.clear();
                    }
                    if s.write_all(head.as_bytes()).is_ok() {
                        body(&mut s);
                    }
                });
            }
        });
        url
    }

    fn fetch_meta(url: &str) -> (Result<Found>, Duration) {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path()).unwrap();
        let fr = crate::exec::FakeRunner::new();
        let t = std::time::Instant::now();
        let r = disc(&root, &fr, Some(Kind::Hetzner), url).discover();
        (r, t.elapsed())
    }

    #[test]
    fn huge_metadata_response_is_refused_without_reading_it_all() {
        // No Content-Length: the body is read in chunks and reading stops at the cap.
        let url = hostile("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", |s| {
            let chunk = vec![b'a'; 64 * 1024];
            // 64 GiB if anyone read it all.
            for _ in 0..1_000_000 {
                if s.write_all(&chunk).is_err() {
                    return;
                }
            }
        });
        let (r, took) = fetch_meta(&url);
        let e = r.unwrap_err().to_string();
        assert!(e.contains("larger than the limit"), "{e}");
        assert!(took < Duration::from_secs(10), "{took:?}");
        // A declared Content-Length over the cap is refused before reading.
        let url = hostile(
            "HTTP/1.1 200 OK\r\nContent-Length: 68719476736\r\n\r\n",
            |s| {
                let _ = s.write_all(b"a");
                std::thread::sleep(Duration::from_secs(30));
            },
        );
        let (r, took) = fetch_meta(&url);
        let e = r.unwrap_err().to_string();
        assert!(e.contains("68719476736 bytes is larger"), "{e}");
        assert!(took < Duration::from_secs(5), "{took:?}");
    }

    #[test]
    fn slow_metadata_response_ends_in_bounded_time() {
        // One byte every 100 ms: each read is quick, the whole body never ends.
        let url = hostile("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", |s| {
            for _ in 0..600 {
                if s.write_all(b"a").is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let (r, took) = fetch_meta(&url);
        let e = r.unwrap_err().to_string();
        assert!(
            e.contains("in time") || e.contains("timed out") || e.contains("timeout"),
            "{e}"
        );
        // The client's timeout is 2 s: one attempt, plus slack.
        assert!(took < Duration::from_secs(8), "{took:?}");
        // Headers that never come: the request times out, retried a bounded number of times.
        let url = hostile("", |_| std::thread::sleep(Duration::from_secs(60)));
        let (r, took) = fetch_meta(&url);
        assert!(r.is_err());
        assert!(took < Duration::from_secs(12), "{took:?}");
    }
}
