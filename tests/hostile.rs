//! Filled in by the next commit.
mod support;
