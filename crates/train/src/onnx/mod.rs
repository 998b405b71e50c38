//! ONNX export of a trained VAE: `encoder.onnx` (x -> the mean and log-variance of every
//! stochastic layer, each upper level encoding the mean of the one below, as
//! [`vae_model::Vae::encode_levels`]) and `decoder.onnx` (z_top -> the mean image, through the
//! means of every level's p network, as [`vae_model::Vae::decode`]).
//!
//! Opset 13, IR version 7; the batch dimension is symbolic (`N`); the weights are
//! initializers, stored raw (little-endian f32) under their checkpoint names. Each dense
//! layer is one `Gemm` (`transB = 1`: the weights stay PyTorch's `[out, in]`), followed by
//! `Relu`, `LeakyRelu`, `Sigmoid` or `Tanh`; a Bernoulli decoder ends in `Sigmoid` (pixel
//! probabilities), a Gaussian one with its means.

pub mod proto;

use std::collections::HashMap;

use anyhow::{Result, bail};
use vae_model::{Likelihood, Vae};
use vae_nn::Activation;

use proto::{
    ATTRIBUTE_FLOAT, ATTRIBUTE_INT, AttributeProto, Dimension, DimensionValue, FLOAT, GraphProto, ModelProto,
    NodeProto, OperatorSetIdProto, StringStringEntryProto, TensorProto, TensorShapeProto, TensorTypeProto, TypeProto,
    ValueInfoProto,
};

/// The ONNX operator set the graphs use.
pub const OPSET: i64 = 13;
/// The IR version of opset 13.
pub const IR_VERSION: i64 = 7;
/// The symbolic batch dimension.
pub const BATCH: &str = "N";
/// The encoder's input: images, one a row, values in [0, 1].
pub const INPUT: &str = "x";
/// The decoder's input: top-level latents.
pub const LATENT: &str = "z";
/// The decoder's output: the mean image.
pub const MEAN: &str = "mean";

/// The encoder's output names: `mu1`, `logvar1`, `mu2`, ... (z1 first).
pub fn encoder_outputs(levels: usize) -> Vec<String> {
    (1..=levels)
        .flat_map(|l| [format!("mu{l}"), format!("logvar{l}")])
        .collect()
}

/// The two graphs of a model.
pub struct Exported {
    /// x -> (mu, logvar) of every level.
    pub encoder: ModelProto,
    /// z_top -> mean image.
    pub decoder: ModelProto,
}

/// Builds the encoder and decoder graphs of `model`.
///
/// # Errors
/// When a parameter the architecture needs is missing or its shape does not fit.
pub fn export(model: &Vae<f32>) -> Result<Exported> {
    let c = model.config();
    let params: HashMap<&str, &ndarray::Array2<f32>> = model
        .named_params()
        .iter()
        .map(|(name, v)| (name.as_str(), model.tape().value(*v)))
        .collect();
    let latents = c.latents();
    let levels = latents.len();

    let mut enc = Graph::new(&params, c.activation);
    let mut below = INPUT.to_string();
    let mut width = c.input;
    for l in 1..=levels {
        let (prefix, hidden) = match l {
            1 => ("encoder".to_string(), c.hidden.len()),
            _ => (format!("encoder{l}"), c.upper[l - 2].hidden.len()),
        };
        let (h, w) = enc.mlp(&below, width, &prefix, hidden)?;
        let mu = format!("mu{l}");
        enc.dense(&h, w, &format!("{prefix}.mu"), None, &mu)?;
        let lv = format!("logvar{l}");
        enc.dense(&h, w, &format!("{prefix}.logvar"), None, &lv)?;
        below = mu;
        width = latents[l - 1];
    }
    let outputs: Vec<(String, usize)> = encoder_outputs(levels)
        .into_iter()
        .zip(latents.iter().flat_map(|&d| [d, d]))
        .collect();
    let doc = format!(
        "vae-train encoder: {INPUT} [{BATCH}, {}] -> the mean and log-variance of q(z_l | z_(l-1)) for each of the {levels} stochastic layers (z1 first; each upper level encodes the mean of the one below)",
        c.input
    );
    let encoder = enc.model("encoder", &doc, &[(INPUT, c.input)], &outputs, model)?;

    let mut dec = Graph::new(&params, c.activation);
    let mut z = LATENT.to_string();
    let mut width = c.top_latent();
    for l in (2..=levels).rev() {
        let prefix = format!("decoder{l}");
        let (h, w) = dec.mlp(&z, width, &prefix, c.upper[l - 2].hidden.len())?;
        z = format!("z{}", l - 1);
        width = latents[l - 2];
        dec.dense(&h, w, &format!("{prefix}.mu"), None, &z)?;
    }
    let (h, w) = dec.mlp(&z, width, "decoder", c.hidden.len())?;
    match c.likelihood {
        Likelihood::Bernoulli => {
            dec.dense(&h, w, "decoder.out", None, "logits")?;
            dec.node("Sigmoid", &["logits"], MEAN, vec![]);
        }
        Likelihood::Gaussian { .. } => {
            dec.dense(&h, w, "decoder.out", None, MEAN)?;
        }
    }
    let what = match c.likelihood {
        Likelihood::Bernoulli => "pixel probabilities (the sigmoid of the Bernoulli logits)",
        Likelihood::Gaussian { .. } => "the Gaussian decoder's means",
    };
    let doc = format!(
        "vae-train decoder: {LATENT} [{BATCH}, {}] (the top stochastic layer) -> {MEAN} [{BATCH}, {}], {what}, through the mean of p(z_(l-1) | z_l) at each level below",
        c.top_latent(),
        c.input
    );
    let decoder = dec.model(
        "decoder",
        &doc,
        &[(LATENT, c.top_latent())],
        &[(MEAN.into(), c.input)],
        model,
    )?;
    Ok(Exported { encoder, decoder })
}

/// A graph being built: its nodes and the initializers they use.
struct Graph<'a> {
    params: &'a HashMap<&'a str, &'a ndarray::Array2<f32>>,
    activation: Activation,
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
}

impl<'a> Graph<'a> {
    fn new(params: &'a HashMap<&'a str, &'a ndarray::Array2<f32>>, activation: Activation) -> Self {
        Graph {
            params,
            activation,
            nodes: Vec::new(),
            initializers: Vec::new(),
        }
    }

    /// Adds the parameter `name` as an initializer (biases 1-D) and returns its shape.
    fn initializer(&mut self, name: &str, bias: bool) -> Result<(usize, usize)> {
        let Some(a) = self.params.get(name) else {
            bail!("the model has no parameter {name}: its checkpoint does not match its configuration")
        };
        let (rows, cols) = a.dim();
        let dims = if bias {
            if rows != 1 {
                bail!("the bias {name} is {rows} x {cols}, not one row");
            }
            vec![cols as i64]
        } else {
            vec![rows as i64, cols as i64]
        };
        let raw_data = a.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializers.push(TensorProto {
            dims,
            data_type: FLOAT,
            name: name.to_string(),
            raw_data,
        });
        Ok((rows, cols))
    }

    /// `act(x W^T + b)` of the layer `layer` on `x` (`width` columns) into `out`; returns the
    /// layer's output width.
    fn dense(&mut self, x: &str, width: usize, layer: &str, act: Option<Activation>, out: &str) -> Result<usize> {
        let (w, b) = (format!("{layer}.weight"), format!("{layer}.bias"));
        let (outs, ins) = self.initializer(&w, false)?;
        let (_, bias) = self.initializer(&b, true)?;
        if ins != width || bias != outs {
            bail!("{layer}: a {outs} x {ins} weight with a bias of {bias} after {width} values does not fit");
        }
        let gemm_out = match act {
            Some(_) => format!("{layer}.linear"),
            None => out.to_string(),
        };
        let trans_b = AttributeProto {
            name: "transB".into(),
            i: 1,
            r#type: ATTRIBUTE_INT,
            ..AttributeProto::default()
        };
        self.node("Gemm", &[x, &w, &b], &gemm_out, vec![trans_b]);
        if let Some(a) = act {
            let (op, attrs) = match a {
                Activation::Relu => ("Relu", vec![]),
                Activation::LeakyRelu(slope) => (
                    "LeakyRelu",
                    vec![AttributeProto {
                        name: "alpha".into(),
                        f: slope as f32,
                        r#type: ATTRIBUTE_FLOAT,
                        ..AttributeProto::default()
                    }],
                ),
                Activation::Sigmoid => ("Sigmoid", vec![]),
                Activation::Tanh => ("Tanh", vec![]),
            };
            self.node(op, &[&gemm_out], out, attrs);
        }
        Ok(outs)
    }

    /// The hidden layers `prefix.0 .. prefix.(n-1)` on `x`, each followed by the activation;
    /// returns the last one's output and width (`x` itself when `n` is 0).
    fn mlp(&mut self, x: &str, width: usize, prefix: &str, n: usize) -> Result<(String, usize)> {
        let (mut h, mut w) = (x.to_string(), width);
        for i in 0..n {
            let layer = format!("{prefix}.{i}");
            let out = format!("{layer}.out");
            w = self.dense(&h, w, &layer, Some(self.activation), &out)?;
            h = out;
        }
        Ok((h, w))
    }

    fn node(&mut self, op: &str, inputs: &[&str], output: &str, attribute: Vec<AttributeProto>) {
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.to_string()],
            name: format!("{op}:{output}"),
            op_type: op.to_string(),
            attribute,
            domain: String::new(),
        });
    }

    /// The finished model, with inputs and outputs `(name, width)` of `N` rows.
    fn model(
        self,
        name: &str,
        doc: &str,
        inputs: &[(&str, usize)],
        outputs: &[(String, usize)],
        vae: &Vae<f32>,
    ) -> Result<ModelProto> {
        let info = |(n, w): (&str, usize)| ValueInfoProto {
            name: n.to_string(),
            r#type: Some(TypeProto {
                tensor_type: Some(TensorTypeProto {
                    elem_type: FLOAT,
                    shape: Some(TensorShapeProto {
                        dim: vec![
                            Dimension {
                                value: Some(DimensionValue::DimParam(BATCH.into())),
                            },
                            Dimension {
                                value: Some(DimensionValue::DimValue(w as i64)),
                            },
                        ],
                    }),
                }),
            }),
            doc_string: String::new(),
        };
        let config = serde_json::to_string(vae.config())?;
        Ok(ModelProto {
            ir_version: IR_VERSION,
            producer_name: "vae-train".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            domain: String::new(),
            model_version: 1,
            doc_string: doc.to_string(),
            graph: Some(GraphProto {
                node: self.nodes,
                name: name.to_string(),
                initializer: self.initializers,
                doc_string: doc.to_string(),
                input: inputs.iter().map(|&i| info(i)).collect(),
                output: outputs.iter().map(|(n, w)| info((n.as_str(), *w))).collect(),
            }),
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: OPSET,
            }],
            metadata_props: vec![StringStringEntryProto {
                key: vae_model::checkpoint::CONFIG_KEY.into(),
                value: config,
            }],
        })
    }
}

#[cfg(test)]
mod tests;
