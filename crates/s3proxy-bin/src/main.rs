//! `s3proxy`: an S3-compatible proxy that encrypts object data and replicates it across S3
//! backends. With no arguments it runs on an embedded default: listening on 127.0.0.1:9000,
//! storing under ./data, with dev credentials generated on first run.

mod admin;
mod config;
mod credentials;
mod layout;
mod maintenance;
mod statelock;

use clap::{Parser, Subcommand};
use config::{BackendKind, Config, Overrides};
use s3proxy_core::{BucketName, DynBackend};
use s3proxy_http::auth::{Credential, grants::Grants};
use s3proxy_http::{S3Server, ServerConfig};
use s3proxy_replication::{Journal, Replica, Replicated, ReplicationOptions};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

// Every request allocates many small, short-lived buffers on several threads; mimalloc's
// per-thread free lists cost a fraction of glibc malloc's arena locking there (HEAD of a
// small object: docs/bench/README.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// An encrypting, replicating S3 proxy.
#[derive(Parser, Debug)]
#[command(name = "s3proxy", version, about)]
struct Cli {
    /// TOML configuration file.
    #[arg(long, short, env = "S3PROXY_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on (overrides the configuration).
    #[arg(long)]
    listen: Option<String>,
    /// Log lines as `text` (the default) or one JSON object per line, for log shippers.
    #[arg(long, value_enum, default_value = "text", env = "S3PROXY_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

/// How log lines are written to stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// `[time LEVEL target request-id] message`
    Text,
    /// `{"ts":..,"level":..,"target":..,"request_id":..,"message":..}`
    Json,
}

/// env_logger (`RUST_LOG`, default info), each line naming the request it was written
/// for, whichever crate wrote it.
fn init_logging(format: LogFormat) {
    use std::io::Write;
    let mut builder =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    builder.format(move |buf, record| {
        let ts = buf.timestamp_millis();
        let request_id = s3proxy_http::current_request_id();
        match format {
            LogFormat::Text => {
                let rid = request_id.map(|r| format!(" {r}")).unwrap_or_default();
                writeln!(
                    buf,
                    "[{ts} {} {}{rid}] {}",
                    record.level(),
                    record.target(),
                    record.args()
                )
            }
            LogFormat::Json => {
                let line = serde_json::json!({
                    "ts": ts.to_string(),
                    "level": record.level().as_str(),
                    "target": record.target(),
                    "request_id": request_id,
                    "message": record.args().to_string(),
                });
                writeln!(buf, "{line}")
            }
        }
    });
    builder.init();
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve S3 requests (the default).
    Serve,
    /// Write a new master key file (mode 0600) for `[encryption] key_file`.
    Keygen {
        /// Where to write it; refuses to overwrite.
        path: PathBuf,
    },
    /// Compare every backend's objects by version stamp and bring every replica up to
    /// date: copy what is missing or stale, apply journaled deletes.
    Repair {
        /// Only this bucket.
        #[arg(long)]
        bucket: Option<String>,
        /// Report what would be done without doing it.
        #[arg(long)]
        dry_run: bool,
        /// Erasure coding: run although a server holds the state directory (a client
        /// write of a key being rebuilt may then be undone; docs/OPERATIONS.md).
        #[arg(long)]
        while_serving: bool,
    },
    /// Re-wrap every object's data key under the active master key, without moving its
    /// data; resumable and safe while s3proxy serves. Reports the objects still under
    /// each other key, so an operator knows when an old key can go.
    RotateKeys {
        /// Only this bucket.
        #[arg(long)]
        bucket: Option<String>,
        /// Only count the objects under each key.
        #[arg(long)]
        dry_run: bool,
    },
    /// Read and authenticate every object on every backend, and repair (from a good
    /// replica) each one that fails and each one missing or stale; exit 1 when any could
    /// not be repaired.
    Scrub {
        /// Only this bucket.
        #[arg(long)]
        bucket: Option<String>,
        /// Erasure coding: run although a server holds the state directory (a client
        /// write of a key being rebuilt may then be undone; docs/OPERATIONS.md).
        #[arg(long)]
        while_serving: bool,
    },
}

pub(crate) async fn build_one(b: &config::BackendConfig) -> Result<DynBackend, String> {
    Ok(match b.kind {
        BackendKind::Fs => {
            let path = b.path.clone().expect("validated: fs has a path");
            Arc::new(
                s3proxy_backends::Filesystem::new(b.name.clone(), &path)
                    .map_err(|e| format!("backend {:?}: {e}", b.name))?,
            )
        }
        BackendKind::Memory => Arc::new(s3proxy_backends::Memory::new(b.name.clone())),
        BackendKind::S3 => Arc::new(
            s3proxy_backends::S3::new(b.name.clone(), b.s3_options())
                .await
                .map_err(|e| format!("backend {:?}: {e}", b.name))?,
        ),
    })
}

/// A secret kept in the state directory, generated (mode 0600) on first use.
fn state_secret(config: &Config, file: &str) -> Result<[u8; 32], String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = config.state_dir.join(file);
    if let Ok(text) = std::fs::read_to_string(&path) {
        return hex::decode(text.trim())
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| format!("{} is not a 32-byte hex secret", path.display()));
    }
    std::fs::create_dir_all(&config.state_dir)
        .map_err(|e| format!("cannot create {}: {e}", config.state_dir.display()))?;
    let secret: [u8; 32] = rand::random();
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut f| writeln!(f, "{}", hex::encode(secret)))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(secret)
}

/// The storage stack: one backend as it is, several behind replication.
pub(crate) async fn build_stack(
    config: &Config,
) -> Result<(DynBackend, Option<Replicated>), String> {
    let configured = config.effective_backends();
    if config.placement.kind == config::PlacementKind::Erasure {
        let erasure = build_erasure(config, &configured).await?;
        // Journaled shards are rebuilt in the background; the task ends with the set.
        drop(erasure.start_background(std::time::Duration::from_secs(
            config.replication.repair_interval_secs.max(1),
        )));
        return Ok((Arc::new(erasure), None));
    }
    if configured.len() == 1 {
        return Ok((build_one(&configured[0]).await?, None));
    }
    let mut replicas = Vec::with_capacity(configured.len());
    for b in &configured {
        replicas.push(Replica {
            backend: build_one(b).await?,
            timeout: std::time::Duration::from_millis(b.timeout_ms),
        });
    }
    let upload_id_key = match &config.replication.upload_id_secret {
        Some(secret) => {
            use sha2::Digest;
            sha2::Sha256::digest(secret.as_bytes()).into()
        }
        None => state_secret(config, "upload-id.key")?,
    };
    let opts = ReplicationOptions {
        write_quorum: config.replication.write_quorum,
        read_preference: config.replication.read_preference,
        retries: config.replication.retries,
        upload_id_key,
        hedge: config.replication.hedge(),
        ..Default::default()
    };
    let journal_dir = config.state_dir.join("journal");
    let journal =
        Journal::open(&journal_dir).map_err(|e| format!("cannot open the repair journal: {e}"))?;
    let replicated = Replicated::new("replicated", replicas, opts, Arc::new(journal))
        .map_err(|e| format!("replication: {e}"))?;
    Ok((Arc::new(replicated.clone()), Some(replicated)))
}

/// Erasure-coded placement over the backends, shard i on the i-th configured one.
pub(crate) async fn build_erasure(
    config: &Config,
    configured: &[config::BackendConfig],
) -> Result<s3proxy_erasure::Erasure, String> {
    let (k, m) = config
        .placement
        .shards(configured.len())
        .map_err(|(key, why)| format!("{key}: {why}"))?;
    let mut backends = Vec::with_capacity(configured.len());
    for b in configured {
        backends.push(build_one(b).await?);
    }
    let timeout = configured
        .iter()
        .map(|b| b.timeout_ms)
        .max()
        .unwrap_or(30_000);
    let opts = s3proxy_erasure::ErasureOptions {
        // [replication] write_quorum applies; below k it means k.
        write_quorum: Some(config.replication.write_quorum),
        timeout: std::time::Duration::from_millis(timeout),
        ..s3proxy_erasure::ErasureOptions::new(k, m)
    };
    // A journal of its own: replication's repair must not read shard entries as copies.
    let journal_dir = config.state_dir.join("erasure-journal");
    let journal =
        Journal::open(&journal_dir).map_err(|e| format!("cannot open the repair journal: {e}"))?;
    let erasure = s3proxy_erasure::Erasure::new("erasure", backends, opts, Arc::new(journal))
        .map_err(|e| format!("erasure coding: {e}"))?;
    log::info!(
        "erasure coding: {k} data + {m} parity shards over {} backends",
        k + m
    );
    Ok(erasure)
}

/// The encryption layer over the storage stack, as `[encryption]` says; by default with
/// a master key generated into the state directory on first run.
fn encrypt(config: &Config, inner: DynBackend) -> Result<DynBackend, String> {
    let encryption = encryption_config(config)?;
    let enabled = encryption.enabled;
    let backend = encryption
        .build(inner)
        .map_err(|e| format!("encryption: {e}"))?;
    log::info!("encryption {}", if enabled { "on" } else { "off" });
    Ok(backend)
}

/// `[encryption]` as configured, or the embedded default's generated key file.
pub(crate) fn encryption_config(
    config: &Config,
) -> Result<s3proxy_crypto::EncryptionConfig, String> {
    Ok(match &config.encryption {
        Some(e) => e.clone(),
        None => {
            let path = config.state_dir.join("master.key");
            std::fs::create_dir_all(&config.state_dir)
                .map_err(|e| format!("cannot create {}: {e}", config.state_dir.display()))?;
            s3proxy_crypto::load_or_generate_key_file(&path)
                .map_err(|e| format!("master key {}: {e}", path.display()))?;
            s3proxy_crypto::EncryptionConfig {
                key_file: Some(path),
                ..Default::default()
            }
        }
    })
}

async fn repair(
    config: &Config,
    bucket: Option<String>,
    dry_run: bool,
    while_serving: bool,
) -> Result<(), (u8, String)> {
    if config.placement.kind == config::PlacementKind::Erasure {
        return maintenance::erasure_repair(config, bucket, dry_run, false, while_serving).await;
    }
    let (_, replicated) = build_stack(config).await.map_err(|e| (1, e))?;
    let Some(replicated) = replicated else {
        println!("one backend: nothing to repair");
        return Ok(());
    };
    let bucket = bucket
        .map(BucketName::new)
        .transpose()
        .map_err(|e| (2, format!("--bucket: {e}")))?;
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} keys {elapsed}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let progress = |done: u64, total: u64| {
        bar.set_length(total);
        bar.set_position(done);
    };
    let summary = replicated
        .repair_scan(bucket.as_ref(), dry_run, &progress)
        .await
        .map_err(|e| (1, format!("repair failed: {e}")))?;
    bar.finish_and_clear();
    let pending = if dry_run {
        replicated.journal().len()
    } else {
        replicated.replay_journal().await
    };
    println!(
        "{}{} keys examined, {} replicas {} by copying, {} deletes {}, {} failed, {pending} journal entries pending",
        if dry_run { "dry run: " } else { "" },
        summary.keys,
        summary.copies,
        if dry_run {
            "to bring up to date"
        } else {
            "brought up to date"
        },
        summary.deletes,
        if dry_run { "to apply" } else { "applied" },
        summary.failed
    );
    let failing = replicated.failing_repairs();
    for (e, failures) in failing.iter().take(20) {
        println!(
            "repair failing ({failures} times): {}/{} on {}; see the log for why",
            e.bucket, e.target, e.backend
        );
    }
    if failing.len() > 20 {
        println!("... and {} more failing repairs", failing.len() - 20);
    }
    let aside = replicated.journal().set_aside();
    for path in &aside {
        println!("unreadable journal entry kept aside: {}", path.display());
    }
    if summary.failed > 0 {
        return Err((1, format!("{} repairs failed; see the log", summary.failed)));
    }
    if !aside.is_empty() {
        return Err((
            1,
            format!(
                "{} journal entries could not be read (kept aside, see above); a lost tombstone can bring a deleted object back",
                aside.len()
            ),
        ));
    }
    Ok(())
}

async fn run(cli: Cli) -> Result<(), (u8, String)> {
    let overrides = Overrides {
        listen: cli.listen.clone(),
    };
    if let Some(Command::Keygen { path }) = &cli.command {
        let key = s3proxy_crypto::generate_key_file(path)
            .map_err(|e| (1, format!("cannot write {}: {e}", path.display())))?;
        println!(
            "wrote master key {:?} (fingerprint {}) to {}",
            key.id(),
            key.fingerprint(),
            path.display()
        );
        return Ok(());
    }
    let config = Config::load(cli.config.as_deref(), &overrides)
        .map_err(|e| (2, format!("configuration error: {e}")))?;
    match cli.command {
        Some(Command::Repair {
            bucket,
            dry_run,
            while_serving,
        }) => return repair(&config, bucket, dry_run, while_serving).await,
        Some(Command::RotateKeys { bucket, dry_run }) => {
            return maintenance::rotate_keys(&config, bucket, dry_run).await;
        }
        Some(Command::Scrub {
            bucket,
            while_serving,
        }) => return maintenance::scrub(&config, bucket, while_serving).await,
        _ => {}
    }
    let mut credentials = config.credentials.clone();
    let mut generated = None;
    if credentials.is_empty() {
        let (creds, new) = credentials::load_or_generate(&config.state_dir).map_err(|e| {
            (
                1,
                format!(
                    "cannot set up credentials under {}: {e}",
                    config.state_dir.display()
                ),
            )
        })?;
        generated = Some((creds.clone(), new));
        credentials.push(creds);
    }
    // Held while serving: `s3proxy repair`/`scrub` of an erasure placement refuse to run
    // beside this process (see `statelock`).
    let _state_lock = match config.placement.kind {
        config::PlacementKind::Erasure => {
            Some(statelock::hold_for_serving(&config.state_dir).map_err(|e| (1, e))?)
        }
        _ => None,
    };
    let (backend, replicated) = build_stack(&config).await.map_err(|e| (1, e))?;
    let backend = encrypt(&config, backend).map_err(|e| (1, e))?;
    let _background = replicated.as_ref().map(|r| {
        r.start_background(std::time::Duration::from_secs(
            config.replication.repair_interval_secs.max(1),
        ))
    });
    let metrics = admin::install_recorder().map_err(|e| (1, e))?;
    let tls = match &config.tls {
        Some(t) => Some(
            s3proxy_http::tls::TlsFiles::load(&t.cert_file, &t.key_file)
                .map_err(|e| (1, format!("[tls]: {e}")))?,
        ),
        None => None,
    };
    let _tls_watch = tls
        .as_ref()
        .map(|t| t.watch(std::time::Duration::from_secs(5)));
    if config.admin.enabled {
        let explicit = config.admin.listen.is_some();
        let at = config
            .admin
            .listen
            .clone()
            .unwrap_or_else(|| config::DEFAULT_ADMIN_LISTEN.to_string());
        match tokio::net::TcpListener::bind(&at).await {
            Ok(l) => {
                log::info!("admin endpoints (/metrics, /health, /ready) on http://{at}");
                let admin =
                    admin::Admin::new(metrics, replicated.clone(), config.replication.write_quorum);
                tokio::spawn(admin.serve(l));
            }
            Err(e) if !explicit => {
                log::warn!(
                    "admin endpoints not served: cannot listen on {at} ({e}); set [admin] listen"
                )
            }
            Err(e) => return Err((1, format!("cannot listen on [admin] listen {at}: {e}"))),
        }
    }
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .map_err(|e| (1, format!("cannot listen on {}: {e}", config.listen)))?;
    let addr = listener.local_addr().map_err(|e| (1, e.to_string()))?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    log::info!(
        "s3proxy {} listening on {scheme}://{addr} with backend(s) {}",
        env!("CARGO_PKG_VERSION"),
        config
            .effective_backends()
            .iter()
            .map(|b| format!("{} ({:?})", b.name, b.kind))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("s3proxy listening on {scheme}://{addr}");
    if let Some((creds, new)) = &generated {
        let file = config.state_dir.join("credentials.toml");
        println!(
            "{} dev credentials in {} (mode 0600):",
            if *new { "Generated" } else { "Using" },
            file.display()
        );
        println!(
            "  access key: {}\n  secret key: {}",
            creds.access_key, creds.secret_key
        );
        println!("Try it:");
        println!(
            "  export AWS_ACCESS_KEY_ID={} AWS_SECRET_ACCESS_KEY={} AWS_DEFAULT_REGION={}",
            creds.access_key, creds.secret_key, config.region
        );
        println!("  aws --endpoint-url {scheme}://{addr} s3 mb s3://demo");
        println!("  aws --endpoint-url {scheme}://{addr} s3 cp README.md s3://demo/");
        println!("  aws --endpoint-url {scheme}://{addr} s3 ls s3://demo/");
    }
    let mut server_config = ServerConfig::new(
        credentials
            .into_iter()
            .map(|c| {
                // Validated with the configuration: a bad pattern never gets here.
                let grants = c.grants().unwrap_or(Grants::Only(vec![]));
                Credential::new(c.access_key, c.secret_key).with_grants(grants)
            })
            .collect(),
    );
    server_config.region = config.region.clone();
    server_config.virtual_host_domains = config.virtual_host_domains.clone();
    server_config.header_timeout =
        std::time::Duration::from_millis(config.limits.header_timeout_ms);
    server_config.body_idle_timeout =
        std::time::Duration::from_millis(config.limits.idle_timeout_ms);
    server_config.max_header_bytes = config.limits.max_header_bytes;
    server_config.max_clock_skew =
        std::time::Duration::from_secs(config.limits.max_clock_skew_secs);
    server_config.max_requests =
        (config.limits.max_requests > 0).then_some(config.limits.max_requests);
    let server = S3Server::new(backend, server_config);
    let options = s3proxy_http::server::ServeOptions {
        tls: tls.clone(),
        max_connections: (config.limits.max_connections > 0)
            .then_some(config.limits.max_connections),
        shutdown_grace: std::time::Duration::from_secs(config.shutdown_grace_secs),
    };
    let stopped = server
        .serve_with(listener, options, stop_signal(tls))
        .await
        .map_err(|e| (1, format!("server failed: {e}")))?;
    log::info!("stopped: {stopped:?}");
    // Journal entries are written through (fsynced) as they are recorded; nothing waits
    // in memory. The background repair task ends with the runtime.
    if let Some(r) = &replicated {
        log::info!(
            "{} repair journal entries pending at exit",
            r.journal().len()
        );
    }
    Ok(())
}

/// Completes on SIGTERM or Ctrl-C; reloads the TLS files on every SIGHUP meanwhile.
async fn stop_signal(tls: Option<Arc<s3proxy_http::tls::TlsFiles>>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut terminate), Ok(mut hangup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        log::error!("cannot install signal handlers; stopping only with Ctrl-C");
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => { log::info!("interrupted, stopping"); return; }
            _ = terminate.recv() => { log::info!("terminated, stopping"); return; }
            _ = hangup.recv() => match &tls {
                Some(t) => match t.reload() {
                    Ok(()) => log::info!("SIGHUP: TLS certificate reloaded"),
                    Err(e) => log::error!("SIGHUP: TLS reload failed, the previous certificate stays: {e}"),
                },
                None => log::info!("SIGHUP: nothing to reload"),
            },
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("s3proxy: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, message)) => {
            eprintln!("s3proxy: {message}");
            ExitCode::from(code)
        }
    }
}
