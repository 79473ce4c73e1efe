//! A plain owned tensor: the currency between the backend and the pipeline.

#[derive(Debug, Clone, PartialEq)]
pub struct Tensor<T> {
    pub shape: Vec<usize>,
    pub data: Vec<T>,
}

impl<T: Copy> Tensor<T> {
    pub fn new(shape: Vec<usize>, data: Vec<T>) -> Self {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        Tensor { shape, data }
    }

    /// Number of elements in one item of the leading (batch) dimension.
    pub fn item_len(&self) -> usize {
        self.shape.iter().skip(1).product()
    }

    /// The `index`-th item along the leading dimension.
    pub fn item(&self, index: usize) -> &[T] {
        let n = self.item_len();
        &self.data[index * n..(index + 1) * n]
    }

    /// Joins tensors whose shapes agree after the leading dimension, along it.
    pub fn concat(parts: &[&Tensor<T>]) -> Option<Tensor<T>> {
        let first = parts.first()?;
        let tail = &first.shape[1..];
        if parts.iter().any(|p| &p.shape[1..] != tail) {
            return None;
        }
        let mut shape = first.shape.clone();
        shape[0] = parts.iter().map(|p| p.shape[0]).sum();
        let data = parts.iter().flat_map(|p| p.data.iter().copied()).collect();
        Some(Tensor { shape, data })
    }
}

pub type TensorF32 = Tensor<f32>;
pub type TensorI64 = Tensor<i64>;
