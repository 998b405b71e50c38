//! The generic elementwise kernels, each written once over [`Vector`]: activations and their
//! derivatives, binary ops, bias add and column sums; and the loops they are written with
//! ([`zip`] and [`lane_sum`] over [`Lanewise`] functions, which [`lanewise!`](crate::lanewise)
//! defines), public so that other crates write their kernels the same way (the losses in
//! `vae-autograd`, Adam in `vae-nn`). None uses fused multiply-add, and every reduction adds
//! in 16 fixed lanes combined in a fixed order, so a kernel gives bitwise the same result at
//! every level. Each is called on contiguous slices; splitting across threads is the
//! caller's (`crate::elementwise`).

use num_traits::Zero;

use super::{Kernel, Vector};
use crate::Float;

/// Lanes of every row reduction (a multiple of every vector width).
pub const REDUCE_LANES: usize = 16;

/// Whether a kernel overwrites its output or adds to it (a gradient's first contribution
/// overwrites its buffer, later ones add).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accum {
    /// `out = f(..)`.
    Overwrite,
    /// `out += f(..)`.
    Add,
}

impl Accum {
    /// The GEMM `beta` with the same effect: 0 overwrites `C`, 1 adds to it.
    #[inline]
    pub fn beta<T: Float>(self) -> T {
        match self {
            Accum::Overwrite => T::zero(),
            Accum::Add => T::one(),
        }
    }
}

/// The constant `x` in every lane.
#[inline(always)]
pub fn c<V: Vector>(x: f64) -> V {
    V::splat(V::E::c(x))
}

/// A lanewise function of `K` inputs, as the kernels' loops apply it. (A trait with
/// `#[inline(always)]` methods rather than a closure: a closure is compiled on its own,
/// without the caller's `#[target_feature]`, and would leave every intrinsic a call.)
pub trait Lanewise<V: Vector, const K: usize> {
    /// The function.
    fn apply(&self, x: [V; K]) -> V;
}

/// Defines a [`Lanewise`](crate::simd::Lanewise) function of `K` inputs with up to three
/// constant parameters: `lanewise!(Name, K, |[a, b, c], [x, y]| body)` (doc comments first)
/// defines `pub struct Name<T>(pub [T; 3])`, whose body sees the parameters as vectors.
#[macro_export]
macro_rules! lanewise {
    ($(#[$doc:meta])* $name:ident, $k:literal, |$p:pat_param, [$($a:ident),*]| $body:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug)]
        pub struct $name<T>(pub [T; 3]);

        impl<V: $crate::simd::Vector> $crate::simd::Lanewise<V, $k> for $name<V::E> {
            #[inline(always)]
            #[allow(unused_variables)]
            fn apply(&self, [$($a),*]: [V; $k]) -> V {
                let $p = [V::splat(self.0[0]), V::splat(self.0[1]), V::splat(self.0[2])];
                $body
            }
        }
    };
}

/// Parameters `[a, b, c]` of a [`lanewise!`] function.
#[inline(always)]
fn p<T: Float>(a: T, b: T, c: T) -> [T; 3] {
    [a, b, c]
}

/// No parameters.
#[inline(always)]
fn p0<T: Float>() -> [T; 3] {
    [T::zero(); 3]
}

/// Loads `K` vectors at element `i` of each input.
///
/// # Safety
/// Every input must hold `i + LANES` values.
#[inline(always)]
unsafe fn load_k<V: Vector, const K: usize>(ins: &[&[V::E]; K], i: usize) -> [V; K] {
    let mut a = [V::splat(V::E::zero()); K];
    for j in 0..K {
        // SAFETY: the caller's contract.
        a[j] = unsafe { V::load(ins[j].as_ptr().add(i)) };
    }
    a
}

/// `out[i] = f(ins[0][i], ..)`, or `out[i] += f(..)` with [`Accum::Add`]. The tail shorter
/// than a vector runs through zero-padded buffers, so every element sees the same arithmetic.
#[inline(always)]
pub fn zip<V: Vector, const K: usize>(ins: [&[V::E]; K], out: &mut [V::E], acc: Accum, f: &impl Lanewise<V, K>) {
    let n = out.len();
    for x in &ins {
        assert_eq!(x.len(), n, "kernel operands differ in length");
    }
    let l = V::LANES;
    let mut i = 0;
    while i + l <= n {
        // SAFETY: i + l <= n, the length of every operand.
        unsafe {
            let mut r = f.apply(load_k(&ins, i));
            if acc == Accum::Add {
                r = V::load(out.as_ptr().add(i)).add(r);
            }
            r.store(out.as_mut_ptr().add(i));
        }
        i += l;
    }
    if i < n {
        let rem = n - i;
        let zero = V::E::zero();
        let mut bufs = [[zero; REDUCE_LANES]; K];
        for (b, x) in bufs.iter_mut().zip(&ins) {
            b[..rem].copy_from_slice(&x[i..]);
        }
        let padded: [&[V::E]; K] = core::array::from_fn(|j| &bufs[j][..]);
        let mut o = [zero; REDUCE_LANES];
        o[..rem].copy_from_slice(&out[i..]);
        // SAFETY: the buffers hold REDUCE_LANES >= LANES values.
        unsafe {
            let mut r = f.apply(load_k(&padded, 0));
            if acc == Accum::Add {
                r = V::load(o.as_ptr()).add(r);
            }
            r.store(o.as_mut_ptr());
        }
        out[i..].copy_from_slice(&o[..rem]);
    }
}

/// `sum_i f(ins[0][i], ..)` in [`REDUCE_LANES`] interleaved lanes (element `i` goes to lane
/// `i % 16`), the lanes then added in order 0..16.
#[inline(always)]
pub fn lane_sum<V: Vector, const K: usize>(ins: [&[V::E]; K], f: &impl Lanewise<V, K>) -> V::E {
    let n = ins[0].len();
    for x in &ins {
        assert_eq!(x.len(), n, "kernel operands differ in length");
    }
    let (l, per) = (V::LANES, REDUCE_LANES / V::LANES);
    let zero = V::E::zero();
    let mut acc = [V::splat(zero); REDUCE_LANES];
    let mut i = 0;
    while i + REDUCE_LANES <= n {
        for (q, a) in acc.iter_mut().enumerate().take(per) {
            // SAFETY: i + q * l + l <= i + 16 <= n.
            let v = unsafe { f.apply(load_k(&ins, i + q * l)) };
            *a = a.add(v);
        }
        i += REDUCE_LANES;
    }
    if i < n {
        let rem = n - i;
        let mut bufs = [[zero; REDUCE_LANES]; K];
        for (b, x) in bufs.iter_mut().zip(&ins) {
            b[..rem].copy_from_slice(&x[i..]);
        }
        let padded: [&[V::E]; K] = core::array::from_fn(|j| &bufs[j][..]);
        let mut index = [zero; REDUCE_LANES];
        for (j, x) in index.iter_mut().enumerate() {
            *x = V::E::c(j as f64);
        }
        let limit = V::splat(V::E::c(rem as f64));
        for (q, a) in acc.iter_mut().enumerate().take(per) {
            // SAFETY: the buffers hold 16 values and q * l + l <= 16.
            unsafe {
                let v = f.apply(load_k(&padded, q * l));
                let idx = V::load(index.as_ptr().add(q * l));
                *a = a.add(V::select_gt(limit, idx, v, V::splat(zero)));
            }
        }
    }
    let mut lanes = [zero; REDUCE_LANES];
    for (q, a) in acc.iter().enumerate().take(per) {
        // SAFETY: q * l + l <= 16.
        unsafe { a.store(lanes.as_mut_ptr().add(q * l)) };
    }
    lanes.iter().fold(zero, |s, &v| s + v)
}

/// The logistic function `1 / (1 + exp(-x))`, stable for large |x|.
#[inline(always)]
pub fn sigmoid<V: Vector>(x: V) -> V {
    let e = x.abs().neg().exp();
    let s = c::<V>(1.0).div(c::<V>(1.0).add(e));
    V::select_gt(c(0.0), x, e.mul(s), s)
}

/// `ln(1 + exp(x))`, stable for large |x|.
#[inline(always)]
pub fn softplus<V: Vector>(x: V) -> V {
    c::<V>(0.0).max(x).add(x.abs().neg().exp().ln_1p_unit())
}

/// `tanh(x)`: an odd Taylor polynomial to x^11 below |x| = 0.3 (truncation below 1e-9
/// relative), `(1 - e) / (1 + e)` with `e = exp(-2|x|)` above, the sign restored.
#[inline(always)]
pub fn tanh<V: Vector>(x: V) -> V {
    if V::LANES == 1 && core::mem::size_of::<V::E>() == 8 {
        // f64, the gradient checks' type: the standard library's tanh. (The f32 polynomial
        // switches formulas at |x| = 0.3 with a jump far below f32's resolution but within
        // reach of an f64 finite difference.)
        let mut v = [V::E::zero(); 1];
        // SAFETY: one lane in and out of a one-element array.
        unsafe { x.store(v.as_mut_ptr()) };
        v[0] = num_traits::Float::tanh(v[0]);
        // SAFETY: as above.
        return unsafe { V::load(v.as_ptr()) };
    }
    let a = x.abs();
    let e = a.mul(c(-2.0)).exp();
    let big = c::<V>(1.0).sub(e).div(c::<V>(1.0).add(e));
    let a2 = a.mul(a);
    let mut p = c::<V>(-1382.0 / 155_925.0);
    for k in [62.0 / 2835.0, -17.0 / 315.0, 2.0 / 15.0, -1.0 / 3.0, 1.0] {
        p = p.mul(a2).add(c(k));
    }
    let y = V::select_gt(c(0.3), a, a.mul(p), big);
    V::select_gt(c(0.0), x, y.neg(), y)
}

lanewise!(
    /// `exp(x)`.
    ExpF, 1, |_, [x]| x.exp()
);
lanewise!(
    /// `ln(x)`.
    LogF, 1, |_, [x]| x.ln()
);
lanewise!(
    /// `x * x`.
    SquareF, 1, |_, [x]| x.mul(x)
);
lanewise!(
    /// `max(0, x)` (NaN propagates).
    ReluF, 1, |[zero, _, _], [x]| zero.max(x)
);
lanewise!(
    /// `x` if positive, else `s * x`.
    LeakyReluF, 1, |[s, zero, _], [x]| V::select_gt(x, zero, x, x.mul(s))
);
lanewise!(
    /// The logistic function.
    SigmoidF, 1, |_, [x]| sigmoid(x)
);
lanewise!(
    /// `tanh(x)`.
    TanhF, 1, |_, [x]| tanh(x)
);
lanewise!(
    /// `ln(1 + exp(x))`.
    SoftplusF, 1, |_, [x]| softplus(x)
);
lanewise!(
    /// `max(c, x)`.
    ClampMinF, 1, |[m, _, _], [x]| m.max(x)
);
lanewise!(
    /// `s * x`.
    ScaleF, 1, |[s, _, _], [x]| s.mul(x)
);
lanewise!(
    /// `x`.
    CopyF, 1, |_, [x]| x
);
lanewise!(
    /// `g * y` (exp's derivative from its output).
    ExpG, 3, |_, [g, x, y]| g.mul(y)
);
lanewise!(
    /// `g / x`.
    LogG, 3, |_, [g, x, y]| g.div(x)
);
lanewise!(
    /// `(g + g) * x`.
    SquareG, 3, |_, [g, x, y]| g.add(g).mul(x)
);
lanewise!(
    /// `g` where `x > 0`, else 0.
    ReluG, 3, |[zero, _, _], [g, x, y]| V::select_gt(x, zero, g, zero)
);
lanewise!(
    /// `g` where `x > 0`, else `s * g`.
    LeakyReluG, 3, |[s, zero, _], [g, x, y]| V::select_gt(x, zero, g, s.mul(g))
);
lanewise!(
    /// `g * y * (1 - y)`.
    SigmoidG, 3, |[one, _, _], [g, x, y]| g.mul(y).mul(one.sub(y))
);
lanewise!(
    /// `g * (1 - y * y)`.
    TanhG, 3, |[one, _, _], [g, x, y]| g.mul(one.sub(y.mul(y)))
);
lanewise!(
    /// `g * sigmoid(x)`.
    SoftplusG, 3, |_, [g, x, y]| g.mul(sigmoid(x))
);
lanewise!(
    /// `g` where `x > c`, else 0.
    ClampMinG, 3, |[m, zero, _], [g, x, y]| V::select_gt(x, m, g, zero)
);
lanewise!(
    /// `s * g`.
    ScaleG, 3, |[s, _, _], [g, x, y]| s.mul(g)
);
lanewise!(
    /// `a + b`.
    AddF, 2, |_, [a, b]| a.add(b)
);
lanewise!(
    /// `a - b`.
    SubF, 2, |_, [a, b]| a.sub(b)
);
lanewise!(
    /// `a * b`.
    MulF, 2, |_, [a, b]| a.mul(b)
);

/// An elementwise function of one input.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Unary<T> {
    /// `exp(x)`.
    Exp,
    /// `ln(x)`.
    Log,
    /// `x * x`.
    Square,
    /// `max(x, 0)` (NaN propagates); the derivative at 0 is 0.
    Relu,
    /// `x` for positive `x`, `slope * x` otherwise.
    LeakyRelu(T),
    /// `1 / (1 + exp(-x))`.
    Sigmoid,
    /// `tanh(x)`.
    Tanh,
    /// `ln(1 + exp(x))`.
    Softplus,
    /// `max(x, c)`; the derivative at `x == c` is 0.
    ClampMin(T),
    /// `c * x`.
    Scale(T),
}

/// `f(x)` on one vector, exactly as [`UnaryMap`] computes it (for kernels that apply an
/// activation to values still in registers, such as a GEMM's epilogue).
#[inline(always)]
pub fn unary_vector<V: Vector>(f: Unary<V::E>, x: V) -> V {
    let zero = V::E::zero();
    match f {
        Unary::Exp => Lanewise::<V, 1>::apply(&ExpF(p0()), [x]),
        Unary::Log => Lanewise::<V, 1>::apply(&LogF(p0()), [x]),
        Unary::Square => Lanewise::<V, 1>::apply(&SquareF(p0()), [x]),
        Unary::Relu => Lanewise::<V, 1>::apply(&ReluF(p0()), [x]),
        Unary::LeakyRelu(s) => Lanewise::<V, 1>::apply(&LeakyReluF(p(s, zero, zero)), [x]),
        Unary::Sigmoid => Lanewise::<V, 1>::apply(&SigmoidF(p0()), [x]),
        Unary::Tanh => Lanewise::<V, 1>::apply(&TanhF(p0()), [x]),
        Unary::Softplus => Lanewise::<V, 1>::apply(&SoftplusF(p0()), [x]),
        Unary::ClampMin(m) => Lanewise::<V, 1>::apply(&ClampMinF(p(m, zero, zero)), [x]),
        Unary::Scale(s) => Lanewise::<V, 1>::apply(&ScaleF(p(s, zero, zero)), [x]),
    }
}

/// [`unary_vector`] on every vector of `xs` if `f` is piecewise linear (a few instructions a
/// vector, chosen once for all: values in registers stay there), else nothing; returns
/// whether it applied `f`.
#[inline(always)]
pub fn unary_each_linear<V: Vector>(f: Unary<V::E>, xs: &mut [V]) -> bool {
    #[inline(always)]
    fn each<V: Vector>(g: &impl Lanewise<V, 1>, xs: &mut [V]) -> bool {
        for x in xs {
            *x = g.apply([*x]);
        }
        true
    }
    let zero = V::E::zero();
    match f {
        Unary::Relu => each(&ReluF(p0()), xs),
        Unary::LeakyRelu(s) => each(&LeakyReluF(p(s, zero, zero)), xs),
        Unary::ClampMin(m) => each(&ClampMinF(p(m, zero, zero)), xs),
        Unary::Scale(s) => each(&ScaleF(p(s, zero, zero)), xs),
        _ => false,
    }
}

/// `out (+)= f(x)`.
pub struct UnaryMap<'a, T> {
    /// The function.
    pub f: Unary<T>,
    /// Input.
    pub x: &'a [T],
    /// Output, as long as `x`.
    pub out: &'a mut [T],
    /// Overwrite `out` or add to it.
    pub acc: Accum,
}

impl<T: Float> Kernel<T> for UnaryMap<'_, T> {
    type Output = ();
    #[inline(always)]
    fn run<V: Vector<E = T>>(self) {
        let UnaryMap { f, x, out, acc } = self;
        let zero = T::zero();
        match f {
            Unary::Exp => zip::<V, _>([x], out, acc, &ExpF(p0())),
            Unary::Log => zip::<V, _>([x], out, acc, &LogF(p0())),
            Unary::Square => zip::<V, _>([x], out, acc, &SquareF(p0())),
            Unary::Relu => zip::<V, _>([x], out, acc, &ReluF(p0())),
            Unary::LeakyRelu(s) => zip::<V, _>([x], out, acc, &LeakyReluF(p(s, zero, zero))),
            Unary::Sigmoid => zip::<V, _>([x], out, acc, &SigmoidF(p0())),
            Unary::Tanh => zip::<V, _>([x], out, acc, &TanhF(p0())),
            Unary::Softplus => zip::<V, _>([x], out, acc, &SoftplusF(p0())),
            Unary::ClampMin(m) => zip::<V, _>([x], out, acc, &ClampMinF(p(m, zero, zero))),
            Unary::Scale(s) => zip::<V, _>([x], out, acc, &ScaleF(p(s, zero, zero))),
        }
    }
}

/// `out (+)= g * f'(x)`, from the input `x` and the output `y = f(x)`.
pub struct UnaryGrad<'a, T> {
    /// The function.
    pub f: Unary<T>,
    /// Upstream gradient.
    pub g: &'a [T],
    /// The forward input.
    pub x: &'a [T],
    /// The forward output.
    pub y: &'a [T],
    /// The gradient to write or add to.
    pub out: &'a mut [T],
    /// Overwrite `out` or add to it.
    pub acc: Accum,
}

impl<T: Float> Kernel<T> for UnaryGrad<'_, T> {
    type Output = ();
    #[inline(always)]
    fn run<V: Vector<E = T>>(self) {
        let UnaryGrad { f, g, x, y, out, acc } = self;
        let (zero, one) = (T::zero(), T::one());
        let ins = [g, x, y];
        match f {
            Unary::Exp => zip::<V, _>(ins, out, acc, &ExpG(p0())),
            Unary::Log => zip::<V, _>(ins, out, acc, &LogG(p0())),
            Unary::Square => zip::<V, _>(ins, out, acc, &SquareG(p0())),
            Unary::Relu => zip::<V, _>(ins, out, acc, &ReluG(p0())),
            Unary::LeakyRelu(s) => zip::<V, _>(ins, out, acc, &LeakyReluG(p(s, zero, zero))),
            Unary::Sigmoid => zip::<V, _>(ins, out, acc, &SigmoidG(p(one, zero, zero))),
            Unary::Tanh => zip::<V, _>(ins, out, acc, &TanhG(p(one, zero, zero))),
            Unary::Softplus => zip::<V, _>(ins, out, acc, &SoftplusG(p0())),
            Unary::ClampMin(m) => zip::<V, _>(ins, out, acc, &ClampMinG(p(m, zero, zero))),
            Unary::Scale(s) => zip::<V, _>(ins, out, acc, &ScaleG(p(s, zero, zero))),
        }
    }
}

/// `g = g * f'(x)` in place, with `f'` taken from the output `y = f(x)` alone (ReLU, leaky
/// ReLU with a slope >= 0, sigmoid, tanh: the fused dense layer's activations).
pub struct UnaryGradFromOutput<'a, T> {
    /// The function.
    pub f: Unary<T>,
    /// The forward output.
    pub y: &'a [T],
    /// The upstream gradient, overwritten with the input's.
    pub g: &'a mut [T],
}

impl<T: Float> Kernel<T> for UnaryGradFromOutput<'_, T> {
    type Output = ();
    #[inline(always)]
    fn run<V: Vector<E = T>>(self) {
        let UnaryGradFromOutput { f, y, g } = self;
        let (zero, one) = (T::zero(), T::one());
        // The derivative kernels take [g, x, y]; x > 0 exactly when y > 0 for these.
        match f {
            Unary::Relu => in_place::<V>(y, g, &ReluG(p0())),
            Unary::LeakyRelu(s) => in_place::<V>(y, g, &LeakyReluG(p(s, zero, zero))),
            Unary::Sigmoid => in_place::<V>(y, g, &SigmoidG(p(one, zero, zero))),
            Unary::Tanh => in_place::<V>(y, g, &TanhG(p(one, zero, zero))),
            other => panic!("{other:?}: its derivative does not follow from its output"),
        }
    }
}

/// `g[i] = f(g[i], y[i], y[i])`: a [`Lanewise`] derivative in place (the tail through a
/// zero-padded buffer, as in `zip`).
#[inline(always)]
fn in_place<V: Vector>(y: &[V::E], g: &mut [V::E], f: &impl Lanewise<V, 3>) {
    let n = g.len();
    assert_eq!(y.len(), n, "kernel operands differ in length");
    let l = V::LANES;
    let mut i = 0;
    while i + l <= n {
        // SAFETY: i + l <= n, the length of both operands.
        unsafe {
            let yv = V::load(y.as_ptr().add(i));
            f.apply([V::load(g.as_ptr().add(i)), yv, yv])
                .store(g.as_mut_ptr().add(i));
        }
        i += l;
    }
    if i < n {
        let rem = n - i;
        let zero = V::E::zero();
        let (mut gb, mut yb) = ([zero; REDUCE_LANES], [zero; REDUCE_LANES]);
        gb[..rem].copy_from_slice(&g[i..]);
        yb[..rem].copy_from_slice(&y[i..]);
        // SAFETY: the buffers hold REDUCE_LANES >= LANES values.
        unsafe {
            let yv = V::load(yb.as_ptr());
            f.apply([V::load(gb.as_ptr()), yv, yv]).store(gb.as_mut_ptr());
        }
        g[i..].copy_from_slice(&gb[..rem]);
    }
}

/// An elementwise function of two inputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Binary {
    /// `a + b`.
    Add,
    /// `a - b`.
    Sub,
    /// `a * b`.
    Mul,
}

/// `out (+)= a op b`.
pub struct BinaryMap<'a, T> {
    /// The operation.
    pub op: Binary,
    /// First operand.
    pub a: &'a [T],
    /// Second operand.
    pub b: &'a [T],
    /// Output.
    pub out: &'a mut [T],
    /// Overwrite `out` or add to it.
    pub acc: Accum,
}

impl<T: Float> Kernel<T> for BinaryMap<'_, T> {
    type Output = ();
    #[inline(always)]
    fn run<V: Vector<E = T>>(self) {
        let BinaryMap { op, a, b, out, acc } = self;
        match op {
            Binary::Add => zip::<V, _>([a, b], out, acc, &AddF(p0())),
            Binary::Sub => zip::<V, _>([a, b], out, acc, &SubF(p0())),
            Binary::Mul => zip::<V, _>([a, b], out, acc, &MulF(p0())),
        }
    }
}

/// `out[i, :] = x[i, :] + bias` for the rows of a row-major `x` (`bias.len()` columns).
pub struct AddBias<'a, T> {
    /// Input, row-major.
    pub x: &'a [T],
    /// One value per column.
    pub bias: &'a [T],
    /// Output, the shape of `x`.
    pub out: &'a mut [T],
}

impl<T: Float> Kernel<T> for AddBias<'_, T> {
    type Output = ();
    #[inline(always)]
    fn run<V: Vector<E = T>>(self) {
        let n = self.bias.len().max(1);
        for (o, x) in self.out.chunks_exact_mut(n).zip(self.x.chunks_exact(n)) {
            zip::<V, _>([x, self.bias], o, Accum::Overwrite, &AddF(p0()));
        }
    }
}

lanewise!(
    /// `g` itself: no activation.
    PassG, 3, |_, [g, x, y]| g
);

/// `g = g * f'(x)` in place from the output `y = f(x)` (when `f` is given, as
/// [`UnaryGradFromOutput`]) and `dst (+)= sum over rows of the result` (row-major,
/// `dst.len()` columns, rows added in order, as [`ColumnSums`]): both in one pass, the sums
/// in registers when the columns are whole vectors. The same bits as the two kernels one
/// after the other (a convolution's pre-activation and bias gradients; as two passes the
/// sums cost 1.5% of a keras-conv step on a Zen 3).
pub struct ActGradSums<'a, T> {
    /// The activation, if any.
    pub f: Option<Unary<T>>,
    /// The forward output.
    pub y: &'a [T],
    /// The upstream gradient, overwritten with the input's.
    pub g: &'a mut [T],
    /// One sum per column.
    pub dst: &'a mut [T],
    /// Start from zero or add to `dst`.
    pub acc: Accum,
}

impl<T: Float> Kernel<T> for ActGradSums<'_, T> {
    type Output = ();
    #[inline(always)]
    fn run<V: Vector<E = T>>(self) {
        let (zero, one) = (T::zero(), T::one());
        match self.f {
            None => self.with::<V, false>(&PassG(p0())),
            Some(Unary::Relu) => self.with::<V, true>(&ReluG(p0())),
            Some(Unary::LeakyRelu(s)) => self.with::<V, true>(&LeakyReluG(p(s, zero, zero))),
            Some(Unary::Sigmoid) => self.with::<V, true>(&SigmoidG(p(one, zero, zero))),
            Some(Unary::Tanh) => self.with::<V, true>(&TanhG(p(one, zero, zero))),
            Some(other) => panic!("{other:?}: its derivative does not follow from its output"),
        }
    }
}

impl<T: Float> ActGradSums<'_, T> {
    #[inline(always)]
    fn with<V: Vector<E = T>, const ACT: bool>(self, f: &impl Lanewise<V, 3>) {
        let ActGradSums { y, g, dst, acc, .. } = self;
        let c = dst.len();
        assert_eq!(y.len(), g.len(), "kernel operands differ in length");
        assert!(
            g.len().is_multiple_of(c.max(1)),
            "ActGradSums: whole rows of {c} columns"
        );
        if acc == Accum::Overwrite {
            dst.fill(T::zero());
        }
        // Columns in whole vectors: the derivative and the sums in one pass. Ragged ones
        // (an image's last layer, one channel): the derivative, then the sums.
        if ACT && c > 0 && c.is_multiple_of(V::LANES) {
            let out = g.as_mut_ptr();
            // SAFETY: i + LANES <= g.len() = y.len() (see `sum_columns`).
            add_vector_sums::<V>(c, y.len(), dst, |i| unsafe {
                let yv = V::load(y.as_ptr().add(i));
                let gv = f.apply([V::load(out.add(i)), yv, yv]);
                gv.store(out.add(i));
                gv
            });
            return;
        }
        if ACT {
            in_place::<V>(y, g, f);
        }
        add_column_sums::<V>(g, dst);
    }
}

/// `dst += sum over rows of src` (row-major, `dst.len()` columns), each column's rows added
/// in order: whole vectors of columns with their sums in registers, up to four at a time,
/// the last ragged columns one value at a time (a call to `zip` per row cost 0.9% of a
/// keras-conv step for its one-channel last layer).
#[inline(always)]
fn add_column_sums<V: Vector>(src: &[V::E], dst: &mut [V::E]) {
    let c = dst.len();
    if c == 0 {
        return;
    }
    assert!(src.len().is_multiple_of(c), "column sums: whole rows of {c} columns");
    let whole = c - c % V::LANES;
    // SAFETY: i + LANES <= src.len() (see `sum_columns`).
    add_vector_sums::<V>(whole, src.len(), dst, |i| unsafe { V::load(src.as_ptr().add(i)) });
    for (j, sum) in dst.iter_mut().enumerate().skip(whole) {
        for row in src.chunks_exact(c) {
            *sum = *sum + row[j];
        }
    }
}

/// `dst[j] +=` the sum over the rows of `value`'s vectors, for the first `whole` columns (a
/// multiple of the lanes) of rows of `dst.len()` columns, `len` values in all: `value(i)` is
/// the vector at element `i` of the rows, read once; each column's rows are added in order,
/// up to four vectors of columns at a time with their sums in registers.
#[inline(always)]
fn add_vector_sums<V: Vector>(whole: usize, len: usize, dst: &mut [V::E], mut value: impl FnMut(usize) -> V) {
    let mut c0 = 0;
    while c0 < whole {
        let nv = ((whole - c0) / V::LANES).min(4);
        match nv {
            4 => sum_columns::<V, 4>(len, dst, c0, &mut value),
            3 => sum_columns::<V, 3>(len, dst, c0, &mut value),
            2 => sum_columns::<V, 2>(len, dst, c0, &mut value),
            _ => sum_columns::<V, 1>(len, dst, c0, &mut value),
        }
        c0 += nv * V::LANES;
    }
}

/// Columns `c0 .. c0 + NV LANES` of [`add_vector_sums`]: `value` is asked only for elements
/// `i` whose vector `i .. i + LANES` lies inside its row, and so inside `0 .. len`.
#[inline(always)]
fn sum_columns<V: Vector, const NV: usize>(
    len: usize,
    dst: &mut [V::E],
    c0: usize,
    value: &mut impl FnMut(usize) -> V,
) {
    let c = dst.len();
    assert!(c0 + NV * V::LANES <= c && len.is_multiple_of(c));
    // SAFETY: columns c0 .. c0 + NV LANES <= c of dst.
    let mut sums: [V; NV] = core::array::from_fn(|q| unsafe { V::load(dst.as_ptr().add(c0 + q * V::LANES)) });
    for at in (c0..len).step_by(c) {
        for (q, sum) in sums.iter_mut().enumerate() {
            *sum = sum.add(value(at + q * V::LANES));
        }
    }
    for (q, sum) in sums.iter().enumerate() {
        // SAFETY: as for the load.
        unsafe { sum.store(dst.as_mut_ptr().add(c0 + q * V::LANES)) };
    }
}

/// `dst (+)= sum over rows of src` (row-major, `dst.len()` columns), rows added in order.
pub struct ColumnSums<'a, T> {
    /// Input, row-major.
    pub src: &'a [T],
    /// One sum per column.
    pub dst: &'a mut [T],
    /// Start from zero or add to `dst`.
    pub acc: Accum,
}

impl<T: Float> Kernel<T> for ColumnSums<'_, T> {
    type Output = ();
    #[inline(always)]
    fn run<V: Vector<E = T>>(self) {
        if self.acc == Accum::Overwrite {
            self.dst.fill(T::zero());
        }
        add_column_sums::<V>(self.src, self.dst);
    }
}
