//! Multipart upload ids, the listing of uploads, and completions retried after a success.
//!
//! The id handed to a client is every backend's own upload id, in backend order,
//! authenticated with the key all instances share: any instance can continue the upload
//! on every replica, and a client cannot forge one. It carries nothing else, so that
//! ListMultipartUploads can give back exactly that id from what the backends list: each
//! backend's uploads of a key, put together into the uploads the proxy created (see
//! [`Replicated::group_listed`]).
//!
//! Ids of the earlier format (the version stamp first) are still accepted.

use super::*;
use std::collections::BTreeMap;

/// The first field of a current upload id's payload.
const FORMAT: &str = "u2";

/// One upload id, decoded: the version stamp (ids of the earlier format only) and each
/// backend's own id.
pub(super) struct DecodedUpload {
    pub stamp: Option<String>,
    pub ids: Vec<Option<UploadId>>,
}

impl Replicated {
    /// The MAC over an upload id's payload (hex of its first 12 bytes is appended).
    fn upload_mac(&self, payload: &str) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.shared.opts.upload_id_key)
            .expect("any key length");
        mac.update(payload.as_bytes());
        mac
    }

    /// The client's upload id: each backend's own id, authenticated.
    pub(super) fn encode_upload(&self, ids: &[Option<UploadId>]) -> Result<UploadId> {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut payload = FORMAT.to_string();
        for id in ids {
            payload.push('.');
            if let Some(id) = id {
                payload.push_str(&b64.encode(id.as_str()));
            }
        }
        let mac = hex::encode(&self.upload_mac(&payload).finalize().into_bytes()[..12]);
        UploadId::new(format!("{payload}.{mac}"))
    }

    pub(super) fn decode_upload(&self, id: &UploadId) -> Result<DecodedUpload> {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let (payload, mac) = id.as_str().rsplit_once('.').ok_or(Error::NoSuchUpload)?;
        // hmac's own verification compares in constant time.
        let mac = hex::decode(mac).map_err(|_| Error::NoSuchUpload)?;
        if mac.len() != 12
            || self
                .upload_mac(payload)
                .verify_truncated_left(&mac)
                .is_err()
        {
            return Err(Error::NoSuchUpload);
        }
        let mut parts = payload.split('.');
        let decode = |s: &str| {
            b64.decode(s)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or(Error::NoSuchUpload)
        };
        let first = parts.next().ok_or(Error::NoSuchUpload)?;
        let stamp = if first == FORMAT {
            None
        } else {
            Some(decode(first)?)
        };
        let ids: Vec<Option<UploadId>> = parts
            .map(|p| {
                if p.is_empty() {
                    Ok(None)
                } else {
                    decode(p).and_then(UploadId::new).map(Some)
                }
            })
            .collect::<Result<_>>()?;
        if ids.len() != self.replicas().len() {
            return Err(Error::NoSuchUpload);
        }
        Ok(DecodedUpload { stamp, ids })
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
    pub(super) fn group_listed(
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
    pub(super) async fn completed_already(
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
            .unwrap_or(&stored.etag);
        if etag.trim_matches('"') != want {
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
