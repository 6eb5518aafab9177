//! NVTX ranges: this library is NVTX's injection library too (`wattlens run` points
//! `NVTX_INJECTION64_PATH` at it), so each `nvtxRangePush*`/`nvtxRangePop` of the program
//! calls straight into `push_range`/`pop_range` with no CUPTI callback layer in between,
//! and each `nvtxRangeStart*`/`nvtxRangeEnd` and `nvtxMark*` into [`crate::nvtx_ranges`].
//!
//! NVTX's injection protocol (`nvToolsExt` v3): the first NVTX call of each library that
//! embeds NVTX loads the injection library and calls `InitializeInjectionNvtx2` with a
//! function that returns export tables; the callbacks table hands out each module's table of
//! function-pointer slots, which the tool fills. Slots left empty are no-ops.

use std::borrow::Cow;
use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

use wattlens_instrument::clock::Clock;

use crate::nvtx_ranges::{end_range, mark, start_range};
use crate::state::lock;
use crate::thread::with_thread;

/// What NVTX's push/pop return when no tool tracks the ranges (`NVTX_NO_PUSH_POP_TRACKING`).
const NOT_TRACKED: c_int = -2;
/// `NVTX_ETID_CALLBACKS`: the export table that hands out the modules' slot tables.
const EXPORT_CALLBACKS: u32 = 1;
/// `NVTX_CB_MODULE_CORE`: the original push/pop API.
const MODULE_CORE: u32 = 1;
/// `NVTX_CB_MODULE_CORE2`: the domain API.
const MODULE_CORE2: u32 = 5;
/// Slots of the core module (`NvtxCallbackIdCore`).
const CORE_MARK_EX: usize = 1;
const CORE_MARK_A: usize = 2;
const CORE_MARK_W: usize = 3;
const CORE_RANGE_START_EX: usize = 4;
const CORE_RANGE_START_A: usize = 5;
const CORE_RANGE_START_W: usize = 6;
const CORE_RANGE_END: usize = 7;
const CORE_PUSH_EX: usize = 8;
const CORE_PUSH_A: usize = 9;
const CORE_PUSH_W: usize = 10;
const CORE_POP: usize = 11;
/// Slots of the domain module (`NvtxCallbackIdCore2`).
const CORE2_MARK_EX: usize = 1;
const CORE2_RANGE_START_EX: usize = 2;
const CORE2_RANGE_END: usize = 3;
const CORE2_PUSH_EX: usize = 4;
const CORE2_POP: usize = 5;
const CORE2_REGISTER_STRING_A: usize = 10;
const CORE2_REGISTER_STRING_W: usize = 11;
/// Registered strings kept at most; later registrations get no handle (their ranges are
/// unnamed).
const MAX_REGISTERED: usize = 65_536;
/// Longest wide-character message read, in characters.
const MAX_WIDE_CHARS: usize = 4096;

/// Whether ranges are recorded; set once the library started with callbacks on.
static RANGES: AtomicBool = AtomicBool::new(false);

/// Record NVTX ranges from now on.
pub(crate) fn enable() {
    RANGES.store(true, Ordering::Release);
}

/// Whose handles a registered-string message (`NVTX_MESSAGE_TYPE_REGISTERED`) carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Registered {
    /// Ours ([`register_string_a`]): a pointer to the text.
    Ours,
    /// Another tool's (CUPTI's): opaque.
    Opaque,
}

/// `NvtxExportTableCallbacks`.
#[repr(C)]
struct ExportCallbacks {
    struct_size: usize,
    get_module_function_table: Option<
        unsafe extern "C" fn(
            module: u32,
            table: *mut *mut *mut *const c_void,
            size: *mut u32,
        ) -> c_int,
    >,
}

/// The function NVTX passes to `InitializeInjectionNvtx2`.
pub type GetExportTable = Option<unsafe extern "C" fn(id: u32) -> *const c_void>;

/// Fill NVTX's slots for the push/pop calls; 1 when they were filled, 0 when NVTX offered no
/// usable table (NVTX then runs without a tool).
///
/// # Safety
/// `get` must be null or NVTX's export-table function.
pub(crate) unsafe fn initialize(get: GetExportTable) -> c_int {
    let Some(get) = get else { return 0 };
    // SAFETY: NVTX's export-table function, asked for the callbacks table.
    let table = unsafe { get(EXPORT_CALLBACKS) }.cast::<ExportCallbacks>();
    if table.is_null() {
        return 0;
    }
    // SAFETY: a callbacks table starts with its size; the getter is read only if it fits.
    let getter = unsafe {
        if (*table).struct_size < std::mem::size_of::<ExportCallbacks>() {
            return 0;
        }
        (*table).get_module_function_table
    };
    let Some(getter) = getter else { return 0 };
    let core: [(usize, *const c_void); 11] = [
        (CORE_PUSH_A, push_a as *const c_void),
        (CORE_PUSH_W, push_w as *const c_void),
        (CORE_PUSH_EX, push_ex as *const c_void),
        (CORE_POP, pop as *const c_void),
        (CORE_MARK_A, mark_a as *const c_void),
        (CORE_MARK_W, mark_w as *const c_void),
        (CORE_MARK_EX, mark_ex as *const c_void),
        (CORE_RANGE_START_A, range_start_a as *const c_void),
        (CORE_RANGE_START_W, range_start_w as *const c_void),
        (CORE_RANGE_START_EX, range_start_ex as *const c_void),
        (CORE_RANGE_END, range_end as *const c_void),
    ];
    let core2: [(usize, *const c_void); 7] = [
        (CORE2_PUSH_EX, domain_push_ex as *const c_void),
        (CORE2_POP, domain_pop as *const c_void),
        (CORE2_REGISTER_STRING_A, register_string_a as *const c_void),
        (CORE2_REGISTER_STRING_W, register_string_w as *const c_void),
        (CORE2_MARK_EX, domain_mark_ex as *const c_void),
        (CORE2_RANGE_START_EX, domain_range_start_ex as *const c_void),
        (CORE2_RANGE_END, domain_range_end as *const c_void),
    ];
    // SAFETY: NVTX's own getter, for modules it defines.
    let filled = unsafe { fill(getter, MODULE_CORE, &core) };
    // SAFETY: as above.
    let filled2 = unsafe { fill(getter, MODULE_CORE2, &core2) };
    c_int::from(filled || filled2)
}

/// Write `slots` into `module`'s table, skipping any past the table's end; false when NVTX has
/// no table for it.
///
/// # Safety
/// `getter` must be NVTX's `GetModuleFunctionTable`, and each function pointer of `slots` of
/// the type NVTX expects in its slot.
unsafe fn fill(
    getter: unsafe extern "C" fn(u32, *mut *mut *mut *const c_void, *mut u32) -> c_int,
    module: u32,
    slots: &[(usize, *const c_void)],
) -> bool {
    let mut table: *mut *mut *const c_void = std::ptr::null_mut();
    let mut size = 0u32;
    // SAFETY: valid out-pointers.
    if unsafe { getter(module, &mut table, &mut size) } == 0 || table.is_null() {
        return false;
    }
    for &(slot, f) in slots {
        if slot >= size as usize {
            continue;
        }
        // SAFETY: `slot` is within the table NVTX reported; each entry points to the slot
        // variable (or is null when the module lacks that call).
        unsafe {
            let entry = *table.add(slot);
            if !entry.is_null() {
                *entry = f;
            }
        }
    }
    true
}

/// Open a range named `name` (unnamed when `None`) on this thread; its 0-based level.
pub(crate) fn push_range(name: Option<Cow<'_, str>>, payload: Option<u64>) -> Option<c_int> {
    let name = name.unwrap_or(Cow::Borrowed("(unnamed range)"));
    with_thread(|t, s| {
        let level = c_int::try_from(t.stack.depth()).unwrap_or(c_int::MAX);
        if t.stack.full() {
            t.stack.push(0, 0, None); // counted, so that its pop balances
            return level;
        }
        let (name, tokens) = named_tokens(&name, payload);
        let parent = t.stack.current();
        let id = t.path_id(&s.paths, parent, &name);
        t.stack.push(id, s.clock.now_ns(), tokens);
        level
    })
}

/// Close this thread's innermost range; the level it had.
pub(crate) fn pop_range() -> Option<c_int> {
    with_thread(|t, s| {
        let level = c_int::try_from(t.stack.depth()).unwrap_or(c_int::MAX) - 1;
        if let Some(c) = t.stack.pop(s.clock.now_ns()) {
            lock(&t.pending).queue(|p| &mut p.closed, c);
        }
        level
    })
}

/// A range's name with a `tokens=N` taken out, and its token count: the payload where the
/// program gave an integer one, else N. Names keep no count, so that a request's range is one
/// path however many tokens each instance had.
pub(crate) fn named_tokens(name: &str, payload: Option<u64>) -> (Cow<'_, str>, Option<u64>) {
    if !name.contains("tokens=") {
        return (Cow::Borrowed(name), payload);
    }
    let (clean, in_name) = wattlens_instrument::names::split_tokens(name);
    (Cow::Owned(clean), payload.or(in_name))
}

/// An integer payload of NVTX event attributes (`payloadType` u64, i64 ≥ 0, u32 or i32 ≥ 0),
/// as a token count.
///
/// # Safety
/// `attr` must be null or point to an `nvtxEventAttributes_t` (version 2 or later).
pub(crate) unsafe fn attr_tokens(attr: *const u8) -> Option<u64> {
    if attr.is_null() {
        return None;
    }
    // SAFETY: nvtxEventAttributes_t: size (u16) at 2, payloadType (i32) at 16, the payload
    // (a union of 8 bytes) at 24; the size says the fields are there.
    unsafe {
        let size = std::ptr::read_unaligned(attr.add(2).cast::<u16>());
        if usize::from(size) < 32 {
            return None;
        }
        let kind = std::ptr::read_unaligned(attr.add(16).cast::<i32>());
        let bits = std::ptr::read_unaligned(attr.add(24).cast::<u64>());
        match kind {
            1 => Some(bits),                               // NVTX_PAYLOAD_TYPE_UNSIGNED_INT64
            2 => u64::try_from(bits as i64).ok(),          // INT64
            4 => Some(u64::from(bits as u32)),             // UNSIGNED_INT32
            5 => u64::try_from((bits as u32) as i32).ok(), // INT32
            _ => None,
        }
    }
}

/// Run a push or pop handler: nothing before recording starts, and never a panic into NVTX.
fn guarded(f: impl FnOnce() -> Option<c_int>) -> c_int {
    if !RANGES.load(Ordering::Acquire) {
        return NOT_TRACKED;
    }
    crate::cost::timed(|| {
        catch_unwind(AssertUnwindSafe(f))
            .ok()
            .flatten()
            .unwrap_or(NOT_TRACKED)
    })
}

/// `nvtxRangePushA`.
unsafe extern "C" fn push_a(message: *const c_char) -> c_int {
    // SAFETY: NVTX passes the caller's NUL-terminated message (or null).
    guarded(|| push_range(unsafe { c_text(message) }, None))
}

/// `nvtxRangePushW`.
unsafe extern "C" fn push_w(message: *const u32) -> c_int {
    // SAFETY: NVTX passes the caller's NUL-terminated wide message (or null).
    guarded(|| push_range(unsafe { wide_text(message) }, None))
}

/// `nvtxRangePushEx`.
unsafe extern "C" fn push_ex(attr: *const u8) -> c_int {
    // SAFETY: NVTX passes the caller's event attributes (or null).
    guarded(|| {
        push_range(unsafe { attr_message(attr, Registered::Ours) }, unsafe {
            attr_tokens(attr)
        })
    })
}

/// `nvtxRangePop`.
unsafe extern "C" fn pop() -> c_int {
    guarded(pop_range)
}

/// `nvtxDomainRangePushEx`: domains share the thread's one stack.
unsafe extern "C" fn domain_push_ex(_domain: *const c_void, attr: *const u8) -> c_int {
    // SAFETY: as for `push_ex`.
    guarded(|| {
        push_range(unsafe { attr_message(attr, Registered::Ours) }, unsafe {
            attr_tokens(attr)
        })
    })
}

/// `nvtxDomainRangePop`.
unsafe extern "C" fn domain_pop(_domain: *const c_void) -> c_int {
    guarded(pop_range)
}

/// Run a start, end or mark handler: nothing before recording starts (`none` is returned),
/// and never a panic into NVTX.
fn guarded_other<T>(none: T, f: impl FnOnce() -> T) -> T {
    if !RANGES.load(Ordering::Acquire) {
        return none;
    }
    crate::cost::timed(|| catch_unwind(AssertUnwindSafe(f)).unwrap_or(none))
}

/// The name of a start/end range or mark, or a stand-in for one without a message.
fn named<'a>(name: Option<Cow<'a, str>>, what: &'static str) -> Cow<'a, str> {
    name.unwrap_or(Cow::Borrowed(what))
}

/// `nvtxMarkA`.
unsafe extern "C" fn mark_a(message: *const c_char) {
    // SAFETY: NVTX passes the caller's NUL-terminated message (or null).
    guarded_other((), || {
        mark(&named(unsafe { c_text(message) }, "(unnamed mark)"))
    });
}

/// `nvtxMarkW`.
unsafe extern "C" fn mark_w(message: *const u32) {
    // SAFETY: NVTX passes the caller's NUL-terminated wide message (or null).
    guarded_other((), || {
        mark(&named(unsafe { wide_text(message) }, "(unnamed mark)"))
    });
}

/// `nvtxMarkEx`.
unsafe extern "C" fn mark_ex(attr: *const u8) {
    // SAFETY: NVTX passes the caller's event attributes (or null).
    let name = || unsafe { attr_message(attr, Registered::Ours) };
    guarded_other((), || mark(&named(name(), "(unnamed mark)")));
}

/// `nvtxDomainMarkEx`: domains share one timeline.
unsafe extern "C" fn domain_mark_ex(_domain: *const c_void, attr: *const u8) {
    // SAFETY: as for `mark_ex`.
    unsafe { mark_ex(attr) }
}

/// `nvtxRangeStartA`: the id `nvtxRangeEnd` will name (0 when not recorded).
unsafe extern "C" fn range_start_a(message: *const c_char) -> u64 {
    // SAFETY: NVTX passes the caller's NUL-terminated message (or null).
    let name = || unsafe { c_text(message) };
    guarded_other(0, || start_range(&named(name(), "(unnamed range)"), None))
}

/// `nvtxRangeStartW`.
unsafe extern "C" fn range_start_w(message: *const u32) -> u64 {
    // SAFETY: NVTX passes the caller's NUL-terminated wide message (or null).
    let name = || unsafe { wide_text(message) };
    guarded_other(0, || start_range(&named(name(), "(unnamed range)"), None))
}

/// `nvtxRangeStartEx`.
unsafe extern "C" fn range_start_ex(attr: *const u8) -> u64 {
    // SAFETY: NVTX passes the caller's event attributes (or null).
    let name = || unsafe { attr_message(attr, Registered::Ours) };
    // SAFETY: as above.
    let tokens = || unsafe { attr_tokens(attr) };
    guarded_other(0, || {
        start_range(&named(name(), "(unnamed range)"), tokens())
    })
}

/// `nvtxDomainRangeStartEx`.
unsafe extern "C" fn domain_range_start_ex(_domain: *const c_void, attr: *const u8) -> u64 {
    // SAFETY: as for `range_start_ex`.
    unsafe { range_start_ex(attr) }
}

/// `nvtxRangeEnd`.
unsafe extern "C" fn range_end(id: u64) {
    guarded_other((), || end_range(id));
}

/// `nvtxDomainRangeEnd`.
unsafe extern "C" fn domain_range_end(_domain: *const c_void, id: u64) {
    guarded_other((), || end_range(id));
}

/// `nvtxDomainRegisterStringA`: the handle is a pointer to our copy of the text.
unsafe extern "C" fn register_string_a(
    _domain: *const c_void,
    text: *const c_char,
) -> *const c_void {
    catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: NVTX passes the caller's NUL-terminated string (or null).
        unsafe { c_text(text) }.map_or(std::ptr::null(), |t| register(&t))
    }))
    .unwrap_or(std::ptr::null())
}

/// `nvtxDomainRegisterStringW`.
unsafe extern "C" fn register_string_w(_domain: *const c_void, text: *const u32) -> *const c_void {
    catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: NVTX passes the caller's NUL-terminated wide string (or null).
        unsafe { wide_text(text) }.map_or(std::ptr::null(), |t| register(&t))
    }))
    .unwrap_or(std::ptr::null())
}

/// A handle for `text`: one copy per distinct text, kept for the life of the process (NVTX
/// handles never expire); null past [`MAX_REGISTERED`].
pub(crate) fn register(text: &str) -> *const c_void {
    static TABLE: OnceLock<Mutex<HashMap<Box<str>, usize>>> = OnceLock::new();
    let mut table = lock(TABLE.get_or_init(Default::default));
    if let Some(&p) = table.get(text) {
        return p as *const c_void;
    }
    if table.len() >= MAX_REGISTERED {
        return std::ptr::null();
    }
    let Ok(c) = CString::new(text.replace('\0', "")) else {
        return std::ptr::null();
    };
    let p = c.into_raw() as usize; // never freed: the handle lives as long as the process
    table.insert(Box::from(text), p);
    p as *const c_void
}

/// The message of an NVTX event attribute structure (ASCII, wide, or registered strings).
///
/// # Safety
/// `attr` must be null or point to an `nvtxEventAttributes_t` of version 1 or later; a
/// registered message must carry a handle of `registered`'s kind.
pub(crate) unsafe fn attr_message<'a>(
    attr: *const u8,
    registered: Registered,
) -> Option<Cow<'a, str>> {
    if attr.is_null() {
        return None;
    }
    // SAFETY: nvtxEventAttributes_t: messageType (i32) at offset 32, the message pointer at 40.
    let (kind, ptr) = unsafe {
        (
            std::ptr::read_unaligned(attr.add(32).cast::<i32>()),
            std::ptr::read_unaligned(attr.add(40).cast::<*const c_void>()),
        )
    };
    match (kind, registered) {
        // SAFETY: an ASCII message is a NUL-terminated string, and so is our handle's text.
        (1, _) | (3, Registered::Ours) => unsafe { c_text(ptr.cast()) },
        // SAFETY: a wide message is a NUL-terminated wchar_t string.
        (2, _) => unsafe { wide_text(ptr.cast()) },
        _ => None,
    }
}

/// The text of a C string.
///
/// # Safety
/// `p` must be null or a NUL-terminated string that outlives the result.
pub(crate) unsafe fn c_text<'a>(p: *const c_char) -> Option<Cow<'a, str>> {
    // SAFETY: per the contract.
    (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy())
}

/// The text of a wide (`wchar_t`) string, at most [`MAX_WIDE_CHARS`] characters.
///
/// # Safety
/// `p` must be null or a NUL-terminated `wchar_t` (32-bit on Linux) string.
pub(crate) unsafe fn wide_text<'a>(p: *const u32) -> Option<Cow<'a, str>> {
    if p.is_null() {
        return None;
    }
    let mut s = String::new();
    for i in 0..MAX_WIDE_CHARS {
        // SAFETY: within the string, which ends at its NUL.
        let c = unsafe { *p.add(i) };
        if c == 0 {
            break;
        }
        s.push(char::from_u32(c).unwrap_or('?'));
    }
    Some(Cow::Owned(s))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::regions::{Closed, Paths};
    use std::cell::RefCell;
    use std::sync::Arc;

    use wattlens_instrument::clock::HostClock;

    /// A stand-in for NVTX's side of the protocol: slot variables per module, and the tables of
    /// pointers to them that `GetModuleFunctionTable` hands out.
    struct FakeNvtx {
        core: Vec<*const c_void>,
        core2: Vec<*const c_void>,
        core_table: Vec<*mut *const c_void>,
        core2_table: Vec<*mut *const c_void>,
    }

    thread_local! {
        static FAKE: RefCell<Option<FakeNvtx>> = const { RefCell::new(None) };
    }

    unsafe extern "C" fn fake_module_table(
        module: u32,
        table: *mut *mut *mut *const c_void,
        size: *mut u32,
    ) -> c_int {
        FAKE.with(|f| {
            let mut f = f.borrow_mut();
            let f = f.as_mut().unwrap();
            let t = match module {
                MODULE_CORE => &mut f.core_table,
                MODULE_CORE2 => &mut f.core2_table,
                _ => return 0,
            };
            // SAFETY: valid out-pointers from `fill`.
            unsafe {
                *table = t.as_mut_ptr();
                *size = t.len() as u32;
            }
            1
        })
    }

    static EXPORT: ExportCallbacks = ExportCallbacks {
        struct_size: std::mem::size_of::<ExportCallbacks>(),
        get_module_function_table: Some(fake_module_table),
    };

    unsafe extern "C" fn fake_export_table(id: u32) -> *const c_void {
        if id == EXPORT_CALLBACKS {
            std::ptr::addr_of!(EXPORT).cast()
        } else {
            std::ptr::null()
        }
    }

    /// An `nvtxEventAttributes_t` (v3, 48 bytes) carrying a message of `kind`.
    fn attributes(kind: i32, message: *const c_void) -> [u64; 6] {
        let mut a = [0u64; 6];
        a[0] = 3 | (48 << 16); // version, size
        a[4] = kind as u32 as u64; // messageType at byte 32
        a[5] = message as u64; // message at byte 40
        a
    }

    #[test]
    fn a_token_count_comes_from_an_integer_payload_or_the_message() {
        let message = CString::new("request").unwrap();
        let mut a = attributes(1, message.as_ptr().cast());
        a[2] = 1; // payloadType u64 at byte 16
        a[3] = 64; // payload at byte 24
                   // SAFETY: a valid attribute structure.
        assert_eq!(unsafe { attr_tokens(a.as_ptr().cast()) }, Some(64));
        a[2] = 5; // int32
        a[3] = u64::from((-3i32) as u32);
        assert_eq!(unsafe { attr_tokens(a.as_ptr().cast()) }, None, "negative");
        a[2] = 3; // a double is not a count
        assert_eq!(unsafe { attr_tokens(a.as_ptr().cast()) }, None);
        assert_eq!(unsafe { attr_tokens(std::ptr::null()) }, None);
        assert_eq!(
            named_tokens("request tokens=7", None),
            (Cow::Owned("request".into()), Some(7))
        );
        assert_eq!(
            named_tokens("request tokens=7", Some(9)),
            (Cow::Owned("request".into()), Some(9)),
            "the payload wins"
        );
        assert_eq!(
            named_tokens("decode", None),
            (Cow::Borrowed("decode"), None)
        );
    }

    #[test]
    fn fills_nvtx_slots_within_their_tables_and_keeps_each_threads_ranges() {
        // The core table NVTX offers here is too short for the pop slot (11): it is skipped.
        let mut fake = FakeNvtx {
            core: vec![std::ptr::null(); CORE_POP],
            core2: vec![std::ptr::null(); 16],
            core_table: Vec::new(),
            core2_table: Vec::new(),
        };
        fake.core_table = fake.core.iter_mut().map(|s| s as *mut _).collect();
        fake.core2_table = fake.core2.iter_mut().map(|s| s as *mut _).collect();
        FAKE.with(|f| *f.borrow_mut() = Some(fake));
        // SAFETY: the fake export-table function.
        assert_eq!(unsafe { initialize(Some(fake_export_table)) }, 1);
        assert_eq!(unsafe { initialize(None) }, 0, "no table, no tool");
        let (core, core2) = FAKE.with(|f| {
            let f = f.borrow();
            let f = f.as_ref().unwrap();
            (f.core.clone(), f.core2.clone())
        });
        assert_eq!(core[CORE_PUSH_A], push_a as *const c_void);
        assert_eq!(core[CORE_PUSH_EX], push_ex as *const c_void);
        assert_eq!(core[CORE_PUSH_W], push_w as *const c_void);
        assert_eq!(core.len(), CORE_POP, "nothing written past the table's end");
        assert_eq!(core2[CORE2_PUSH_EX], domain_push_ex as *const c_void);
        assert_eq!(core2[CORE2_POP], domain_pop as *const c_void);
        assert_eq!(
            core2[CORE2_REGISTER_STRING_A],
            register_string_a as *const c_void
        );
        let untouched = [0, 6, 7, 8, 9, 12, 13, 14, 15];
        assert!(untouched.iter().all(|&i| core2[i].is_null()), "{core2:?}");
        assert_eq!(core[CORE_MARK_A], mark_a as *const c_void);
        assert_eq!(core[CORE_RANGE_END], range_end as *const c_void);
        assert_eq!(
            core2[CORE2_RANGE_START_EX],
            domain_range_start_ex as *const c_void
        );

        // SAFETY (below): the slots hold our handlers, of these types.
        let push: unsafe extern "C" fn(*const c_char) -> c_int =
            unsafe { std::mem::transmute(core[CORE_PUSH_A]) };
        let domain_push: unsafe extern "C" fn(*const c_void, *const u8) -> c_int =
            unsafe { std::mem::transmute(core2[CORE2_PUSH_EX]) };
        let domain_pop: unsafe extern "C" fn(*const c_void) -> c_int =
            unsafe { std::mem::transmute(core2[CORE2_POP]) };
        let register: unsafe extern "C" fn(*const c_void, *const c_char) -> *const c_void =
            unsafe { std::mem::transmute(core2[CORE2_REGISTER_STRING_A]) };

        let model = CString::new("model").unwrap();
        assert_eq!(
            unsafe { push(model.as_ptr()) },
            NOT_TRACKED,
            "before the library starts, as NVTX without a tool"
        );
        let shared = crate::state::init(Arc::new(HostClock::new()));
        enable();
        assert_eq!(unsafe { push(model.as_ptr()) }, 0);
        let layer = CString::new("layer0").unwrap();
        let handle = unsafe { register(std::ptr::null(), layer.as_ptr()) };
        assert!(!handle.is_null());
        assert_eq!(
            unsafe { register(std::ptr::null(), layer.as_ptr()) },
            handle
        );
        let registered = attributes(3, handle);
        assert_eq!(
            unsafe { domain_push(std::ptr::null(), registered.as_ptr().cast()) },
            1
        );
        let wide: Vec<u32> = "mlp\0".chars().map(u32::from).collect();
        let wide_attr = attributes(2, wide.as_ptr().cast());
        // SAFETY: a valid attribute structure.
        assert_eq!(unsafe { push_ex(wide_attr.as_ptr().cast()) }, 2);
        assert_eq!(unsafe { domain_pop(std::ptr::null()) }, 2);
        assert_eq!(unsafe { domain_pop(std::ptr::null()) }, 1);
        assert_eq!(unsafe { domain_pop(std::ptr::null()) }, 0);
        let pending = shared.take_pending(&mut Vec::new());
        let paths = lock(&shared.paths);
        let closed: Vec<(String, u32)> = pending
            .closed
            .iter()
            .map(|c| (paths.get(c.path).unwrap().1.to_string(), c.depth))
            .collect();
        assert_eq!(
            closed,
            [
                ("model/layer0/mlp".to_owned(), 2),
                ("model/layer0".to_owned(), 1),
                ("model".to_owned(), 0)
            ]
        );
        assert!(pending.closed.iter().all(|c| c.end_ns >= c.start_ns));
        drop(paths);

        // Start/end ranges need not nest and may end on another thread; marks are instants.
        let start: unsafe extern "C" fn(*const c_char) -> u64 =
            unsafe { std::mem::transmute(core[CORE_RANGE_START_A]) };
        let end: unsafe extern "C" fn(u64) = unsafe { std::mem::transmute(core[CORE_RANGE_END]) };
        let domain_start: unsafe extern "C" fn(*const c_void, *const u8) -> u64 =
            unsafe { std::mem::transmute(core2[CORE2_RANGE_START_EX]) };
        let mark: unsafe extern "C" fn(*const c_char) =
            unsafe { std::mem::transmute(core[CORE_MARK_A]) };
        let request = CString::new("request 7").unwrap();
        let a = unsafe { start(request.as_ptr()) };
        let b = unsafe { domain_start(std::ptr::null(), registered.as_ptr().cast()) };
        assert!(a != 0 && b != 0 && a != b);
        unsafe { mark(model.as_ptr()) };
        unsafe { end(a) };
        unsafe { end(a) }; // ended already: ignored
        unsafe { end(12_345_678) }; // never started: ignored
                                    // SAFETY: the handler is thread-safe, as NVTX's contract requires.
        std::thread::spawn(move || unsafe { end(b) })
            .join()
            .unwrap();
        let pending = shared.take_pending(&mut Vec::new());
        let paths = lock(&shared.paths);
        let name = |c: &Closed| paths.get(c.path).unwrap().1.to_string();
        let mut ended: Vec<String> = pending.unnested.iter().map(name).collect();
        ended.sort();
        assert_eq!(
            ended,
            ["layer0", "request 7"],
            "one each, the second on another thread"
        );
        assert!(pending
            .unnested
            .iter()
            .all(|c| c.depth == 0 && c.end_ns >= c.start_ns));
        assert_eq!(pending.marks.len(), 1);
        assert_eq!(name(&pending.marks[0]), "model");
        assert_eq!(pending.marks[0].start_ns, pending.marks[0].end_ns);
    }

    #[test]
    fn registered_strings_of_another_tool_are_not_read_as_text() {
        let text = CString::new("not ours").unwrap();
        let attr = attributes(3, text.as_ptr().cast());
        // SAFETY: a valid attribute structure.
        let opaque = unsafe { attr_message(attr.as_ptr().cast(), Registered::Opaque) };
        assert_eq!(opaque, None);
        let ours = unsafe { attr_message(attr.as_ptr().cast(), Registered::Ours) };
        assert_eq!(ours.as_deref(), Some("not ours"));
        assert_eq!(register("a\0b"), register("a\0b"), "one handle per text");
    }
}
