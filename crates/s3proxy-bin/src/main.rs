//! `s3proxy`: an S3-compatible proxy that encrypts object data and replicates it across S3
//! backends. With no arguments it runs on an embedded default: listening on 127.0.0.1:9000,
//! storing under ./data, with dev credentials generated on first run.

mod config;
mod credentials;

use clap::Parser;
use config::{BackendKind, Config, Overrides};
use s3proxy_core::DynBackend;
use s3proxy_http::{S3Server, ServerConfig, auth::Credential};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

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
}

fn build_backend(config: &Config) -> Result<DynBackend, String> {
    let backends = config.effective_backends();
    let b = &backends[0];
    Ok(match b.kind {
        BackendKind::Fs => {
            let path = b.path.clone().expect("validated: fs has a path");
            Arc::new(
                s3proxy_backends::Filesystem::new(b.name.clone(), &path)
                    .map_err(|e| format!("backend {:?}: {e}", b.name))?,
            )
        }
        BackendKind::Memory => Arc::new(s3proxy_backends::Memory::new(b.name.clone())),
    })
}

async fn run(cli: Cli) -> Result<(), (u8, String)> {
    let overrides = Overrides {
        listen: cli.listen.clone(),
    };
    let config = Config::load(cli.config.as_deref(), &overrides)
        .map_err(|e| (2, format!("configuration error: {e}")))?;
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
    let backend = build_backend(&config).map_err(|e| (1, e))?;
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
