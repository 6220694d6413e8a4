//! CopyObject, shard by shard: each backend holding the source version copies its own
//! shard object to the destination (server-side, no data through the proxy), with the
//! metadata of a new version.

use crate::erasure::Erasure;
use crate::format::*;
use s3proxy_core::*;
use s3proxy_replication::Missed;
use std::time::SystemTime;

impl Erasure {
    pub(crate) async fn copy_shards(
        &self,
        src_bucket: &BucketName,
        src_key: &ObjectKey,
        dst_bucket: &BucketName,
        dst_key: &ObjectKey,
        opts: CopyOptions,
    ) -> Result<PutResult> {
        // The destination's turn (the source is pinned per backend by If-Match instead).
        let turn = self
            .shared
            .inflight
            .write_turn(dst_bucket, dst_key, self.turn_wait())
            .await?;
        let src = self.resolve_served(src_bucket, src_key).await?;
        opts.source_conditions.check(&src.info, true)?;
        let stamp = self.shared.clock.next();
        let metadata = match opts.directive {
            MetadataDirective::Copy => src.info.metadata.clone(),
            MetadataDirective::Replace(mut m) => {
                strip(&mut m);
                m
            }
        };
        let base = ShardMeta {
            etag: Some(src.info.etag.clone()),
            ver: stamp.to_string(),
            ..src.meta.clone()
        };
        let holders = &src.holders;
        let outcomes = self
            .fan_out_marking(
                "CopyObject",
                &format!("{dst_bucket}/{dst_key}"),
                Some(turn.cut_off()),
                |i, b| {
                    let mut meta = metadata.clone();
                    ShardMeta { i, ..base.clone() }.store(&mut meta);
                    // Pinned to the shard this backend held at the resolve: a PUT that lands
                    // in between makes this backend's copy fail (a miss, journaled) rather
                    // than put this version's label on another version's shard.
                    let copy = CopyOptions {
                        directive: MetadataDirective::Replace(meta),
                        source_conditions: Conditions {
                            // Plain, as the shard's backend gave it.
                            if_match: src.etags.get(i).cloned().flatten().map(ETag::into_string),
                            ..Conditions::default()
                        },
                    };
                    let names = (src_bucket.clone(), src_key.clone());
                    let dst = (dst_bucket.clone(), dst_key.clone());
                    let holds = holders.contains(&i) && copy.source_conditions.if_match.is_some();
                    async move {
                        if !holds {
                            return Err(Error::ServiceUnavailable(
                                "holds no shard of the source version".into(),
                            ));
                        }
                        match b
                            .copy_object(&names.0, &names.1, &dst.0, &dst.1, copy)
                            .await
                        {
                            Err(Error::PreconditionFailed) => Err(Error::ServiceUnavailable(
                                "the source shard changed since the resolve".into(),
                            )),
                            other => other,
                        }
                    }
                },
            )
            .await;
        let stored = outcomes.iter().filter(|o| o.is_ok()).count();
        let required = self.shared.opts.required();
        if stored < required {
            // As a PUT that missed its quorum (`write`): the backends that copied hold
            // partial shards of a version no read serves; every backend is journaled for
            // a check, so that repair puts the version still readable back over them.
            if stored > 0 {
                for i in 0..outcomes.len() {
                    self.journal_missed(dst_bucket, dst_key, i, stamp.as_str(), Missed::Write);
                }
            }
            return Err(outcomes
                .into_iter()
                .filter_map(Result::err)
                .find(|e| !e.is_transient())
                .unwrap_or_else(|| {
                    Error::ServiceUnavailable(format!("{stored} shards copied, {required} needed"))
                }));
        }
        for (i, o) in outcomes.iter().enumerate() {
            if o.is_err() {
                self.journal_missed(dst_bucket, dst_key, i, stamp.as_str(), Missed::Write);
            }
        }
        Ok(PutResult {
            etag: src.info.etag,
            last_modified: stamp.time().unwrap_or_else(SystemTime::now),
        })
    }
}
