//! `s3proxy rotate-keys` and `s3proxy scrub`: walks over every object of the stack, with a
//! progress bar on a terminal and plain progress lines otherwise.

use crate::config::Config;
use s3proxy_core::{
    BucketName, Conditions, CopyOptions, DynBackend, GetOptions, ListOptions, MetadataDirective,
    ObjectKey,
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
                let id = stored
                    .metadata
                    .internal
                    .get(s3proxy_crypto::format::KEY_META)
                    .and_then(|w| wrapping_key_id(w))
                    .unwrap_or("(not encrypted)")
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
                                        if_match: Some(format!("\"{}\"", info.etag)),
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

/// `s3proxy scrub`: every object of every backend is read whole through the encryption
/// layer, which authenticates every segment; what fails is listed with its backend.
pub async fn scrub(config: &Config, bucket: Option<String>) -> Result<(), Failure> {
    use futures::StreamExt;
    let encryption = crate::encryption_config(config).map_err(|e| (1, e))?;
    let mut progress = Progress::new("scrubbing");
    let mut bad: Vec<String> = vec![];
    let mut checked = 0u64;
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
                    let outcome = async {
                        let got = backend
                            .get_object(&bucket_name, &key, GetOptions::default())
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
                    .await;
                    if let Err(e) = outcome {
                        bad.push(format!("{} {bucket_name}/{key}: {e}", b.name));
                    }
                }
                match next {
                    Some(n) => after = Some(n),
                    None => break,
                }
            }
        }
    }
    progress.finish();
    println!("scrubbed {checked} object replica(s): {} failed", bad.len());
    for line in &bad {
        println!("  {line}");
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err((
            1,
            format!(
                "{} replica(s) failed to read or authenticate; `s3proxy repair` rewrites missing \
                 and stale replicas",
                bad.len()
            ),
        ))
    }
}
