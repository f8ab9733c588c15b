//! Test bed helpers.
