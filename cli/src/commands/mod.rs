//! One module per `otto` subcommand.

pub(crate) mod explain;
