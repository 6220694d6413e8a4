//! Multipart uploads over replicas: an upload on every backend under one id (see
//! `upload_id`), parts written under the quorum, completion, the listing of uploads put
//! together from the backends' own, and completions retried after a success.

use crate::Replicated;
use crate::inflight::InflightWrite;
use crate::journal::Missed;
use crate::stamp::{ETAG_KEY, VERSION_KEY, stamp_time, version_of};
use crate::upload_id::DecodedUpload;
use crate::write::WriteOp;
use s3proxy_core::*;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Why a replica is left out of a part write: an earlier write of the part still holds its
/// turn there (see `part_turns`).
const NOT_ITS_TURN: &str = "an earlier write of this part is still in flight on this replica";

impl Replicated {
    /// CreateMultipartUpload: an upload on every backend, under one authenticated id.
    pub(crate) async fn create_upload(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        mut opts: MultipartOptions,
    ) -> Result<UploadId> {
        self.check_bucket_not_deleted(bucket)?;
        let stamp = self.new_stamp(bucket.as_str(), key.as_str());
        opts.metadata
            .internal
            .insert(VERSION_KEY.into(), stamp.to_string());
        let outcomes = self
            .fan_out("CreateMultipartUpload", &format!("{bucket}/{key}"), |b| {
                let (bucket, key, opts) = (bucket.clone(), key.clone(), opts.clone());
                async move { b.create_multipart_upload(&bucket, &key, opts).await }
            })
            .await;
        let ids: Vec<Option<UploadId>> =
            outcomes.iter().map(|o| o.as_ref().ok().cloned()).collect();
        self.quorum_result(outcomes, |_| false)?;
        self.encode_upload(&ids)
    }

    /// UploadPart: the part written to every backend of the upload, under the quorum.
    pub(crate) async fn replicated_part(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &UploadId,
        part_number: u32,
        body: Body,
        opts: PartOptions,
    ) -> Result<ETag> {
        let upload = self.decode_upload(upload_id)?;
        // Parts are not versions: the stamp only names this write in the journal.
        let stamp = upload
            .stamp
            .unwrap_or_else(|| self.shared.clock.next().into());
        let turns = Arc::new(std::sync::Mutex::new(
            self.part_turns(&upload.ids, part_number).await,
        ));
        let ids = Arc::new(upload.ids);
        let write_ids = ids.clone();
        self.replicated_write(
            WriteOp::UPLOAD_PART,
            bucket,
            key,
            &stamp,
            body,
            move |index, backend, body| {
                let (bucket, key, opts, ids) =
                    (bucket.clone(), key.clone(), opts.clone(), write_ids.clone());
                let turn = turns.lock().unwrap_or_else(|e| e.into_inner())[index].take();
                async move {
                    match (&ids[index], turn) {
                        (Some(id), Some(_turn)) => {
                            backend
                                .upload_part(&bucket, &key, id, part_number, body, opts)
                                .await
                        }
                        (Some(_), None) => Err(Error::Internal(NOT_ITS_TURN.into())),
                        // Not a failure of the backend: it was down when the upload began.
                        (None, _) => Err(Error::Internal("not part of this upload".into())),
                    }
                }
            },
        )
        .await
    }

    /// The turns of a write of `part_number` on every replica of the upload (see
    /// `part_turns`), taken in replica order; `None` where the upload has no id or the
    /// turn did not come within that replica's timeout.
    async fn part_turns(
        &self,
        ids: &[Option<UploadId>],
        part_number: u32,
    ) -> Vec<Option<crate::part_turns::PartTurn>> {
        let mut turns = Vec::with_capacity(ids.len());
        for (i, id) in ids.iter().enumerate() {
            let turn = match id {
                Some(id) => {
                    let wait = self.replicas()[i].timeout;
                    let turn = self
                        .shared
                        .part_turns
                        .take(i, id.as_str(), part_number, wait)
                        .await;
                    if turn.is_none() {
                        log::warn!(
                            "part {part_number} of upload {id} on {}: an earlier write of it is still in flight there; left out",
                            self.replicas()[i].backend.name()
                        );
                    }
                    turn
                }
                None => None,
            };
            turns.push(turn);
        }
        turns
    }

    /// UploadPartCopy: every replica holding the source's newest version copies the part
    /// from its own copy.
    #[allow(clippy::too_many_arguments)] // Backend::upload_part_copy's parameters
    pub(crate) async fn copy_part(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &UploadId,
        part_number: u32,
        src_bucket: &BucketName,
        src_key: &ObjectKey,
        src: GetOptions,
    ) -> Result<ETag> {
        let ids = self.decode_upload(upload_id)?.ids;
        let holders = self
            .locate(src_bucket, src_key, "UploadPartCopy/locate")
            .await?;
        let source = self.present(holders[0].info.clone());
        src.conditions.check(&source, true)?;
        let inner_src = GetOptions {
            range: src.range,
            conditions: Conditions {
                if_match: Some(holders[0].info.etag.as_str().to_owned()),
                ..Default::default()
            },
            ..Default::default()
        };
        let mut turns = self.part_turns(&ids, part_number).await;
        let outcomes = futures::future::join_all((0..self.replicas().len()).map(|i| {
            let id = ids[i].clone();
            let inner_src = inner_src.clone();
            let holds = holders.iter().any(|h| h.index == i);
            let turn = turns[i].take();
            async move {
                let Some(id) = id else {
                    return Err(Error::ServiceUnavailable("not part of this upload".into()));
                };
                let Some(_turn) = turn else {
                    return Err(Error::ServiceUnavailable(NOT_ITS_TURN.into()));
                };
                if !holds {
                    return Err(Error::ServiceUnavailable(
                        "source version not on this replica".into(),
                    ));
                }
                self.call(i, |b| {
                    let (bucket, key, id, sb, sk, o) = (
                        bucket.clone(),
                        key.clone(),
                        id.clone(),
                        src_bucket.clone(),
                        src_key.clone(),
                        inner_src.clone(),
                    );
                    async move {
                        b.upload_part_copy(&bucket, &key, &id, part_number, &sb, &sk, o)
                            .await
                    }
                })
                .await
            }
        }))
        .await;
        self.log_outcomes(
            "UploadPartCopy",
            &format!("{bucket}/{key}#{part_number}"),
            &outcomes,
            &[],
        );
        let first = self.quorum_result(outcomes, |_| false)?;
        first.ok_or_else(|| Error::Internal("no successful part copy".into()))
    }

    /// CompleteMultipartUpload on every backend of the upload; replicas that missed it are
    /// journaled.
    pub(crate) async fn complete_upload(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &UploadId,
        parts: Vec<CompletedPart>,
    ) -> Result<PutResult> {
        let DecodedUpload { stamp, ids } = self.decode_upload(upload_id)?;
        self.settle_stragglers(bucket, key).await;
        // Completing makes a version: repair must not judge the key while replicas are
        // still assembling it (it would copy the whole object to one still completing),
        // and a write or delete overlapping it is checked once both are done.
        let guard = InflightWrite::start(self, bucket, key, None);
        let outcomes = futures::future::join_all((0..self.replicas().len()).map(|i| {
            let id = ids[i].clone();
            let parts = parts.clone();
            async move {
                let Some(id) = id else {
                    return Err(Error::ServiceUnavailable("not part of this upload".into()));
                };
                // Assembling may take a while on a backend; allow well beyond one call.
                let r = &self.replicas()[i];
                match tokio::time::timeout(
                    r.timeout * 10,
                    r.backend.complete_multipart_upload(bucket, key, &id, parts),
                )
                .await
                {
                    Ok(result) => result,
                    Err(_) => Err(Error::ServiceUnavailable(format!(
                        "backend {} timed out completing the upload",
                        r.backend.name()
                    ))),
                }
            }
        }))
        .await;
        self.log_outcomes(
            "CompleteMultipartUpload",
            &format!("{bucket}/{key}"),
            &outcomes,
            &[],
        );
        let any_ok = outcomes.iter().any(|o| o.is_ok());
        if !any_ok
            && outcomes
                .iter()
                .any(|o| matches!(o, Err(Error::NoSuchUpload)))
            && let Some(done) = self.completed_already(bucket, key, &parts).await
        {
            return Ok(done);
        }
        // The version's stamp, which the upload's metadata gave the object: in the id of
        // uploads created before ids stopped carrying it, else on a replica that completed.
        let stamp = match (stamp, outcomes.iter().position(|o| o.is_ok())) {
            (Some(stamp), _) => stamp,
            (None, Some(i)) => self
                .call(i, |b| async move {
                    b.head_object(bucket, key, GetOptions::default()).await
                })
                .await
                .ok()
                .and_then(|info| version_of(&info.metadata).map(str::to_string))
                .unwrap_or_else(|| self.shared.clock.next().into()),
            (None, None) => self.shared.clock.next().into(),
        };
        // A replica that failed while another completed lacks the object: journal it
        // whatever its error was (a part it never got gives InvalidPart there).
        for (i, o) in outcomes.iter().enumerate() {
            if matches!(o, Err(e) if e.is_transient() || any_ok) {
                self.journal_missed(bucket, key, i, &stamp, Missed::Write);
            }
        }
        if outcomes
            .iter()
            .any(|o| matches!(o, Err(e) if e.is_transient()))
        {
            // A backend that failed or timed out assembling may still finish it.
            guard.linger(self.longest_timeout());
        } else {
            drop(guard);
        }
        let first = self.quorum_result(outcomes, |_| false)?;
        let first = first.ok_or_else(|| Error::Internal("no successful completion".into()))?;
        Ok(PutResult {
            etag: first.etag,
            last_modified: stamp_time(&stamp).unwrap_or(first.last_modified),
        })
    }

    /// ListMultipartUploads: each backend's uploads, grouped into the ids the proxy gave.
    pub(crate) async fn list_uploads(
        &self,
        bucket: &BucketName,
        opts: ListUploadsOptions,
    ) -> Result<ListUploadsResult> {
        // Each backend lists its own upload ids; they are put together into the ids
        // CreateMultipartUpload gave (see uploads). Pairing needs all of a key's uploads
        // from every backend, so backends are asked for full pages (S3's 1000) and the
        // caller trims to what it was asked for.
        let mut opts = opts;
        opts.max_uploads = opts.max_uploads.max(1000);
        let outcomes = self
            .fan_out("ListMultipartUploads", bucket.as_str(), |b| {
                let (bucket, opts) = (bucket.clone(), opts.clone());
                async move { b.list_multipart_uploads(&bucket, opts).await }
            })
            .await;
        let mut first_error = None;
        let mut pages = Vec::with_capacity(outcomes.len());
        for o in outcomes {
            match o {
                Ok(page) => pages.push(Some(page)),
                Err(e) => {
                    first_error.get_or_insert(e);
                    pages.push(None);
                }
            }
        }
        if pages.iter().all(Option::is_none) {
            return Err(first_error.unwrap_or(Error::NoSuchBucket));
        }
        let mut result = self.group_listed(pages)?;
        result
            .uploads
            // Ties (uploads of one key started in the same second) broken by id, so that
            // every listing orders them alike and upload-id-marker paging holds.
            .sort_by(|a, b| {
                a.key
                    .cmp(&b.key)
                    .then(a.initiated.cmp(&b.initiated))
                    .then_with(|| a.upload_id.as_str().cmp(b.upload_id.as_str()))
            });
        Ok(result)
    }

    /// Put the backends' listings together into the proxy's uploads, each under the id
    /// CreateMultipartUpload gave. `pages[i]` is backend i's listing, if it answered.
    ///
    /// One CreateMultipartUpload creates one upload of the key on each backend that
    /// answered it, so a key's uploads on each backend, in the order they were initiated,
    /// line up: where every backend listing any upload of the key lists the same number,
    /// the k-th of each form the k-th upload, and backends listing none take no part in it
    /// (as when they were down at its creation). A backend listing some but fewer (it
    /// missed a creation, or one was completed or aborted there alone) has each of its
    /// uploads put with the upload initiated nearest in time on the backend listing the
    /// most. Only keys every truncated listing covers are given; the page is then truncated.
    pub(crate) fn group_listed(
        &self,
        pages: Vec<Option<ListUploadsResult>>,
    ) -> Result<ListUploadsResult> {
        let n = self.replicas().len();
        // Listings are by key; a truncated one may stop anywhere in a key's uploads, so
        // keys after its last are left for the next page.
        let limit: Option<String> = pages
            .iter()
            .flatten()
            .filter(|p| p.is_truncated)
            .filter_map(|p| p.uploads.last().map(|u| u.key.clone()))
            .min();
        let truncated = pages.iter().flatten().any(|p| p.is_truncated);
        // A truncated page may also stop inside its last key's uploads: that key is left
        // for the next page too (its uploads paired only once every backend listed them
        // all), unless it is the only key there is.
        let limit_key_whole = limit.as_ref().is_some_and(|l| {
            !pages
                .iter()
                .flatten()
                .flat_map(|p| p.uploads.iter())
                .any(|u| u.key < *l)
        });
        // key -> backend -> its uploads of the key, oldest first.
        let mut by_key: BTreeMap<String, Vec<Vec<UploadInfo>>> = BTreeMap::new();
        for (i, page) in pages.into_iter().enumerate() {
            let Some(page) = page else { continue };
            for u in page.uploads {
                if limit
                    .as_ref()
                    .is_some_and(|l| u.key > *l || (u.key == *l && !limit_key_whole))
                {
                    continue;
                }
                by_key
                    .entry(u.key.clone())
                    .or_insert_with(|| vec![vec![]; n])[i]
                    .push(u);
            }
        }
        let mut result = ListUploadsResult {
            uploads: vec![],
            is_truncated: truncated,
        };
        for (key, mut per_backend) in by_key {
            for uploads in &mut per_backend {
                uploads.sort_by(|a, b| {
                    a.initiated
                        .cmp(&b.initiated)
                        .then_with(|| a.upload_id.as_str().cmp(b.upload_id.as_str()))
                });
            }
            let (reference, most) = per_backend
                .iter()
                .enumerate()
                .map(|(i, u)| (i, u.len()))
                .max_by_key(|(i, len)| (*len, std::cmp::Reverse(*i)))
                .unwrap_or((0, 0));
            let mut groups: Vec<Vec<Option<UploadId>>> = vec![vec![None; n]; most];
            for (i, uploads) in per_backend.iter().enumerate() {
                if uploads.len() == most {
                    for (k, u) in uploads.iter().enumerate() {
                        groups[k][i] = Some(u.upload_id.clone());
                    }
                    continue;
                }
                let mut taken = vec![false; most];
                for u in uploads {
                    let nearest = per_backend[reference]
                        .iter()
                        .enumerate()
                        .filter(|(k, _)| !taken[*k])
                        .min_by_key(|(_, r)| distance(r.initiated, u.initiated));
                    if let Some((k, _)) = nearest {
                        taken[k] = true;
                        groups[k][i] = Some(u.upload_id.clone());
                    }
                }
            }
            for (k, ids) in groups.into_iter().enumerate() {
                result.uploads.push(UploadInfo {
                    key: key.clone(),
                    upload_id: self.encode_upload(&ids)?,
                    initiated: per_backend[reference][k].initiated,
                });
            }
        }
        Ok(result)
    }

    /// A CompleteMultipartUpload that no backend knows the upload of: when the key's
    /// current version is what completing these parts made (a retry of a completion whose
    /// answer the client lost), its result; S3 answers such a retry with 200 and the same
    /// ETag.
    async fn completed_already(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        parts: &[CompletedPart],
    ) -> Option<PutResult> {
        let want = multipart_etag(parts.iter().map(|p| p.etag.as_str())).ok()?;
        let holders = self
            .locate(bucket, key, "CompleteMultipartUpload/retry")
            .await
            .ok()?;
        let stored = &holders.first()?.info;
        let etag = stored
            .metadata
            .internal
            .get(ETAG_KEY)
            .map_or_else(|| stored.etag.clone(), ETag::new);
        if etag != want {
            return None;
        }
        let info = self.present(stored.clone());
        log::info!("CompleteMultipartUpload {bucket}/{key}: already completed; answering as then");
        Some(PutResult {
            etag: info.etag,
            last_modified: info.last_modified,
        })
    }
}

fn distance(a: std::time::SystemTime, b: std::time::SystemTime) -> Duration {
    a.duration_since(b)
        .or_else(|_| b.duration_since(a))
        .unwrap_or_default()
}
