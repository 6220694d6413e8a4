//! Configuration: a TOML file, then `S3PROXY_*` environment variables, then command-line
//! flags, each overriding the one before (figment).

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use s3proxy_http::auth::grants::{Access, Grants};
use s3proxy_replication::{Hedge, ReadPreference, WriteQuorum};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address to listen on.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Accepted credentials; empty means "generate dev credentials on first run".
    #[serde(default)]
    pub credentials: Vec<CredentialConfig>,
    /// Storage backends; empty means the embedded default (filesystem under ./data).
    #[serde(default)]
    pub backends: Vec<BackendConfig>,
    /// Where s3proxy keeps its own state (generated credentials).
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// The region GetBucketLocation reports.
    #[serde(default = "default_region")]
    pub region: String,
    /// Domains for virtual-hosted-style requests (`bucket.<domain>`).
    #[serde(default)]
    pub virtual_host_domains: Vec<String>,
    /// How several backends are kept in step.
    #[serde(default)]
    pub replication: ReplicationConfig,
    /// `[placement]`: full copies on every backend (the default) or erasure coding.
    #[serde(default)]
    pub placement: PlacementConfig,
    /// `[encryption]`; absent means encrypted with a key generated into the state
    /// directory on first run.
    #[serde(default)]
    pub encryption: Option<s3proxy_crypto::EncryptionConfig>,
    /// `[limits]`: what a client may send and how slowly.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// `[tls]`: serve HTTPS with these PEM files.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// `[admin]`: the metrics and health listener.
    #[serde(default)]
    pub admin: AdminConfig,
    /// Seconds a SIGTERM or Ctrl-C waits for requests in flight before exiting.
    #[serde(default = "default_shutdown_grace_secs")]
    pub shutdown_grace_secs: u64,
}

fn default_shutdown_grace_secs() -> u64 {
    30
}

/// `[tls]`: HTTPS on the S3 listener; both files are PEM and are reloaded on SIGHUP or
/// when they change.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// The private key.
    pub key_file: PathBuf,
}

/// `[admin]`: Prometheus `/metrics`, `/health` and `/ready`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Serve the admin endpoints (the default).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Where; unset means `127.0.0.1:9001`, skipped with a warning when that port is busy.
    #[serde(default)]
    pub listen: Option<String>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            enabled: true,
            listen: None,
        }
    }
}

fn default_true() -> bool {
    true
}

/// The admin listener's address when `[admin] listen` is unset.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9001";

/// `[limits]`: protection against oversized, slow and stale requests.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Milliseconds a client may take to send its request headers (also how long an idle
    /// keep-alive connection is kept).
    #[serde(default = "default_header_timeout_ms")]
    pub header_timeout_ms: u64,
    /// Milliseconds a request body may stall, or a response wait for the client to read.
    #[serde(default = "default_idle_timeout_ms")]
    pub idle_timeout_ms: u64,
    /// Largest request header section in bytes.
    #[serde(default = "default_max_header_bytes")]
    pub max_header_bytes: usize,
    /// Largest accepted difference, in seconds, between a request's signing time and ours.
    #[serde(default = "default_max_clock_skew_secs")]
    pub max_clock_skew_secs: u64,
    /// Most client connections open at once (0: no limit); one more gets `503 SlowDown`.
    #[serde(default)]
    pub max_connections: usize,
    /// Most requests served at once (0: no limit); one more gets `503 SlowDown`.
    #[serde(default)]
    pub max_requests: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            header_timeout_ms: default_header_timeout_ms(),
            idle_timeout_ms: default_idle_timeout_ms(),
            max_header_bytes: default_max_header_bytes(),
            max_clock_skew_secs: default_max_clock_skew_secs(),
            max_connections: 0,
            max_requests: 0,
        }
    }
}

fn default_header_timeout_ms() -> u64 {
    30_000
}

fn default_idle_timeout_ms() -> u64 {
    60_000
}

fn default_max_header_bytes() -> usize {
    s3proxy_http::DEFAULT_MAX_HEADER_BYTES
}

fn default_max_clock_skew_secs() -> u64 {
    900
}

/// `[replication]`: quorum and reads across several backends.
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicationConfig {
    /// `1`, `"majority"`, `"all"` or a number of backends.
    #[serde(default)]
    pub write_quorum: WriteQuorum,
    /// `"ordered"` (configuration order) or `"latency"`.
    #[serde(default)]
    pub read_preference: ReadPreference,
    /// Retries of transient backend errors.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Secret (at least 32 characters) authenticating multipart upload ids; every
    /// instance in front of the same backends must share it. Generated into the state
    /// directory when absent.
    #[serde(default)]
    pub upload_id_secret: Option<String>,
    /// Seconds between journal replays while repairs are pending.
    #[serde(default = "default_repair_interval")]
    pub repair_interval_secs: u64,
    /// Whether a read whose replica has not answered within the hedge delay asks the
    /// next replica too.
    #[serde(default = "default_hedge_reads")]
    pub hedge_reads: bool,
    /// The hedge delay in milliseconds; 0: adaptive (each backend's recent read latency,
    /// 95th percentile, within 20 ms..1 s).
    #[serde(default)]
    pub hedge_after_ms: u64,
}

impl ReplicationConfig {
    /// The hedging these settings ask for.
    pub fn hedge(&self) -> Hedge {
        match (self.hedge_reads, self.hedge_after_ms) {
            (false, _) => Hedge::Off,
            (true, 0) => Hedge::Adaptive,
            (true, ms) => Hedge::After(std::time::Duration::from_millis(ms)),
        }
    }
}

fn default_hedge_reads() -> bool {
    true
}

/// The upload id secret stays out of `{:?}`.
impl std::fmt::Debug for ReplicationConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicationConfig")
            .field("write_quorum", &self.write_quorum)
            .field("read_preference", &self.read_preference)
            .field("retries", &self.retries)
            .field(
                "upload_id_secret",
                &self.upload_id_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("repair_interval_secs", &self.repair_interval_secs)
            .field("hedge_reads", &self.hedge_reads)
            .field("hedge_after_ms", &self.hedge_after_ms)
            .finish()
    }
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        ReplicationConfig {
            write_quorum: WriteQuorum::One,
            read_preference: ReadPreference::Ordered,
            retries: default_retries(),
            upload_id_secret: None,
            repair_interval_secs: default_repair_interval(),
            hedge_reads: default_hedge_reads(),
            hedge_after_ms: 0,
        }
    }
}

fn default_retries() -> u32 {
    2
}

fn default_repair_interval() -> u64 {
    5
}

/// `[placement]`: how an object's bytes are spread over several backends.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PlacementConfig {
    /// `"copies"` (every backend a full copy, `[replication]`) or `"erasure"`.
    #[serde(default)]
    pub kind: PlacementKind,
    /// Erasure coding: data shards per stripe (k).
    #[serde(default)]
    pub data_shards: Option<usize>,
    /// Erasure coding: parity shards per stripe (m); k + m is the number of backends.
    #[serde(default)]
    pub parity_shards: Option<usize>,
}

/// The placement kinds.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PlacementKind {
    /// A full copy on every backend.
    #[default]
    Copies,
    /// Stripes of k data + m parity shards, shard i on backend i.
    Erasure,
}

impl PlacementConfig {
    /// `(k, m)` for erasure coding over `n` backends, or why the settings do not fit.
    pub fn shards(&self, n: usize) -> Result<(usize, usize), (&'static str, String)> {
        let (Some(k), Some(m)) = (self.data_shards, self.parity_shards) else {
            return Err((
                "placement",
                "kind = \"erasure\" needs data_shards and parity_shards".into(),
            ));
        };
        if k == 0 || m == 0 {
            return Err((
                "placement",
                format!("data_shards and parity_shards must be at least 1 (got {k} + {m})"),
            ));
        }
        if k + m != n {
            return Err((
                "placement.data_shards",
                format!(
                    "data_shards + parity_shards = {} must equal the number of backends, {n}",
                    k + m
                ),
            ));
        }
        if k > m + 1 {
            // Until shards are stored under versioned keys, a write that fails after some
            // backends committed it leaves the previous version on n - (k - 1) = m + 1
            // backends at least: readable only while that is k.
            return Err((
                "placement.data_shards",
                format!(
                    "data_shards = {k} with parity_shards = {m} is not supported: data_shards \
                     may be at most parity_shards + 1 (a failed write could otherwise leave no \
                     version of an object readable); docs/ERASURE.md"
                ),
            ));
        }
        Ok((k, m))
    }
}

/// One access key pair, and the buckets it may reach.
#[derive(Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CredentialConfig {
    /// Access key id.
    pub access_key: String,
    /// Secret key.
    pub secret_key: String,
    /// Bucket names or prefixes ending in `*`, each with `"read"`, `"write"` or
    /// `"owner"`. Absent: every bucket, as owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buckets: Option<std::collections::BTreeMap<String, Access>>,
}

impl CredentialConfig {
    /// The grants this credential's `buckets` describe.
    pub fn grants(&self) -> Result<Grants, String> {
        match &self.buckets {
            None => Ok(Grants::All),
            Some(buckets) => Grants::only(buckets.iter().map(|(p, a)| (p, *a))),
        }
    }
}

impl std::fmt::Debug for CredentialConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialConfig")
            .field("access_key", &self.access_key)
            .field("secret_key", &"<redacted>")
            .field("buckets", &self.buckets)
            .finish()
    }
}

/// Kinds of backend.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// Local filesystem.
    Fs,
    /// Process memory.
    Memory,
    /// Any S3 service (AWS, MinIO, Ceph, Garage, another s3proxy).
    S3,
}

/// One storage backend.
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    /// Name used in logs.
    pub name: String,
    /// Which engine.
    pub kind: BackendKind,
    /// Root directory (kind = "fs").
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Limit, in milliseconds, for one call without a body and for a stall within a body.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// S3 endpoint URL (kind = "s3"); `http://` turns TLS off. Default: AWS.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Region (kind = "s3").
    #[serde(default)]
    pub region: Option<String>,
    /// Access key (kind = "s3"); default: the AWS environment and profile chain.
    #[serde(default)]
    pub access_key: Option<String>,
    /// Secret key (kind = "s3").
    #[serde(default)]
    pub secret_key: Option<String>,
    /// Path-style requests (kind = "s3"); default true.
    #[serde(default)]
    pub path_style: Option<bool>,
    /// Prefix prepended to bucket names on the backend (kind = "s3").
    #[serde(default)]
    pub bucket_prefix: Option<String>,
    /// Proxy bucket -> backend bucket (kind = "s3").
    #[serde(default)]
    pub buckets: std::collections::BTreeMap<String, String>,
}

/// The secret key stays out of `{:?}`.
impl std::fmt::Debug for BackendConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendConfig")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("path", &self.path)
            .field("timeout_ms", &self.timeout_ms)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key", &self.access_key)
            .field(
                "secret_key",
                &self.secret_key.as_ref().map(|_| "<redacted>"),
            )
            .field("path_style", &self.path_style)
            .field("bucket_prefix", &self.bucket_prefix)
            .field("buckets", &self.buckets)
            .finish()
    }
}

impl BackendConfig {
    fn has_s3_settings(&self) -> bool {
        self.endpoint.is_some()
            || self.region.is_some()
            || self.access_key.is_some()
            || self.secret_key.is_some()
            || self.path_style.is_some()
            || self.bucket_prefix.is_some()
            || !self.buckets.is_empty()
    }

    /// The S3 backend's options (kind = "s3").
    pub fn s3_options(&self) -> s3proxy_backends::S3Options {
        let mut o: s3proxy_backends::S3Options =
            serde_json::from_str("{}").expect("S3Options has defaults for every field");
        o.endpoint = self.endpoint.clone();
        if let Some(r) = &self.region {
            o.region = r.clone();
        }
        o.access_key = self.access_key.clone();
        o.secret_key = self.secret_key.clone();
        if let Some(p) = self.path_style {
            o.path_style = p;
        }
        o.bucket_prefix = self.bucket_prefix.clone();
        o.buckets = self.buckets.clone();
        // The stall limit within a body, as replication applies it to each replica.
        o.idle_timeout_ms = self.timeout_ms;
        o
    }
}

fn default_timeout_ms() -> u64 {
    30_000
}

/// Top-level configuration keys, as `S3PROXY_<KEY>` environment variables may set them.
const CONFIG_KEYS: &[&str] = &[
    "listen",
    "credentials",
    "backends",
    "state_dir",
    "region",
    "virtual_host_domains",
    "replication",
    "placement",
    "encryption",
    "limits",
    "tls",
    "admin",
    "shutdown_grace_secs",
];

fn default_listen() -> String {
    "127.0.0.1:9000".into()
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("./data/.s3proxy")
}

fn default_region() -> String {
    "us-east-1".into()
}

/// Flags that override the configuration; `None` leaves the value alone.
#[derive(Debug, Default, Serialize)]
pub struct Overrides {
    /// `--listen`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
}

/// A configuration problem, phrased as one line naming the key.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Config {
    /// Load from an optional file, the environment and the flags, then validate.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        let mut figment = Figment::new();
        if let Some(file) = file {
            if !file.is_file() {
                return Err(ConfigError(format!(
                    "config file {} does not exist",
                    file.display()
                )));
            }
            figment = figment.merge(Toml::file_exact(file));
        }
        figment = figment
            .merge(
                // Only configuration keys: other S3PROXY_* variables (S3PROXY_CONFIG, the
                // test suite's S3PROXY_BIN) are not configuration.
                Env::prefixed("S3PROXY_")
                    .filter(|k| {
                        let k = k.as_str().to_ascii_lowercase();
                        let top = k.split("__").next().unwrap_or("");
                        CONFIG_KEYS.contains(&top)
                    })
                    .split("__"),
            )
            .merge(Serialized::defaults(overrides));
        let config: Config = figment.extract().map_err(|e| {
            let first = e.into_iter().next().map(|e| {
                let key = e.path.join(".");
                // TOML parse errors come as a multi-line excerpt: keep the text lines.
                let mut msg = e
                    .kind
                    .to_string()
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.contains('|'))
                    .collect::<Vec<_>>()
                    .join(": ");
                if !key.is_empty() {
                    msg = format!("key `{key}`: {msg}");
                }
                if let Some(source) = e.metadata.as_ref().and_then(|m| m.source.as_ref()) {
                    msg = format!("{msg} (in {source})");
                }
                msg
            });
            ConfigError(first.unwrap_or_else(|| "invalid configuration".into()))
        })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let err = |key: &str, why: &str| Err(ConfigError(format!("key `{key}`: {why}")));
        if self.listen.parse::<SocketAddr>().is_err() {
            return err(
                "listen",
                &format!("{:?} is not an address like 127.0.0.1:9000", self.listen),
            );
        }
        let l = &self.limits;
        if l.header_timeout_ms == 0 {
            return err("limits.header_timeout_ms", "must be positive");
        }
        if l.idle_timeout_ms == 0 {
            return err("limits.idle_timeout_ms", "must be positive");
        }
        if !(1024..=1 << 20).contains(&l.max_header_bytes) {
            return err(
                "limits.max_header_bytes",
                "must be between 1024 and 1048576",
            );
        }
        let mut keys = HashSet::new();
        for (i, c) in self.credentials.iter().enumerate() {
            if c.access_key.is_empty() || !c.access_key.bytes().all(|b| b.is_ascii_graphic()) {
                return err(
                    &format!("credentials.{i}.access_key"),
                    "must be non-empty printable ASCII",
                );
            }
            if c.secret_key.is_empty() {
                return err(&format!("credentials.{i}.secret_key"), "must not be empty");
            }
            if let Err(why) = c.grants() {
                return err(&format!("credentials.{i}.buckets"), &why);
            }
            if !keys.insert(&c.access_key) {
                return err(
                    &format!("credentials.{i}.access_key"),
                    &format!("{:?} is listed twice", c.access_key),
                );
            }
        }
        let mut names = HashSet::new();
        let mut paths = HashSet::new();
        for (i, b) in self.backends.iter().enumerate() {
            if b.name.is_empty() {
                return err(&format!("backends.{i}.name"), "must not be empty");
            }
            if !names.insert(&b.name) {
                return err(
                    &format!("backends.{i}.name"),
                    &format!("{:?} is used by two backends", b.name),
                );
            }
            match (b.kind, &b.path) {
                (BackendKind::Fs, None) => {
                    return err(
                        &format!("backends.{i}.path"),
                        "is required for kind = \"fs\"",
                    );
                }
                (BackendKind::Fs, Some(p)) => {
                    if !paths.insert(p) {
                        return err(
                            &format!("backends.{i}.path"),
                            &format!("{} is used by two backends", p.display()),
                        );
                    }
                }
                (BackendKind::Memory | BackendKind::S3, Some(_)) => {
                    return err(
                        &format!("backends.{i}.path"),
                        "applies to kind = \"fs\" only",
                    );
                }
                (BackendKind::Memory | BackendKind::S3, None) => {}
            }
            if b.kind != BackendKind::S3 && b.has_s3_settings() {
                return err(
                    &format!("backends.{i}"),
                    "endpoint, region, keys, path_style, bucket_prefix and buckets apply to kind = \"s3\" only",
                );
            }
            if b.access_key.is_some() != b.secret_key.is_some() {
                return err(
                    &format!("backends.{i}.secret_key"),
                    "access_key and secret_key go together",
                );
            }
        }
        // No fs root inside another, and no state directory where it could be a bucket.
        let backends = self.effective_backends();
        let roots: Vec<(usize, &PathBuf)> = backends
            .iter()
            .enumerate()
            .filter_map(|(i, b)| b.path.as_ref().map(|p| (i, p)))
            .collect();
        for &(i, root) in &roots {
            for &(j, other) in &roots {
                if i != j
                    && let Some(why) = crate::layout::nested_root(root, other)
                {
                    return err(&format!("backends.{j}.path"), &why);
                }
            }
            if let Some(why) = crate::layout::conflict(root, &self.state_dir) {
                return err("state_dir", &why);
            }
        }
        for (i, b) in self.backends.iter().enumerate() {
            if b.timeout_ms == 0 {
                return err(&format!("backends.{i}.timeout_ms"), "must be at least 1");
            }
        }
        let n = self.effective_backends().len();
        if let WriteQuorum::Count(q) = self.replication.write_quorum
            && q > n
        {
            return err(
                "replication.write_quorum",
                &format!("{q} is more than the {n} configured backend(s)"),
            );
        }
        match self.placement.kind {
            PlacementKind::Erasure => {
                if let Err((key, why)) = self.placement.shards(n) {
                    return err(key, &why);
                }
            }
            PlacementKind::Copies => {
                if self.placement.data_shards.is_some() || self.placement.parity_shards.is_some() {
                    return err(
                        "placement",
                        "data_shards and parity_shards need kind = \"erasure\"",
                    );
                }
            }
        }
        if self
            .replication
            .upload_id_secret
            .as_ref()
            .is_some_and(|s| s.len() < 32)
        {
            return err(
                "replication.upload_id_secret",
                "must be at least 32 characters",
            );
        }
        Ok(())
    }

    /// The backends to run: the configured ones, or the embedded default.
    pub fn effective_backends(&self) -> Vec<BackendConfig> {
        if self.backends.is_empty() {
            vec![BackendConfig {
                name: "local".into(),
                kind: BackendKind::Fs,
                path: Some(PathBuf::from("./data")),
                timeout_ms: default_timeout_ms(),
                endpoint: None,
                region: None,
                access_key: None,
                secret_key: None,
                path_style: None,
                bucket_prefix: None,
                buckets: Default::default(),
            }]
        } else {
            self.backends.clone()
        }
    }
}

#[cfg(test)]
// figment's Jail API returns its own large error type.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use std::io::Write;

    /// Load inside a figment jail: the environment test sets variables that would
    /// otherwise leak into tests running at the same time.
    fn load_str(toml: &str) -> Result<Config, ConfigError> {
        let mut result = None;
        figment::Jail::expect_with(|jail| {
            jail.clear_env();
            let mut f = tempfile::NamedTempFile::new().unwrap();
            f.write_all(toml.as_bytes()).unwrap();
            result = Some(Config::load(Some(f.path()), &Overrides::default()));
            Ok(())
        });
        result.expect("jail ran")
    }

    #[test]
    fn the_documented_example_loads() {
        let c = load_str(
            r#"
listen = "127.0.0.1:9000"
[[credentials]]
access_key = "AKEXAMPLE"
secret_key = "secretexample"
[[backends]]
name = "local"
kind = "fs"
path = "./data"
"#,
        )
        .unwrap();
        assert_eq!(c.credentials[0].access_key, "AKEXAMPLE");
        assert_eq!(c.backends[0].kind, BackendKind::Fs);
    }

    #[test]
    fn hedging_is_adaptive_fixed_or_off() {
        let hedge = |toml: &str| load_str(toml).unwrap().replication.hedge();
        assert_eq!(hedge(""), Hedge::Adaptive);
        assert_eq!(hedge("[replication]\nhedge_after_ms = 0"), Hedge::Adaptive);
        assert_eq!(
            hedge("[replication]\nhedge_after_ms = 50"),
            Hedge::After(std::time::Duration::from_millis(50))
        );
        assert_eq!(
            hedge("[replication]\nhedge_reads = false\nhedge_after_ms = 50"),
            Hedge::Off
        );
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            ("listen = 5", "listen"),
            ("listen = \"nowhere\"", "listen"),
            ("lisen = \"127.0.0.1:1\"", "lisen"),
            (
                "[[backends]]\nname = \"a\"\nkind = \"fs\"",
                "backends.0.path",
            ),
            (
                "[[backends]]\nname = \"a\"\nkind = \"tape\"",
                "backends.0.kind",
            ),
            (
                "[[backends]]\nname = \"a\"\nkind = \"memory\"\npath = \"/x\"",
                "backends.0.path",
            ),
            (
                "[[backends]]\nname = \"a\"\nkind = \"memory\"\n[[backends]]\nname = \"a\"\nkind = \"memory\"",
                "backends.1.name",
            ),
            (
                "[[credentials]]\naccess_key = \"a\"\nsecret_key = \"\"",
                "credentials.0.secret_key",
            ),
            (
                "[[credentials]]\naccess_key = \"a\"\nsecret_key = \"b\"\n[[credentials]]\naccess_key = \"a\"\nsecret_key = \"c\"",
                "credentials.1.access_key",
            ),
            ("this is not toml", ""),
            (
                "[replication]\nwrite_quorum = \"most\"",
                "replication.write_quorum",
            ),
            (
                "[replication]\nwrite_quorum = 3",
                "replication.write_quorum",
            ),
            (
                "[replication]\nwrite_quorum = 0",
                "replication.write_quorum",
            ),
            (
                "[placement]\nkind = \"erasure\"\ndata_shards = 2\nparity_shards = 2\n[[backends]]\nname = \"a\"\nkind = \"memory\"\n[[backends]]\nname = \"b\"\nkind = \"memory\"\n[[backends]]\nname = \"c\"\nkind = \"memory\"",
                "placement.data_shards",
            ),
            (
                "[placement]\nkind = \"erasure\"\ndata_shards = 3\nparity_shards = 1\n[[backends]]\nname = \"a\"\nkind = \"memory\"\n[[backends]]\nname = \"b\"\nkind = \"memory\"\n[[backends]]\nname = \"c\"\nkind = \"memory\"\n[[backends]]\nname = \"d\"\nkind = \"memory\"",
                "placement.data_shards",
            ),
            ("[placement]\nkind = \"erasure\"", "placement"),
            ("[placement]\nkind = \"stripes\"", "placement.kind"),
            ("[placement]\ndata_shards = 2", "placement"),
            (
                "[replication]\nupload_id_secret = \"short\"",
                "replication.upload_id_secret",
            ),
            (
                "state_dir = \"/srv/d/state\"\n[[backends]]\nname = \"a\"\nkind = \"fs\"\npath = \"/srv/d\"",
                "state_dir",
            ),
            (
                "state_dir = \"/srv/s\"\n[[backends]]\nname = \"a\"\nkind = \"fs\"\npath = \"/srv/d\"\n[[backends]]\nname = \"b\"\nkind = \"fs\"\npath = \"/srv/d/b1\"",
                "backends.1.path",
            ),
            ("state_dir = \"./data/journal\"", "state_dir"),
        ];
        for (toml, key) in cases {
            let e = load_str(toml).unwrap_err().0;
            assert!(e.contains(key), "{toml:?} -> {e}");
            assert!(!e.contains('\n'), "one line: {e}");
        }
    }

    #[test]
    fn environment_overrides_the_file_and_ignores_other_variables() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("c.toml", "listen = \"127.0.0.1:1000\"")?;
            jail.set_env("S3PROXY_LISTEN", "127.0.0.1:3000");
            jail.set_env("S3PROXY_BIN", "/somewhere/s3proxy");
            let c =
                Config::load(Some(Path::new("c.toml")), &Overrides::default()).map_err(|e| e.0)?;
            assert_eq!(c.listen, "127.0.0.1:3000");
            Ok(())
        });
    }

    #[test]
    fn flags_override_the_file() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(b"listen = \"127.0.0.1:1000\"").unwrap();
        let c = Config::load(
            Some(f.path()),
            &Overrides {
                listen: Some("127.0.0.1:2000".into()),
            },
        )
        .unwrap();
        assert_eq!(c.listen, "127.0.0.1:2000");
    }
}
