//! The C ABI that pass-instrumented host code calls: region push/pop and launch sites, routed
//! to the process's active [`crate::Profiler`].
//!
//! Site ids are assigned by the pass; a site is recorded as its `file:line` when the session's
//! [`crate::ProfilerConfig::with_manifest`] gave it the pass's site table, as
//! `site#<16 hex digits>` otherwise. Each call returns 0 when recorded, 1 when no session
//! is active (the call is then a no-op), -1 for a null or non-UTF-8 name, and -2 when wattlens
//! failed inside it: no call ever unwinds into its C caller.

use std::ffi::{c_char, c_int, CStr};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use crate::recorder::Recorder;

/// The recorder of the active session, if any.
static ACTIVE: Mutex<Option<Weak<Mutex<Recorder>>>> = Mutex::new(None);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Route C ABI calls to `rec` (the most recently started session wins).
pub(crate) fn activate(rec: &Arc<Mutex<Recorder>>) {
    *lock(&ACTIVE) = Some(Arc::downgrade(rec));
}

/// Stop routing to `rec`, if it is the active one.
pub(crate) fn deactivate(rec: &Arc<Mutex<Recorder>>) {
    let mut active = lock(&ACTIVE);
    if active
        .as_ref()
        .is_some_and(|w| std::ptr::eq(w.as_ptr(), Arc::as_ptr(rec)))
    {
        *active = None;
    }
}

/// Run `f` on the active session's recorder: 0 when it ran, 1 without a session, and
/// [`INTERNAL_ERROR`] when it panicked (no panic unwinds into the C caller).
fn with_active(f: impl FnOnce(&mut Recorder)) -> c_int {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let rec = lock(&ACTIVE).as_ref().and_then(Weak::upgrade);
        match rec {
            Some(rec) => {
                f(&mut lock(&rec));
                0
            }
            None => 1,
        }
    }))
    .unwrap_or(INTERNAL_ERROR)
}

/// What a C ABI call returns when wattlens failed inside it; the caller carries on.
pub const INTERNAL_ERROR: c_int = -2;

/// Open a region named `name` in the active session.
///
/// # Safety
/// `name` must be null or point to a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn wattlens_region_push(name: *const c_char) -> c_int {
    if name.is_null() {
        return -1;
    }
    // SAFETY: non-null and NUL-terminated, as the caller promises.
    let Ok(name) = unsafe { CStr::from_ptr(name) }.to_str() else {
        return -1;
    };
    with_active(|r| r.push_region(name))
}

/// Close the innermost region of the active session.
#[no_mangle]
pub extern "C" fn wattlens_region_pop() -> c_int {
    with_active(|r| {
        r.pop_region();
    })
}

/// Set the launch site of the next operation of the active session.
#[no_mangle]
pub extern "C" fn wattlens_launch_site(site: u64) -> c_int {
    with_active(|r| r.set_pending_site_id(site))
}

#[cfg(test)]
mod tests {
    use super::*;
    use wattlens_instrument::clock::FakeClock;

    #[test]
    fn calls_route_to_the_active_recorder_and_are_no_ops_without_one() {
        let rec = Arc::new(Mutex::new(Recorder::new(Arc::new(FakeClock::new(5)))));
        activate(&rec);
        let name = c"layer0";
        // SAFETY: a valid C string.
        assert_eq!(unsafe { wattlens_region_push(name.as_ptr()) }, 0);
        assert_eq!(wattlens_launch_site(0xabc), 0);
        {
            let r = lock(&rec);
            let path = r.region_path();
            assert_eq!(r.strings.get(path), Some("layer0"));
        }
        let here = std::panic::Location::caller();
        let site = lock(&rec).site(here);
        assert_eq!(lock(&rec).strings.get(site), Some("site#0000000000000abc"));
        assert_eq!(wattlens_region_pop(), 0);
        // SAFETY: null is allowed and rejected.
        assert_eq!(unsafe { wattlens_region_push(std::ptr::null()) }, -1);
        deactivate(&rec);
        assert_eq!(wattlens_region_pop(), 1);
        let (spans, _) = lock(&rec).take_spans();
        assert_eq!(spans.len(), 1, "one closed region");
    }
}
