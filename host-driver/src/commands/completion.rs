//! `netcontainer completion SHELL` and the hidden `netcontainer man DIR`:
//! shell completions and man pages generated from the clap definitions.

use std::path::{Path, PathBuf};

use clap::{Args, CommandFactory};
use clap_complete::Shell;

use crate::error::Error;

#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  \
    netcontainer completion bash > /usr/share/bash-completion/completions/netcontainer\n  \
    netcontainer completion zsh > /usr/local/share/zsh/site-functions/_netcontainer\n  \
    netcontainer completion fish > /usr/share/fish/vendor_completions.d/netcontainer.fish")]
pub struct CompletionArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    shell: Shell,
}

#[derive(Args, Debug)]
#[command(after_help = "Example:\n  netcontainer man target/man   (what scripts/build-man does)")]
pub struct ManArgs {
    /// Directory to write netcontainer.1 and netcontainer-COMMAND.1 into.
    dir: PathBuf,
}

/// The completion script for `shell`.
pub fn completion(shell: Shell) -> Vec<u8> {
    let mut cmd = crate::Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "netcontainer", &mut out);
    out
}

pub fn run_completion(a: CompletionArgs) -> Result<(), Error> {
    use std::io::Write;
    std::io::stdout()
        .write_all(&completion(a.shell))
        .map_err(|e| Error::Usage(format!("writing the completion script: {e}")))
}

/// Man pages: `(file name, roff)` for the command and each subcommand
/// (`netcontainer-up.1`, ...; `netcontainer-agent-apply.1` for nested ones).
pub fn man_pages() -> Result<Vec<(String, Vec<u8>)>, std::io::Error> {
    let mut cmd = crate::Cli::command();
    cmd.build();
    let mut pages = Vec::new();
    add_pages(&cmd, "netcontainer", &mut pages)?;
    Ok(pages)
}

fn add_pages(
    cmd: &clap::Command,
    name: &str,
    pages: &mut Vec<(String, Vec<u8>)>,
) -> Result<(), std::io::Error> {
    if cmd.is_hide_set() {
        return Ok(());
    }
    let page = cmd.clone().display_name(name.to_string());
    let mut out = Vec::new();
    clap_mangen::Man::new(page).render(&mut out)?;
    pages.push((format!("{name}.1"), out));
    for sub in cmd.get_subcommands() {
        if sub.get_name() == "help" {
            continue;
        }
        add_pages(sub, &format!("{name}-{}", sub.get_name()), pages)?;
    }
    Ok(())
}

pub fn run_man(a: ManArgs) -> Result<(), Error> {
    let file_err = |what: &'static str, path: &Path, e: std::io::Error| {
        Error::Usage(format!("{what} {}: {e}", path.display()))
    };
    std::fs::create_dir_all(&a.dir).map_err(|e| file_err("creating", &a.dir, e))?;
    let pages = man_pages().map_err(|e| Error::Usage(format!("rendering man pages: {e}")))?;
    for (file, roff) in pages {
        let path = a.dir.join(&file);
        std::fs::write(&path, roff).map_err(|e| file_err("writing", &path, e))?;
        println!("{}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bash_completion_mentions_every_subcommand() {
        let script = String::from_utf8(completion(Shell::Bash)).unwrap();
        for sub in crate::Cli::command().get_subcommands() {
            if sub.is_hide_set() {
                continue;
            }
            assert!(
                script.contains(sub.get_name()),
                "bash completion lacks {}",
                sub.get_name()
            );
        }
        assert!(script.contains("--publish") && script.contains("--parent"));
        for shell in [Shell::Zsh, Shell::Fish] {
            let s = String::from_utf8(completion(shell)).unwrap();
            assert!(s.contains("port") && s.contains("watch"), "{shell}");
        }
    }

    #[test]
    fn man_pages_per_subcommand() {
        let pages = man_pages().unwrap();
        let names: Vec<&str> = pages.iter().map(|(n, _)| n.as_str()).collect();
        for n in [
            "netcontainer.1",
            "netcontainer-up.1",
            "netcontainer-port.1",
            "netcontainer-ls.1",
        ] {
            assert!(names.contains(&n), "{n} missing from {names:?}");
        }
        assert!(
            !names.contains(&"netcontainer-man.1"),
            "the hidden command has no page"
        );
        let up = String::from_utf8(
            pages
                .iter()
                .find(|(n, _)| n == "netcontainer-up.1")
                .unwrap()
                .1
                .clone(),
        )
        .unwrap();
        // roff escapes each `-`: `--parent` is `\-\-parent` in the source.
        assert!(up.contains("\\-\\-parent"), "{up}");
        assert!(up.contains("netcontainer\\-up"), "{up}");
    }

    #[test]
    fn every_command_help_shows_an_example() {
        fn check(cmd: &clap::Command, path: &str) {
            if cmd.get_name() == "help" {
                return;
            }
            let help = cmd
                .get_after_help()
                .map(|h| h.to_string())
                .unwrap_or_default();
            assert!(help.contains("Example"), "{path} --help shows no example");
            for s in cmd.get_subcommands() {
                check(s, &format!("{path} {}", s.get_name()));
            }
        }
        let cmd = crate::Cli::command();
        for s in cmd.get_subcommands() {
            check(s, s.get_name());
        }
    }
}
