//! The optimizer: Adam (as PyTorch computes it), updating parameters in place.

use ndarray::{ArrayView2, ArrayViewMut2};
use vae_autograd::{Float, Tape, Var};

use crate::adam_kernel::{AdamStep, adam};

/// Updates parameters from the gradients of the last backward sweep.
pub trait Optimizer<T: Float> {
    /// One update of `params` (parameters the sweep did not reach are left alone).
    fn step(&mut self, tape: &mut Tape<T>, params: &[Var]);
}

/// Adam's hyper-parameters (PyTorch's defaults but for `lr`, which has none there).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamConfig {
    /// Learning rate.
    pub lr: f64,
    /// Decay of the first moment.
    pub beta1: f64,
    /// Decay of the second moment.
    pub beta2: f64,
    /// Added to the denominator.
    pub eps: f64,
    /// L2 penalty added to the gradient (`grad + weight_decay * param`), as PyTorch's Adam.
    pub weight_decay: f64,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

/// Adam with bias correction, computed in the same order as `torch.optim.Adam`. The moments
/// of every parameter live in one flat buffer each; a step runs the fused SIMD kernel
/// ([`AdamUpdate`](crate::adam_kernel::AdamUpdate): weight, gradient and both moments in one
/// pass) over each parameter, a large one cut into one contiguous chunk per thread. A step
/// allocates nothing.
#[derive(Clone, Debug)]
pub struct Adam<T> {
    /// Hyper-parameters.
    pub config: AdamConfig,
    /// Updates done so far.
    pub steps: u64,
    /// First moments of every parameter, concatenated in the order given to `new`.
    pub m: Vec<T>,
    /// Second moments, laid out as `m`.
    pub v: Vec<T>,
    /// Shape of each parameter, and where its moments start.
    layout: Vec<((usize, usize), usize)>,
}

impl<T: Float> Adam<T> {
    /// Fresh state (zero moments) for `params`.
    pub fn new(config: AdamConfig, tape: &Tape<T>, params: &[Var]) -> Self {
        let mut layout = Vec::with_capacity(params.len());
        let mut total = 0;
        for &p in params {
            let dim = tape.dim(p);
            layout.push((dim, total));
            total += dim.0 * dim.1;
        }
        Adam {
            config,
            steps: 0,
            m: vec![T::zero(); total],
            v: vec![T::zero(); total],
            layout,
        }
    }

    /// The first and second moments of parameter `i` (in the order given to `new`).
    pub fn moments(&self, i: usize) -> (ArrayView2<'_, T>, ArrayView2<'_, T>) {
        let (dim, at) = self.layout[i];
        let r = at..at + dim.0 * dim.1;
        let m = ArrayView2::from_shape(dim, &self.m[r.clone()]).expect("laid out by new");
        let v = ArrayView2::from_shape(dim, &self.v[r]).expect("laid out by new");
        (m, v)
    }

    /// The moments of parameter `i`, mutably (to restore a checkpoint).
    pub fn moments_mut(&mut self, i: usize) -> (ArrayViewMut2<'_, T>, ArrayViewMut2<'_, T>) {
        let (dim, at) = self.layout[i];
        let r = at..at + dim.0 * dim.1;
        let m = ArrayViewMut2::from_shape(dim, &mut self.m[r.clone()]).expect("laid out by new");
        let v = ArrayViewMut2::from_shape(dim, &mut self.v[r]).expect("laid out by new");
        (m, v)
    }
}

impl<T: Float> Optimizer<T> for Adam<T> {
    fn step(&mut self, tape: &mut Tape<T>, params: &[Var]) {
        assert_eq!(
            params.len(),
            self.layout.len(),
            "Adam: state is for {} parameters",
            self.layout.len()
        );
        self.steps += 1;
        let c = self.config;
        let t = self.steps as i32;
        let h = AdamStep {
            step_size: T::c(c.lr / (1.0 - c.beta1.powi(t))),
            bc2_sqrt: T::c((1.0 - c.beta2.powi(t)).sqrt()),
            beta1: T::c(c.beta1),
            beta2: T::c(c.beta2),
            eps: T::c(c.eps),
            weight_decay: T::c(c.weight_decay),
        };
        for (&p, &(dim, at)) in params.iter().zip(&self.layout) {
            let (value, grad) = tape.param_and_grad_mut(p);
            let Some(grad) = grad else { continue };
            assert_eq!(value.dim(), dim, "Adam: a parameter changed shape");
            let r = at..at + value.len();
            adam(
                value.as_slice_mut().expect("parameters are contiguous"),
                grad.as_slice().expect("gradients are contiguous"),
                &mut self.m[r.clone()],
                &mut self.v[r],
                h,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use ndarray::array;

    use super::*;

    /// Minimises (w - 3)^2 from w = 0.
    fn minimise(opt: &mut dyn Optimizer<f64>, tape: &mut Tape<f64>, w: Var, steps: usize) -> f64 {
        for _ in 0..steps {
            tape.reset();
            let three = tape.constant(array![[3.0]].view());
            let d = tape.sub(w, three);
            let l = tape.square(d);
            let l = tape.sum(l);
            tape.backward(l);
            opt.step(tape, &[w]);
        }
        tape.value(w)[[0, 0]]
    }

    #[test]
    fn adam_first_step_matches_pytorch() {
        // torch: w=1, g=2(w-3)=-4, Adam(lr=0.1): first step moves by lr * sign(g) = +0.1.
        let mut t = Tape::<f64>::new();
        let w = t.param(array![[1.0]]);
        let mut adam = Adam::new(
            AdamConfig {
                lr: 0.1,
                ..Default::default()
            },
            &t,
            &[w],
        );
        minimise(&mut adam, &mut t, w, 1);
        assert!((t.value(w)[[0, 0]] - 1.1).abs() < 1e-9, "{}", t.value(w)[[0, 0]]);
    }

    #[test]
    fn adam_converges() {
        let mut t = Tape::<f64>::new();
        let w = t.param(array![[0.0]]);
        let mut adam = Adam::new(
            AdamConfig {
                lr: 0.1,
                ..Default::default()
            },
            &t,
            &[w],
        );
        assert!((minimise(&mut adam, &mut t, w, 500) - 3.0).abs() < 1e-3);
    }

    #[test]
    fn weight_decay_pulls_toward_zero() {
        let mut t = Tape::<f64>::new();
        let w = t.param(array![[0.0]]);
        let cfg = AdamConfig {
            lr: 0.05,
            weight_decay: 1.0,
            ..Default::default()
        };
        let mut adam = Adam::new(cfg, &t, &[w]);
        // (w-3)^2 + 0.5 w^2 has its minimum at w = 2.
        assert!((minimise(&mut adam, &mut t, w, 2000) - 2.0).abs() < 1e-2);
    }
}
