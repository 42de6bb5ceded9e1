//! One module per command: each parses its own arguments (clap), calls the library and
//! renders the result.

pub mod batch;
pub mod check;
pub mod compact;
pub mod evidence;
pub mod export;
pub mod fork;
pub mod key;
pub mod log;
pub mod new;
pub mod replay;
pub mod report;
pub mod resume;
pub mod review;
pub mod run;
pub mod runs;
pub mod show;
pub mod test;
pub mod verify;
