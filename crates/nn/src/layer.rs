//! The layer seam: [`Layer`], what a model needs of a layer, and [`ParamScope`], which
//! creates parameters and names them as it creates them.

use ndarray::Array2;
use vae_autograd::{Float, Tape, Var};

/// A list of (name, parameter) pairs, in creation order.
pub type Named = Vec<(String, Var)>;

/// A layer whose parameters live on a tape: what a model assembles its trunks from.
///
/// Generic over the scalar at the trait level, with no generic methods, so that
/// `Box<dyn Layer<T>>` is a trait object a `Vae<T>` can hold. Values are 2-D, one row per
/// example; a layer over images (a convolution) reads and writes each row as one flattened
/// image (`[C, H, W]`, as PyTorch's `flatten`), its shapes fixed when it is built.
pub trait Layer<T: Float>: Send + Sync {
    /// Records the layer on `x`.
    fn forward(&self, tape: &mut Tape<T>, x: Var) -> Var;

    /// Records the layer with its parameters detached: gradients flow into `x`, none into
    /// the parameters (the frozen-parameter density of the DReG estimator).
    fn forward_detached(&self, tape: &mut Tape<T>, x: Var) -> Var;

    /// The parameters with their full names (`encoder.0.weight`), in creation order.
    fn named(&self) -> Named;

    /// The width of the output for an input `input` columns wide.
    ///
    /// # Panics
    /// If the layer cannot take that width.
    fn output_width(&self, input: usize) -> usize;
}

/// Creates parameters on a tape, naming each when it is created: `prefix.name`, appended
/// to a [`Named`] list, which is therefore in the tape's parameter order.
pub struct ParamScope<'a, T> {
    tape: &'a mut Tape<T>,
    named: &'a mut Named,
    prefix: String,
}

impl<'a, T: Float> ParamScope<'a, T> {
    /// The root scope (no prefix) of `tape`, appending to `named`.
    pub fn new(tape: &'a mut Tape<T>, named: &'a mut Named) -> Self {
        ParamScope {
            tape,
            named,
            prefix: String::new(),
        }
    }

    /// The scope of a part `name` of this one: prefix `prefix.name`.
    pub fn child(&mut self, name: &str) -> ParamScope<'_, T> {
        ParamScope {
            prefix: join(&self.prefix, name),
            tape: &mut *self.tape,
            named: &mut *self.named,
        }
    }

    /// The prefix of this scope's names (empty at the root).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Adds the parameter `value` to the tape, named `prefix.name`.
    pub fn param(&mut self, name: &str, value: Array2<T>) -> Var {
        let v = self.tape.param(value);
        self.named.push((join(&self.prefix, name), v));
        v
    }
}

/// `prefix.name`, or `name` under the empty prefix.
pub(crate) fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_owned()
    } else {
        format!("{prefix}.{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_prefixed_and_in_creation_order() {
        let mut tape = Tape::<f32>::new();
        let mut named = Named::new();
        let mut root = ParamScope::new(&mut tape, &mut named);
        let a = root.param("a", Array2::zeros((1, 1)));
        let mut enc = root.child("encoder");
        let b = enc.child("0").param("weight", Array2::zeros((2, 1)));
        let c = enc.param("logvar", Array2::zeros((1, 2)));
        assert_eq!(enc.prefix(), "encoder");
        let expected = [("a", a), ("encoder.0.weight", b), ("encoder.logvar", c)];
        assert_eq!(named, expected.map(|(n, v)| (n.to_owned(), v)));
        assert_eq!(tape.params().collect::<Vec<_>>(), [a, b, c]);
    }
}
