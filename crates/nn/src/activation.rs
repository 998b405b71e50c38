//! Activation functions, parseable from the command line.

use std::fmt;
use std::str::FromStr;

use vae_autograd::{Float, Tape, Var};

/// An elementwise nonlinearity between layers (serialised as its name, e.g. `leaky-relu:0.2`).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Activation {
    /// `max(x, 0)`.
    Relu,
    /// `x` if positive, else `slope * x`.
    LeakyRelu(f64),
    /// The logistic function.
    Sigmoid,
    /// Hyperbolic tangent.
    Tanh,
}

impl Activation {
    /// Records the activation of `x` on the tape.
    pub fn apply<T: Float>(self, tape: &mut Tape<T>, x: Var) -> Var {
        match self {
            Activation::Relu => tape.relu(x),
            Activation::LeakyRelu(s) => tape.leaky_relu(x, T::c(s)),
            Activation::Sigmoid => tape.sigmoid(x),
            Activation::Tanh => tape.tanh(x),
        }
    }
}

impl Activation {
    /// The same function as the tape's fused dense layer takes it.
    pub fn dense<T: Float>(self) -> vae_autograd::DenseAct<T> {
        match self {
            Activation::Relu => vae_autograd::DenseAct::Relu,
            Activation::LeakyRelu(s) => vae_autograd::DenseAct::LeakyRelu(T::c(s)),
            Activation::Sigmoid => vae_autograd::DenseAct::Sigmoid,
            Activation::Tanh => vae_autograd::DenseAct::Tanh,
        }
    }
}

impl fmt::Display for Activation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Activation::Relu => write!(f, "relu"),
            Activation::LeakyRelu(s) => write!(f, "leaky-relu:{s}"),
            Activation::Sigmoid => write!(f, "sigmoid"),
            Activation::Tanh => write!(f, "tanh"),
        }
    }
}

/// An activation name that is not understood.
#[derive(Debug, thiserror::Error)]
#[error("unknown activation '{0}': expected relu, leaky-relu[:SLOPE] (slope >= 0, default 0.01), sigmoid or tanh")]
pub struct ParseActivationError(String);

impl FromStr for Activation {
    type Err = ParseActivationError;

    /// `relu`, `leaky-relu` (slope 0.01, PyTorch's default), `leaky-relu:0.2`, `sigmoid`,
    /// `tanh`; case-insensitive, `_` accepted for `-`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseActivationError(s.to_string());
        let lower = s.trim().to_ascii_lowercase().replace('_', "-");
        let (name, arg) = match lower.split_once(':') {
            Some((n, a)) => (n, Some(a)),
            None => (lower.as_str(), None),
        };
        let act = match (name, arg) {
            ("relu", None) => Activation::Relu,
            ("sigmoid", None) => Activation::Sigmoid,
            ("tanh", None) => Activation::Tanh,
            ("leaky-relu" | "leakyrelu", None) => Activation::LeakyRelu(0.01),
            ("leaky-relu" | "leakyrelu", Some(a)) => {
                let slope: f64 = a.parse().map_err(|_| err())?;
                if !(slope.is_finite() && slope >= 0.0) {
                    return Err(err());
                }
                Activation::LeakyRelu(slope)
            }
            _ => return Err(err()),
        };
        Ok(act)
    }
}

impl TryFrom<String> for Activation {
    type Error = ParseActivationError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Activation> for String {
    fn from(a: Activation) -> String {
        a.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_back() {
        for a in [
            Activation::Relu,
            Activation::LeakyRelu(0.2),
            Activation::Sigmoid,
            Activation::Tanh,
        ] {
            assert_eq!(a.to_string().parse::<Activation>().unwrap(), a);
        }
        assert_eq!("LeakyReLU".parse::<Activation>().unwrap(), Activation::LeakyRelu(0.01));
        assert!("leaky-relu:-1".parse::<Activation>().is_err());
        assert!("gelu".parse::<Activation>().is_err());
    }
}
