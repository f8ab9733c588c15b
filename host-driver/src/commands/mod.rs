//! One file per subcommand.

pub mod agent;
