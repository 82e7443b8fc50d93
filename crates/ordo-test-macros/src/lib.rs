//! `#[backend_test]`: write a test body once, run it on every backend. The body is an
//! `async fn name(db: TestDatabase)`; the attribute keeps it and adds a module of the
//! same name with one `#[tokio::test]` per backend (`name::sqlite`, `name::postgres`),
//! each handing the body a fresh database through `ordo_store::testing::run`. A body
//! cannot be forgotten: the attribute sits on the body itself.
//!
//! `#[backend_test(postgres)]` or `#[backend_test(sqlite)]` runs a body on one backend
//! only, for behaviour that only one of them has. Which backends exist is
//! `ordo-store`'s to say: the module comes from its `__backend_tests!` macro.

#![warn(missing_docs)]

use proc_macro::TokenStream;
use quote::quote;
use syn::{parse_macro_input, Ident, ItemFn};

/// Runs an `async fn name(db: TestDatabase)` once per backend, each time on a fresh
/// database: it keeps the function and adds a module `name` with one
/// `#[tokio::test]` per backend (`name::sqlite`, `name::postgres`).
///
/// With no argument the body runs on every backend; `#[backend_test(sqlite)]` or
/// `#[backend_test(postgres)]` runs it on that one only. Any other argument, or a
/// body that is not an `async fn`, is a compile error. The crate using it needs
/// `ordo-store` with the `testing` feature and `tokio` (the expansion names
/// `::ordo_store` and `::tokio`); it is re-exported as
/// `ordo_store::testing::backend_test`.
///
/// A PostgreSQL test needs `DATABASE_URL`; without it the test is skipped with a
/// message, or fails if `REQUIRE_POSTGRES=1` (see `ordo_store::testing::run`).
///
/// ```ignore
/// use ordo_store::testing::{backend_test, TestDatabase};
///
/// #[backend_test]
/// async fn head_starts_at_zero(db: TestDatabase) {
///     let store = db.store().await;
///     assert_eq!(store.head_position().await.unwrap(), 0);
/// }
/// ```
///
/// (Not run here: this crate cannot depend on `ordo-store`, which depends on it. The
/// store's own tests use it throughout.)
#[proc_macro_attribute]
pub fn backend_test(args: TokenStream, item: TokenStream) -> TokenStream {
    let body = parse_macro_input!(item as ItemFn);
    let only: Option<Ident> = if args.is_empty() {
        None
    } else {
        match syn::parse(args) {
            Ok(ident) => Some(ident),
            Err(e) => return e.to_compile_error().into(),
        }
    };
    if body.sig.asyncness.is_none() {
        let e = syn::Error::new_spanned(&body.sig, "a backend test is an `async fn name(db: TestDatabase)`");
        return e.to_compile_error().into();
    }
    let name = &body.sig.ident;
    let backends = match only {
        Some(backend) => quote! { #backend },
        None => quote! { all },
    };
    quote! {
        #body

        ::ordo_store::__backend_tests!(#name, #backends);
    }
    .into()
}
