//! The route handlers, by kind.

pub mod commands;
pub mod ops;
pub mod queries;
