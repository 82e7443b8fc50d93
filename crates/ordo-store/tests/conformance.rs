//! The conformance suite on both backends (PostgreSQL through `DATABASE_URL`).

ordo_store::conformance_suite!();
