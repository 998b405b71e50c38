//! ONNX export of a trained VAE: `encoder.onnx` (x -> the mean and log-variance of every
//! stochastic layer, each upper level encoding the mean of the one below, as
//! [`vae_model::Vae::encode_levels`]) and `decoder.onnx` (z_top -> the mean image, through the
//! means of every level's p network, as [`vae_model::Vae::decode`]).
//!
//! Opset 13, IR version 7; the batch dimension is symbolic (`N`); the weights are
//! initializers, stored raw (little-endian f32) under their checkpoint names. Each dense
//! layer is one `Gemm` (`transB = 1`: the weights stay PyTorch's `[out, in]`), followed by
//! `Relu`, `LeakyRelu`, `Sigmoid` or `Tanh`; a Bernoulli decoder ends in `Sigmoid` (pixel
//! probabilities), a Gaussian one with its means. A convolutional model's convolutions are
//! `Conv` and `ConvTranspose` nodes (PyTorch's weight layouts, 4-D initializers) between
//! `Reshape`s of the rows to `[N, C, H, W]` images and back.

pub mod proto;

use std::collections::HashMap;

use anyhow::{Result, bail};
use vae_model::{ConvPlan, Likelihood, Vae};
use vae_nn::{Activation, ConvGeometry};

use proto::{
    ATTRIBUTE_FLOAT, ATTRIBUTE_INT, ATTRIBUTE_INTS, AttributeProto, Dimension, DimensionValue, FLOAT, GraphProto,
    INT64, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto, TensorProto, TensorShapeProto,
    TensorTypeProto, TypeProto, ValueInfoProto,
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

    let plan = ConvPlan::of(c).transpose()?;
    let mut enc = Graph::new(&params, c.activation);
    let mut below = INPUT.to_string();
    let mut width = c.input;
    for l in 1..=levels {
        let (prefix, hidden) = match l {
            1 => ("encoder".to_string(), c.hidden.len()),
            _ => (format!("encoder{l}"), c.upper[l - 2].hidden.len()),
        };
        let mut first = 0;
        if let (1, Some(plan)) = (l, &plan) {
            // The rows as images, the convolutions, and their output as rows again.
            let g0 = plan.encoder_convs()[0];
            enc.reshape(&below, &image_dims(&g0), "x.image");
            below = "x.image".into();
            for (i, g) in plan.encoder_convs().iter().enumerate() {
                let out = format!("encoder.{i}.out");
                enc.conv(&below, &format!("encoder.{i}"), g, Some(c.activation), &out)?;
                below = out;
            }
            enc.reshape(&below, &[-1, plan.flat() as i64], "encoder.flat");
            (below, width, first) = ("encoder.flat".into(), plan.flat(), plan.encoder_convs().len());
        }
        let (h, w) = enc.mlp(&below, width, &prefix, first, hidden)?;
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
        let (h, w) = dec.mlp(&z, width, &prefix, 0, c.upper[l - 2].hidden.len())?;
        z = format!("z{}", l - 1);
        width = latents[l - 2];
        dec.dense(&h, w, &format!("{prefix}.mu"), None, &z)?;
    }
    let head = match c.likelihood {
        Likelihood::Bernoulli => "logits",
        Likelihood::Gaussian { .. } => MEAN,
    };
    match &plan {
        None => {
            let (h, w) = dec.mlp(&z, width, "decoder", 0, c.hidden.len())?;
            dec.dense(&h, w, "decoder.out", None, head)?;
        }
        Some(plan) => {
            // Dense layers to the last convolution's output, as images, the transposed
            // convolutions, and the image as a row.
            let (h, _) = dec.mlp(&z, width, "decoder", 0, c.hidden.len())?;
            let g0 = plan.decoder_convs()[0];
            dec.reshape(&h, &image_dims(&g0), "decoder.image");
            let mut h = "decoder.image".to_string();
            for (j, g) in plan.decoder_convs().iter().enumerate() {
                let layer = format!("decoder.{}", c.hidden.len() + j);
                let out = format!("{layer}.out");
                dec.conv(&h, &layer, g, Some(c.activation), &out)?;
                h = out;
            }
            dec.conv(&h, "decoder.out", plan.output_conv(), None, "decoder.out.image")?;
            dec.reshape("decoder.out.image", &[-1, c.input as i64], head);
        }
    }
    if c.likelihood == Likelihood::Bernoulli {
        dec.node("Sigmoid", &["logits"], MEAN, vec![]);
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

/// `[-1, C, H, W]`: the input images of the convolution `g`.
fn image_dims(g: &ConvGeometry) -> [i64; 4] {
    let (h, w) = g.in_size;
    [-1, g.in_channels as i64, h as i64, w as i64]
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

    /// Adds the parameter `name` as an initializer (biases 1-D; `dims`, when given, the
    /// stored shape of a convolution's weight) and returns its shape on the tape.
    fn initializer(&mut self, name: &str, bias: bool, dims: Option<[usize; 4]>) -> Result<(usize, usize)> {
        let Some(a) = self.params.get(name) else {
            bail!("the model has no parameter {name}: its checkpoint does not match its configuration")
        };
        let (rows, cols) = a.dim();
        let dims = if bias {
            if rows != 1 {
                bail!("the bias {name} is {rows} x {cols}, not one row");
            }
            vec![cols as i64]
        } else if let Some(d) = dims {
            if d.iter().product::<usize>() != rows * cols || d[0] != rows {
                bail!("the weight {name} is {rows} x {cols}, not the {d:?} its layer needs");
            }
            d.map(|v| v as i64).to_vec()
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
        let (outs, ins) = self.initializer(&w, false, None)?;
        let (_, bias) = self.initializer(&b, true, None)?;
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
        self.activate(&gemm_out, act, out);
        Ok(outs)
    }

    /// `out = act(x)` (nothing when `act` is `None`: `x` is then `out`).
    fn activate(&mut self, x: &str, act: Option<Activation>, out: &str) {
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
            self.node(op, &[x], out, attrs);
        }
    }

    /// `act(conv(x) + b)` of the convolution layer `layer` (`geom`; a `Conv` or a
    /// `ConvTranspose` node) on the images `x` into `out`.
    fn conv(&mut self, x: &str, layer: &str, geom: &ConvGeometry, act: Option<Activation>, out: &str) -> Result<()> {
        let (w, b) = (format!("{layer}.weight"), format!("{layer}.bias"));
        self.initializer(&w, false, Some(geom.weight_shape()))?;
        let (_, bias) = self.initializer(&b, true, None)?;
        if bias != geom.out_channels {
            bail!("{layer}: a bias of {bias} for {} channels", geom.out_channels);
        }
        let ints = |name: &str, v: [usize; 2]| AttributeProto {
            name: name.into(),
            ints: v.map(|x| x as i64).to_vec(),
            r#type: ATTRIBUTE_INTS,
            ..AttributeProto::default()
        };
        let (p, k, s) = (geom.padding, geom.kernel, geom.stride);
        let mut attrs = vec![
            ints("kernel_shape", [k.0, k.1]),
            ints("strides", [s.0, s.1]),
            AttributeProto {
                name: "pads".into(),
                ints: [p.0, p.1, p.0, p.1].map(|x| x as i64).to_vec(),
                r#type: ATTRIBUTE_INTS,
                ..AttributeProto::default()
            },
        ];
        let op = if geom.transposed {
            attrs.push(ints("output_padding", [geom.output_padding.0, geom.output_padding.1]));
            "ConvTranspose"
        } else {
            "Conv"
        };
        let conv_out = match act {
            Some(_) => format!("{layer}.conv"),
            None => out.to_string(),
        };
        self.node(op, &[x, &w, &b], &conv_out, attrs);
        self.activate(&conv_out, act, out);
        Ok(())
    }

    /// `out = reshape(x, dims)` (`-1`: the batch), the shape an int64 initializer.
    fn reshape(&mut self, x: &str, dims: &[i64], out: &str) {
        let shape = format!("{out}.shape");
        self.initializers.push(TensorProto {
            dims: vec![dims.len() as i64],
            data_type: INT64,
            name: shape.clone(),
            raw_data: dims.iter().flat_map(|v| v.to_le_bytes()).collect(),
        });
        self.node("Reshape", &[x, &shape], out, vec![]);
    }

    /// The hidden layers `prefix.first .. prefix.(first + n - 1)` on `x`, each followed by
    /// the activation; returns the last one's output and width (`x` itself when `n` is 0).
    fn mlp(&mut self, x: &str, width: usize, prefix: &str, first: usize, n: usize) -> Result<(String, usize)> {
        let (mut h, mut w) = (x.to_string(), width);
        for i in first..first + n {
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
