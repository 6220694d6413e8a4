//! What a write that misses its quorum leaves behind, and which failures count against a
//! backend's health.
//!
//! A write below its quorum must leave every replica serving the last acknowledged
//! version. Deleting what some replicas already stored (the rollback this replaced) cannot
//! give that: when the previous version is held only by the replicas that failed, it
//! deletes the last readable copies of acknowledged data. So nothing is deleted or rolled
//! back. Instead a backend never gets the last bytes of a write until the quorum's worth of
//! backends are connected and have taken everything before them ([`super::tee`]): a
//! backend commits only a whole body, so a write that cannot reach its quorum is withdrawn
//! while every backend still holds, and serves, the version it had.
//!
//! A backend that fails after the last bytes went out (it crashed at the very end, or
//! answered an error after storing) can still leave the write short of its quorum with
//! some backends holding the new version. Those are not rolled back either: the new version
//! carries the newest stamp and is what reads serve from then on, and the backends that
//! missed it are journaled, so repair brings them to it. The client was told 503, which in
//! S3 means "the outcome is unknown; retry", and a retry writes a newer version over it.

use crate::Replicated;
use crate::fanout::Outcome;
use crate::inflight::WriteKind;
use crate::journal::Missed;
use s3proxy_core::*;

/// Whether a failed call says something about the backend's health. Errors the backend
/// gave for this request alone (a key it cannot hold, an internal error on one object), or
/// that the proxy made itself (a request the SDK would not build, a write the proxy
/// withdrew), do not: only outages, timeouts and overload do. Client errors (4xx) never do.
pub(crate) fn counts_against_backend(e: &Error) -> bool {
    e.is_transient() && !matches!(e, Error::Internal(_)) && !e.is_backend(BackendErrorKind::Failed)
}

impl Replicated {
    /// Record what a write that missed its quorum left. Nothing is deleted (see the module
    /// documentation): when some backends committed it anyway, their version is the newest
    /// and the others are journaled to receive it.
    pub(crate) fn refused_write<T>(
        &self,
        op: &str,
        kind: WriteKind,
        bucket: &BucketName,
        key: &ObjectKey,
        stamp: &str,
        outcomes: &[Outcome<T>],
    ) {
        let committed: Vec<&str> = outcomes
            .iter()
            .enumerate()
            .filter(|(_, o)| o.is_ok())
            .map(|(i, _)| self.replicas()[i].backend.name())
            .collect();
        if committed.is_empty() {
            log::warn!(
                "{op} {bucket}/{key}: refused below the write quorum; every backend keeps the version it had"
            );
            return;
        }
        // A part stored on some replicas changes no object: the upload's completion is what
        // the quorum decides. Only an object written by some backends is repaired.
        if kind == WriteKind::Part {
            return;
        }
        log::warn!(
            "{op} {bucket}/{key}: write quorum missed after {} committed it; that version stands and is repaired onto the others",
            committed.join(", ")
        );
        for (i, o) in outcomes.iter().enumerate() {
            if o.is_err() {
                self.journal_missed(bucket, key, i, stamp, Missed::Write);
            }
        }
    }

    /// Decide the fan-out result of a call that must reach the quorum (bucket operations,
    /// deletes, copies): the first success, a client error every backend agreed on, or 503.
    /// Callers journal the backends that missed it.
    pub(crate) fn quorum_result<T>(
        &self,
        outcomes: Vec<Outcome<T>>,
        ok_errors: impl Fn(&Error) -> bool,
    ) -> Result<Option<T>> {
        let n = outcomes.len();
        let mut first_ok = None;
        let mut acked = 0;
        let mut client_errors = vec![];
        for o in outcomes {
            match o {
                Ok(v) => {
                    acked += 1;
                    first_ok.get_or_insert(v);
                }
                Err(e) if ok_errors(&e) => acked += 1,
                Err(e) if !e.is_transient() => client_errors.push(e),
                Err(_) => {}
            }
        }
        if acked == 0 && !client_errors.is_empty() {
            return Err(client_errors.remove(0));
        }
        if acked < self.required() {
            return Err(Error::ServiceUnavailable(format!(
                "write quorum not met: {acked} of {n} backends acknowledged, {} required",
                self.required()
            )));
        }
        Ok(first_ok)
    }
}

#[cfg(test)]
mod tests {
    use super::counts_against_backend;
    use s3proxy_core::{BackendErrorKind, Error};

    /// A backend that is down counts against its health; one that answered that a request
    /// failed there (an HTTP 500 on one key), or an error the proxy made, does not.
    #[test]
    fn only_outages_count_against_a_backend() {
        let down = Error::backend(
            "r1",
            "GetObject",
            BackendErrorKind::Unavailable,
            "timed out",
        );
        let failed = Error::backend("r1", "PutObject", BackendErrorKind::Failed, "HTTP 500");
        assert!(counts_against_backend(&down));
        assert!(counts_against_backend(&Error::ServiceUnavailable(
            "x".into()
        )));
        assert!(counts_against_backend(&Error::SlowDown));
        assert!(!counts_against_backend(&failed));
        assert!(!counts_against_backend(&Error::Internal("x".into())));
        assert!(!counts_against_backend(&Error::NoSuchKey));
    }
}
