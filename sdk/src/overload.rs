//! `+ − × ÷` on tensors and with f64 scalars. Like candle, each yields a `Result<Tensor>`.
use std::ops::{Add, Div, Mul, Sub};

use crate::{Result, Tensor};

macro_rules! tensor_op {
    ($trait:ident, $method:ident, $call:ident, $scalar:expr) => {
        impl $trait<&Tensor> for &Tensor {
            type Output = Result<Tensor>;
            fn $method(self, rhs: &Tensor) -> Result<Tensor> {
                self.$call(rhs)
            }
        }
        impl $trait<Tensor> for Tensor {
            type Output = Result<Tensor>;
            fn $method(self, rhs: Tensor) -> Result<Tensor> {
                Tensor::$call(&self, &rhs)
            }
        }
        impl $trait<&Tensor> for Tensor {
            type Output = Result<Tensor>;
            fn $method(self, rhs: &Tensor) -> Result<Tensor> {
                Tensor::$call(&self, rhs)
            }
        }
        impl $trait<Tensor> for &Tensor {
            type Output = Result<Tensor>;
            fn $method(self, rhs: Tensor) -> Result<Tensor> {
                self.$call(&rhs)
            }
        }
        impl $trait<f64> for &Tensor {
            type Output = Result<Tensor>;
            fn $method(self, rhs: f64) -> Result<Tensor> {
                let (mul, add) = $scalar(rhs);
                self.affine(mul, add)
            }
        }
        impl $trait<f64> for Tensor {
            type Output = Result<Tensor>;
            fn $method(self, rhs: f64) -> Result<Tensor> {
                let (mul, add) = $scalar(rhs);
                self.affine(mul, add)
            }
        }
    };
}

tensor_op!(Add, add, add, |v: f64| (1.0, v));
tensor_op!(Sub, sub, sub, |v: f64| (1.0, -v));
tensor_op!(Mul, mul, mul, |v: f64| (v, 0.0));
tensor_op!(Div, div, div, |v: f64| (1.0 / v, 0.0));
