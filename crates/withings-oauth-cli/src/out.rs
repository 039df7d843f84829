//! Lines on stdout and stderr without panicking. `println!` panics when the reader has gone
//! (`withings-oauth token | head -c 0`: EPIPE), which would end the command with exit code 101
//! and a panic message; here a closed stdout stops the command quietly instead.

use std::fmt;
use std::io::{self, Write};

use crate::error::CliError;

/// Writes one line to stdout: [`CliError::output`] if that fails.
pub(crate) fn write_out(args: fmt::Arguments<'_>) -> Result<(), CliError> {
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "{args}")
        .and_then(|()| stdout.flush())
        .map_err(CliError::output)
}

/// Writes one line to stderr. Nothing is left to tell if stderr itself is closed, so a failure
/// is ignored rather than turned into a panic.
pub(crate) fn write_err(args: fmt::Arguments<'_>) {
    let _ = writeln!(io::stderr().lock(), "{args}");
}

/// `println!` that returns a `Result<(), CliError>` instead of panicking.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::out::write_out(format_args!($($arg)*))
    };
}

/// `eprintln!` that never panics.
macro_rules! note {
    ($($arg:tt)*) => {
        $crate::out::write_err(format_args!($($arg)*))
    };
}

pub(crate) use {note, say};
