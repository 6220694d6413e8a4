//! The load generator against a real s3proxy on loopback: every operation, a few requests
//! each, with the data verified; and a wrong secret reported as a failure.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Proxy {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The s3proxy binary: `S3PROXY_BIN`, or the one built beside the load generator (the
/// workspace's target directory, which `cargo test --workspace` fills).
fn s3proxy_binary() -> std::path::PathBuf {
    if let Some(path) = std::env::var_os("S3PROXY_BIN") {
        return path.into();
    }
    let beside =
        std::path::Path::new(env!("CARGO_BIN_EXE_s3proxy-bench")).with_file_name("s3proxy");
    assert!(
        beside.exists(),
        "{} is missing: build it first (cargo build -p s3proxy-bin) or set S3PROXY_BIN",
        beside.display()
    );
    beside
}

fn start_proxy() -> Proxy {
    let dir = tempfile::tempdir().unwrap();
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = dir.path().join("s3proxy.toml");
    std::fs::write(
        &config,
        format!(
            r#"listen = "{addr}"
state_dir = "{state}"
[[credentials]]
access_key = "BENCHKEY"
secret_key = "benchsecret"
[[backends]]
name = "mem"
kind = "memory"
"#,
            state = dir.path().join("state").display()
        ),
    )
    .unwrap();
    let child = Command::new(s3proxy_binary())
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let proxy = Proxy {
        child,
        addr,
        _dir: dir,
    };
    let start = Instant::now();
    while TcpStream::connect(addr).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "s3proxy did not listen"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    proxy
}

fn bench(proxy: &Proxy, secret: &str, args: &[&str]) -> (bool, serde_json::Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_s3proxy-bench"))
        .args(["--endpoint", &format!("http://{}", proxy.addr)])
        .args(["--access-key", "BENCHKEY", "--secret-key", secret])
        .args(["--bucket", "bench", "--json"])
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let report = serde_json::from_str(stdout.trim()).unwrap_or(serde_json::Value::Null);
    (out.status.success(), report, stderr)
}

#[test]
fn every_operation_against_s3proxy() {
    let proxy = start_proxy();
    // 300 KiB objects: several 64 KiB segments and a partial last one.
    let common = ["--size", "300KiB", "--keys", "6", "-c", "3", "--verify"];
    let runs: [&[&str]; 6] = [
        &["--op", "put", "--create-bucket", "-n", "12"],
        &["--op", "get", "-n", "12"],
        &["--op", "get", "--range-size", "70KiB", "-n", "12"],
        &["--op", "head", "-n", "12"],
        &["--op", "list", "-n", "4"],
        &["--op", "delete", "-n", "6"],
    ];
    for run in runs {
        let args: Vec<&str> = common.iter().chain(run.iter()).copied().collect();
        let (ok, report, stderr) = bench(&proxy, "benchsecret", &args);
        assert!(ok, "{args:?} failed: {stderr}");
        let count: u64 = run[run.len() - 1].parse().unwrap();
        assert_eq!(report["ops"], count, "{args:?}: {report}");
        assert_eq!(report["errors"], 0, "{args:?}: {report}");
        let expect_bytes = match run[1] {
            "get" if run.contains(&"--range-size") => count * 70 * 1024,
            "put" | "get" => count * 300 * 1024,
            _ => 0,
        };
        assert_eq!(report["bytes"], expect_bytes, "{args:?}: {report}");
        assert!(report["latency_ms"]["p50"].as_f64().unwrap() > 0.0);
        assert!(report["ops_per_sec"].as_f64().unwrap() > 0.0);
    }
    // Multipart: 12 MiB objects in parts of 5 MiB, read back whole and in ranges.
    for run in [
        &["--op", "put", "--part-size", "5MiB", "-n", "2"][..],
        &["--op", "get", "--prepare", "false", "-n", "2"][..],
        &[
            "--op",
            "get",
            "--range-size",
            "3MiB",
            "--prepare",
            "false",
            "-n",
            "4",
        ][..],
    ] {
        let mut args = vec!["--size", "12MiB", "--keys", "2", "-c", "2", "--verify"];
        args.extend_from_slice(run);
        let (ok, report, stderr) = bench(&proxy, "benchsecret", &args);
        assert!(ok, "{args:?} failed: {stderr}");
        assert_eq!(report["errors"], 0, "{args:?}: {report}");
        let (n, each) = if run.contains(&"--range-size") {
            (4, 3)
        } else {
            (2, 12)
        };
        assert_eq!(report["bytes"], (n * each) << 20, "{args:?}: {report}");
    }
    // The deletes removed every key: a HEAD run without preparing finds nothing.
    let (ok, report, _) = bench(
        &proxy,
        "benchsecret",
        &[
            "--op",
            "head",
            "--size",
            "300KiB",
            "--keys",
            "6",
            "-n",
            "3",
            "--prepare",
            "false",
        ],
    );
    assert!(!ok);
    assert_eq!(report["errors"], 3, "{report}");
}

#[test]
fn a_wrong_secret_fails_the_run() {
    let proxy = start_proxy();
    let (ok, _, stderr) = bench(
        &proxy,
        "not-the-secret",
        &[
            "--op",
            "put",
            "--create-bucket",
            "--size",
            "1KiB",
            "-n",
            "2",
        ],
    );
    assert!(!ok);
    assert!(stderr.contains("SignatureDoesNotMatch"), "{stderr}");
}
