use retort_plugin_api::{abi_stable::std_types::RResult, codes, ApiError, HostApiRef, RawTensor};

use crate::{Error, Result};

/// A handle to a host tensor. `Clone` retains, `Drop` releases; ops are methods named as in candle.
///
/// The data never crosses the boundary: every op is a call into the host, which keeps the device
/// and the autograd graph.
pub struct Tensor {
    raw: RawTensor,
    api: HostApiRef,
}

/// Element types, as the host names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    F32,
    F64,
    I64,
    U32,
    U8,
    BF16,
    F16,
}

impl DType {
    /// The ABI code of this dtype.
    pub fn code(self) -> u32 {
        use codes::dtype::*;
        match self {
            DType::F32 => F32,
            DType::F64 => F64,
            DType::I64 => I64,
            DType::U32 => U32,
            DType::U8 => U8,
            DType::BF16 => BF16,
            DType::F16 => F16,
        }
    }

    /// The dtype of an ABI code, if this SDK knows it.
    pub fn from_code(code: u32) -> Option<Self> {
        use codes::dtype::*;
        Some(match code {
            F32 => DType::F32,
            F64 => DType::F64,
            I64 => DType::I64,
            U32 => DType::U32,
            U8 => DType::U8,
            BF16 => DType::BF16,
            F16 => DType::F16,
            _ => return None,
        })
    }
}

/// Rust element types that can be sent to and read from the host.
pub trait Element: Copy + 'static {
    /// The host dtype of this element type.
    const DTYPE: DType;
    /// Appends the little-endian bytes of `self`.
    fn put_le(self, out: &mut Vec<u8>);
    /// Reads a vector of this type from the host.
    fn read_vec(t: &Tensor) -> Result<Vec<Self>>;
    /// Converts from the host's f64 scalar.
    fn from_f64(v: f64) -> Self;
}

macro_rules! impl_element {
    ($t:ty, $d:expr, $read:ident) => {
        impl Element for $t {
            const DTYPE: DType = $d;
            fn put_le(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            fn read_vec(t: &Tensor) -> Result<Vec<Self>> {
                let v = t.$read()?;
                Ok(v.into_iter().map(|x| x as $t).collect())
            }
            fn from_f64(v: f64) -> Self {
                v as $t
            }
        }
    };
}
impl_element!(f32, DType::F32, read_f32);
impl_element!(f64, DType::F64, read_f32);
impl_element!(i64, DType::I64, read_i64);
impl_element!(u32, DType::U32, read_i64);
impl_element!(u8, DType::U8, read_i64);

/// Turns a boundary result into an owned tensor.
pub(crate) fn wrap(api: HostApiRef, r: RResult<RawTensor, ApiError>) -> Result<Tensor> {
    match r {
        RResult::ROk(raw) => Ok(Tensor { raw, api }),
        RResult::RErr(e) => Err(e.into()),
    }
}

impl Tensor {
    /// Takes ownership of a +1 handle returned by the host.
    ///
    /// # Safety
    /// `raw` must be a live handle whose reference the caller owns.
    pub unsafe fn from_raw_owned(raw: RawTensor, api: HostApiRef) -> Self {
        Tensor { raw, api }
    }

    /// Retains a borrowed handle (a batch input) and owns the new reference.
    ///
    /// # Safety
    /// `raw` must be a live handle for the duration of this call.
    pub unsafe fn from_raw_borrowed(raw: RawTensor, api: HostApiRef) -> Self {
        Tensor { raw: (api.retain())(raw), api }
    }

    /// The handle, still owned by `self`.
    pub fn raw(&self) -> RawTensor {
        self.raw
    }

    /// Gives up ownership of the handle (returning it to the host).
    pub fn into_raw(self) -> RawTensor {
        let raw = self.raw;
        std::mem::forget(self);
        raw
    }

    /// The host table this tensor calls through.
    pub fn api(&self) -> HostApiRef {
        self.api
    }

    pub(crate) fn wrap(&self, r: RResult<RawTensor, ApiError>) -> Result<Tensor> {
        wrap(self.api, r)
    }

    /// The dims of the tensor.
    pub fn dims(&self) -> Vec<usize> {
        (self.api.shape())(self.raw).iter().map(|&d| d as usize).collect()
    }

    /// Alias of [`Tensor::dims`], as in candle.
    pub fn shape(&self) -> Vec<usize> {
        self.dims()
    }

    /// Number of dims.
    pub fn rank(&self) -> usize {
        (self.api.shape())(self.raw).len()
    }

    /// The size of one dim (negative counts from the end).
    pub fn dim(&self, d: impl crate::Dim) -> Result<usize> {
        let dims = self.dims();
        let i = d.to_dim();
        let idx = if i < 0 { dims.len() as i64 + i } else { i };
        usize::try_from(idx)
            .ok()
            .and_then(|i| dims.get(i).copied())
            .ok_or_else(|| Error::invalid(format!("dim {i} out of range for shape {dims:?}")))
    }

    /// Total number of elements.
    pub fn elem_count(&self) -> usize {
        self.dims().iter().product()
    }

    /// The element type.
    pub fn dtype(&self) -> Result<DType> {
        let c = (self.api.dtype())(self.raw);
        DType::from_code(c).ok_or_else(|| Error::invalid(format!("unknown dtype code {c}")))
    }

    /// The device code (`codes::device`).
    pub fn device(&self) -> u32 {
        (self.api.device())(self.raw)
    }

    /// A cast to another dtype.
    pub fn to_dtype(&self, dtype: DType) -> Result<Tensor> {
        self.wrap((self.api.to_dtype())(self.raw, dtype.code()))
    }

    fn read_f32(&self) -> Result<Vec<f32>> {
        Ok((self.api.to_vec_f32())(self.raw).into_result()?.into_vec())
    }

    fn read_i64(&self) -> Result<Vec<i64>> {
        Ok((self.api.to_vec_i64())(self.raw).into_result()?.into_vec())
    }

    /// All elements, flattened in row-major order (for small results and tests).
    pub fn to_vec1<T: Element>(&self) -> Result<Vec<T>> {
        T::read_vec(self)
    }

    /// Rows of a 2-D tensor.
    pub fn to_vec2<T: Element>(&self) -> Result<Vec<Vec<T>>> {
        let dims = self.dims();
        if dims.len() != 2 {
            return Err(Error::invalid(format!("to_vec2 needs a 2-D tensor, got shape {dims:?}")));
        }
        let flat = T::read_vec(self)?;
        Ok(flat.chunks(dims[1].max(1)).map(<[T]>::to_vec).collect())
    }

    /// The value of a one-element tensor.
    pub fn to_scalar<T: Element>(&self) -> Result<T> {
        Ok(T::from_f64((self.api.to_scalar())(self.raw).into_result()?))
    }
}

impl Clone for Tensor {
    fn clone(&self) -> Self {
        Tensor { raw: (self.api.retain())(self.raw), api: self.api }
    }
}

impl Drop for Tensor {
    fn drop(&mut self) {
        (self.api.release())(self.raw)
    }
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tensor{:?}", self.dims())
    }
}
