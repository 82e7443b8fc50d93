//! The route handlers of queries and operations. (Command routes are generic: see
//! `crate::command`.)

pub mod ops;
pub mod queries;
