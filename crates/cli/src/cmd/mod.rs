// One module per subcommand.
pub mod demo;
pub mod forward;
pub mod inspect;
pub mod run;
pub mod bound;
pub mod fit;
pub mod score;
pub mod merge;
