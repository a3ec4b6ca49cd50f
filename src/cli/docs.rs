//! `ferry completions SHELL` and `ferry manpage`: shell completions and a roff man page,
//! generated at run time from the same clap definitions that parse the command line, so they
//! can never describe flags the binary does not have. The `.deb` installs what these print
//! (README, "Packaging").

use std::io::{self, Write as _};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::CommandFactory as _;
use clap_complete::Shell;

use super::Cli;

/// Prints the completion script for `shell` on stdout.
pub fn completions(shell: Shell) -> anyhow::Result<ExitCode> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "ferry", &mut script);
    write_stdout(&script)
}

/// Prints the man page (section 1) on stdout.
pub fn manpage() -> anyhow::Result<ExitCode> {
    write_stdout(&render_manpage().context("cannot render the man page")?)
}

/// One page: `ferry`'s name, synopsis, description and options, then a COMMANDS section with
/// each command's synopsis and options (so `man ferry` documents every flag, with no
/// references to per-command pages that are not installed), then the version.
pub fn render_manpage() -> io::Result<Vec<u8>> {
    let cmd = Cli::command();
    let man = clap_mangen::Man::new(cmd.clone());
    let mut page = Vec::new();
    // The title keeps roff's preamble; every later part is rendered without it.
    man.render_title(&mut page)?;
    page.extend(part(|w| man.render_name_section(w))?);
    page.extend(part(|w| man.render_synopsis_section(w))?);
    page.extend(part(|w| man.render_description_section(w))?);
    page.extend(part(|w| man.render_options_section(w))?);
    writeln!(page, ".SH COMMANDS")?;
    for sub in cmd.get_subcommands().filter(|sub| sub.get_name() != "help") {
        let name = format!("ferry {}", sub.get_name());
        let about = sub.get_about().map(ToString::to_string).unwrap_or_default();
        let man = clap_mangen::Man::new(sub.clone().bin_name(name.clone()));
        writeln!(page, ".SS \"{name}\"")?;
        if !about.is_empty() {
            writeln!(page, "{}", roff_text(&about))?;
            writeln!(page, ".PP")?;
        }
        page.extend(without_heading(&part(|w| man.render_synopsis_section(w))?));
        page.extend(without_heading(&part(|w| man.render_options_section(w))?));
    }
    page.extend(part(|w| man.render_version_section(w))?);
    Ok(page)
}

/// One rendered part, without the preamble roff puts at the top of every rendering.
fn part(render: impl FnOnce(&mut Vec<u8>) -> io::Result<()>) -> io::Result<Vec<u8>> {
    let mut rendered = Vec::new();
    render(&mut rendered)?;
    let text = String::from_utf8_lossy(&rendered);
    let mut body = String::new();
    for line in text
        .lines()
        .filter(|line| !line.starts_with(".ie \\n(.g .ds Aq") && !line.starts_with(".el .ds Aq"))
    {
        body.push_str(line);
        body.push('\n');
    }
    Ok(body.into_bytes())
}

/// A rendered section without its `.SH` line (it becomes part of a command's subsection).
fn without_heading(section: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(section);
    let mut body = String::new();
    for line in text.lines().filter(|line| !line.starts_with(".SH")) {
        body.push_str(line);
        body.push('\n');
    }
    body.into_bytes()
}

/// Plain text as a roff paragraph: a line starting with `.` or `'` would be a request.
fn roff_text(text: &str) -> String {
    let text = text.replace('\\', "\\e");
    match text.chars().next() {
        Some('.' | '\'') => format!("\\&{text}"),
        _ => text,
    }
}

/// Writes to stdout; a closed pipe (`ferry manpage | head`) is not an error worth a message.
fn write_stdout(bytes: &[u8]) -> anyhow::Result<ExitCode> {
    let mut stdout = io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(e) => Err(e).context("cannot write to standard output"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_man_page_documents_every_command_and_its_flags() {
        let page = String::from_utf8(render_manpage().unwrap()).unwrap();
        assert!(page.contains("\n.TH ferry 1 "), "{page}");
        // roff's preamble once, no references to per-command pages that are not installed.
        assert_eq!(page.matches(".ds Aq").count(), 2, "{page}");
        assert!(!page.contains("ferry\\-serve(1)"), "{page}");
        for command in [
            "serve",
            "send",
            "note",
            "listen",
            "chat",
            "completions",
            "manpage",
        ] {
            assert!(
                page.contains(&format!(".SS \"ferry {command}\"")),
                "{command}"
            );
        }
        // Flags of the commands, not only of `ferry` itself.
        for flag in [
            "idle\\-timeout\\-secs",
            "max\\-per\\-peer",
            "\\-\\-plain",
            "\\-\\-wait",
        ] {
            assert!(page.contains(flag), "{flag} missing:\n{page}");
        }
        assert_eq!(page.matches(".SH COMMANDS").count(), 1);
    }

    #[test]
    fn roff_text_cannot_start_a_request() {
        assert_eq!(roff_text(".x"), "\\&.x");
        assert_eq!(roff_text("a\\b"), "a\\eb");
        assert_eq!(roff_text("plain"), "plain");
    }
}
