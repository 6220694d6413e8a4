//! Where fs backends and the state directory may live relative to each other.
//!
//! The filesystem backend treats each directory directly under its root as a bucket
//! (one it created holds a `bucket.json`). A second fs root inside the first, or a state
//! directory (master key, credentials, journal) inside an fs root under a name that is a
//! valid bucket name, would be such a directory: refused. A state directory under a name
//! no bucket can have (the default `./data/.s3proxy` starts with a dot) is fine.

use s3proxy_core::BucketName;
use std::path::{Component, Path, PathBuf};

/// `p` made absolute (against the current directory) with `.` and `..` resolved
/// lexically; symbolic links are resolved where the path exists.
pub fn normalize(p: &Path) -> PathBuf {
    let absolute = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(p)
    };
    let mut out = PathBuf::new();
    for c in absolute.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    // The longest existing ancestor, canonical (links resolved), then the rest.
    let mut existing = out.clone();
    let mut rest = vec![];
    while !existing.exists() {
        match existing.file_name() {
            Some(name) => {
                rest.push(name.to_os_string());
                existing.pop();
            }
            None => break,
        }
    }
    let mut resolved = existing.canonicalize().unwrap_or(existing);
    for name in rest.into_iter().rev() {
        resolved.push(name);
    }
    resolved
}

/// Why another fs root may not be `inner`, if so: it is `root` or lies anywhere under it.
pub fn nested_root(root: &Path, inner: &Path) -> Option<String> {
    let (root, inner) = (normalize(root), normalize(inner));
    if inner == root {
        return Some(format!("is the same directory as {}", root.display()));
    }
    inner
        .starts_with(&root)
        .then(|| format!("lies inside the fs backend root {}", root.display()))
}

/// Why the state directory may not be `inner`, if so: it is the fs root `root`, or lies
/// under it in a directory that could be a bucket.
pub fn conflict(root: &Path, inner: &Path) -> Option<String> {
    let (root, inner) = (normalize(root), normalize(inner));
    if inner == root {
        return Some(format!("is the same directory as {}", root.display()));
    }
    let below = inner.strip_prefix(&root).ok()?;
    let first = below
        .components()
        .next()?
        .as_os_str()
        .to_str()
        .unwrap_or("");
    if BucketName::new(first.to_string()).is_ok() {
        return Some(format!(
            "lies inside the fs backend root {} under {first:?}, which could be a bucket's name",
            root.display()
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_roots_and_state_dirs_that_could_be_buckets_conflict() {
        let root = Path::new("/srv/data");
        assert!(conflict(root, Path::new("/srv/data")).is_some());
        assert!(conflict(root, Path::new("/srv/data/state")).is_some());
        assert!(conflict(root, Path::new("/srv/data/./x/../state/j")).is_some());
        assert!(conflict(root, Path::new("/srv/data/.s3proxy")).is_none());
        assert!(conflict(root, Path::new("/srv/other")).is_none());
        assert!(conflict(root, Path::new("/srv/data2")).is_none());
        assert!(conflict(Path::new("/srv/data/b1"), root).is_none());
        assert!(nested_root(root, Path::new("/srv/data/.x")).is_some());
        assert!(nested_root(root, Path::new("/srv/data")).is_some());
        assert!(nested_root(root, Path::new("/srv/data2")).is_none());
    }
}
