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
#[derive(Debug, Default)]
pub struct DeleteRequest {
    /// Quiet mode: report only failures.
    pub quiet: bool,
    /// The keys.
    pub objects: Vec<DeleteObject>,
}

/// One `<Object>` of DeleteObjects.
#[derive(Debug)]
pub struct DeleteObject {
    /// The key, exactly as sent (leading and trailing whitespace included).
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

/// Parse a DeleteObjects body. Read event by event rather than through serde: quick-xml's
/// deserializer trims text, and a key is every byte between `<Key>` and `</Key>` (a key
/// `"keep "` must not delete `"keep"`).
pub fn parse_delete(body: &str) -> Result<DeleteRequest> {
    use quick_xml::events::Event;
    let malformed = |e: &dyn std::fmt::Display| {
        log::debug!("malformed DeleteObjects body: {e}");
        Error::MalformedXml
    };
    let mut reader = quick_xml::Reader::from_str(body);
    reader.config_mut().trim_text(false);
    let mut doc = DeleteRequest::default();
    // The open elements by local name, the text of the <Key> or <Quiet> being read, and
    // the key of the <Object> being read.
    let mut path: Vec<Vec<u8>> = vec![];
    let mut text: Option<String> = None;
    let mut key: Option<String> = None;
    let mut seen_root = false;
    loop {
        let (name, empty) = match reader.read_event().map_err(|e| malformed(&e))? {
            Event::Start(e) => (e.local_name().as_ref().to_vec(), false),
            Event::Empty(e) => (e.local_name().as_ref().to_vec(), true),
            Event::Text(e) => {
                if let Some(t) = text.as_mut() {
                    t.push_str(&e.unescape().map_err(|e| malformed(&e))?);
                }
                continue;
            }
            Event::CData(e) => {
                if let Some(t) = text.as_mut() {
                    let data = e.into_inner();
                    t.push_str(std::str::from_utf8(&data).map_err(|e| malformed(&e))?);
                }
                continue;
            }
            Event::End(_) => {
                end_element(&mut path, &mut text, &mut key, &mut doc)?;
                continue;
            }
            Event::Eof => break,
            _ => continue,
        };
        if text.is_some() {
            return Err(malformed(&"an element inside <Key> or <Quiet>"));
        }
        if path.is_empty() {
            if seen_root || name != b"Delete" {
                return Err(malformed(&"not a <Delete> document"));
            }
            seen_root = true;
        }
        path.push(name);
        if is_text_field(&path) {
            text = Some(String::new());
        }
        if empty {
            end_element(&mut path, &mut text, &mut key, &mut doc)?;
        }
    }
    if !seen_root || !path.is_empty() {
        return Err(malformed(&"incomplete document"));
    }
    Ok(doc)
}

/// The element at the end of `path` closes.
fn end_element(
    path: &mut Vec<Vec<u8>>,
    text: &mut Option<String>,
    key: &mut Option<String>,
    doc: &mut DeleteRequest,
) -> Result<()> {
    if let Some(t) = text.take() {
        if path_is(path, &[b"Delete", b"Quiet"]) {
            doc.quiet = match t.trim() {
                "true" | "1" => true,
                "false" | "0" | "" => false,
                _ => return Err(Error::MalformedXml),
            };
        } else {
            *key = Some(t);
        }
    }
    if path_is(path, &[b"Delete", b"Object"]) {
        let key = key.take().ok_or(Error::MalformedXml)?;
        doc.objects.push(DeleteObject { key });
    }
    path.pop();
    Ok(())
}

fn path_is(path: &[Vec<u8>], want: &[&[u8]]) -> bool {
    path.len() == want.len() && path.iter().zip(want).all(|(a, b)| a == b)
}

/// Whether the element at `path` is one whose text DeleteObjects reads.
fn is_text_field(path: &[Vec<u8>]) -> bool {
    path_is(path, &[b"Delete", b"Quiet"]) || path_is(path, &[b"Delete", b"Object", b"Key"])
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
        // Keys are exactly the text sent: no trimming, entities and CDATA decoded.
        let d = parse_delete("<Delete>\n  <Object><Key>keep </Key></Object>\n  <Object><Key> </Key></Object><Object><Key>\ta\nb\t</Key></Object><Object><Key>x&#32;<![CDATA[ <y> ]]></Key></Object><Object><Key/></Object>\n</Delete>").unwrap();
        let keys: Vec<&str> = d.objects.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(keys, ["keep ", " ", "\ta\nb\t", "x  <y> ", ""]);
        assert!(!d.quiet);
        for bad in [
            "<Delete><Object></Object></Delete>",
            "<Delete><Object><Key>a<b/></Key></Object></Delete>",
            "<Delete><Quiet>maybe</Quiet></Delete>",
            "<Other><Object><Key>a</Key></Object></Other>",
            "<Delete><Object><Key>a</Key></Object>",
        ] {
            assert!(parse_delete(bad).is_err(), "{bad}");
        }
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
