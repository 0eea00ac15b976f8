//! Writes portsniff's man page and shell completions, generated from its clap definitions
//! so they never disagree with `--help`:
//!
//! ```sh
//! cargo run --example gen_docs -- DIR
//! ```
//!
//! writes `DIR/portsniff.1` and the completions `DIR/portsniff.bash`, `DIR/_portsniff`
//! (zsh), `DIR/portsniff.fish`, `DIR/portsniff.elv` (elvish) and `DIR/_portsniff.ps1`
//! (PowerShell). The README's Install section says where each goes.

use clap::CommandFactory;
use clap_complete::Shell;
use clap_mangen::roff::{roman, Roff};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn generate(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut cmd = portsniff::cli::Cli::command();
    let man = dir.join("portsniff.1");
    std::fs::write(&man, man_page(&cmd)?)?;
    let mut written = vec![man];
    for shell in [
        Shell::Bash,
        Shell::Zsh,
        Shell::Fish,
        Shell::Elvish,
        Shell::PowerShell,
    ] {
        written.push(clap_complete::generate_to(
            shell,
            &mut cmd,
            "portsniff",
            dir,
        )?);
    }
    Ok(written)
}

/// clap_mangen's page, with `--help`'s closing text (examples, exit status) as the
/// EXAMPLES and EXIT STATUS sections, in no-fill mode so the columns stay aligned
/// (clap_mangen would reflow it into one paragraph).
fn man_page(cmd: &clap::Command) -> std::io::Result<Vec<u8>> {
    let after = cmd
        .get_after_help()
        .map(|h| h.to_string())
        .unwrap_or_default();
    let man = clap_mangen::Man::new(cmd.clone().after_help(None::<&str>))
        .section("1")
        .manual("portsniff manual");
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    man.render_description_section(&mut page)?;
    man.render_options_section(&mut page)?;
    let mut extra = Roff::new();
    for block in after.split("\n\n") {
        let (title, body) = match block.strip_prefix("Examples:\n") {
            Some(examples) => ("EXAMPLES", examples.to_string()),
            None => ("EXIT STATUS", block.to_string()),
        };
        extra.control("SH", [title]).control("nf", []);
        for line in body.lines() {
            extra.text([roman(line)]);
        }
        extra.control("fi", []);
    }
    extra.to_writer(&mut page)?;
    man.render_version_section(&mut page)?;
    Ok(page)
}

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(dir), None) = (args.next(), args.next()) else {
        eprintln!("usage: cargo run --example gen_docs -- DIR");
        return ExitCode::from(2);
    };
    match generate(Path::new(&dir)) {
        Ok(files) => {
            for f in files {
                println!("{}", f.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!(
                "gen_docs: cannot write to {}: {e}",
                Path::new(&dir).display()
            );
            ExitCode::from(2)
        }
    }
}
