//! Per-backend health: error counts, latency, and a circuit breaker.
//!
//! Repeated failures make a backend *suspect*, not down: the proxy then asks it a request
//! that names no object (ListBuckets, with a short timeout), and opens the circuit only
//! when that fails too. A backend that drops the connection on one odd key (s3s-fs does on
//! `..`) while it answers everything else keeps serving every other request; a dead one
//! fails the probe as well. While suspect, failed calls are not retried. A backend that
//! answers the probe yet keeps failing, with no success between (a throttled one, a dead
//! data tier behind a live front), is backed off as before once it has answered
//! [`BACKOFF_AFTER_ANSWERED`] probes in a row.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Consecutive counted failures that make a backend suspect (see the module documentation).
const OPEN_AFTER: u32 = 3;
/// Probes answered in a row, with only failures between, after which the circuit opens
/// anyway (see the module documentation).
pub(crate) const BACKOFF_AFTER_ANSWERED: u32 = 3;
/// How long an open circuit stays open before a probe may close it.
const OPEN_FOR: Duration = Duration::from_secs(2);

/// First-answer latencies kept per backend for the hedge delay (a ring).
const SAMPLES: usize = 64;

#[derive(Default)]
struct State {
    consecutive_failures: u32,
    /// A probe asked after repeated failures has not answered yet.
    confirming: bool,
    /// Probes answered since the last success.
    answered_probes: u32,
    open_until: Option<Instant>,
    latency_ms: f64,
    successes: u64,
    failures: u64,
    /// Recent first-answer latencies of reads (HEAD answers, GET response heads), in
    /// microseconds; `next_sample` is where the next one goes.
    samples: Vec<u32>,
    next_sample: usize,
}

/// Health of one backend. Cheap to query on every request.
#[derive(Default)]
pub struct Health {
    state: Mutex<State>,
}

/// What one failure did to a backend's health.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    /// Counted; nothing else to do.
    Counted,
    /// Enough failures in a row that the backend may be down: probe it, then report with
    /// [`Health::confirmed`].
    Suspect,
}

/// A snapshot for logs and status.
#[derive(Clone, Debug, PartialEq)]
pub struct HealthSnapshot {
    /// Whether requests currently skip this backend.
    pub open: bool,
    /// Smoothed latency of successful calls, in milliseconds.
    pub latency_ms: f64,
    /// Successful calls so far.
    pub successes: u64,
    /// Failed calls so far (transient errors only).
    pub failures: u64,
}

impl Health {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the circuit is closed (requests may go to this backend). An open circuit
    /// stays open until a probe succeeds, so live requests never wait on a dead backend.
    pub fn is_available(&self) -> bool {
        self.state().open_until.is_none()
    }

    /// Whether a probe asked after repeated failures is still out: calls that fail
    /// meanwhile are not retried.
    pub(crate) fn is_suspect(&self) -> bool {
        self.state().confirming
    }

    /// Whether the circuit is open and its timer ran out: time for a probe.
    pub fn wants_probe(&self) -> bool {
        self.state().open_until.is_some_and(|t| Instant::now() >= t)
    }

    /// A call succeeded after `elapsed`.
    pub fn success(&self, elapsed: Duration) -> bool {
        let mut s = self.state();
        let was_open = s.open_until.is_some();
        s.consecutive_failures = 0;
        s.answered_probes = 0;
        s.open_until = None;
        s.successes += 1;
        let ms = elapsed.as_secs_f64() * 1000.0;
        s.latency_ms = if s.successes == 1 {
            ms
        } else {
            s.latency_ms * 0.9 + ms * 0.1
        };
        was_open
    }

    /// A call failed with an error that says the backend may be down (see
    /// `counts_against_backend`). [`Failure::Suspect`] asks the caller to probe the backend
    /// and report with [`Self::confirmed`]; no other caller is asked until then.
    #[must_use = "a Suspect backend must be probed and the answer given to confirmed()"]
    pub(crate) fn failure(&self) -> Failure {
        let mut s = self.state();
        s.failures += 1;
        s.consecutive_failures += 1;
        if s.open_until.is_some() {
            // Still down: the probe that may close it comes later.
            s.open_until = Some(Instant::now() + OPEN_FOR);
            return Failure::Counted;
        }
        if s.consecutive_failures >= OPEN_AFTER && !s.confirming {
            s.confirming = true;
            return Failure::Suspect;
        }
        Failure::Counted
    }

    /// What the probe asked after [`Failure::Suspect`] found. A backend that answered is
    /// up, and the failures were those requests' own; one that did not has its circuit
    /// opened. Returns true when this opened the circuit.
    pub(crate) fn confirmed(&self, reachable: bool) -> bool {
        let mut s = self.state();
        s.confirming = false;
        if reachable {
            s.answered_probes += 1;
            if s.answered_probes < BACKOFF_AFTER_ANSWERED {
                s.consecutive_failures = 0;
                return false;
            }
            s.answered_probes = 0;
        }
        let opened = s.open_until.is_none();
        s.open_until = Some(Instant::now() + OPEN_FOR);
        opened
    }

    /// A call got no answer within its timeout: open the circuit at once, so that no
    /// other request waits on this backend until a probe finds it answering again.
    pub fn unresponsive(&self) -> bool {
        let mut s = self.state();
        s.failures += 1;
        s.consecutive_failures = s.consecutive_failures.max(OPEN_AFTER);
        let opened = s.open_until.is_none();
        s.open_until = Some(Instant::now() + OPEN_FOR);
        opened
    }

    /// A read's first answer (a HEAD's, a GET's response head) came after `elapsed`: a
    /// sample for [`Self::read_p95`]. Only reads count: a PUT's time grows with its body.
    pub fn read_answered(&self, elapsed: Duration) {
        let mut s = self.state();
        let us = elapsed.as_micros().min(u32::MAX as u128) as u32;
        if s.samples.len() < SAMPLES {
            s.samples.push(us);
        } else {
            let at = s.next_sample;
            s.samples[at] = us;
        }
        s.next_sample = (s.next_sample + 1) % SAMPLES;
    }

    /// The 95th percentile of the recent read latencies, once there are enough of them
    /// to say (at least 8).
    pub fn read_p95(&self) -> Option<Duration> {
        let mut samples = self.state().samples.clone();
        if samples.len() < 8 {
            return None;
        }
        samples.sort_unstable();
        let at = (samples.len() * 95).div_ceil(100) - 1;
        Some(Duration::from_micros(samples[at] as u64))
    }

    /// Current figures.
    pub fn snapshot(&self) -> HealthSnapshot {
        let s = self.state();
        HealthSnapshot {
            open: s.open_until.is_some(),
            latency_ms: s.latency_ms,
            successes: s.successes,
            failures: s.failures,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_repeated_failures_and_a_failed_probe_and_closes_on_success() {
        let h = Health::default();
        assert!(h.is_available());
        assert_eq!(h.failure(), Failure::Counted);
        assert_eq!(h.failure(), Failure::Counted);
        assert_eq!(h.failure(), Failure::Suspect);
        // One probe at a time: failures meanwhile are only counted.
        assert_eq!(h.failure(), Failure::Counted);
        assert!(
            h.is_available(),
            "suspect, not down, until the probe says so"
        );
        assert!(h.confirmed(false));
        assert!(!h.is_available() && !h.wants_probe());
        assert!(h.success(Duration::from_millis(3)));
        assert!(h.is_available() && !h.wants_probe());
    }

    #[test]
    fn a_backend_answering_the_probe_stays_available() {
        let h = Health::default();
        for _ in 0..2 {
            assert_eq!(h.failure(), Failure::Counted);
        }
        assert_eq!(h.failure(), Failure::Suspect);
        assert!(!h.confirmed(true));
        assert!(h.is_available());
        // The count starts over: two more failures are not yet suspect.
        assert_eq!(h.failure(), Failure::Counted);
        assert_eq!(h.failure(), Failure::Counted);
        assert_eq!(h.failure(), Failure::Suspect);
        assert!(!h.confirmed(true));
        // A success between makes the answered probes count from zero again.
        h.success(Duration::from_millis(1));
        for _ in 0..BACKOFF_AFTER_ANSWERED - 1 {
            for _ in 0..OPEN_AFTER - 1 {
                assert_eq!(h.failure(), Failure::Counted);
            }
            assert_eq!(h.failure(), Failure::Suspect);
            assert!(!h.confirmed(true));
        }
        assert!(h.is_available());
    }

    #[test]
    fn a_backend_failing_everything_but_the_probe_is_backed_off() {
        let h = Health::default();
        for round in 1..=BACKOFF_AFTER_ANSWERED {
            for _ in 0..OPEN_AFTER - 1 {
                assert_eq!(h.failure(), Failure::Counted);
            }
            assert_eq!(h.failure(), Failure::Suspect);
            assert!(h.is_suspect());
            let opened = h.confirmed(true);
            assert_eq!(opened, round == BACKOFF_AFTER_ANSWERED, "round {round}");
        }
        assert!(!h.is_available());
    }

    #[test]
    fn read_p95_needs_samples_and_forgets_old_ones() {
        let h = Health::default();
        for _ in 0..7 {
            h.read_answered(Duration::from_millis(1));
        }
        assert_eq!(h.read_p95(), None);
        for ms in 1..=100 {
            h.read_answered(Duration::from_millis(ms));
        }
        // The ring holds the last 64 samples: 37..=100 ms; the 95th percentile of those.
        assert_eq!(h.read_p95(), Some(Duration::from_millis(97)));
    }
}
