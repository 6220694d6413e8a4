//! Master keys, key files and the `[encryption]` configuration.

use crate::Encrypted;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use s3proxy_core::{DynBackend, Error, Result};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const KEY_FILE_TAG: &str = "s3proxy-master-key-v1";

/// A 256-bit master key with an id. Master keys only wrap per-object data keys; the id is
/// stored with every object so that old objects stay readable after the active key
/// changes. `Debug` never shows the secret.
///
/// ```
/// use s3proxy_crypto::MasterKey;
/// let key = MasterKey::generate();
/// let again = MasterKey::parse(&key.to_text()).unwrap();
/// assert_eq!(again.id(), key.id());
/// assert_eq!(again.fingerprint(), key.fingerprint());
/// assert!(!format!("{key:?}").contains(&key.to_text()));
/// ```
#[derive(Clone)]
pub struct MasterKey {
    id: String,
    secret: [u8; 32],
    /// [`MasterKey::fingerprint`], computed once: every wrap writes it and every unwrap
    /// compares it.
    fingerprint: String,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterKey")
            .field("id", &self.id)
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

fn check_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 32
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "invalid master key id {id:?}: use 1 to 32 characters of A-Z a-z 0-9 - _"
        )))
    }
}

impl MasterKey {
    /// A fresh random key with a random id (`k` and 8 hex digits).
    pub fn generate() -> MasterKey {
        let id = format!("k{}", hex::encode(rand::random::<[u8; 4]>()));
        MasterKey::with_fingerprint(id, rand::random())
    }

    fn with_fingerprint(id: String, secret: [u8; 32]) -> MasterKey {
        let mut h = Sha256::new();
        h.update(b"s3proxy-enc-v1/fingerprint");
        h.update(secret);
        let fingerprint = hex::encode(&h.finalize()[..8]);
        MasterKey {
            id,
            secret,
            fingerprint,
        }
    }

    /// A key from its id and secret bytes. Ids are 1 to 32 characters of
    /// `[A-Za-z0-9_-]`.
    ///
    /// ```
    /// let key = s3proxy_crypto::MasterKey::new("2024", [1; 32]).unwrap();
    /// assert_eq!(key.id(), "2024");
    /// assert!(s3proxy_crypto::MasterKey::new("a.b", [1; 32]).is_err());
    /// ```
    pub fn new(id: impl Into<String>, secret: [u8; 32]) -> Result<MasterKey> {
        let id = id.into();
        check_id(&id)?;
        Ok(MasterKey::with_fingerprint(id, secret))
    }

    /// A key from its id and the base64 (standard alphabet) of its 32 secret bytes.
    ///
    /// ```
    /// let secret = format!("{}=", "A".repeat(43));
    /// let key = s3proxy_crypto::MasterKey::from_base64("old", &secret).unwrap();
    /// assert_eq!(key.id(), "old");
    /// ```
    pub fn from_base64(id: impl Into<String>, secret: &str) -> Result<MasterKey> {
        let id = id.into();
        let bytes = B64.decode(secret.trim()).map_err(|_| {
            Error::InvalidArgument(format!("master key {id:?}: the secret is not valid base64"))
        })?;
        let secret: [u8; 32] = bytes.try_into().map_err(|_| {
            Error::InvalidArgument(format!("master key {id:?}: the secret must be 32 bytes"))
        })?;
        MasterKey::new(id, secret)
    }

    /// The key id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// 16 hex digits identifying the secret (a truncated SHA-256, not usable to recover
    /// it). Stored next to the key id so a different key configured under the same id is
    /// reported as such instead of as corruption.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    pub(crate) fn secret(&self) -> &[u8; 32] {
        &self.secret
    }

    /// The key file form: `s3proxy-master-key-v1:<id>:<base64 secret>`.
    pub fn to_text(&self) -> String {
        format!("{KEY_FILE_TAG}:{}:{}", self.id, B64.encode(self.secret))
    }

    /// Parse the key file form (blank lines and `#` comments are ignored).
    pub fn parse(text: &str) -> Result<MasterKey> {
        let line = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#'))
            .unwrap_or("");
        let mut fields = line.splitn(3, ':');
        match (fields.next(), fields.next(), fields.next()) {
            (Some(KEY_FILE_TAG), Some(id), Some(secret)) => MasterKey::from_base64(id, secret),
            _ => Err(Error::InvalidArgument(format!(
                "not an s3proxy master key (expected a line `{KEY_FILE_TAG}:<id>:<base64>`)"
            ))),
        }
    }
}

/// Several master keys by id, one of them active. New objects are wrapped with the active
/// key; objects wrapped with any key of the ring stay readable.
///
/// ```
/// use s3proxy_crypto::{Keyring, MasterKey};
/// let old = MasterKey::new("old", [1; 32]).unwrap();
/// let new = MasterKey::new("new", [2; 32]).unwrap();
/// let ring = Keyring::new([old, new], "new").unwrap();
/// assert_eq!(ring.active().id(), "new");
/// assert!(ring.get("old").is_some());
/// assert!(Keyring::new([MasterKey::generate()], "missing").is_err());
/// ```
#[derive(Clone, Debug)]
pub struct Keyring {
    keys: BTreeMap<String, MasterKey>,
    active: String,
}

impl Keyring {
    /// A ring of `keys` writing with the key whose id is `active`.
    pub fn new(keys: impl IntoIterator<Item = MasterKey>, active: &str) -> Result<Keyring> {
        let mut map = BTreeMap::new();
        for key in keys {
            if let Some(other) = map.insert(key.id.clone(), key.clone())
                && other.secret != key.secret
            {
                return Err(Error::InvalidArgument(format!(
                    "two different master keys share the id {:?}",
                    key.id
                )));
            }
        }
        if !map.contains_key(active) {
            return Err(Error::InvalidArgument(format!(
                "the active master key id {active:?} is not among the configured keys"
            )));
        }
        Ok(Keyring {
            keys: map,
            active: active.to_string(),
        })
    }

    /// A ring of one key, active.
    pub fn single(key: MasterKey) -> Keyring {
        let active = key.id.clone();
        Keyring {
            keys: BTreeMap::from([(active.clone(), key)]),
            active,
        }
    }

    /// The key new objects are wrapped with.
    pub fn active(&self) -> &MasterKey {
        &self.keys[&self.active]
    }

    /// The key with this id.
    pub fn get(&self, id: &str) -> Option<&MasterKey> {
        self.keys.get(id)
    }

    /// All key ids, sorted.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }
}

/// Write a new random master key to `path`, readable by the owner only (mode 0600 on
/// Unix). Fails if the file exists, so an existing key is never overwritten.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("master.key");
/// let key = s3proxy_crypto::generate_key_file(&path).unwrap();
/// assert_eq!(s3proxy_crypto::load_key_file(&path).unwrap().id(), key.id());
/// assert!(s3proxy_crypto::generate_key_file(&path).is_err());
/// ```
pub fn generate_key_file(path: &Path) -> Result<MasterKey> {
    use std::io::Write;
    let key = MasterKey::generate();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let context = format!("creating master key file {}", path.display());
    let mut file = options.open(path).map_err(|e| Error::io(&context, e))?;
    let text = format!(
        "# s3proxy master key: keep it secret and backed up; without it the data is lost\n{}\n",
        key.to_text()
    );
    file.write_all(text.as_bytes())
        .and_then(|_| file.sync_all())
        .map_err(|e| Error::io(&context, e))?;
    Ok(key)
}

/// Read a master key file written by [`generate_key_file`] (or by hand in the same form).
/// Warns when the file is readable by group or others.
///
/// ```
/// let err = s3proxy_crypto::load_key_file(std::path::Path::new("/nonexistent/key")).unwrap_err();
/// assert!(err.to_string().contains("/nonexistent/key"));
/// ```
pub fn load_key_file(path: &Path) -> Result<MasterKey> {
    let context = format!("reading master key file {}", path.display());
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(&context, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            log::warn!(
                "master key file {} is readable by other users (mode {:o}); chmod 600 it",
                path.display(),
                meta.permissions().mode() & 0o777
            );
        }
    }
    MasterKey::parse(&text)
        .map_err(|e| Error::InvalidArgument(format!("master key file {}: {e}", path.display())))
}

/// Load the key file at `path`, or generate it when it does not exist (the embedded
/// default's "key generated on first run").
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("k");
/// let first = s3proxy_crypto::load_or_generate_key_file(&path).unwrap();
/// let second = s3proxy_crypto::load_or_generate_key_file(&path).unwrap();
/// assert_eq!(first.fingerprint(), second.fingerprint());
/// ```
pub fn load_or_generate_key_file(path: &Path) -> Result<MasterKey> {
    if path.exists() {
        return load_key_file(path);
    }
    match generate_key_file(path) {
        Ok(key) => {
            log::info!("generated a new master key file {}", path.display());
            Ok(key)
        }
        // Another process created it meanwhile: use theirs.
        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::AlreadyExists => {
            load_key_file(path)
        }
        Err(e) => Err(e),
    }
}

fn default_enabled() -> bool {
    true
}

/// One key of `[encryption] keys`: an id and either the base64 secret or a key file.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// The key id. For a `key_file`, it must match the id in the file.
    pub id: String,
    /// The secret, base64 of 32 bytes.
    #[serde(default)]
    pub key: Option<String>,
    /// A key file written by `s3proxy keygen`.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

/// The key itself stays out of `{:?}`.
impl std::fmt::Debug for KeyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyConfig")
            .field("id", &self.id)
            .field("key", &self.key.as_ref().map(|_| "<redacted>"))
            .field("key_file", &self.key_file)
            .finish()
    }
}

/// The `[encryption]` section of the configuration.
///
/// ```toml
/// [encryption]
/// enabled = true                 # default; false serves a plain proxy
/// key_file = "/etc/s3proxy/master.key"
/// # or several keys, reading all, writing with `active`:
/// # active = "k2025"
/// # keys = [ { id = "k2024", key_file = "/etc/s3proxy/2024.key" },
/// #          { id = "k2025", key = "<base64 of 32 bytes>" } ]
/// ```
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use s3proxy_crypto::EncryptionConfig;
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("master.key");
/// s3proxy_crypto::generate_key_file(&path).unwrap();
/// let config: EncryptionConfig =
///     serde_json::from_value(serde_json::json!({ "key_file": path })).unwrap();
/// let inner = std::sync::Arc::new(s3proxy_backends::Memory::new("mem"));
/// let backend = config.build(inner).unwrap();
/// assert_eq!(backend.name(), "mem");
/// let plain: EncryptionConfig = serde_json::from_str(r#"{"enabled": false}"#).unwrap();
/// assert!(!plain.enabled);
/// # });
/// ```
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct EncryptionConfig {
    /// Encrypt (the default). `false` makes [`EncryptionConfig::build`] return the inner
    /// backend unchanged.
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    /// A master key file; it is active unless `active` names another key.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// More keys (older ones to read, or the active one).
    #[serde(default)]
    pub keys: Vec<KeyConfig>,
    /// The id of the key new objects are encrypted with.
    #[serde(default)]
    pub active: Option<String>,
    /// Memory (MiB) for the plaintext sizes and ETags listings show over backends that
    /// list no metadata (S3); 0 looks every such listed object up on every listing.
    #[serde(default = "default_list_cache_mib")]
    pub list_cache_mib: u64,
}

fn default_list_cache_mib() -> u64 {
    (crate::list_cache::DEFAULT_LIST_CACHE_BYTES >> 20) as u64
}

impl Default for EncryptionConfig {
    fn default() -> Self {
        EncryptionConfig {
            enabled: true,
            key_file: None,
            keys: vec![],
            active: None,
            list_cache_mib: default_list_cache_mib(),
        }
    }
}

impl EncryptionConfig {
    /// The keyring this configuration describes. Without `active`, the `key_file` key is
    /// active, or the only key of `keys`.
    pub fn keyring(&self) -> Result<Keyring> {
        let mut keys = vec![];
        if let Some(path) = &self.key_file {
            keys.push(load_key_file(path)?);
        }
        for k in &self.keys {
            let key = match (&k.key, &k.key_file) {
                (Some(secret), None) => MasterKey::from_base64(k.id.clone(), secret)?,
                (None, Some(path)) => {
                    let key = load_key_file(path)?;
                    if key.id() != k.id {
                        return Err(Error::InvalidArgument(format!(
                            "master key file {} holds key id {:?}, configured as {:?}",
                            path.display(),
                            key.id(),
                            k.id
                        )));
                    }
                    key
                }
                _ => {
                    return Err(Error::InvalidArgument(format!(
                        "master key {:?}: set exactly one of `key` and `key_file`",
                        k.id
                    )));
                }
            };
            keys.push(key);
        }
        let active = match (&self.active, &self.key_file, keys.len()) {
            (Some(id), _, _) => id.clone(),
            (None, Some(_), _) => keys[0].id().to_string(),
            (None, None, 1) => keys[0].id().to_string(),
            (None, None, 0) => {
                return Err(Error::InvalidArgument(
                    "encryption is enabled but no master key is configured: set \
                     [encryption] key_file (create one with `s3proxy keygen`) or \
                     enabled = false"
                        .into(),
                ));
            }
            (None, None, _) => {
                return Err(Error::InvalidArgument(
                    "several master keys are configured: set [encryption] active to the id \
                     to encrypt with"
                        .into(),
                ));
            }
        };
        Keyring::new(keys, &active)
    }

    /// Wrap `inner` in the encryption layer, or return it unchanged when disabled.
    pub fn build(self, inner: DynBackend) -> Result<DynBackend> {
        if !self.enabled {
            return Ok(inner);
        }
        let ring = self.keyring()?;
        let cache =
            usize::try_from(self.list_cache_mib.saturating_mul(1 << 20)).unwrap_or(usize::MAX);
        Ok(Arc::new(Encrypted::new(inner, ring).with_list_cache(cache)))
    }
}
