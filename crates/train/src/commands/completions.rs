//! `vae-train completions SHELL`: the completion script of a shell (clap_complete), from the
//! parser the binary runs (`cli::command`, passed in).

use std::io::Write;

use anyhow::{Context, Result};
use clap::Args;
use clap_complete::Shell;

/// Flags of `vae-train completions`.
#[derive(Args, Debug, Clone)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh, fish, elvish or powershell.
    pub shell: Shell,
}

/// Writes the completion script of `a.shell` for the parser `cmd` to `out`.
pub fn print(a: &CompletionsArgs, mut cmd: clap::Command, out: &mut impl Write) -> Result<()> {
    let mut script = Vec::new();
    clap_complete::generate(a.shell, &mut cmd, "vae-train", &mut script);
    if a.shell == Shell::Bash {
        // clap_complete 4.6 spells the states of a hyphenated binary's subcommands
        // `vae__train__subcmd__X` but their case labels `vae__subcmd__train__subcmd__X`, so
        // bash would complete nothing after a subcommand: the labels are put right here.
        let text = String::from_utf8_lossy(&script).replace("vae__subcmd__train__", "vae__train__");
        script = text.into_bytes();
    }
    out.write_all(&script)
        .and_then(|()| out.flush())
        .context("writing the completion script")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bash_states_match_their_case_labels() {
        let mut out = Vec::new();
        print(&CompletionsArgs { shell: Shell::Bash }, crate::cli::command(), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        for line in text
            .lines()
            .filter(|l| l.trim_start().starts_with("cmd=\"") && l.trim() != "cmd=\"\"")
        {
            let state = line.trim().trim_start_matches("cmd=\"").trim_end_matches('"');
            assert!(text.contains(&format!("        {state})")), "no case for {state}");
        }
    }

    #[test]
    fn every_shell_gets_a_script_naming_the_flags() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish, Shell::Elvish, Shell::PowerShell] {
            let mut out = Vec::new();
            print(&CompletionsArgs { shell }, crate::cli::command(), &mut out).unwrap();
            let text = String::from_utf8(out).unwrap();
            for word in ["vae-train", "batch-size", "reconstruct", "run-dir"] {
                assert!(text.contains(word), "{shell}: no {word}");
            }
        }
    }
}
