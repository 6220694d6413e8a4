//! Semantics shared by the storage engines.

use s3proxy_core::*;
use std::collections::BTreeMap;

/// Metadata of a copy's destination under the directive.
pub(crate) fn copy_metadata(src: &ObjectMetadata, directive: &MetadataDirective) -> ObjectMetadata {
    match directive {
        MetadataDirective::Copy => src.clone(),
        MetadataDirective::Replace(new) => new.clone(),
    }
}

/// The bytes a GET selects: its range, or with `?partNumber` that part's bytes, noting
/// the parts count of a multipart object in `info`. `part_sizes` are the sizes of the
/// object's parts in order, empty for an object not stored from parts (and for one stored
/// before part sizes were recorded).
pub(crate) fn selected_range(
    info: &mut ObjectInfo,
    part_sizes: &[u64],
    opts: &GetOptions,
) -> Result<Option<(u64, u64)>> {
    opts.refuse_part_with_range()?;
    let Some(number) = opts.part_number else {
        return opts.range.map(|r| r.resolve(info.size)).transpose();
    };
    if !part_sizes.is_empty() {
        info.parts_count = Some(part_sizes.len() as u32);
        return part_range(part_sizes, number);
    }
    match info.etag.parts() {
        // A multipart object written before part sizes were stored: only its part
        // count is known, so only a one-part object can answer.
        Some(1) => info.parts_count = Some(1),
        Some(_) => {
            return Err(Error::NotImplemented(
                "the part boundaries of this object were not recorded".into(),
            ));
        }
        _ => {}
    }
    // Not uploaded in parts: the object is its only part.
    part_range(&[info.size], number)
}

/// A fresh, unguessable multipart upload id.
pub(crate) fn new_upload_id() -> UploadId {
    let bytes: [u8; 16] = rand::random();
    UploadId::new(hex::encode(bytes)).expect("hex is a valid upload id")
}

/// Check the part list of a CompleteMultipartUpload against the parts uploaded: ascending
/// order, every part present with the same ETag, every part but the last at least 5 MiB.
/// Returns the uploaded parts in the order to assemble.
pub(crate) fn select_parts(
    requested: &[CompletedPart],
    uploaded: &BTreeMap<u32, PartInfo>,
) -> Result<Vec<PartInfo>> {
    if requested.is_empty() {
        return Err(Error::MalformedXml);
    }
    let mut selected = Vec::with_capacity(requested.len());
    let mut previous = 0u32;
    for want in requested {
        if want.part_number <= previous {
            return Err(Error::InvalidPartOrder);
        }
        previous = want.part_number;
        let have = uploaded.get(&want.part_number).ok_or(Error::InvalidPart)?;
        if have.etag != want.etag {
            return Err(Error::InvalidPart);
        }
        selected.push(have.clone());
    }
    if selected[..selected.len() - 1]
        .iter()
        .any(|p| p.size < MIN_PART_SIZE)
    {
        return Err(Error::EntityTooSmall);
    }
    Ok(selected)
}

/// One page of ListParts from all parts of an upload.
pub(crate) fn page_parts(
    parts: impl Iterator<Item = PartInfo>,
    opts: &ListPartsOptions,
) -> ListPartsResult {
    let max = if opts.max_parts == 0 {
        1000
    } else {
        opts.max_parts.min(1000)
    };
    let mut result = ListPartsResult::default();
    for part in parts.filter(|p| p.part_number > opts.part_number_marker) {
        if result.parts.len() == max {
            result.is_truncated = true;
            result.next_part_number_marker = result.parts.last().map(|p| p.part_number);
            break;
        }
        result.parts.push(part);
    }
    result
}

/// One page of ListMultipartUploads from all uploads of a bucket.
pub(crate) fn page_uploads(
    mut uploads: Vec<UploadInfo>,
    opts: &ListUploadsOptions,
) -> ListUploadsResult {
    uploads.retain(|u| u.key.starts_with(&opts.prefix) && u.key > opts.key_marker);
    uploads.sort_by(|a, b| a.key.cmp(&b.key).then(a.initiated.cmp(&b.initiated)));
    let max = if opts.max_uploads == 0 {
        1000
    } else {
        opts.max_uploads.min(1000)
    };
    let is_truncated = uploads.len() > max;
    uploads.truncate(max);
    ListUploadsResult {
        uploads,
        is_truncated,
    }
}

/// Hex MD5 of a digest.
pub(crate) fn etag_of(digest: [u8; 16]) -> ETag {
    ETag::new(hex::encode(digest))
}

/// Fail with BadDigest when the client's Content-MD5 differs from the data's.
pub(crate) fn check_md5(expected: Option<[u8; 16]>, actual: [u8; 16]) -> Result<()> {
    match expected {
        Some(want) if want != actual => Err(Error::BadDigest),
        _ => Ok(()),
    }
}

/// Create (or truncate) a file readable and writable by its owner only (0600).
pub(crate) fn create_private(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}

/// Write a whole file, created 0600.
pub(crate) fn write_private(path: &std::path::Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    create_private(path)?.write_all(data)
}

/// Create a directory (and its missing parents) accessible by its owner only (0700).
pub(crate) fn create_private_dir_all(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
}

/// Create one directory, accessible by its owner only (0700).
pub(crate) fn create_private_dir(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().mode(0o700).create(path)
}
