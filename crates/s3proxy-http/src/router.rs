//! Every S3 operation s3proxy serves, chosen by method, then query keyword, then whether
//! the request names a key.

use crate::request::Query;
use http::{HeaderMap, Method};
use s3proxy_core::{BucketName, Error, ObjectKey, Result, UploadId};

/// An S3 API operation with its URL parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `GET /`
    ListBuckets,
    /// `PUT /bucket`
    CreateBucket {
        /// The bucket the URL names.
        bucket: BucketName,
    },
    /// `DELETE /bucket`
    DeleteBucket {
        /// The bucket the URL names.
        bucket: BucketName,
    },
    /// `HEAD /bucket`
    HeadBucket {
        /// The bucket the URL names.
        bucket: BucketName,
    },
    /// `GET /bucket?location`
    GetBucketLocation {
        /// The bucket the URL names.
        bucket: BucketName,
    },
    /// `GET /bucket?versioning`
    GetBucketVersioning {
        /// The bucket the URL names.
        bucket: BucketName,
    },
    /// `GET /bucket`
    ListObjects {
        /// The bucket the URL names.
        bucket: BucketName,
    },
    /// `GET /bucket?list-type=2`
    ListObjectsV2 {
        /// The bucket the URL names.
        bucket: BucketName,
    },
    /// `GET /bucket?uploads`
    ListMultipartUploads {
        /// The bucket the URL names.
        bucket: BucketName,
    },
    /// `POST /bucket?delete`
    DeleteObjects {
        /// The bucket the URL names.
        bucket: BucketName,
    },
    /// `GET /bucket?acl`
    GetBucketAcl {
        /// The bucket the URL names.
        bucket: BucketName,
    },
    /// `PUT /bucket?acl`
    PutBucketAcl {
        /// The bucket the URL names.
        bucket: BucketName,
    },
    /// `GET /bucket?versions`
    ListObjectVersions {
        /// The bucket the URL names.
        bucket: BucketName,
    },
    /// `GET /bucket/key?acl`
    GetObjectAcl {
        /// The bucket the URL names.
        bucket: BucketName,
        /// The object key the URL names.
        key: ObjectKey,
    },
    /// `PUT /bucket/key?acl`
    PutObjectAcl {
        /// The bucket the URL names.
        bucket: BucketName,
        /// The object key the URL names.
        key: ObjectKey,
    },
    /// `GET /bucket/key?tagging`
    GetObjectTagging {
        /// The bucket the URL names.
        bucket: BucketName,
        /// The object key the URL names.
        key: ObjectKey,
    },
    /// `GET /bucket/key`
    GetObject {
        /// The bucket the URL names.
        bucket: BucketName,
        /// The object key the URL names.
        key: ObjectKey,
    },
    /// `HEAD /bucket/key`
    HeadObject {
        /// The bucket the URL names.
        bucket: BucketName,
        /// The object key the URL names.
        key: ObjectKey,
    },
    /// `PUT /bucket/key`
    PutObject {
        /// The bucket the URL names.
        bucket: BucketName,
        /// The object key the URL names.
        key: ObjectKey,
    },
    /// `PUT /bucket/key` with `x-amz-copy-source`
    CopyObject {
        /// The bucket the URL names.
        bucket: BucketName,
        /// The object key the URL names.
        key: ObjectKey,
    },
    /// `DELETE /bucket/key`
    DeleteObject {
        /// The bucket the URL names.
        bucket: BucketName,
        /// The object key the URL names.
        key: ObjectKey,
    },
    /// `POST /bucket/key?uploads`
    CreateMultipartUpload {
        /// The bucket the URL names.
        bucket: BucketName,
        /// The object key the URL names.
        key: ObjectKey,
    },
    /// `PUT /bucket/key?partNumber=N&uploadId=ID`
    UploadPart {
        /// The bucket the URL names.
        bucket: BucketName,
        /// The object key the URL names.
        key: ObjectKey,
        /// The `uploadId` query parameter.
        upload_id: UploadId,
        /// The `partNumber` query parameter (1 to 10000).
        part_number: u32,
    },
    /// `PUT /bucket/key?partNumber=N&uploadId=ID` with `x-amz-copy-source`
    UploadPartCopy {
        /// The bucket the URL names.
        bucket: BucketName,
        /// The object key the URL names.
        key: ObjectKey,
        /// The `uploadId` query parameter.
        upload_id: UploadId,
        /// The `partNumber` query parameter (1 to 10000).
        part_number: u32,
    },
    /// `POST /bucket/key?uploadId=ID`
    CompleteMultipartUpload {
        /// The bucket the URL names.
        bucket: BucketName,
        /// The object key the URL names.
        key: ObjectKey,
        /// The `uploadId` query parameter.
        upload_id: UploadId,
    },
    /// `DELETE /bucket/key?uploadId=ID`
    AbortMultipartUpload {
        /// The bucket the URL names.
        bucket: BucketName,
        /// The object key the URL names.
        key: ObjectKey,
        /// The `uploadId` query parameter.
        upload_id: UploadId,
    },
    /// `GET /bucket/key?uploadId=ID`
    ListParts {
        /// The bucket the URL names.
        bucket: BucketName,
        /// The object key the URL names.
        key: ObjectKey,
        /// The `uploadId` query parameter.
        upload_id: UploadId,
    },
}

/// Bucket sub-resources s3proxy does not implement; requests for them get NotImplemented
/// rather than being mistaken for a listing or a bucket creation.
const UNSUPPORTED_BUCKET_SUBRESOURCES: &[&str] = &[
    "policy",
    "lifecycle",
    "cors",
    "tagging",
    "website",
    "logging",
    "notification",
    "replication",
    "encryption",
    "object-lock",
    "requestPayment",
    "accelerate",
    "analytics",
    "inventory",
    "metrics",
    "ownershipControls",
    "publicAccessBlock",
    "intelligent-tiering",
    "policyStatus",
];
const UNSUPPORTED_OBJECT_SUBRESOURCES: &[&str] = &[
    "retention",
    "legal-hold",
    "torrent",
    "restore",
    "select",
    "attributes",
];

/// `?partNumber=`, 1 to 10000, else the InvalidArgument S3 answers.
pub(crate) fn part_number(query: &Query) -> Result<u32> {
    query
        .get("partNumber")
        .and_then(|n| n.parse::<u32>().ok())
        .filter(|n| (1..=s3proxy_core::MAX_PART_NUMBER).contains(n))
        .ok_or_else(|| {
            Error::InvalidArgument(
                "Part number must be an integer between 1 and 10000, inclusive".into(),
            )
        })
}

fn upload_id(query: &Query) -> Result<UploadId> {
    UploadId::new(query.get("uploadId").unwrap_or_default())
}

impl Endpoint {
    /// Choose the operation for a request.
    pub fn route(
        method: &Method,
        bucket: Option<BucketName>,
        key: Option<ObjectKey>,
        query: &Query,
        headers: &HeaderMap,
    ) -> Result<Endpoint> {
        let copy = headers.contains_key("x-amz-copy-source");
        let Some(bucket) = bucket else {
            return match *method {
                Method::GET => Ok(Endpoint::ListBuckets),
                _ => Err(Error::MethodNotAllowed),
            };
        };
        let Some(key) = key else {
            if let Some(sub) = UNSUPPORTED_BUCKET_SUBRESOURCES
                .iter()
                .find(|s| query.has(s))
            {
                return Err(Error::NotImplemented(format!(
                    "the ?{sub} bucket sub-resource"
                )));
            }
            return Ok(match *method {
                Method::GET if query.has("acl") => Endpoint::GetBucketAcl { bucket },
                Method::PUT if query.has("acl") => Endpoint::PutBucketAcl { bucket },
                Method::GET if query.has("versions") => Endpoint::ListObjectVersions { bucket },
                _ if query.has("acl") || query.has("versions") => {
                    return Err(Error::MethodNotAllowed);
                }
                Method::GET if query.has("location") => Endpoint::GetBucketLocation { bucket },
                Method::GET if query.has("versioning") => Endpoint::GetBucketVersioning { bucket },
                // Buckets served by s3proxy are unversioned. Without this a PUT ?versioning
                // would be a CreateBucket of the existing bucket: 200, and the client would
                // believe versioning is on.
                Method::PUT if query.has("versioning") => {
                    return Err(Error::NotImplemented(
                        "bucket versioning (PutBucketVersioning)".into(),
                    ));
                }
                _ if query.has("versioning") => return Err(Error::MethodNotAllowed),
                Method::GET if query.has("uploads") => Endpoint::ListMultipartUploads { bucket },
                Method::GET if query.get("list-type") == Some("2") => {
                    Endpoint::ListObjectsV2 { bucket }
                }
                Method::GET => Endpoint::ListObjects { bucket },
                Method::POST if query.has("delete") => Endpoint::DeleteObjects { bucket },
                // Creating and deleting a bucket are the bare bucket URL only: a PUT or
                // DELETE with a sub-resource s3proxy does not know (`DELETE /b?uploads`,
                // `PUT /b?quota`) must never be taken for one of them.
                Method::PUT | Method::DELETE | Method::POST
                    if let Some(sub) = query.first_subresource() =>
                {
                    return Err(Error::NotImplemented(format!(
                        "{method} on the ?{sub} bucket sub-resource"
                    )));
                }
                Method::PUT => Endpoint::CreateBucket { bucket },
                Method::DELETE => Endpoint::DeleteBucket { bucket },
                Method::HEAD => Endpoint::HeadBucket { bucket },
                _ => return Err(Error::MethodNotAllowed),
            });
        };
        if let Some(sub) = UNSUPPORTED_OBJECT_SUBRESOURCES
            .iter()
            .find(|s| query.has(s))
        {
            return Err(Error::NotImplemented(format!(
                "the ?{sub} object sub-resource"
            )));
        }
        // An unversioned bucket holds one version of each object, `null`: asking for it
        // is asking for the object; any other version does not exist.
        if let Some(version) = query.get("versionId")
            && version != "null"
        {
            return Err(Error::InvalidArgument(
                "Invalid version id specified: buckets served by s3proxy are unversioned".into(),
            ));
        }
        // A write or delete of an object carries only the parameters of the operations
        // below: one with a sub-resource s3proxy does not know (`PUT /b/k?website`,
        // `DELETE /b/k?uploads`) must not overwrite or delete the object.
        let known: &[&str] = match *method {
            Method::PUT => &["uploadId", "partNumber", "versionId", "acl", "tagging"],
            Method::DELETE => &["uploadId", "versionId", "tagging"],
            Method::POST => &["uploads", "uploadId"],
            _ => &[],
        };
        if matches!(*method, Method::PUT | Method::DELETE | Method::POST)
            && let Some(sub) = query.first_other_than(known)
        {
            return Err(Error::NotImplemented(format!(
                "{method} on the ?{sub} object sub-resource"
            )));
        }
        if query.has("tagging") && *method != Method::GET {
            return Err(Error::NotImplemented(
                "changing object tags (the ?tagging object sub-resource)".into(),
            ));
        }
        Ok(match *method {
            Method::GET if query.has("acl") => Endpoint::GetObjectAcl { bucket, key },
            Method::PUT if query.has("acl") => Endpoint::PutObjectAcl { bucket, key },
            _ if query.has("acl") => return Err(Error::MethodNotAllowed),
            Method::GET if query.has("tagging") => Endpoint::GetObjectTagging { bucket, key },
            Method::GET if query.has("uploadId") => Endpoint::ListParts {
                bucket,
                key,
                upload_id: upload_id(query)?,
            },
            Method::GET => Endpoint::GetObject { bucket, key },
            Method::HEAD => Endpoint::HeadObject { bucket, key },
            Method::PUT if query.has("uploadId") || query.has("partNumber") => {
                let (upload_id, part_number) = (upload_id(query)?, part_number(query)?);
                if copy {
                    Endpoint::UploadPartCopy {
                        bucket,
                        key,
                        upload_id,
                        part_number,
                    }
                } else {
                    Endpoint::UploadPart {
                        bucket,
                        key,
                        upload_id,
                        part_number,
                    }
                }
            }
            Method::PUT if copy => Endpoint::CopyObject { bucket, key },
            Method::PUT => Endpoint::PutObject { bucket, key },
            Method::DELETE if query.has("uploadId") => Endpoint::AbortMultipartUpload {
                bucket,
                key,
                upload_id: upload_id(query)?,
            },
            Method::DELETE => Endpoint::DeleteObject { bucket, key },
            Method::POST if query.has("uploads") => Endpoint::CreateMultipartUpload { bucket, key },
            Method::POST if query.has("uploadId") => Endpoint::CompleteMultipartUpload {
                bucket,
                key,
                upload_id: upload_id(query)?,
            },
            _ => return Err(Error::MethodNotAllowed),
        })
    }

    /// The S3 operation name, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Endpoint::ListBuckets => "ListBuckets",
            Endpoint::CreateBucket { .. } => "CreateBucket",
            Endpoint::DeleteBucket { .. } => "DeleteBucket",
            Endpoint::HeadBucket { .. } => "HeadBucket",
            Endpoint::GetBucketLocation { .. } => "GetBucketLocation",
            Endpoint::GetBucketVersioning { .. } => "GetBucketVersioning",
            Endpoint::ListObjects { .. } => "ListObjects",
            Endpoint::ListObjectsV2 { .. } => "ListObjectsV2",
            Endpoint::ListMultipartUploads { .. } => "ListMultipartUploads",
            Endpoint::DeleteObjects { .. } => "DeleteObjects",
            Endpoint::GetBucketAcl { .. } => "GetBucketAcl",
            Endpoint::PutBucketAcl { .. } => "PutBucketAcl",
            Endpoint::ListObjectVersions { .. } => "ListObjectVersions",
            Endpoint::GetObjectAcl { .. } => "GetObjectAcl",
            Endpoint::PutObjectAcl { .. } => "PutObjectAcl",
            Endpoint::GetObjectTagging { .. } => "GetObjectTagging",
            Endpoint::GetObject { .. } => "GetObject",
            Endpoint::HeadObject { .. } => "HeadObject",
            Endpoint::PutObject { .. } => "PutObject",
            Endpoint::CopyObject { .. } => "CopyObject",
            Endpoint::DeleteObject { .. } => "DeleteObject",
            Endpoint::CreateMultipartUpload { .. } => "CreateMultipartUpload",
            Endpoint::UploadPart { .. } => "UploadPart",
            Endpoint::UploadPartCopy { .. } => "UploadPartCopy",
            Endpoint::CompleteMultipartUpload { .. } => "CompleteMultipartUpload",
            Endpoint::AbortMultipartUpload { .. } => "AbortMultipartUpload",
            Endpoint::ListParts { .. } => "ListParts",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(
        method: Method,
        path: Option<(&str, Option<&str>)>,
        query: &str,
        copy: bool,
    ) -> Result<Endpoint> {
        let mut headers = HeaderMap::new();
        if copy {
            headers.insert("x-amz-copy-source", "/b/k".parse().unwrap());
        }
        let (bucket, key) = match path {
            Some((b, k)) => (
                Some(BucketName::new(b).unwrap()),
                k.map(|k| ObjectKey::new(k).unwrap()),
            ),
            None => (None, None),
        };
        Endpoint::route(&method, bucket, key, &Query::parse(query), &headers)
    }

    #[test]
    fn routes_like_s3() {
        let name = |r: Result<Endpoint>| r.map(|e| e.name()).unwrap_or("error");
        assert_eq!(name(route(Method::GET, None, "", false)), "ListBuckets");
        assert_eq!(
            name(route(Method::GET, Some(("bkt", None)), "location", false)),
            "GetBucketLocation"
        );
        assert_eq!(
            name(route(
                Method::GET,
                Some(("bkt", None)),
                "list-type=2&prefix=a",
                false
            )),
            "ListObjectsV2"
        );
        assert_eq!(
            name(route(
                Method::GET,
                Some(("bkt", None)),
                "prefix=a&delimiter=%2F",
                false
            )),
            "ListObjects"
        );
        assert_eq!(
            name(route(Method::POST, Some(("bkt", None)), "delete", false)),
            "DeleteObjects"
        );
        assert_eq!(
            name(route(Method::PUT, Some(("bkt", Some("k"))), "", true)),
            "CopyObject"
        );
        assert_eq!(
            name(route(
                Method::PUT,
                Some(("bkt", Some("k"))),
                "partNumber=3&uploadId=abc",
                false
            )),
            "UploadPart"
        );
        assert_eq!(
            name(route(
                Method::PUT,
                Some(("bkt", Some("k"))),
                "partNumber=3&uploadId=abc",
                true
            )),
            "UploadPartCopy"
        );
        assert_eq!(
            name(route(
                Method::POST,
                Some(("bkt", Some("k"))),
                "uploads",
                false
            )),
            "CreateMultipartUpload"
        );
        assert_eq!(
            name(route(
                Method::POST,
                Some(("bkt", Some("k"))),
                "uploadId=abc",
                false
            )),
            "CompleteMultipartUpload"
        );
        assert_eq!(
            name(route(
                Method::DELETE,
                Some(("bkt", Some("k"))),
                "uploadId=abc",
                false
            )),
            "AbortMultipartUpload"
        );
        assert!(matches!(
            route(
                Method::PUT,
                Some(("bkt", Some("k"))),
                "partNumber=0&uploadId=abc",
                false
            ),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            route(Method::GET, Some(("bkt", None)), "policy", false),
            Err(Error::NotImplemented(_))
        ));
        assert_eq!(
            name(route(Method::GET, Some(("bkt", None)), "acl", false)),
            "GetBucketAcl"
        );
        assert_eq!(
            name(route(Method::GET, Some(("bkt", None)), "versions", false)),
            "ListObjectVersions"
        );
        assert_eq!(
            name(route(Method::GET, Some(("bkt", None)), "versioning", false)),
            "GetBucketVersioning"
        );
        assert!(matches!(
            route(Method::PUT, Some(("bkt", None)), "versioning", false),
            Err(Error::NotImplemented(_))
        ));
        assert!(matches!(
            route(Method::DELETE, Some(("bkt", None)), "versioning", false),
            Err(Error::MethodNotAllowed)
        ));
        // Only the bare bucket URL creates or deletes a bucket.
        for (method, query) in [
            (Method::DELETE, "uploads"),
            (Method::DELETE, "location"),
            (Method::DELETE, "list-type=2"),
            (Method::PUT, "quota"),
            (Method::PUT, "uploads"),
            (Method::POST, "uploads"),
        ] {
            assert!(
                matches!(
                    route(method.clone(), Some(("bkt", None)), query, false),
                    Err(Error::NotImplemented(_))
                ),
                "{method} ?{query}"
            );
        }
        for (method, query) in [
            (Method::PUT, "website"),
            (Method::DELETE, "foo=1"),
            (Method::DELETE, "uploads"),
            (Method::PUT, "uploads"),
            (Method::POST, "restore2"),
        ] {
            assert!(
                matches!(
                    route(method.clone(), Some(("bkt", Some("k"))), query, false),
                    Err(Error::NotImplemented(_))
                ),
                "{method} /bkt/k?{query}"
            );
        }
        assert_eq!(
            name(route(
                Method::PUT,
                Some(("bkt", Some("k"))),
                "partNumber=2&uploadId=u&x-id=UploadPart",
                false
            )),
            "UploadPart"
        );
        // Presigned signatures and the SDKs' operation hint are not sub-resources.
        assert_eq!(
            name(route(
                Method::DELETE,
                Some(("bkt", None)),
                "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=00&x-id=DeleteBucket",
                false
            )),
            "DeleteBucket"
        );
        assert_eq!(
            name(route(
                Method::PUT,
                Some(("bkt", None)),
                "AWSAccessKeyId=AK&Signature=s&Expires=1",
                false
            )),
            "CreateBucket"
        );
        assert_eq!(
            name(route(Method::PUT, Some(("bkt", Some("k"))), "acl", false)),
            "PutObjectAcl"
        );
        assert_eq!(
            name(route(
                Method::GET,
                Some(("bkt", Some("k"))),
                "tagging",
                false
            )),
            "GetObjectTagging"
        );
        assert!(matches!(
            route(Method::PUT, Some(("bkt", Some("k"))), "tagging", false),
            Err(Error::NotImplemented(_))
        ));
        assert!(matches!(
            route(
                Method::GET,
                Some(("bkt", Some("k"))),
                "versionId=abc",
                false
            ),
            Err(Error::InvalidArgument(_))
        ));
        assert_eq!(
            name(route(
                Method::GET,
                Some(("bkt", Some("k"))),
                "versionId=null",
                false
            )),
            "GetObject"
        );
        assert!(matches!(
            route(Method::PATCH, Some(("bkt", Some("k"))), "", false),
            Err(Error::MethodNotAllowed)
        ));
        assert!(matches!(
            route(Method::PUT, None, "", false),
            Err(Error::MethodNotAllowed)
        ));
    }
}
