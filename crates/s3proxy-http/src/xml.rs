//! XML bodies: escaping for responses, and the request documents S3 clients send.

use s3proxy_core::{Error, Result};
use serde::Deserialize;

/// The S3 namespace of every response document.
pub const S3_NS: &str = "http://s3.amazonaws.com/doc/2006-03-01/";

/// Escape text for an XML element.
pub fn escape(s: &str) -> std::borrow::Cow<'_, str> {
    quick_xml::escape::escape(s)
}

/// The start of a response document with its root element.
pub fn open(root: &str) -> String {
    format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<{root} xmlns=\"{S3_NS}\">")
}

/// Append `<name>value</name>`, escaping the value.
pub fn elem(out: &mut String, name: &str, value: &str) {
    out.push('<');
    out.push_str(name);
    out.push('>');
    out.push_str(&escape(value));
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

fn parse<'de, T: Deserialize<'de>>(body: &'de str) -> Result<T> {
    quick_xml::de::from_str(body).map_err(|e| {
        log::debug!("malformed XML body: {e}");
        Error::MalformedXml
    })
}

/// `<Delete>` of DeleteObjects.
#[derive(Debug, Deserialize)]
pub struct DeleteRequest {
    /// Quiet mode: report only failures.
    #[serde(rename = "Quiet", default)]
    pub quiet: bool,
    /// The keys.
    #[serde(rename = "Object", default)]
    pub objects: Vec<DeleteObject>,
}

/// One `<Object>` of DeleteObjects.
#[derive(Debug, Deserialize)]
pub struct DeleteObject {
    /// The key.
    #[serde(rename = "Key")]
    pub key: String,
}

/// `<CompleteMultipartUpload>`.
#[derive(Debug, Deserialize)]
pub struct CompleteRequest {
    /// The parts.
    #[serde(rename = "Part", default)]
    pub parts: Vec<CompletePart>,
}

/// One `<Part>` of CompleteMultipartUpload.
#[derive(Debug, Deserialize)]
pub struct CompletePart {
    /// Part number.
    #[serde(rename = "PartNumber")]
    pub part_number: u32,
    /// ETag, possibly quoted.
    #[serde(rename = "ETag")]
    pub etag: String,
}

/// `<CreateBucketConfiguration>` of CreateBucket.
#[derive(Debug, Deserialize)]
pub struct CreateBucketConfiguration {
    /// Requested region.
    #[serde(rename = "LocationConstraint", default)]
    pub location_constraint: Option<String>,
}

/// `<AccessControlPolicy>` of PutBucketAcl and PutObjectAcl.
#[derive(Debug, Deserialize)]
pub struct AccessControlPolicy {
    /// The grants.
    #[serde(rename = "AccessControlList", default)]
    pub list: Option<AccessControlList>,
}

/// `<AccessControlList>`.
#[derive(Debug, Deserialize)]
pub struct AccessControlList {
    /// Each grant.
    #[serde(rename = "Grant", default)]
    pub grants: Vec<Grant>,
}

/// One `<Grant>`.
#[derive(Debug, Deserialize)]
pub struct Grant {
    /// Who.
    #[serde(rename = "Grantee")]
    pub grantee: Grantee,
    /// What: `FULL_CONTROL`, `READ`...
    #[serde(rename = "Permission")]
    pub permission: String,
}

/// A `<Grantee>`: a canonical user, a group (`URI`) or an e-mail address.
#[derive(Debug, Deserialize)]
pub struct Grantee {
    /// A group (AllUsers, AuthenticatedUsers...).
    #[serde(rename = "URI", default)]
    pub uri: Option<String>,
    /// An e-mail address.
    #[serde(rename = "EmailAddress", default)]
    pub email: Option<String>,
}

impl AccessControlPolicy {
    /// The grants, none when the list is absent.
    pub fn grants(&self) -> &[Grant] {
        self.list.as_ref().map_or(&[], |l| &l.grants)
    }
}

/// Parse a PutBucketAcl or PutObjectAcl body.
pub fn parse_acl(body: &str) -> Result<AccessControlPolicy> {
    parse(body)
}

/// Parse a DeleteObjects body.
pub fn parse_delete(body: &str) -> Result<DeleteRequest> {
    parse(body)
}

/// Parse a CompleteMultipartUpload body.
pub fn parse_complete(body: &str) -> Result<CompleteRequest> {
    parse(body)
}

/// Parse a CreateBucket body.
pub fn parse_create_bucket(body: &str) -> Result<CreateBucketConfiguration> {
    parse(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_client_documents() {
        let d = parse_delete(r#"<?xml version="1.0" encoding="UTF-8"?><Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Object><Key>a &amp; b</Key></Object><Object><Key>c</Key><VersionId>x</VersionId></Object><Quiet>true</Quiet></Delete>"#).unwrap();
        assert!(d.quiet);
        assert_eq!(d.objects.len(), 2);
        assert_eq!(d.objects[0].key, "a & b");
        let c = parse_complete(r#"<CompleteMultipartUpload><Part><ETag>"abc"</ETag><PartNumber>1</PartNumber><ChecksumCRC32>x</ChecksumCRC32></Part><Part><PartNumber>2</PartNumber><ETag>def</ETag></Part></CompleteMultipartUpload>"#).unwrap();
        assert_eq!(c.parts.len(), 2);
        assert_eq!(c.parts[0].etag, "\"abc\"");
        let b = parse_create_bucket("<CreateBucketConfiguration><LocationConstraint>eu-west-1</LocationConstraint></CreateBucketConfiguration>").unwrap();
        assert_eq!(b.location_constraint.as_deref(), Some("eu-west-1"));
        for bad in [
            "",
            "<Delete>",
            "<Complete><Part><PartNumber>x</PartNumber></Part></Complete>",
            "not xml",
        ] {
            assert!(
                parse_complete(bad).is_err() || parse_delete(bad).is_err(),
                "{bad}"
            );
        }
    }
}
