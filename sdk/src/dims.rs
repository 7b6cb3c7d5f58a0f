/// One dimension index; negative values count from the end (−1 is the last dim).
pub trait Dim: Copy {
    /// The index as the ABI passes it.
    fn to_dim(self) -> i64;
}

macro_rules! impl_dim {
    ($($t:ty),*) => {$(
        impl Dim for $t {
            fn to_dim(self) -> i64 {
                self as i64
            }
        }
    )*};
}
impl_dim!(usize, i32, i64, isize, u32);

/// A list of dimension indices (for reductions and permutations).
pub trait Dims {
    /// The indices as the ABI passes them.
    fn to_dims(self) -> Vec<i64>;
}

impl<D: Dim> Dims for D {
    fn to_dims(self) -> Vec<i64> {
        vec![self.to_dim()]
    }
}
impl<D: Dim, const N: usize> Dims for [D; N] {
    fn to_dims(self) -> Vec<i64> {
        self.iter().map(|d| d.to_dim()).collect()
    }
}
impl<D: Dim> Dims for &[D] {
    fn to_dims(self) -> Vec<i64> {
        self.iter().map(|d| d.to_dim()).collect()
    }
}
impl<D: Dim> Dims for Vec<D> {
    fn to_dims(self) -> Vec<i64> {
        self.iter().map(|d| d.to_dim()).collect()
    }
}
impl<A: Dim, B: Dim> Dims for (A, B) {
    fn to_dims(self) -> Vec<i64> {
        vec![self.0.to_dim(), self.1.to_dim()]
    }
}
