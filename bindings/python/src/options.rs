//! The training keywords: the flags of `vae-train train`, parsed by the command line's own
//! parser (so every value is read, defaulted and validated as `vae-train` reads it), each
//! spelt as a Python keyword (`--batch-size` is `batch_size`).

use clap::FromArgMatches;
use clap::error::{ContextKind, ContextValue, ErrorKind};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use vae_train::flags::{TrainArgs, flag};
use vae_train::recipe::RecipeError;

/// The parser of `vae-train train`, with its defaults in the help.
fn train_command() -> clap::Command {
    vae_train::cli::command()
        .find_subcommand("train")
        .expect("vae-train has a train subcommand")
        .clone()
}

/// A flag as a keyword: `--batch-size` is `batch_size`.
pub fn keyword(flag: &str) -> String {
    flag.trim_start_matches("--").replace('-', "_")
}

/// The keyword of a recipe setting (`path` is `data`).
pub fn keyword_of_field(field: &str) -> String {
    keyword(&flag(field))
}

/// A recipe error with its settings spelt as keywords, as a `ValueError`.
pub fn recipe_error(e: RecipeError) -> PyErr {
    PyValueError::new_err(e.render(keyword_of_field))
}

/// The training keywords: (keyword, help with its default, whether it is a switch), in the
/// command line's order, hidden testing flags left out.
pub fn train_options() -> Vec<(String, String, bool)> {
    let command = train_command();
    // In the order of the flags' declaration (the help's defaults moved some to the end).
    let declared = <TrainArgs as clap::Args>::augment_args(clap::Command::new("train"));
    declared
        .get_arguments()
        .filter_map(|a| command.get_arguments().find(|b| b.get_id() == a.get_id()))
        .filter(|a| !a.is_hide_set())
        .filter_map(|a| {
            let long = a.get_long()?;
            if long == "help" {
                return None;
            }
            let help = a.get_help().map(ToString::to_string).unwrap_or_default();
            let switch = !a.get_action().takes_values();
            Some((keyword(long), help, switch))
        })
        .collect()
}

/// The older spellings of training keywords that are still taken: (alias, keyword), from
/// the flags' visible aliases (`exclude_digit` is `exclude_label`).
pub fn train_aliases() -> Vec<(String, String)> {
    let command = train_command();
    command
        .get_arguments()
        .filter_map(|a| Some((a.get_long()?, a.get_visible_aliases()?)))
        .flat_map(|(long, aliases)| aliases.into_iter().map(move |al| (keyword(al), keyword(long))))
        .collect()
}

/// The flags given as command-line words (`["--epochs", "3", "--dreg"]`), parsed.
pub fn train_args(words: &[String]) -> PyResult<TrainArgs> {
    let argv = std::iter::once("train".to_string()).chain(words.iter().cloned());
    let matches = train_command().try_get_matches_from(argv).map_err(clap_error)?;
    TrainArgs::from_arg_matches(&matches).map_err(clap_error)
}

/// A parse error with the keyword and the value that is wrong, as a `ValueError`.
fn clap_error(e: clap::Error) -> PyErr {
    let context = |kind| match e.get(kind) {
        Some(ContextValue::String(s)) => Some(s.clone()),
        Some(ContextValue::Strings(v)) => Some(v.join(", ")),
        _ => None,
    };
    let arg = context(ContextKind::InvalidArg).map(|a| keyword(a.split_whitespace().next().unwrap_or(&a)));
    let value = context(ContextKind::InvalidValue);
    let reason = std::error::Error::source(&e).map(|s| s.to_string());
    let message = match (e.kind(), arg, value) {
        (ErrorKind::ValueValidation | ErrorKind::InvalidValue, Some(arg), Some(value)) => {
            let valid = context(ContextKind::ValidValue).map(|v| format!(" (possible values: {v})"));
            format!(
                "{arg}: invalid value '{value}'{}",
                reason.map(|r| format!(": {r}")).or(valid).unwrap_or_default()
            )
        }
        (ErrorKind::ArgumentConflict, Some(arg), _) => {
            let other = context(ContextKind::PriorArg)
                .map_or_else(String::new, |p| keyword(p.split_whitespace().next().unwrap_or(&p)));
            format!("{arg} cannot be given with {other}")
        }
        _ => {
            let text = e.render().to_string();
            text.lines()
                .next()
                .unwrap_or("")
                .trim_start_matches("error: ")
                .to_string()
        }
    };
    PyValueError::new_err(message)
}
