//! The state directory's lock under erasure coding: a serving instance holds it shared,
//! `s3proxy repair` and `s3proxy scrub` take it exclusively.
//!
//! The per-key turns that keep a repair from putting an older shard over a newer write
//! hold inside one process only: a repair or scrub run as a second process beside a
//! serving instance can rebuild a key the server is writing and undo an acknowledged
//! write. So those commands refuse while a server holds the lock, unless the operator
//! says `--while-serving`; and a server does not start while one of them runs.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

/// The lock file in `state_dir`.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("erasure.lock")
}

fn open(state_dir: &Path) -> Result<File, String> {
    std::fs::create_dir_all(state_dir)
        .map_err(|e| format!("cannot create {}: {e}", state_dir.display()))?;
    let p = path(state_dir);
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&p)
        .map_err(|e| format!("cannot open {}: {e}", p.display()))
}

/// The lock a serving instance holds for its lifetime (shared: instances that share a
/// state directory may serve side by side; that gap is documented in docs/ERASURE.md).
pub fn hold_for_serving(state_dir: &Path) -> Result<File, String> {
    let file = open(state_dir)?;
    match file.try_lock_shared() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(format!(
            "s3proxy repair or scrub is running on {} (it holds {}); start the server once \
             it is done",
            state_dir.display(),
            path(state_dir).display()
        )),
        Err(TryLockError::Error(e)) => {
            Err(format!("cannot lock {}: {e}", path(state_dir).display()))
        }
    }
}

/// The lock `s3proxy repair`/`scrub` hold while they run, or why not: a server holds
/// it. `while_serving` (the operator's explicit choice) runs without it.
pub fn hold_for_maintenance(state_dir: &Path, while_serving: bool) -> Result<Option<File>, String> {
    if while_serving {
        log::warn!(
            "--while-serving: a client write of a key being rebuilt may be undone \
             (docs/OPERATIONS.md)"
        );
        return Ok(None);
    }
    let file = open(state_dir)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(TryLockError::WouldBlock) => Err(format!(
            "a server is serving from {} (it holds {}): repair and scrub of an erasure \
             placement in another process may race its writes and undo an acknowledged \
             one. Stop the server and run again, or pass --while-serving to run anyway \
             (docs/OPERATIONS.md)",
            state_dir.display(),
            path(state_dir).display()
        )),
        Err(TryLockError::Error(e)) => {
            Err(format!("cannot lock {}: {e}", path(state_dir).display()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maintenance_refuses_while_a_server_holds_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let server = hold_for_serving(dir.path()).unwrap();
        let second = hold_for_serving(dir.path()).expect("servers share the lock");
        let refused = hold_for_maintenance(dir.path(), false).unwrap_err();
        assert!(refused.contains("--while-serving"), "{refused}");
        assert!(hold_for_maintenance(dir.path(), true).unwrap().is_none());
        drop((server, second));
        let repair = hold_for_maintenance(dir.path(), false).unwrap();
        assert!(repair.is_some());
        let blocked = hold_for_serving(dir.path()).unwrap_err();
        assert!(blocked.contains("repair or scrub is running"), "{blocked}");
    }
}
