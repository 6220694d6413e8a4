//! The [`Backend`] implementation: each S3 operation over the replicas. Bucket operations,
//! single-object reads, writes and deletes are here; copies, listings and multipart uploads
//! are in `copy`, `listing` and `uploads`.

use crate::Replicated;
use crate::fanout::missed_by;
use crate::inflight::InflightWrite;
use crate::journal::{Entry, Missed, Target};
use crate::read::ReadAttempt;
use crate::stamp::{VERSION_KEY, version_of};
use crate::write::WriteOp;
use async_trait::async_trait;
use futures::StreamExt;
use s3proxy_core::*;

#[async_trait]
impl Backend for Replicated {
    fn name(&self) -> &str {
        &self.shared.name
    }

    async fn list_buckets(&self) -> Result<Vec<BucketInfo>> {
        let outcomes = self
            .fan_out(
                "ListBuckets",
                "-",
                |b| async move { b.list_buckets().await },
            )
            .await;
        let mut merged: std::collections::BTreeMap<String, BucketInfo> = Default::default();
        let mut first_error = None;
        let mut any = false;
        for o in outcomes {
            match o {
                Ok(list) => {
                    any = true;
                    for b in list {
                        merged
                            .entry(b.name.clone())
                            .and_modify(|m| m.created = m.created.min(b.created))
                            .or_insert(b);
                    }
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match (any, first_error) {
            (false, Some(e)) => Err(e),
            _ => Ok(merged
                .into_values()
                .filter(|b| !self.shared.journal.bucket_deleted(&b.name))
                .collect()),
        }
    }

    async fn create_bucket(&self, bucket: &BucketName) -> Result<()> {
        if self.shared.journal.bucket_deleted(bucket.as_str()) {
            // Created again: a backend that missed the delete keeps its bucket as it is.
            if let Err(e) = self.shared.journal.clear_bucket_deleted(bucket.as_str()) {
                log::warn!("cannot clear the journaled deletion of bucket {bucket}: {e}");
            }
        }
        let outcomes = self
            .fan_out("CreateBucket", bucket.as_str(), |b| {
                let bucket = bucket.clone();
                async move { b.create_bucket(&bucket).await }
            })
            .await;
        // Every backend that answered already has it (one that is down does not change
        // what the client is told).
        let answered = outcomes
            .iter()
            .filter(|o| !matches!(o, Err(e) if e.is_transient()));
        let all_existed = answered.clone().count() > 0
            && answered
                .into_iter()
                .all(|o| matches!(o, Err(Error::BucketAlreadyOwnedByYou)));
        if all_existed {
            return Err(Error::BucketAlreadyOwnedByYou);
        }
        // Backends that missed it get the bucket when repair first writes to them.
        self.quorum_result(outcomes, |e| matches!(e, Error::BucketAlreadyOwnedByYou))
            .map(|_| ())
    }

    async fn delete_bucket(&self, bucket: &BucketName) -> Result<()> {
        // Decide on what the client sees, before any backend deletes anything: a bucket
        // that lists objects is not empty, whatever one replica would say.
        let listed = self
            .list_objects(
                bucket,
                ListOptions {
                    max_keys: 1,
                    ..Default::default()
                },
            )
            .await?;
        if !listed.objects.is_empty() || !listed.common_prefixes.is_empty() {
            return Err(Error::BucketNotEmpty);
        }
        // It lists empty; replicas may still hold what that view hides: writes still
        // landing, deletes journaled for them. Let those finish and apply first.
        self.settle_bucket(bucket).await;
        // Then every replica must be empty, before any deletes it: one that still holds an
        // object or an upload would refuse after the others had deleted theirs, and the
        // bucket would be left on some replicas only.
        let mut contents = self.bucket_contents(bucket).await;
        if contents.holder.is_none() && !contents.unreachable.is_empty() {
            // A replica that did not answer may have been busy for a moment: ask once more
            // before the answer depends on it.
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            contents = self.bucket_contents(bucket).await;
        }
        if let Some(holder) = contents.holder {
            log::info!(
                "DeleteBucket {bucket}: replica {} still holds objects or uploads; not deleted",
                self.replicas()[holder].backend.name()
            );
            return Err(Error::BucketNotEmpty);
        }
        // Writes still owed to a reachable replica after the settling above could not be
        // copied: their source is unreachable, and it may hold the only copy of an
        // acknowledged object. The empty answers of the others do not decide then. (A write
        // owed to the unreachable replica itself is not one it holds, and keys that a
        // replica can never hold leave entries for that replica only.)
        if !contents.unreachable.is_empty() {
            let unreachable: Vec<&str> = contents
                .unreachable
                .iter()
                .map(|&i| self.replicas()[i].backend.name())
                .collect();
            let owed = self
                .shared
                .journal
                .pending_in(bucket.as_str())
                .into_iter()
                .find(|e| {
                    e.tombstone.is_none()
                        && e.target != Target::Bucket
                        && !unreachable.contains(&e.backend.as_str())
                });
            if let Some(owed) = owed {
                let names = unreachable.join(", ");
                log::warn!(
                    "DeleteBucket {bucket}: {names} unreachable and {} still owed a write of {}; not deleted",
                    owed.backend,
                    owed.target
                );
                return Err(Error::ServiceUnavailable(format!(
                    "the bucket may hold objects on {names}, which cannot be reached; try again later"
                )));
            }
        }
        let outcomes = self
            .fan_out("DeleteBucket", bucket.as_str(), |b| {
                let bucket = bucket.clone();
                async move { b.delete_bucket(&bucket).await }
            })
            .await;
        if outcomes
            .iter()
            .any(|o| matches!(o, Err(Error::BucketNotEmpty)))
        {
            // Something landed on a replica since the check: the bucket stays, on every
            // replica (the client is told it was not deleted).
            self.recreate_bucket_where_deleted(bucket, &outcomes).await;
            return Err(Error::BucketNotEmpty);
        }
        if outcomes
            .iter()
            .all(|o| matches!(o, Err(Error::NoSuchBucket)))
        {
            return Err(Error::NoSuchBucket);
        }
        let missed = missed_by(&outcomes);
        self.quorum_result(outcomes, |e| matches!(e, Error::NoSuchBucket))?;
        // Backends that missed the delete keep the bucket: journal its deletion (an entry
        // for the bucket target), which hides it from then on and has repair delete it there.
        let stamp = self.shared.clock.next();
        for i in missed {
            let entry = Entry::new(
                bucket.as_str(),
                Target::Bucket,
                self.replicas()[i].backend.name(),
                stamp.clone(),
                Missed::Delete,
            );
            if let Err(e) = self.shared.journal.record(entry) {
                log::error!("cannot record the deletion of bucket {bucket}: {e}");
            }
        }
        Ok(())
    }

    async fn head_bucket(&self, bucket: &BucketName) -> Result<()> {
        self.check_bucket_not_deleted(bucket)?;
        let outcomes = self
            .fan_out("HeadBucket", bucket.as_str(), |b| {
                let bucket = bucket.clone();
                async move { b.head_bucket(&bucket).await }
            })
            .await;
        let mut first_error = None;
        for o in outcomes {
            match o {
                Ok(()) => return Ok(()),
                Err(e) => {
                    if first_error
                        .as_ref()
                        .is_none_or(|f: &Error| matches!(f, Error::NoSuchBucket))
                    {
                        first_error = Some(e);
                    }
                }
            }
        }
        Err(first_error.unwrap_or(Error::NoSuchBucket))
    }

    async fn put_object(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        body: Body,
        mut opts: PutOptions,
    ) -> Result<PutResult> {
        let stamp = self.new_stamp(bucket.as_str(), key.as_str());
        opts.metadata
            .internal
            .insert(VERSION_KEY.into(), stamp.to_string());
        let result = self
            .replicated_write(
                WriteOp::PUT_OBJECT,
                bucket,
                key,
                stamp.as_str(),
                body,
                |_, backend, body| {
                    let (bucket, key, opts) = (bucket.clone(), key.clone(), opts.clone());
                    async move { backend.put_object(&bucket, &key, body, opts).await }
                },
            )
            .await?;
        Ok(PutResult {
            etag: result.etag,
            last_modified: stamp.time().unwrap_or(result.last_modified),
        })
    }

    async fn get_object(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        opts: GetOptions,
    ) -> Result<GetResult> {
        // A write between locating the newest version and reading it changes the object
        // on every holder: locate again (a few times) rather than fail the read.
        let mut attempts = 0;
        loop {
            match self.get_located(bucket, key, &opts).await? {
                ReadAttempt::Served(got) => return Ok(got),
                ReadAttempt::Changed if attempts < 3 => attempts += 1,
                ReadAttempt::Changed => {
                    return Err(Error::ServiceUnavailable(format!(
                        "{bucket}/{key} kept changing while being read"
                    )));
                }
            }
        }
    }

    async fn head_object(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        opts: GetOptions,
    ) -> Result<ObjectInfo> {
        let holders = self.locate(bucket, key, "HeadObject").await?;
        let info = self.present(holders[0].info.clone());
        opts.conditions.check(&info, false)?;
        Ok(info)
    }

    async fn head_object_etags(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        opts: GetOptions,
    ) -> Result<(ObjectInfo, Vec<ETag>)> {
        let holders = self.locate(bucket, key, "HeadObject").await?;
        let shown = &holders[0].info;
        let etags = holders
            .iter()
            .filter(|h| {
                version_of(&h.info.metadata) == version_of(&shown.metadata)
                    && h.info.size == shown.size
            })
            .map(|h| h.info.etag.clone())
            .collect();
        let info = self.present(shown.clone());
        opts.conditions.check(&info, false)?;
        Ok((info, etags))
    }

    async fn delete_object(&self, bucket: &BucketName, key: &ObjectKey) -> Result<()> {
        let stamp = self.shared.clock.next();
        let guard = InflightWrite::start(self, bucket, key, Some(stamp.to_string()));
        let outcomes = self
            .fan_out("DeleteObject", &format!("{bucket}/{key}"), |b| {
                let (bucket, key) = (bucket.clone(), key.clone());
                async move { b.delete_object(&bucket, &key).await }
            })
            .await;
        let skipped = missed_by(&outcomes);
        // Journal the tombstone before answering, even below the quorum: a delete that
        // reached some backends must not be undone by repair.
        for i in &skipped {
            self.journal_missed(bucket, key, *i, stamp.as_str(), Missed::Delete);
        }
        if guard.overlapped() {
            // Another write or a repair of this key ran meanwhile and may land an older
            // version after this delete: the tombstone, journaled before the answer, hides
            // it from reads and lists and has repair delete it.
            for i in 0..self.replicas().len() {
                self.journal_missed(bucket, key, i, stamp.as_str(), Missed::Delete);
            }
        }
        drop(guard);
        self.quorum_result(outcomes, |e| matches!(e, Error::NoSuchKey))
            .map(|_| ())
    }

    async fn delete_objects(
        &self,
        bucket: &BucketName,
        keys: Vec<ObjectKey>,
    ) -> Result<Vec<DeleteOutcome>> {
        self.head_bucket(bucket).await?;
        let results = futures::stream::iter(keys.into_iter().map(|key| async move {
            let result = self.delete_object(bucket, &key).await;
            DeleteOutcome { key, result }
        }))
        .buffered(16)
        .collect::<Vec<_>>()
        .await;
        Ok(results)
    }

    async fn copy_object(
        &self,
        src_bucket: &BucketName,
        src_key: &ObjectKey,
        dst_bucket: &BucketName,
        dst_key: &ObjectKey,
        opts: CopyOptions,
    ) -> Result<PutResult> {
        self.replicated_copy(src_bucket, src_key, dst_bucket, dst_key, opts)
            .await
    }

    async fn list_objects(&self, bucket: &BucketName, opts: ListOptions) -> Result<ListResult> {
        self.merged_listing(bucket, opts).await
    }

    async fn create_multipart_upload(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        opts: MultipartOptions,
    ) -> Result<UploadId> {
        self.create_upload(bucket, key, opts).await
    }

    async fn upload_part(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &UploadId,
        part_number: u32,
        body: Body,
        opts: PartOptions,
    ) -> Result<ETag> {
        self.replicated_part(bucket, key, upload_id, part_number, body, opts)
            .await
    }

    async fn upload_part_copy(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &UploadId,
        part_number: u32,
        src_bucket: &BucketName,
        src_key: &ObjectKey,
        src: GetOptions,
    ) -> Result<ETag> {
        self.copy_part(
            bucket,
            key,
            upload_id,
            part_number,
            src_bucket,
            src_key,
            src,
        )
        .await
    }

    async fn complete_multipart_upload(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &UploadId,
        parts: Vec<CompletedPart>,
    ) -> Result<PutResult> {
        self.complete_upload(bucket, key, upload_id, parts).await
    }

    async fn abort_multipart_upload(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &UploadId,
    ) -> Result<()> {
        let ids = self.decode_upload(upload_id)?.ids;
        let outcomes = futures::future::join_all((0..self.replicas().len()).map(|i| {
            let id = ids[i].clone();
            async move {
                match id {
                    Some(id) => {
                        self.call(i, |b| {
                            let (bucket, key, id) = (bucket.clone(), key.clone(), id.clone());
                            async move { b.abort_multipart_upload(&bucket, &key, &id).await }
                        })
                        .await
                    }
                    None => Err(Error::NoSuchUpload),
                }
            }
        }))
        .await;
        self.log_outcomes(
            "AbortMultipartUpload",
            &format!("{bucket}/{key}"),
            &outcomes,
            &[],
        );
        if outcomes.iter().any(|o| o.is_ok()) {
            return Ok(());
        }
        self.quorum_result(outcomes, |e| matches!(e, Error::NoSuchUpload))
            .map(|_| ())
    }

    async fn list_parts(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &UploadId,
        opts: ListPartsOptions,
    ) -> Result<ListPartsResult> {
        let ids = self.decode_upload(upload_id)?.ids;
        self.settle_stragglers(bucket, key).await;
        let mut last_error = Error::NoSuchUpload;
        for i in self.read_order(&[]) {
            let Some(id) = ids[i].clone() else { continue };
            match self
                .call(i, |b| {
                    let (bucket, key, id, opts) =
                        (bucket.clone(), key.clone(), id.clone(), opts.clone());
                    async move { b.list_parts(&bucket, &key, &id, opts).await }
                })
                .await
            {
                Ok(r) => return Ok(r),
                Err(e) => last_error = e,
            }
        }
        Err(last_error)
    }

    async fn list_multipart_uploads(
        &self,
        bucket: &BucketName,
        opts: ListUploadsOptions,
    ) -> Result<ListUploadsResult> {
        self.list_uploads(bucket, opts).await
    }
}

#[async_trait]
impl s3proxy_core::replicas::ReportCorrupt for Replicated {
    async fn report_corrupt(&self, bucket: &BucketName, key: &ObjectKey, replica: &str) {
        Replicated::report_corrupt(self, bucket, key, replica).await
    }
}

impl Replicated {
    /// A layer above found the copy of `key` that `replica` served unauthentic (corrupt
    /// or tampered): stop reading from it and repair it (a forced journal entry).
    pub async fn report_corrupt(&self, bucket: &BucketName, key: &ObjectKey, replica: &str) {
        if let Some(index) = self
            .replicas()
            .iter()
            .position(|r| r.backend.name() == replica)
        {
            log::warn!(
                "{bucket}/{key}: replica {replica} served data that failed verification; repairing it"
            );
            self.replicas()[index].counters.tampered();
            let stamp = self.shared.clock.next();
            self.journal_missed(bucket, key, index, stamp.as_str(), Missed::Corrupt);
        }
    }
}
