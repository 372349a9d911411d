//! The `eexc` command line (the binary only): [`args`] says what each
//! command takes, [`commands`] what it does with it.

pub mod args;
pub mod commands;
