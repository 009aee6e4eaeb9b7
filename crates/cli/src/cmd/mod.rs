// One module per subcommand.
