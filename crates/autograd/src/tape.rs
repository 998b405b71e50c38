//! The tape: node storage, buffer reuse between steps, and the backward sweep.

use ndarray::{Array2, ArrayView2};
use vae_linalg::simd::Accum;

use crate::Float;
use crate::ops::{self, Op};

/// A handle to a value on a [`Tape`]: a parameter or a node of the current graph.
///
/// Handles to graph nodes are valid until the next [`Tape::reset`]; handles to parameters
/// stay valid for the life of the tape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Var(u32);

const PARAM_BIT: u32 = 1 << 31;

impl Var {
    fn param(i: usize) -> Self {
        Var(PARAM_BIT | u32::try_from(i).expect("too many parameters"))
    }
    fn node(i: usize) -> Self {
        let i = u32::try_from(i).expect("too many nodes");
        assert!(i < PARAM_BIT, "too many nodes on the tape");
        Var(i)
    }
    /// Whether this handle names a parameter (kept across [`Tape::reset`]).
    pub fn is_param(self) -> bool {
        self.0 & PARAM_BIT != 0
    }
    fn index(self) -> usize {
        (self.0 & !PARAM_BIT) as usize
    }
}

/// One recorded value: how it was made, its value, and whether a gradient flows into it.
pub(crate) struct Node<T> {
    pub(crate) op: Op<T>,
    pub(crate) value: Array2<T>,
    pub(crate) requires_grad: bool,
}

/// Nodes with their gradient buffers; `set[i]` says whether `grads[i]` holds this sweep's
/// gradient (so buffers are written, not zeroed and added to, the first time).
#[derive(Default)]
struct Store<T> {
    nodes: Vec<Node<T>>,
    grads: Vec<Array2<T>>,
    set: Vec<bool>,
}

/// Read-only access to every value on the tape, for the ops.
pub(crate) struct Values<'a, T> {
    params: &'a [Node<T>],
    nodes: &'a [Node<T>],
}

impl<'a, T: Float> Values<'a, T> {
    fn node(&self, v: Var) -> &'a Node<T> {
        if v.is_param() {
            &self.params[v.index()]
        } else {
            &self.nodes[v.index()]
        }
    }
    /// The value of `v`.
    pub(crate) fn get(&self, v: Var) -> ArrayView2<'a, T> {
        self.node(v).value.view()
    }
    /// Whether a gradient must flow into `v`.
    pub(crate) fn wants_grad(&self, v: Var) -> bool {
        self.node(v).requires_grad
    }
}

/// Mutable access to the gradient buffers, for the backward of the ops.
pub(crate) struct Grads<'a, T> {
    params: (&'a mut Vec<Array2<T>>, &'a mut Vec<bool>),
    nodes: (&'a mut Vec<Array2<T>>, &'a mut Vec<bool>),
}

impl<T: Float> Grads<'_, T> {
    /// The gradient buffer of `v`, shaped `dim`, and how to write it: overwrite on its first
    /// write in this sweep, add after.
    pub(crate) fn slot(&mut self, v: Var, dim: (usize, usize)) -> (&mut Array2<T>, Accum) {
        let (grads, set) = if v.is_param() {
            (&mut *self.params.0, &mut *self.params.1)
        } else {
            (&mut *self.nodes.0, &mut *self.nodes.1)
        };
        let i = v.index();
        if set[i] {
            return (&mut grads[i], Accum::Add);
        }
        set[i] = true;
        if grads[i].dim() != dim {
            grads[i] = Array2::zeros(dim);
        }
        (&mut grads[i], Accum::Overwrite)
    }
}

/// A tape of 2-D values in creation order, with the parameters that outlive each graph.
///
/// Build a graph with the op methods (`matmul`, `relu`, `bernoulli_nll`, ...), call
/// [`Tape::backward`] on a 1 x 1 result, read gradients with [`Tape::grad`], then
/// [`Tape::reset`] before the next step. A step that builds the same graph as the previous
/// one reuses every buffer.
#[derive(Default)]
pub struct Tape<T> {
    params: Store<T>,
    graph: Store<T>,
    len: usize,
}

impl<T: Float> Tape<T> {
    /// An empty tape.
    pub fn new() -> Self {
        Tape {
            params: Store::default(),
            graph: Store::default(),
            len: 0,
        }
    }

    /// Adds a parameter: a leaf that needs a gradient and survives [`Tape::reset`].
    pub fn param(&mut self, value: Array2<T>) -> Var {
        let s = &mut self.params;
        s.grads.push(Array2::zeros(value.dim()));
        s.set.push(false);
        s.nodes.push(Node {
            op: Op::Leaf,
            value,
            requires_grad: true,
        });
        Var::param(s.nodes.len() - 1)
    }

    /// Every parameter, in creation order.
    pub fn params(&self) -> impl Iterator<Item = Var> + '_ {
        (0..self.params.nodes.len()).map(Var::param)
    }

    /// Clears the graph (not the parameters), keeping every buffer for the next step.
    pub fn reset(&mut self) {
        self.len = 0;
    }

    /// Number of graph nodes recorded since the last reset.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no graph node was recorded since the last reset.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A leaf holding a copy of `value`; `requires_grad` asks for its gradient.
    pub fn leaf(&mut self, value: ArrayView2<T>, requires_grad: bool) -> Var {
        self.record(Op::Leaf, value.dim(), requires_grad, |out, _| out.assign(&value))
    }

    /// A leaf without gradient (data, noise) holding a copy of `value`.
    pub fn constant(&mut self, value: ArrayView2<T>) -> Var {
        self.leaf(value, false)
    }

    /// A leaf without gradient, shaped `dim`, whose buffer `fill` writes in place (its old
    /// contents are unspecified): noise can be drawn straight into the tape.
    pub fn constant_with(&mut self, dim: (usize, usize), fill: impl FnOnce(&mut Array2<T>)) -> Var {
        self.record(Op::Leaf, dim, false, |out, _| fill(out))
    }

    /// The value of `v`.
    ///
    /// # Panics
    /// If `v` is a graph node recorded before the last reset.
    pub fn value(&self, v: Var) -> &Array2<T> {
        &self.node(v).value
    }

    /// The 1 x 1 value of `v` as a scalar.
    ///
    /// # Panics
    /// If `v` is not 1 x 1.
    pub fn scalar(&self, v: Var) -> T {
        let x = self.value(v);
        assert_eq!(x.dim(), (1, 1), "scalar: value is {:?}, not 1 x 1", x.dim());
        x[[0, 0]]
    }

    /// Whether a gradient flows into `v` (a parameter, or a node computed from one).
    pub fn requires_grad(&self, v: Var) -> bool {
        self.node(v).requires_grad
    }

    /// Overwrites the value of a constant recorded on this graph. Only for a constant read by
    /// a later op's backward alone (the weights of [`Tape::scale_grad_rows`]), whose values
    /// are known only after the forward pass.
    ///
    /// # Panics
    /// If `v` is not a constant graph leaf, or `value` has another shape.
    pub fn set_constant(&mut self, v: Var, value: ndarray::ArrayView2<T>) {
        assert!(!v.is_param(), "set_constant: {v:?} is a parameter");
        assert!(v.index() < self.len, "{v:?} was recorded before the last reset");
        let node = &mut self.graph.nodes[v.index()];
        assert!(
            matches!(node.op, Op::Leaf) && !node.requires_grad,
            "set_constant: {v:?} is not a constant"
        );
        assert_eq!(node.value.dim(), value.dim(), "set_constant: shapes differ");
        node.value.assign(&value);
    }

    /// Mutable access to a parameter's value (optimizers, checkpoint loading).
    ///
    /// # Panics
    /// If `v` is not a parameter.
    pub fn param_mut(&mut self, v: Var) -> &mut Array2<T> {
        assert!(v.is_param(), "param_mut: {v:?} is not a parameter");
        &mut self.params.nodes[v.index()].value
    }

    /// A parameter's value and the gradient from the last backward sweep (`None` if the
    /// sweep did not reach it), for an optimizer's update.
    pub fn param_and_grad_mut(&mut self, v: Var) -> (&mut Array2<T>, Option<&Array2<T>>) {
        assert!(v.is_param(), "param_and_grad_mut: {v:?} is not a parameter");
        let s = &mut self.params;
        let i = v.index();
        let grad = s.set[i].then(|| &s.grads[i]);
        (&mut s.nodes[i].value, grad)
    }

    /// A parameter's gradient from the last backward sweep, mutably (`None` if the sweep did
    /// not reach it): for gradients reduced across processes before the optimizer's step.
    ///
    /// # Panics
    /// If `v` is not a parameter.
    pub fn param_grad_mut(&mut self, v: Var) -> Option<&mut Array2<T>> {
        assert!(v.is_param(), "param_grad_mut: {v:?} is not a parameter");
        let s = &mut self.params;
        let i = v.index();
        s.set[i].then(|| &mut s.grads[i])
    }

    /// The gradient of `v` from the last [`Tape::backward`], or `None` if none reached it.
    pub fn grad(&self, v: Var) -> Option<&Array2<T>> {
        let (s, i) = self.store(v);
        s.set[i].then(|| &s.grads[i])
    }

    /// Computes the gradient of the 1 x 1 value `loss` with respect to every node and
    /// parameter that needs one, walking the tape in reverse.
    ///
    /// # Panics
    /// If `loss` is not a 1 x 1 graph node.
    pub fn backward(&mut self, loss: Var) {
        assert!(
            !loss.is_param(),
            "backward: the loss must be a graph node, not a parameter"
        );
        assert_eq!(self.value(loss).dim(), (1, 1), "backward: the loss must be 1 x 1");
        let Tape { params, graph, len } = self;
        params.set.fill(false);
        graph.set[..*len].fill(false);
        let root = loss.index();
        graph.grads[root] = match std::mem::take(&mut graph.grads[root]) {
            mut g if g.dim() == (1, 1) => {
                g.fill(T::one());
                g
            }
            _ => Array2::ones((1, 1)),
        };
        graph.set[root] = true;
        for i in (0..=root).rev() {
            let node = &graph.nodes[i];
            if !graph.set[i] || !node.requires_grad || matches!(node.op, Op::Leaf) {
                continue;
            }
            let mut g = std::mem::take(&mut graph.grads[i]);
            let vals = Values {
                params: &params.nodes,
                nodes: &graph.nodes[..*len],
            };
            let mut grads = Grads {
                params: (&mut params.grads, &mut params.set),
                nodes: (&mut graph.grads, &mut graph.set),
            };
            ops::backward(&node.op, &node.value, &mut g, &vals, &mut grads);
            graph.grads[i] = g;
        }
    }

    fn node(&self, v: Var) -> &Node<T> {
        if v.is_param() {
            &self.params.nodes[v.index()]
        } else {
            assert!(v.index() < self.len, "{v:?} was recorded before the last reset");
            &self.graph.nodes[v.index()]
        }
    }

    fn store(&self, v: Var) -> (&Store<T>, usize) {
        if v.is_param() {
            (&self.params, v.index())
        } else {
            assert!(v.index() < self.len, "{v:?} was recorded before the last reset");
            (&self.graph, v.index())
        }
    }

    /// Records a node shaped `dim`: takes the buffer the same slot had last step if the
    /// shape agrees (else allocates), lets `fill` write the value from the other values, and
    /// appends the node. `requires_grad` is or-ed with the inputs' flags.
    pub(crate) fn record(
        &mut self,
        op: Op<T>,
        dim: (usize, usize),
        requires_grad: bool,
        fill: impl FnOnce(&mut Array2<T>, &Values<T>),
    ) -> Var {
        let i = self.len;
        let g = &mut self.graph;
        let mut out = match g.nodes.get_mut(i) {
            Some(old) if old.value.dim() == dim => std::mem::take(&mut old.value),
            _ => Array2::zeros(dim),
        };
        let vals = Values {
            params: &self.params.nodes,
            nodes: &g.nodes[..i],
        };
        let requires_grad = requires_grad || op.inputs().into_iter().flatten().any(|v| vals.wants_grad(v));
        fill(&mut out, &vals);
        let node = Node {
            op,
            value: out,
            requires_grad,
        };
        if i < g.nodes.len() {
            g.nodes[i] = node;
        } else {
            g.nodes.push(node);
            g.grads.push(Array2::default((0, 0)));
            g.set.push(false);
        }
        self.len += 1;
        Var::node(i)
    }

    /// The shape of `v`'s value.
    pub fn dim(&self, v: Var) -> (usize, usize) {
        self.value(v).dim()
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{Array2, array};

    use super::*;

    fn step(t: &mut Tape<f32>, w: Var, x: &Array2<f32>) -> (Var, Var) {
        t.reset();
        let xv = t.constant(x.view());
        let h = t.matmul_t(xv, false, w, true);
        let h = t.relu(h);
        let loss = t.sum(h);
        t.backward(loss);
        (h, loss)
    }

    #[test]
    fn a_repeated_step_reuses_every_buffer() {
        let mut t = Tape::<f32>::new();
        let w = t.param(array![[1.0, -2.0], [0.5, 0.25], [3.0, 1.0]]);
        let x = array![[1.0, 2.0], [-1.0, 0.5]];
        let (h, _) = step(&mut t, w, &x);
        let ptrs = (
            t.value(h).as_ptr(),
            t.grad(h).unwrap().as_ptr(),
            t.grad(w).unwrap().as_ptr(),
        );
        let first = t.grad(w).unwrap().clone();
        let (h2, _) = step(&mut t, w, &x);
        assert_eq!(h, h2);
        assert_eq!(
            ptrs,
            (
                t.value(h).as_ptr(),
                t.grad(h).unwrap().as_ptr(),
                t.grad(w).unwrap().as_ptr()
            )
        );
        // Gradients are recomputed, not accumulated across steps.
        assert_eq!(t.grad(w).unwrap(), &first);
    }

    #[test]
    fn constants_get_no_gradient_and_params_survive_reset() {
        let mut t = Tape::<f64>::new();
        let w = t.param(array![[2.0]]);
        let x = t.constant(array![[3.0]].view());
        let y = t.mul(w, x);
        let s = t.sum(y);
        t.backward(s);
        assert_eq!(t.grad(x), None);
        assert_eq!(t.grad(w).unwrap(), &array![[3.0]]);
        t.reset();
        assert_eq!(t.len(), 0);
        assert_eq!(t.value(w), &array![[2.0]]);
        assert_eq!(t.params().count(), 1);
    }

    #[test]
    fn forward_values_match_closed_forms() {
        let mut t = Tape::<f64>::new();
        let l = t.constant(array![[0.0, 40.0, -40.0]].view());
        let x = t.constant(array![[1.0, 1.0, 0.0]].view());
        let nll = t.bernoulli_nll(l, x);
        // softplus(0) - 0 = ln 2; softplus(40) - 40 ~ 4e-18; softplus(-40) ~ 4e-18.
        assert!((t.value(nll)[[0, 0]] - 2f64.ln()).abs() < 1e-12);
        let mu = t.constant(array![[1.0, 0.0]].view());
        let lv = t.constant(array![[0.0, 1.0]].view());
        let kl = t.kl_normal(mu, lv);
        assert!((t.value(kl)[[0, 0]] - 0.5).abs() < 1e-12);
        assert!((t.value(kl)[[0, 1]] - 0.5 * (1f64.exp() - 2.0)).abs() < 1e-12);
        let g = t.gaussian_nll(mu, lv, mu);
        let want = 0.5 * (2.0 * (2.0 * std::f64::consts::PI).ln() + 1.0);
        assert!((t.value(g)[[0, 0]] - want).abs() < 1e-12);
        let sp = t.softplus(l);
        assert_eq!(t.value(sp)[[0, 1]], 40.0);
        let s = t.sigmoid(l);
        assert!(t.value(s).iter().all(|v| v.is_finite()));
    }

    #[test]
    #[should_panic(expected = "recorded before the last reset")]
    fn a_stale_handle_is_caught() {
        let mut t = Tape::<f32>::new();
        let x = t.constant(array![[1.0]].view());
        t.reset();
        let _ = t.value(x);
    }
}
