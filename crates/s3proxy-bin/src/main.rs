//! `s3proxy`: an S3-compatible proxy that encrypts object data and replicates it across S3
//! backends. With no arguments it runs on an embedded default: listening on 127.0.0.1:9000,
//! storing under ./data, with dev credentials generated on first run.

mod config;
mod credentials;
mod layout;

use clap::{Parser, Subcommand};
use config::{BackendKind, Config, Overrides};
use s3proxy_core::replicated::{Journal, Replica, Replicated, ReplicationOptions};
use s3proxy_core::{BucketName, DynBackend};
use s3proxy_http::{S3Server, ServerConfig, auth::Credential};
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
    #[command(subcommand)]
    command: Option<Command>,
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
    },
}

async fn build_one(b: &config::BackendConfig) -> Result<DynBackend, String> {
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
async fn build_stack(config: &Config) -> Result<(DynBackend, Option<Replicated>), String> {
    let configured = config.effective_backends();
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
        ..Default::default()
    };
    let journal_dir = config.state_dir.join("journal");
    let journal =
        Journal::open(&journal_dir).map_err(|e| format!("cannot open the repair journal: {e}"))?;
    let replicated = Replicated::new("replicated", replicas, opts, Arc::new(journal))
        .map_err(|e| format!("replication: {e}"))?;
    Ok((Arc::new(replicated.clone()), Some(replicated)))
}

/// The encryption layer over the storage stack, as `[encryption]` says; by default with
/// a master key generated into the state directory on first run.
fn encrypt(config: &Config, inner: DynBackend) -> Result<DynBackend, String> {
    let encryption = match &config.encryption {
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
    };
    let enabled = encryption.enabled;
    let backend = encryption
        .build(inner)
        .map_err(|e| format!("encryption: {e}"))?;
    log::info!("encryption {}", if enabled { "on" } else { "off" });
    Ok(backend)
}

async fn repair(
    config: &Config,
    bucket: Option<String>,
    dry_run: bool,
) -> Result<(), (u8, String)> {
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
            e.bucket, e.key, e.backend
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
    if let Some(Command::Repair { bucket, dry_run }) = cli.command {
        return repair(&config, bucket, dry_run).await;
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
    let (backend, replicated) = build_stack(&config).await.map_err(|e| (1, e))?;
    let backend = encrypt(&config, backend).map_err(|e| (1, e))?;
    let _background = replicated.as_ref().map(|r| {
        r.start_background(std::time::Duration::from_secs(
            config.replication.repair_interval_secs.max(1),
        ))
    });
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .map_err(|e| (1, format!("cannot listen on {}: {e}", config.listen)))?;
    let addr = listener.local_addr().map_err(|e| (1, e.to_string()))?;
    log::info!(
        "s3proxy {} listening on http://{addr} with backend(s) {}",
        env!("CARGO_PKG_VERSION"),
        config
            .effective_backends()
            .iter()
            .map(|b| format!("{} ({:?})", b.name, b.kind))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("s3proxy listening on http://{addr}");
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
        println!("  aws --endpoint-url http://{addr} s3 mb s3://demo");
        println!("  aws --endpoint-url http://{addr} s3 cp README.md s3://demo/");
        println!("  aws --endpoint-url http://{addr} s3 ls s3://demo/");
    }
    let mut server_config = ServerConfig::new(
        credentials
            .into_iter()
            .map(|c| Credential {
                access_key: c.access_key,
                secret_key: c.secret_key,
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
    let server = S3Server::new(backend, server_config);
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| (1, e.to_string()))?;
    tokio::select! {
        r = server.serve(listener) => r.map_err(|e| (1, format!("server failed: {e}"))),
        _ = tokio::signal::ctrl_c() => { log::info!("interrupted, stopping"); Ok(()) }
        _ = terminate.recv() => { log::info!("terminated, stopping"); Ok(()) }
    }
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
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
