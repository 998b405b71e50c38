//! The layers between the images and the dense layers: none ([`Arch::Mlp`]) or a stack of
//! convolutions ([`Arch::Conv`]) that the decoder mirrors with transposed convolutions.

use rand::Rng;
use serde::{Deserialize, Serialize};
use vae_autograd::Float;
use vae_data::ImageShape;
use vae_nn::{Activation, Conv, ConvGeometry, Layer, Layout, Mlp, ParamScope, Sequential};

use crate::ConfigError;

/// The encoder's first layers (the decoder's last ones mirror them).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Arch {
    /// Dense layers only: the image is a vector.
    #[default]
    Mlp,
    /// Convolutions (each followed by the activation) on the image, then the dense layers
    /// on their flattened output. The decoder: dense layers from z to that output's size
    /// (the hidden widths reversed, without the one next to the latent, as in the Keras
    /// example), a transposed convolution per convolution (the channels and strides in
    /// reverse, each back to the size its convolution read), and a stride-1 transposed
    /// convolution to the image's channels (`decoder.out`).
    Conv {
        /// The convolutions, input side first.
        layers: Vec<ConvLayer>,
    },
}

/// One convolution of [`Arch::Conv`]: square kernel, same stride and padding on both axes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConvLayer {
    /// Output channels.
    pub channels: usize,
    /// Kernel size.
    pub kernel: usize,
    /// Stride.
    pub stride: usize,
    /// Zero padding on each side.
    pub padding: usize,
}

impl Arch {
    /// Whether this is [`Arch::Mlp`].
    pub fn is_mlp(&self) -> bool {
        *self == Arch::Mlp
    }
}

impl std::fmt::Display for ConvLayer {
    /// `32k3s2` (with `p1` when the padding is not "same", `(kernel - 1) / 2`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}k{}s{}", self.channels, self.kernel, self.stride)?;
        if self.padding != (self.kernel - 1) / 2 {
            write!(f, "p{}", self.padding)?;
        }
        Ok(())
    }
}

impl std::fmt::Display for Arch {
    /// The spelling [`Arch::from_str`](std::str::FromStr) reads back.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Arch::Mlp => f.write_str("mlp"),
            Arch::Conv { layers } => {
                let specs: Vec<String> = layers.iter().map(ToString::to_string).collect();
                write!(f, "conv:{}", specs.join(","))
            }
        }
    }
}

impl std::str::FromStr for Arch {
    type Err = String;

    /// `mlp`, or `conv:` and comma-separated layers `<channels>[k<kernel>][s<stride>][p<padding>]`
    /// (defaults: kernel 3, stride 1, padding `(kernel - 1) / 2`), e.g. `conv:32k3s2,64k3s2`.
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim().to_ascii_lowercase();
        if t == "mlp" {
            return Ok(Arch::Mlp);
        }
        let Some(list) = t.strip_prefix("conv:") else {
            return Err(format!("'{s}': expected mlp or conv:LAYERS, e.g. conv:32k3s2,64k3s2"));
        };
        let layers = list
            .split(',')
            .map(|item| parse_layer(item.trim()).map_err(|e| format!("'{s}': layer '{}': {e}", item.trim())))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Arch::Conv { layers })
    }
}

/// `32k3s2p1`: channels, then optional `k`, `s`, `p` fields, each at least 1 but the padding.
fn parse_layer(item: &str) -> Result<ConvLayer, String> {
    let digits = |s: &str| s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let n = digits(item);
    let channels: usize = item[..n]
        .parse()
        .map_err(|_| "must start with its channels, e.g. 32k3s2".to_string())?;
    let (mut kernel, mut stride, mut padding) = (3, 1, None);
    let mut rest = &item[n..];
    while let Some(key) = rest.chars().next() {
        let m = digits(&rest[1..]);
        let value: usize = rest[1..1 + m]
            .parse()
            .map_err(|_| format!("'{key}' needs a number after it (k: kernel, s: stride, p: padding)"))?;
        match key {
            'k' => kernel = value,
            's' => stride = value,
            'p' => padding = Some(value),
            _ => return Err(format!("unknown field '{key}' (k: kernel, s: stride, p: padding)")),
        }
        rest = &rest[1 + m..];
    }
    if channels == 0 || kernel == 0 || stride == 0 {
        return Err("channels, kernel and stride must be at least 1".into());
    }
    Ok(ConvLayer {
        channels,
        kernel,
        stride,
        padding: padding.unwrap_or((kernel - 1) / 2),
    })
}

/// The shapes of every convolution of a convolutional VAE, checked before any parameter
/// is created: the encoder's, the decoder's transposed ones, and its output layer.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvPlan {
    encoder: Vec<ConvGeometry>,
    decoder: Vec<ConvGeometry>,
    out: ConvGeometry,
}

fn geometry(transposed: bool, cin: usize, cout: usize, size: (usize, usize), l: &ConvLayer) -> ConvGeometry {
    ConvGeometry {
        transposed,
        in_channels: cin,
        out_channels: cout,
        in_size: size,
        kernel: (l.kernel, l.kernel),
        stride: (l.stride, l.stride),
        padding: (l.padding, l.padding),
        output_padding: (0, 0),
    }
}

impl ConvPlan {
    /// The plan for images of `shape` through `layers`, or an error naming the layer
    /// where the shapes stop fitting.
    pub fn new(shape: ImageShape, layers: &[ConvLayer]) -> Result<Self, ConfigError> {
        let err = |message: String| ConfigError { field: "arch", message };
        let first = *layers
            .first()
            .ok_or_else(|| err("needs at least one convolution, e.g. conv:32k3s2".into()))?;
        let (mut c, mut size) = (shape.channels, (shape.height, shape.width));
        let mut encoder = Vec::new();
        for (i, l) in layers.iter().enumerate() {
            let g = geometry(false, c, l.channels, size, l);
            let out = g.out_size().map_err(|e| {
                err(format!(
                    "layer {} ({l}) does not fit its {c}x{}x{} input: {e}",
                    i + 1,
                    size.0,
                    size.1
                ))
            })?;
            encoder.push(g);
            (c, size) = (l.channels, out);
        }
        let mut decoder = Vec::new();
        for (j, l) in layers.iter().enumerate().rev() {
            let target = encoder[j].in_size;
            let mut g = geometry(true, c, l.channels, size, l);
            let (h, w) = g.out_size().map_err(|e| {
                err(format!(
                    "the transposed convolution mirroring layer {} ({l}): {e}",
                    j + 1
                ))
            })?;
            let pad = |got: usize, want: usize| want.checked_sub(got).filter(|&p| p < l.stride);
            match (pad(h, target.0), pad(w, target.1)) {
                (Some(ph), Some(pw)) => g.output_padding = (ph, pw),
                _ => {
                    return Err(err(format!(
                        "the transposed convolution mirroring layer {} ({l}) takes {c}x{}x{} to {h}x{w}, and no output padding below the stride {} makes it the {}x{} that layer {} read",
                        j + 1,
                        size.0,
                        size.1,
                        l.stride,
                        target.0,
                        target.1,
                        j + 1
                    )));
                }
            }
            decoder.push(g);
            (c, size) = (l.channels, target);
        }
        let last = ConvLayer {
            stride: 1,
            padding: (first.kernel - 1) / 2,
            ..first
        };
        let out = geometry(true, c, shape.channels, size, &last);
        if out.out_size() != Ok(size) {
            return Err(err(format!(
                "the output layer (kernel {}, stride 1) cannot keep the {}x{} size: give the first layer an odd kernel",
                first.kernel, size.0, size.1
            )));
        }
        Ok(ConvPlan { encoder, decoder, out })
    }

    /// The plan of a model's configuration (`None` for a dense model).
    pub fn of(config: &crate::VaeConfig) -> Option<Result<Self, ConfigError>> {
        let Arch::Conv { layers } = &config.arch else {
            return None;
        };
        let shape = config.shape.ok_or(ConfigError {
            field: "arch",
            message: "needs the images' shape".into(),
        });
        Some(shape.and_then(|s| Self::new(s, layers)))
    }

    /// The encoder's convolutions, input side first.
    pub fn encoder_convs(&self) -> &[ConvGeometry] {
        &self.encoder
    }

    /// The decoder's transposed convolutions (`decoder.<dense layers>`, ...), before its
    /// output layer.
    pub fn decoder_convs(&self) -> &[ConvGeometry] {
        &self.decoder
    }

    /// The decoder's output layer (`decoder.out`).
    pub fn output_conv(&self) -> &ConvGeometry {
        &self.out
    }

    /// Values the last convolution puts out: the dense layers' input.
    pub fn flat(&self) -> usize {
        self.encoder.last().map_or(0, ConvGeometry::output_len)
    }

    /// The encoder's trunk in `scope`: the convolutions (`0`, `1`, ...), each followed by
    /// `act` (channels-last between two [`Layout`] conversions, so that the dense layers see
    /// PyTorch's flatten order), then dense layers of the `hidden` widths. The weights' PyTorch shapes are
    /// appended to `shapes`.
    pub(crate) fn encoder<T: Float>(
        &self,
        scope: &mut ParamScope<T>,
        hidden: &[usize],
        act: Activation,
        rng: &mut impl Rng,
        shapes: &mut Vec<(String, Vec<usize>)>,
    ) -> Sequential<T> {
        let mut layers: Vec<Box<dyn Layer<T>>> = vec![layout(self.encoder[0].in_channels, true)];
        for (i, g) in self.encoder.iter().enumerate() {
            layers.push(Box::new(conv(scope, &i.to_string(), *g, Some(act), rng, shapes)));
        }
        layers.push(layout(self.decoder[0].in_channels, false));
        layers.push(Box::new(Mlp::numbered_from(
            scope,
            self.encoder.len(),
            self.flat(),
            hidden,
            act,
            rng,
        )));
        Sequential(layers)
    }

    /// The decoder in `scope`: dense layers from `latent` to the last convolution's output
    /// (the `hidden` widths reversed, without the last), the transposed convolutions, and
    /// the output layer (`out`, no activation), channels-last from the first transposed
    /// convolution to the output layer, whose result is back in `[C, H, W]` order.
    pub(crate) fn decoder<T: Float>(
        &self,
        scope: &mut ParamScope<T>,
        hidden: &[usize],
        latent: usize,
        act: Activation,
        rng: &mut impl Rng,
        shapes: &mut Vec<(String, Vec<usize>)>,
    ) -> (Sequential<T>, Sequential<T>) {
        let widths: Vec<usize> = hidden[..hidden.len().saturating_sub(1)]
            .iter()
            .rev()
            .copied()
            .chain([self.flat()])
            .collect();
        let mut layers: Vec<Box<dyn Layer<T>>> = vec![
            Box::new(Mlp::new(scope, latent, &widths, act, rng)),
            layout(self.decoder[0].in_channels, true),
        ];
        for (j, g) in self.decoder.iter().enumerate() {
            let name = (widths.len() + j).to_string();
            layers.push(Box::new(conv(scope, &name, *g, Some(act), rng, shapes)));
        }
        let out = conv(scope, "out", self.out, None, rng, shapes);
        let out = Sequential(vec![Box::new(out), layout(self.out.out_channels, false)]);
        (Sequential(layers), out)
    }
}

/// The conversion of images of `channels` to channels-last (`to_channels_last`) or back.
fn layout<T: Float>(channels: usize, to_channels_last: bool) -> Box<dyn Layer<T>> {
    Box::new(Layout {
        channels,
        to_channels_last,
    })
}

/// A convolution named `name` in `scope`, its weight's shape appended to `shapes`.
fn conv<T: Float>(
    scope: &mut ParamScope<T>,
    name: &str,
    g: ConvGeometry,
    act: Option<Activation>,
    rng: &mut impl Rng,
    shapes: &mut Vec<(String, Vec<usize>)>,
) -> Conv {
    let c = Conv::new(&mut scope.child(name), g, act, rng).expect("the plan checked the shapes");
    let weight = Layer::<T>::named(&c).swap_remove(0).0;
    shapes.push((weight, g.weight_shape().to_vec()));
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_print_back() {
        let a: Arch = "conv:32k3s2,64k3s2".parse().unwrap();
        let want = [(32, 3, 2, 1), (64, 3, 2, 1)].map(|(channels, kernel, stride, padding)| ConvLayer {
            channels,
            kernel,
            stride,
            padding,
        });
        assert_eq!(a, Arch::Conv { layers: want.to_vec() });
        assert_eq!(a.to_string(), "conv:32k3s2,64k3s2");
        assert_eq!(
            "conv:8k4s2p0,8".parse::<Arch>().unwrap().to_string(),
            "conv:8k4s2p0,8k3s1"
        );
        assert_eq!("MLP".parse::<Arch>(), Ok(Arch::Mlp));
        for (bad, says) in [
            ("conv", "expected mlp or conv:LAYERS"),
            ("conv:", "must start with its channels"),
            ("conv:32k", "'k' needs a number"),
            ("conv:32x3", "unknown field 'x'"),
            ("conv:0k3", "at least 1"),
            ("conv:32k3s0", "at least 1"),
        ] {
            let e = bad.parse::<Arch>().unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
