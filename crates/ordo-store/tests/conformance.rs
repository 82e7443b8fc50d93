//! The conformance suite on both backends (PostgreSQL through `DATABASE_URL`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

ordo_store::conformance_suite!();
