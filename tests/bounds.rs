//! The sampled bounds of `vae-model` against finite differences, in f64, with the noise held
//! fixed: the K-sample ELBO and the IWAE bound, for one and two stochastic layers; and the
//! DReG estimator: its decoder gradient equals IWAE's exactly, and its encoder gradient
//! agrees with IWAE's in expectation (it is an unbiased estimator of the same gradient, with
//! less variance).

use ndarray::{Array2, Axis};
use rand::SeedableRng;
use rand::rngs::StdRng;
use vae::autograd::gradcheck::{self, Config};
use vae::model::{Bound, LevelConfig, Objective, Prior, Vae, VaeConfig};
use vae::nn::Activation;

fn config(levels: usize) -> VaeConfig {
    VaeConfig {
        input: 6,
        hidden: vec![5],
        latent: 3,
        activation: Activation::Tanh,
        upper: (1..levels)
            .map(|l| LevelConfig {
                hidden: vec![4],
                latent: 3 - l.min(1),
            })
            .collect(),
        ..VaeConfig::reference()
    }
}

fn objective(bound: Bound, samples: usize, dreg: bool) -> Objective {
    Objective {
        bound,
        samples,
        dreg,
        ..Objective::default()
    }
}

fn data(n: usize, seed: u64) -> Array2<f64> {
    let mut rng = StdRng::seed_from_u64(seed);
    Array2::from_shape_simple_fn((n, 6), || rand::Rng::random_range(&mut rng, 0.0..1.0))
}

/// Sets the parameters, runs a step with the noise of `seed`; returns the per-image
/// objective and every parameter's gradient.
fn step_at(
    vae: &mut Vae<f64>,
    params: &[Array2<f64>],
    x: &Array2<f64>,
    o: Objective,
    seed: u64,
) -> (f64, Vec<Array2<f64>>) {
    let vars = vae.params().to_vec();
    for (&v, p) in vars.iter().zip(params) {
        vae.tape_mut().param_mut(v).assign(p);
    }
    let sums = vae.train_step(x.view(), &mut StdRng::seed_from_u64(seed), o);
    let grads = vars
        .iter()
        .map(|&v| {
            vae.tape()
                .grad(v)
                .cloned()
                .unwrap_or_else(|| Array2::zeros(vae.tape().dim(v)))
        })
        .collect();
    (sums.objective / x.nrows() as f64, grads)
}

fn params_of(vae: &Vae<f64>) -> Vec<Array2<f64>> {
    vae.params().iter().map(|&v| vae.tape().value(v).clone()).collect()
}

fn check_bound(levels: usize, o: Objective) {
    check_model(config(levels), o);
}

fn check_model(config: VaeConfig, o: Objective) {
    let levels = config.levels();
    let mut vae = Vae::<f64>::new(config, &mut StdRng::seed_from_u64(3)).unwrap();
    let x = data(4, 5);
    let p0 = params_of(&vae);
    let report = gradcheck::check(&p0, Config::default(), |ps| {
        let (v, g) = step_at(&mut vae, ps, &x, o, 9);
        (v, g.into_iter().map(Some).collect())
    })
    .unwrap_or_else(|e| panic!("{levels} level(s), {o:?}: {e}"));
    eprintln!(
        "{levels} level(s), {:?} K = {}: {} elements, worst relative error {:.2e}",
        o.bound, o.samples, report.checked, report.max_rel_error
    );
}

#[test]
fn iwae_bound_one_level() {
    check_bound(1, objective(Bound::Iwae, 3, false));
}

#[test]
fn k_sample_elbo_one_level() {
    check_bound(1, objective(Bound::Elbo, 3, false));
}

#[test]
fn two_levels_elbo_and_iwae() {
    check_bound(2, objective(Bound::Elbo, 1, false));
    check_bound(2, objective(Bound::Iwae, 4, false));
}

#[test]
fn the_vampprior_at_one_and_two_levels() {
    // Every parameter, the pseudo-inputs and the encoder through the prior included.
    for levels in [1, 2] {
        let vamp = VaeConfig {
            prior: Prior::Vamp { components: 3 },
            ..config(levels)
        };
        check_model(vamp.clone(), objective(Bound::Elbo, 1, false));
        check_model(vamp, objective(Bound::Iwae, 3, false));
    }
}

#[test]
fn iwae_is_the_log_mean_of_the_samples_weights() {
    // The IWAE objective over K samples of n images must equal -sum_i log mean_j w_ij with
    // the w_ij of the same noise computed one sample per row: the batch of each image
    // repeated K times draws the noise in the same order (row i K + j), so its per-row
    // -log w are the w_ij. This pins down which rows are grouped into one image's bound.
    let (n, k) = (5, 4);
    let mut vae = Vae::<f64>::new(config(2), &mut StdRng::seed_from_u64(3)).unwrap();
    let x = data(n, 6);
    let step = vae.forward(
        x.view(),
        &mut StdRng::seed_from_u64(2),
        objective(Bound::Iwae, k, false),
    );
    let iwae = vae.step_sums(&step).objective;
    let repeated = Array2::from_shape_fn((n * k, 6), |(r, c)| x[[r / k, c]]);
    let neg_log_w = vae.neg_elbo_per_image(repeated.view(), &mut StdRng::seed_from_u64(2));
    let want: f64 = neg_log_w
        .chunks(k)
        .map(|c| {
            let m = c.iter().cloned().fold(f64::INFINITY, f64::min);
            m - (c.iter().map(|v| (m - v).exp()).sum::<f64>() / k as f64).ln()
        })
        .sum();
    assert!((iwae - want).abs() < 1e-9 * want.abs(), "{iwae} vs {want}");
    // At K = 1 both bounds are the ELBO.
    let p0 = params_of(&vae);
    let (a, ga) = step_at(&mut vae, &p0, &x, objective(Bound::Iwae, 1, false), 2);
    let (b, gb) = step_at(&mut vae, &p0, &x, objective(Bound::Elbo, 1, false), 2);
    assert_eq!((a, ga), (b, gb));
}

#[test]
fn the_bounds_are_ordered() {
    // log p(x) >= IWAE_K >= ELBO, on average; with K = 50 the gap is large enough to see in
    // one batch of 200 images.
    let mut vae = Vae::<f64>::new(config(1), &mut StdRng::seed_from_u64(3)).unwrap();
    let x = data(200, 8);
    let iwae = vae.forward(
        x.view(),
        &mut StdRng::seed_from_u64(1),
        objective(Bound::Iwae, 50, false),
    );
    let iwae = vae.step_sums(&iwae).objective;
    let elbo = vae.forward(
        x.view(),
        &mut StdRng::seed_from_u64(1),
        objective(Bound::Elbo, 50, false),
    );
    let elbo = vae.step_sums(&elbo).objective;
    let nll: f64 = vae
        .log_likelihood(x.view(), 5000, 5000, &mut StdRng::seed_from_u64(2))
        .iter()
        .sum();
    assert!(-nll < iwae && iwae < elbo, "-log p {} IWAE {iwae} ELBO {elbo}", -nll);
}

/// Encoder and decoder parameters' indices.
fn split(vae: &Vae<f64>) -> (Vec<usize>, Vec<usize>) {
    let names: Vec<&str> = vae.named_params().iter().map(|(n, _)| n.as_str()).collect();
    let enc = (0..names.len()).filter(|&i| names[i].starts_with("encoder")).collect();
    let dec = (0..names.len()).filter(|&i| names[i].starts_with("decoder")).collect();
    (enc, dec)
}

#[test]
fn dreg_decoder_gradient_is_iwaes() {
    for levels in [1, 2] {
        let mut vae = Vae::<f64>::new(config(levels), &mut StdRng::seed_from_u64(4)).unwrap();
        let p0 = params_of(&vae);
        let x = data(6, 7);
        let (a, ga) = step_at(&mut vae, &p0, &x, objective(Bound::Iwae, 5, false), 3);
        let (b, gb) = step_at(&mut vae, &p0, &x, objective(Bound::Iwae, 5, true), 3);
        assert!((a - b).abs() < 1e-12, "the same bound: {a} vs {b}");
        let (enc, dec) = split(&vae);
        for &i in &dec {
            let err = (&ga[i] - &gb[i]).mapv(f64::abs).fold(0.0f64, |m, &v| m.max(v));
            assert!(
                err < 1e-10,
                "{levels} level(s), {}: off by {err}",
                vae.named_params()[i].0
            );
        }
        // The encoder's gradient is a different estimator: it must differ.
        assert!(enc.iter().any(|&i| (&ga[i] - &gb[i]).iter().any(|d| d.abs() > 1e-6)));
    }
}

#[test]
fn dreg_encoder_gradient_is_unbiased_and_less_noisy() {
    // Fifty images, many noise draws: the mean encoder gradient of DReG must match IWAE's
    // within the noise (5 standard errors per element), and its spread must be smaller; at
    // a KL weight below 1 too (where the weights are 1 - β + β w~).
    for (levels, beta) in [(1, 1.0), (2, 1.0), (2, 0.3)] {
        let mut vae = Vae::<f64>::new(config(levels), &mut StdRng::seed_from_u64(5)).unwrap();
        let p0 = params_of(&vae);
        let (enc, _) = split(&vae);
        let draws = 400;
        let batch = data(50, 11);
        let objective = |bound, samples, dreg| Objective {
            kl_weight: beta,
            ..objective(bound, samples, dreg)
        };
        let mut diffs = Vec::new();
        let (mut var_iwae, mut var_dreg) = (0.0, 0.0);
        let mut all = [Vec::new(), Vec::new()];
        for d in 0..draws {
            let (_, gi) = step_at(&mut vae, &p0, &batch, objective(Bound::Iwae, 4, false), 100 + d);
            let (_, gd) = step_at(&mut vae, &p0, &batch, objective(Bound::Iwae, 4, true), 100 + d);
            let flat = |g: &[Array2<f64>]| {
                enc.iter()
                    .flat_map(|&i| g[i].iter().copied().collect::<Vec<_>>())
                    .collect::<Vec<f64>>()
            };
            let (fi, fd) = (flat(&gi), flat(&gd));
            diffs.push(fi.iter().zip(&fd).map(|(a, b)| a - b).collect::<Vec<_>>());
            all[0].push(fi);
            all[1].push(fd);
        }
        let to_array = |rows: &[Vec<f64>]| Array2::from_shape_fn((rows.len(), rows[0].len()), |(i, j)| rows[i][j]);
        let diff = to_array(&diffs);
        let mean = diff.mean_axis(Axis(0)).unwrap();
        let se = diff.std_axis(Axis(0), 1.0) / (draws as f64).sqrt();
        for (j, (&m, &s)) in mean.iter().zip(se.iter()).enumerate() {
            assert!(
                m.abs() <= 5.0 * s + 1e-9,
                "{levels} level(s), β {beta}, element {j}: mean difference {m:.3e}, standard error {s:.3e}"
            );
        }
        var_iwae += to_array(&all[0]).var_axis(Axis(0), 1.0).sum();
        var_dreg += to_array(&all[1]).var_axis(Axis(0), 1.0).sum();
        eprintln!("{levels} level(s), β {beta}: encoder gradient variance IWAE {var_iwae:.3e}, DReG {var_dreg:.3e}");
        assert!(
            var_dreg < var_iwae,
            "{levels} level(s), β {beta}: DReG variance {var_dreg} >= IWAE {var_iwae}"
        );
    }
}
