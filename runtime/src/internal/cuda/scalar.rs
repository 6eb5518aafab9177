//! Scalar kernel arguments: plain values whose bytes can be digested.

use cudarc::driver::DeviceRepr;

/// A kernel argument passed by value whose every byte is initialised (no padding), so its
/// bytes can be digested.
///
/// # Safety
/// Implement it only for `#[repr(C)]` types without padding bytes.
pub unsafe trait Scalar: DeviceRepr {}

macro_rules! scalars {
    ($($t:ty),*) => { $(
        // SAFETY: primitive numbers have no padding.
        unsafe impl Scalar for $t {}
    )* };
}
scalars!(u8, u16, u32, u64, usize, i8, i16, i32, i64, isize, f32, f64);

// SAFETY: arrays of padding-free elements have no padding.
unsafe impl<T: Scalar, const N: usize> Scalar for [T; N] {}

/// The bytes of a scalar argument.
pub(crate) fn bytes_of<T: Scalar>(v: &T) -> &[u8] {
    // SAFETY: `Scalar` promises every byte of `T` is initialised; the slice covers exactly
    // the value and lives as long as the borrow.
    unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), std::mem::size_of::<T>()) }
}

/// The bytes of a slice of scalars.
pub(crate) fn slice_bytes<T: Scalar>(v: &[T]) -> &[u8] {
    // SAFETY: as in `bytes_of`, for every element; the length is the slice's size in bytes.
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<u8>(), std::mem::size_of_val(v)) }
}
