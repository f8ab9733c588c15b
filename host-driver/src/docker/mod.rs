//! The Docker side.

mod client;

pub use client::*;
