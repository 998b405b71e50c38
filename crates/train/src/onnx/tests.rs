//! The exported graphs run by a small interpreter of their operators give what the model
//! computes itself.

use std::collections::HashMap;

use ndarray::{Array2, Axis};
use prost::Message;
use rand::SeedableRng;
use rand::rngs::StdRng;
use vae_model::{LevelConfig, Likelihood, Vae, VaeConfig};
use vae_nn::Activation;

use super::proto::ModelProto;
use super::*;

/// Runs `model` (Gemm with transB = 1 and the four activations) on `inputs`.
fn run(model: &ModelProto, inputs: &[(&str, Array2<f32>)]) -> HashMap<String, Array2<f32>> {
    let g = model.graph.as_ref().unwrap();
    let mut v: HashMap<String, Array2<f32>> = inputs.iter().map(|(n, a)| (n.to_string(), a.clone())).collect();
    for t in &g.initializer {
        assert_eq!(t.data_type, FLOAT);
        let data: Vec<f32> = t
            .raw_data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        let (r, c) = match t.dims[..] {
            [n] => (1, n as usize),
            [r, c] => (r as usize, c as usize),
            _ => panic!("{:?}", t.dims),
        };
        v.insert(t.name.clone(), Array2::from_shape_vec((r, c), data).unwrap());
    }
    for n in &g.node {
        let x = &v[&n.input[0]];
        let out = match n.op_type.as_str() {
            "Gemm" => {
                assert_eq!(n.attribute[0].name, "transB");
                assert_eq!(n.attribute[0].i, 1);
                let (w, b) = (&v[&n.input[1]], &v[&n.input[2]]);
                x.dot(&w.t()) + b.row(0).insert_axis(Axis(0))
            }
            "Relu" => x.mapv(|e| e.max(0.0)),
            "LeakyRelu" => {
                let a = n.attribute[0].f;
                x.mapv(|e| if e > 0.0 { e } else { a * e })
            }
            "Sigmoid" => x.mapv(|e| 1.0 / (1.0 + (-e).exp())),
            "Tanh" => x.mapv(f32::tanh),
            op => panic!("unexpected op {op}"),
        };
        v.insert(n.output[0].clone(), out);
    }
    v
}

fn assert_close(a: &Array2<f32>, b: &Array2<f32>, what: &str) {
    assert_eq!(a.dim(), b.dim(), "{what}");
    let worst = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() / y.abs().max(1.0))
        .fold(0.0f32, f32::max);
    assert!(worst < 1e-5, "{what}: differs by {worst:e}");
}

fn check(config: VaeConfig) {
    let mut model = Vae::<f32>::new(config.clone(), &mut StdRng::seed_from_u64(3)).unwrap();
    let e = export(&model).unwrap();
    // Through the wire format and back.
    let enc = ModelProto::decode(&e.encoder.encode_to_vec()[..]).unwrap();
    let dec = ModelProto::decode(&e.decoder.encode_to_vec()[..]).unwrap();
    assert_eq!(enc, e.encoder);
    assert_eq!((enc.ir_version, enc.opset_import[0].version), (IR_VERSION, OPSET));
    let x = Array2::from_shape_fn((5, config.input), |(i, j)| ((i * 7 + j * 3) % 11) as f32 / 10.0);
    let got = run(&enc, &[(INPUT, x.clone())]);
    let levels = model.encode_levels(x.view());
    for (l, (mu, lv)) in levels.iter().enumerate() {
        assert_close(&got[&format!("mu{}", l + 1)], mu, "mu");
        assert_close(&got[&format!("logvar{}", l + 1)], lv, "logvar");
    }
    let outputs: Vec<String> = enc
        .graph
        .as_ref()
        .unwrap()
        .output
        .iter()
        .map(|o| o.name.clone())
        .collect();
    assert_eq!(outputs, encoder_outputs(levels.len()));
    let top = levels.last().unwrap().0.clone();
    let mean = &run(&dec, &[(LATENT, top.clone())])[MEAN];
    assert_close(mean, &model.decode(top.view()), "mean image");
    assert_close(mean, &model.reconstruct(x.view()), "reconstruction");
    // The decoder carries only the decoder's weights.
    assert!(
        dec.graph
            .as_ref()
            .unwrap()
            .initializer
            .iter()
            .all(|t| t.name.starts_with("decoder"))
    );
}

#[test]
fn a_one_level_gaussian_model() {
    check(VaeConfig {
        input: 12,
        hidden: vec![7, 5],
        latent: 4,
        activation: Activation::Tanh,
        likelihood: Likelihood::Gaussian { variance: None },
        upper: vec![],
        shape: None,
        arch: Default::default(),
        prior: Default::default(),
    });
}

#[test]
fn a_three_level_bernoulli_model() {
    for activation in [Activation::LeakyRelu(0.2), Activation::Relu, Activation::Sigmoid] {
        check(VaeConfig {
            input: 12,
            hidden: vec![7],
            latent: 4,
            activation,
            likelihood: Likelihood::Bernoulli,
            upper: vec![
                LevelConfig {
                    hidden: vec![6, 5],
                    latent: 3,
                },
                LevelConfig {
                    hidden: vec![4],
                    latent: 2,
                },
            ],
            shape: None,
            arch: Default::default(),
            prior: Default::default(),
        });
    }
}
