//! The libraries cannot know the command line, so their messages name an option in backticks
//! (``the `force` option``); where an error reaches the user, the command line adds the flag that
//! sets each option it recognises, on the same line (``(`force`: --force)``).

/// The command that ran: the deepest subcommand named by the leading words of `args` (the
/// program name excluded).
fn command_run<'a>(root: &'a clap::Command, args: &[String]) -> &'a clap::Command {
    let mut command = root;
    for word in args {
        match command.find_subcommand(word) {
            Some(sub) => command = sub,
            None => break,
        }
    }
    command
}

/// `message` with `` (`name`: --flag) `` appended for every long flag of the command that ran
/// whose name (or the name with `-` read as `_` or a space) appears in backticks in `message`.
pub fn with_flag_hints(message: &str, root: &clap::Command, args: &[String]) -> String {
    let command = command_run(root, args);
    let mut hints = Vec::new();
    for arg in command.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        let spellings = [long.to_string(), long.replace('-', "_"), long.replace('-', " ")];
        if let Some(named) = spellings.iter().find(|s| message.contains(&format!("`{s}`"))) {
            if !message.contains(&format!("--{long}"))
                && !hints.iter().any(|h: &String| h.ends_with(&format!("--{long}")))
            {
                hints.push(format!("`{named}`: --{long}"));
            }
        }
    }
    if hints.is_empty() {
        message.to_string()
    } else {
        format!("{message} ({})", hints.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli() -> clap::Command {
        clap::Command::new("tokenscale").subcommand(
            clap::Command::new("ckpt").subcommand(
                clap::Command::new("update")
                    .arg(
                        clap::Arg::new("overwrite")
                            .long("overwrite")
                            .action(clap::ArgAction::SetTrue),
                    )
                    .arg(clap::Arg::new("max_new").long("max-new-tokens")),
            ),
        )
    }

    fn words(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_flag_of_a_named_option_is_added_on_the_same_line() {
        let args = words(&["ckpt", "update", "/x", "--overwrite"]);
        let out = with_flag_hints(
            "x/config.json exists; the `overwrite` option replaces it",
            &cli(),
            &args,
        );
        assert_eq!(
            out,
            "x/config.json exists; the `overwrite` option replaces it (`overwrite`: --overwrite)"
        );
        let out = with_flag_hints("the `max_new_tokens` option must be positive", &cli(), &args);
        assert!(out.ends_with("(`max_new_tokens`: --max-new-tokens)"), "{out}");
    }

    #[test]
    fn messages_without_a_known_option_are_unchanged() {
        let args = words(&["ckpt", "update"]);
        for message in ["no `flops` column", "use --overwrite to replace it", "plain"] {
            assert_eq!(with_flag_hints(message, &cli(), &args), message);
        }
        // Another command's flags are not offered.
        assert_eq!(
            with_flag_hints("the `overwrite` option", &cli(), &words(&["ckpt"])),
            "the `overwrite` option"
        );
    }
}
