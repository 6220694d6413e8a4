//! `s3proxy rotate-keys`, `s3proxy scrub`, and `s3proxy repair` under erasure coding:
//! walks over every object of the stack, with a progress bar on a terminal and plain
//! progress lines otherwise.

use crate::config::Config;
use s3proxy_core::{
    Backend, BucketName, Conditions, CopyOptions, DynBackend, GetOptions, ListOptions,
    MetadataDirective, ObjectKey,
};
use std::collections::BTreeMap;
use std::io::IsTerminal;

type Failure = (u8, String);

/// Progress of a walk: a bar on a terminal, a line every `EVERY` objects otherwise.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    done: u64,
    what: &'static str,
}

const EVERY: u64 = 1000;

impl Progress {
    fn new(what: &'static str) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.set_style(
                indicatif::ProgressStyle::with_template("{spinner} {pos} objects {msg} {elapsed}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
            );
            bar
        });
        Progress { bar, done: 0, what }
    }

    fn step(&mut self, bucket: &str) {
        self.done += 1;
        match &self.bar {
            Some(bar) => {
                bar.set_position(self.done);
                bar.set_message(bucket.to_string());
            }
            None if self.done.is_multiple_of(EVERY) => {
                eprintln!("{}: {} objects (bucket {bucket})", self.what, self.done)
            }
            None => {}
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

async fn buckets(backend: &DynBackend, only: Option<String>) -> Result<Vec<BucketName>, Failure> {
    match only {
        Some(b) => Ok(vec![
            BucketName::new(b).map_err(|e| (2, format!("--bucket: {e}")))?,
        ]),
        None => backend
            .list_buckets()
            .await
            .map_err(|e| (1, format!("cannot list buckets: {e}")))?
            .into_iter()
            .map(|b| BucketName::new(b.name).map_err(|e| (1, e.to_string())))
            .collect(),
    }
}

/// One page of `bucket`'s keys after `after`, and where the next page starts (`None`
/// at the end): walks hold one page at a time, whatever the bucket's size.
async fn key_page(
    backend: &DynBackend,
    bucket: &BucketName,
    after: Option<String>,
) -> Result<(Vec<ObjectKey>, Option<String>), Failure> {
    let page = backend
        .list_objects(
            bucket,
            ListOptions {
                start_after: after,
                max_keys: 1000,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| (1, format!("cannot list {bucket}: {e}")))?;
    let keys = page
        .objects
        .into_iter()
        .map(|o| ObjectKey::new(o.key).map_err(|e| (1, format!("listed key: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let next = page.next_marker.filter(|_| page.is_truncated);
    Ok((keys, next))
}

/// The master key id in a stored object's wrapped data key (`1.<id>.<fingerprint>.<blob>`).
fn wrapping_key_id(wrapped: &str) -> Option<&str> {
    wrapped.split('.').nth(1)
}

/// `s3proxy rotate-keys`: CopyObject of each object onto itself through the encryption
/// layer re-wraps its data key with the active master key and copies no data; it is
/// conditional on the object's ETag, so a write that lands meanwhile is never undone.
pub async fn rotate_keys(
    config: &Config,
    bucket: Option<String>,
    dry_run: bool,
) -> Result<(), Failure> {
    let encryption = crate::encryption_config(config).map_err(|e| (1, e))?;
    if !encryption.enabled {
        println!("encryption is off: no keys to rotate");
        return Ok(());
    }
    let ring = encryption
        .keyring()
        .map_err(|e| (1, format!("encryption: {e}")))?;
    let active = ring.active().id().to_string();
    let (inner, _) = crate::build_stack(config).await.map_err(|e| (1, e))?;
    let encrypted = encryption
        .build(inner.clone())
        .map_err(|e| (1, format!("encryption: {e}")))?;
    let mut progress = Progress::new(if dry_run { "counting" } else { "rotating" });
    let mut under: BTreeMap<String, u64> = BTreeMap::new();
    let mut rotated = 0u64;
    let mut failed = 0u64;
    for b in buckets(&inner, bucket).await? {
        let mut after = None;
        loop {
            let (keys, next) = key_page(&inner, &b, after.take()).await?;
            for key in keys {
                progress.step(b.as_str());
                let stored = match inner.head_object(&b, &key, GetOptions::default()).await {
                    Ok(s) => s,
                    Err(e) => {
                        log::warn!("{b}/{key}: {e}");
                        failed += 1;
                        continue;
                    }
                };
                let internal = &stored.metadata.internal;
                let id = match internal.get(s3proxy_crypto::format::KEY_META) {
                    Some(w) => wrapping_key_id(w).unwrap_or("(not encrypted)"),
                    // A multipart object read from its manifest (its info record was never
                    // attached): its key is derived from the master key the manifest names;
                    // the copy below attaches the records under the active key.
                    None if stored.etag.as_str().contains('-')
                        && !internal.contains_key(s3proxy_crypto::format::INFO_META) =>
                    {
                        "(manifest only)"
                    }
                    None => "(not encrypted)",
                }
                .to_string();
                if id == active || id == "(not encrypted)" || dry_run {
                    *under.entry(id).or_default() += 1;
                    continue;
                }
                let plain = encrypted.head_object(&b, &key, GetOptions::default()).await;
                let copied = match plain {
                    Ok(info) => {
                        encrypted
                            .copy_object(
                                &b,
                                &key,
                                &b,
                                &key,
                                CopyOptions {
                                    directive: MetadataDirective::Copy,
                                    source_conditions: Conditions {
                                        if_match: Some(info.etag.quoted()),
                                        ..Default::default()
                                    },
                                },
                            )
                            .await
                    }
                    Err(e) => Err(e),
                };
                match copied {
                    Ok(_) => {
                        rotated += 1;
                        *under.entry(active.clone()).or_default() += 1;
                    }
                    // Changed meanwhile: the new version is written under the active key.
                    Err(s3proxy_core::Error::PreconditionFailed) => {
                        *under.entry(active.clone()).or_default() += 1;
                    }
                    Err(e) => {
                        log::warn!("{b}/{key}: not re-wrapped: {e}");
                        failed += 1;
                        *under.entry(id).or_default() += 1;
                    }
                }
            }
            match next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
    }
    progress.finish();
    println!(
        "{} {rotated} object(s) to master key {active:?}; {failed} failed",
        if dry_run {
            "would re-wrap"
        } else {
            "re-wrapped"
        }
    );
    for (id, n) in &under {
        let note = if *id == active { " (active)" } else { "" };
        println!("  {n} object(s) under key {id:?}{note}");
    }
    let old_left = under
        .iter()
        .any(|(id, n)| *id != active && id != "(not encrypted)" && *n > 0);
    if !old_left && !dry_run {
        println!("no object is left under another key: older keys may be removed");
    }
    if failed > 0 {
        return Err((1, format!("{failed} object(s) could not be re-wrapped")));
    }
    Ok(())
}

/// Read one stored replica whole through the encryption layer (which authenticates every
/// segment) and check its length.
async fn verify(
    backend: &DynBackend,
    bucket: &BucketName,
    key: &ObjectKey,
) -> s3proxy_core::Result<()> {
    use futures::StreamExt;
    let got = backend
        .get_object(bucket, key, GetOptions::default())
        .await?;
    let mut body = got.body;
    let mut read = 0u64;
    while let Some(chunk) = body.next().await {
        read += chunk?.len() as u64;
    }
    if read != got.info.size {
        return Err(s3proxy_core::Error::Corrupt(format!(
            "{read} bytes read of {}",
            got.info.size
        )));
    }
    Ok(())
}

/// A replica that failed: its backend, bucket, key and why.
struct Bad {
    backend: String,
    bucket: BucketName,
    key: ObjectKey,
    why: String,
    /// It failed authentication (or its stored form is invalid): a repair replaces it.
    /// Anything else (a timeout, a 503, a missing key) says nothing about the stored
    /// copy, and repairing on it could replace a good, possibly only, copy.
    corrupt: bool,
}

/// `s3proxy scrub`: every object of every backend is read whole through the encryption
/// layer, which authenticates every segment; what fails is listed with its backend. With
/// several backends each failing replica is then replaced from a good one (a forced
/// repair through the replication layer's journal) and read again, and a repair scan
/// copies what is missing or stale; exit 1 when something is left unrepaired.
pub async fn scrub(
    config: &Config,
    bucket: Option<String>,
    while_serving: bool,
) -> Result<(), Failure> {
    if config.placement.kind == crate::config::PlacementKind::Erasure {
        // Shards are no objects the encryption layer can read alone: their own checksums
        // say which one is bad.
        return erasure_repair(config, bucket, false, true, while_serving).await;
    }
    let encryption = crate::encryption_config(config).map_err(|e| (1, e))?;
    let mut progress = Progress::new("scrubbing");
    let mut bad: Vec<Bad> = vec![];
    let mut checked = 0u64;
    let mut readers: BTreeMap<String, DynBackend> = BTreeMap::new();
    for b in config.effective_backends() {
        let raw = crate::build_one(&b).await.map_err(|e| (1, e))?;
        let backend = encryption
            .clone()
            .build(raw.clone())
            .map_err(|e| (1, format!("encryption: {e}")))?;
        for bucket_name in buckets(&raw, bucket.clone()).await? {
            let mut after = None;
            loop {
                let (keys, next) = key_page(&raw, &bucket_name, after.take()).await?;
                for key in keys {
                    progress.step(bucket_name.as_str());
                    checked += 1;
                    if let Err(e) = verify(&backend, &bucket_name, &key).await {
                        bad.push(Bad {
                            backend: b.name.clone(),
                            bucket: bucket_name.clone(),
                            key,
                            why: e.to_string(),
                            corrupt: matches!(e, s3proxy_core::Error::Corrupt(_)),
                        });
                    }
                }
                match next {
                    Some(n) => after = Some(n),
                    None => break,
                }
            }
        }
        readers.insert(b.name.clone(), backend);
    }
    progress.finish();
    println!("scrubbed {checked} object replica(s): {} failed", bad.len());
    for f in &bad {
        println!("  {} {}/{}: {}", f.backend, f.bucket, f.key, f.why);
    }
    let (_, replicated) = crate::build_stack(config).await.map_err(|e| (1, e))?;
    let Some(replicated) = replicated else {
        if bad.is_empty() {
            return Ok(());
        }
        return Err((
            1,
            format!(
                "{} object(s) failed to read or authenticate; with one backend there is no \
                 other replica to repair them from",
                bad.len()
            ),
        ));
    };
    let mut unrepaired = 0u64;
    let mut repaired = 0u64;
    for f in &bad {
        if !f.corrupt {
            unrepaired += 1;
            println!(
                "  NOT repaired {} {}/{}: it could not be read, which says nothing about its \
                 copy; run scrub again",
                f.backend, f.bucket, f.key
            );
            continue;
        }
        let outcome = match replicated
            .repair_replica(&f.bucket, &f.key, &f.backend)
            .await
        {
            Ok(true) => match readers.get(&f.backend) {
                Some(reader) => verify(reader, &f.bucket, &f.key)
                    .await
                    .map_err(|e| format!("still fails after the repair: {e}")),
                None => Ok(()),
            },
            Ok(false) => Err("not repaired now; left in the repair journal".to_string()),
            Err(e) => Err(format!("repair failed ({e}); left in the repair journal")),
        };
        match outcome {
            Ok(()) => {
                repaired += 1;
                println!("  repaired {} {}/{}", f.backend, f.bucket, f.key);
            }
            // A key deleted meanwhile reads as missing: nothing left to repair.
            Err(_)
                if matches!(
                    replicated
                        .head_object(&f.bucket, &f.key, GetOptions::default())
                        .await,
                    Err(s3proxy_core::Error::NoSuchKey)
                ) =>
            {
                println!("  {} {}/{}: deleted meanwhile", f.backend, f.bucket, f.key);
            }
            Err(why) => {
                unrepaired += 1;
                println!("  NOT repaired {} {}/{}: {why}", f.backend, f.bucket, f.key);
            }
        }
    }
    // Replicas missing an object, or holding an older version: the repair scan's job.
    let only = bucket
        .map(BucketName::new)
        .transpose()
        .map_err(|e| (2, format!("--bucket: {e}")))?;
    let summary = replicated
        .repair_scan(only.as_ref(), false, &|_, _| {})
        .await
        .map_err(|e| (1, format!("repair scan failed: {e}")))?;
    let pending = replicated.replay_journal().await;
    println!(
        "repaired {repaired} failing replica(s); {} missing or stale replica(s) brought up to \
         date, {} deletes applied; {} not repaired; {pending} journal entries pending",
        summary.copies.saturating_sub(summary.failed),
        summary.deletes,
        unrepaired + summary.failed
    );
    if unrepaired + summary.failed > 0 {
        return Err((
            1,
            format!(
                "{} replica(s) could not be repaired (see above and the log)",
                unrepaired + summary.failed
            ),
        ));
    }
    Ok(())
}

/// `s3proxy repair` (and, with `verify`, `s3proxy scrub`) under erasure coding: the
/// journal replayed (of `bucket` only, when given), then every object scanned and each
/// shard missing (a wiped backend), of another version or, with `verify`, failing its
/// checksums rebuilt from k others. A dry run replays nothing and rebuilds nothing; it
/// reports what the scan would rebuild. Exit 1 when something is left unrepaired.
/// Refused while a server holds the state directory, unless `while_serving`.
pub async fn erasure_repair(
    config: &Config,
    bucket: Option<String>,
    dry_run: bool,
    verify: bool,
    while_serving: bool,
) -> Result<(), Failure> {
    // A dry run writes nothing: it neither needs the lock nor keeps a server from starting.
    let _lock = if dry_run {
        None
    } else {
        crate::statelock::hold_for_maintenance(&config.state_dir, while_serving)
            .map_err(|e| (1, e))?
    };
    let bucket = bucket
        .map(BucketName::new)
        .transpose()
        .map_err(|e| (2, format!("--bucket: {e}")))?;
    let erasure = crate::build_erasure(config, &config.effective_backends())
        .await
        .map_err(|e| (1, e))?;
    if !dry_run {
        let done = match &bucket {
            Some(b) => erasure.replay_journal_of(b.as_str()).await,
            None => erasure.replay_journal().await,
        };
        println!(
            "journal: {} shards rebuilt, {} stale shards deleted, {} already sound, {} failed",
            done.rebuilt, done.deleted, done.settled, done.failed
        );
    }
    let progress =
        std::sync::Mutex::new(Progress::new(if verify { "scrubbing" } else { "scanning" }));
    let step = |b: &BucketName| {
        progress
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .step(b.as_str())
    };
    let opts = s3proxy_erasure::ScanOptions {
        bucket,
        verify,
        dry_run,
    };
    let scan = erasure
        .scan(&opts, &step)
        .await
        .map_err(|e| (1, format!("scan failed: {e}")))?;
    progress
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .finish();
    let pending = erasure.journal().len();
    println!(
        "{}{} objects scanned, {} shards verified, {} missing or stale, {} corrupt, {} {}, {} buckets {}, {} failed; {pending} journal entries pending",
        if dry_run { "dry run: " } else { "" },
        scan.objects,
        scan.verified,
        scan.missing,
        scan.corrupt,
        if dry_run {
            scan.missing + scan.corrupt
        } else {
            scan.rebuilt
        },
        if dry_run { "to rebuild" } else { "rebuilt" },
        scan.buckets_created,
        if dry_run { "to create" } else { "created" },
        scan.failed
    );
    if scan.failed > 0 {
        return Err((
            1,
            format!(
                "{} shards not checked or not rebuilt; see the log",
                scan.failed
            ),
        ));
    }
    if !dry_run && pending > 0 {
        return Err((1, format!("{pending} journaled shards not repaired")));
    }
    Ok(())
}
