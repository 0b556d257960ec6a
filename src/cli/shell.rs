//! `completions` and `manpage`: what an operator's shell expects, generated from the same clap
//! definitions the parser uses ([`super::Cli`]), so that they cannot drift from the commands.
//! Neither reads the configuration nor opens a store: they run on a machine where the daemon is
//! only being installed. Not for anything that needs the configuration.

use std::io::Write;

use clap::{Args, CommandFactory};
use roff::{bold, roman, Roff};

/// What `completions --help` adds after the arguments: where each shell looks for the script.
pub const COMPLETIONS_AFTER_HELP: &str = "\
Install the script where your shell looks for completions, e.g.:
  codearts-syncd completions bash > /etc/bash_completion.d/codearts-syncd
  codearts-syncd completions bash | install -D -m 0644 /dev/stdin /usr/share/bash-completion/completions/codearts-syncd
  codearts-syncd completions zsh > /usr/local/share/zsh/site-functions/_codearts-syncd
  codearts-syncd completions fish > ~/.config/fish/completions/codearts-syncd.fish
  codearts-syncd completions elvish >> ~/.config/elvish/rc.elv
  codearts-syncd completions powershell >> $PROFILE
Then start a new shell.";

/// What `manpage --help` adds after the arguments: where to put the page.
pub const MANPAGE_AFTER_HELP: &str = "\
Save the page and read it with man, e.g.:
  codearts-syncd manpage > codearts-syncd.1 && man ./codearts-syncd.1
  codearts-syncd manpage | gzip | install -D -m 0644 /dev/stdin /usr/share/man/man1/codearts-syncd.1.gz";

#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to write the completion script for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Prints the completion script for `args.shell` to stdout.
pub(super) fn completions(args: CompletionsArgs) -> anyhow::Result<u8> {
    let mut cmd = super::Cli::command();
    let name = cmd.get_name().to_string();
    // Generated into memory first: the generators panic on a failed write (a closed pipe),
    // where writing it ourselves reports the error and its exit code.
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, &name, &mut script);
    if args.shell == clap_complete::Shell::Bash {
        script = bash_hyphen_fix(&script, &name);
    }
    print(&script)
}

/// clap_complete's bash script spells a subcommand's state two ways when the binary's name has a
/// hyphen: its loop sets `codearts__syncd__subcmd__jobs`, its `case` arms wait for
/// `codearts__subcmd__syncd__subcmd__jobs`, so nothing after the first word completes
/// (clap-rs/clap#6421, #6529). The arms are renamed to what the loop sets; once the generator
/// is fixed upstream, there is nothing to rename.
fn bash_hyphen_fix(script: &[u8], bin: &str) -> Vec<u8> {
    let text = String::from_utf8_lossy(script);
    let wrong = format!("{}__subcmd__", bin.replace('-', "__subcmd__"));
    let right = format!("{}__subcmd__", bin.replace('-', "__"));
    text.replace(&wrong, &right).into_bytes()
}

/// Prints the roff man page of the binary (section 1) to stdout: clap_mangen's title, synopsis,
/// description and global options, then every command with its arguments (one page: the
/// per-command pages clap_mangen would refer to are not installed), then the exit codes.
pub(super) fn manpage() -> anyhow::Result<u8> {
    let cmd = super::Cli::command();
    let man = clap_mangen::Man::new(cmd.clone());
    let mut page = Vec::new();
    // Each part starts with the same roff preamble; the page needs it once.
    let preamble = Roff::new().render();
    let mut part = |render: &dyn Fn(&mut Vec<u8>) -> std::io::Result<()>| {
        let mut buf = Vec::new();
        render(&mut buf)?;
        let body = match buf.strip_prefix(preamble.as_bytes()) {
            Some(body) if !page.is_empty() => body,
            _ => &buf[..],
        };
        page.extend_from_slice(body);
        std::io::Result::Ok(())
    };
    part(&|w| man.render_title(w))?;
    part(&|w| man.render_name_section(w))?;
    part(&|w| man.render_synopsis_section(w))?;
    part(&|w| man.render_description_section(w))?;
    part(&|w| man.render_options_section(w))?;
    part(&|w| commands_section(&cmd).to_writer(w))?;
    part(&|w| exit_status_section().to_writer(w))?;
    part(&|w| man.render_version_section(w))?;
    print(&page)
}

/// `COMMANDS`: every runnable command (`jobs list`, not `jobs`), its arguments, what it does.
fn commands_section(cmd: &clap::Command) -> Roff {
    let mut roff = Roff::new();
    roff.control("SH", ["COMMANDS"]);
    let mut path = vec![cmd.get_name().to_string()];
    for sub in visible_subcommands(cmd) {
        command_entry(&mut roff, &mut path, sub);
    }
    roff
}

fn visible_subcommands(cmd: &clap::Command) -> impl Iterator<Item = &clap::Command> {
    cmd.get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
}

fn command_entry(roff: &mut Roff, path: &mut Vec<String>, cmd: &clap::Command) {
    path.push(cmd.get_name().to_string());
    if cmd.has_subcommands() {
        for sub in visible_subcommands(cmd) {
            command_entry(roff, path, sub);
        }
    } else {
        // Unbuilt, a command holds only its own arguments: the global ones are under OPTIONS.
        let args: Vec<&clap::Arg> = cmd.get_arguments().filter(|a| !a.is_hide_set()).collect();
        roff.control("TP", []);
        let mut line = vec![bold(path.join(" "))];
        for arg in &args {
            line.push(roman(format!(" {}", arg_synopsis(arg))));
        }
        roff.text(line);
        if let Some(about) = cmd.get_long_about().or(cmd.get_about()) {
            for (i, paragraph) in about.to_string().split("\n\n").enumerate() {
                if i > 0 {
                    roff.control("sp", []);
                }
                roff.text([roman(paragraph.trim())]);
            }
        }
        // Before the arguments: after their list (`.RE`) it would lose the entry's indent.
        if let Some(after) = cmd.get_after_long_help().or(cmd.get_after_help()) {
            roff.control("sp", []);
            roff.control("nf", []);
            for l in after.to_string().lines() {
                roff.text([roman(l)]);
            }
            roff.control("fi", []);
        }
        if !args.is_empty() {
            roff.control("RS", []);
            for arg in &args {
                roff.control("TP", []);
                roff.text([bold(arg_name(arg))]);
                let help = arg_help(arg);
                if !help.is_empty() {
                    roff.text([roman(help)]);
                }
            }
            roff.control("RE", []);
        }
    }
    path.pop();
}

/// `--kind <KIND>`, `<SHELL>`, `--json`: how the argument is written.
fn arg_name(arg: &clap::Arg) -> String {
    let value = arg
        .get_action()
        .takes_values()
        .then(|| match arg.get_value_names() {
            Some(names) => names
                .iter()
                .map(|n| format!("<{n}>"))
                .collect::<Vec<_>>()
                .join(" "),
            None => format!("<{}>", arg.get_id().as_str().to_uppercase()),
        });
    let flag = match (arg.get_long(), arg.get_short()) {
        (Some(long), _) => Some(format!("--{long}")),
        (None, Some(short)) => Some(format!("-{short}")),
        (None, None) => None,
    };
    match (flag, value) {
        (Some(f), Some(v)) => format!("{f} {v}"),
        (Some(f), None) => f,
        (None, Some(v)) => v,
        (None, None) => arg.get_id().to_string(),
    }
}

/// The argument in a synopsis: optional ones in brackets, repeatable ones with `...`.
fn arg_synopsis(arg: &clap::Arg) -> String {
    let mut s = arg_name(arg);
    if matches!(arg.get_action(), clap::ArgAction::Append) {
        s.push_str("...");
    }
    if arg.is_required_set() {
        s
    } else {
        format!("[{s}]")
    }
}

/// The argument's help, with its possible values and default as `--help` shows them.
fn arg_help(arg: &clap::Arg) -> String {
    let mut help = arg
        .get_long_help()
        .or(arg.get_help())
        .map(|h| h.to_string())
        .unwrap_or_default();
    // A flag's possible values are `true` and `false`: nothing to say.
    let possible = if arg.get_action().takes_values() {
        arg.get_possible_values()
    } else {
        Vec::new()
    };
    let values: Vec<String> = possible
        .iter()
        .filter(|v| !v.is_hide_set())
        .map(|v| v.get_name().to_string())
        .collect();
    if !values.is_empty() {
        help.push_str(&format!(" [possible values: {}]", values.join(", ")));
    }
    let defaults: Vec<String> = arg
        .get_default_values()
        .iter()
        .map(|d| d.to_string_lossy().into_owned())
        .collect();
    if !defaults.is_empty() {
        help.push_str(&format!(" [default: {}]", defaults.join(", ")));
    }
    help
}

/// `EXIT STATUS`: the codes scripts and the systemd unit act on.
fn exit_status_section() -> Roff {
    let mut roff = Roff::new();
    roff.control("SH", ["EXIT STATUS"]);
    for (code, meaning) in [
        (0, "success"),
        (
            super::EXIT_FAILURE,
            "the work failed (network, a store error that may pass)",
        ),
        (
            super::EXIT_INVALID,
            "invalid input: configuration, parameters, a rejected job, a usage error, a read-only \
             command naming a store that does not exist",
        ),
        (
            super::EXIT_STORE_UNUSABLE,
            "the store is damaged or was written by a newer version; restarting will not help",
        ),
        (130, "a second SIGINT ended the drain"),
        (143, "a second SIGTERM ended the drain"),
    ] {
        roff.control("TP", []);
        roff.text([bold(code.to_string())]);
        roff.text([roman(meaning)]);
    }
    roff
}

fn print(bytes: &[u8]) -> anyhow::Result<u8> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)?;
    out.flush()?;
    Ok(0)
}
