//! `#[backend_test]`: write a test body once, run it on every backend. The body is an
//! `async fn name(db: TestDatabase)`; the attribute keeps it and adds a module of the
//! same name with one `#[tokio::test]` per backend (`name::sqlite`, `name::postgres`),
//! each handing the body a fresh database through `ordo_store::testing::run`. A body
//! cannot be forgotten: the attribute sits on the body itself.
//!
//! `#[backend_test(postgres)]` or `#[backend_test(sqlite)]` runs a body on one backend
//! only, for behaviour that only one of them has.

use proc_macro::TokenStream;
use proc_macro2::Span;
use quote::quote;
use syn::{parse_macro_input, Ident, ItemFn};

/// The backends, as `(test name, ordo_store::Backend variant)`.
const BACKENDS: [(&str, &str); 2] = [("sqlite", "Sqlite"), ("postgres", "Postgres")];

#[proc_macro_attribute]
pub fn backend_test(args: TokenStream, item: TokenStream) -> TokenStream {
    let body = parse_macro_input!(item as ItemFn);
    let only = match parse_only(args) {
        Ok(only) => only,
        Err(e) => return e.to_compile_error().into(),
    };
    if body.sig.asyncness.is_none() {
        let e = syn::Error::new_spanned(&body.sig, "a backend test is an `async fn name(db: TestDatabase)`");
        return e.to_compile_error().into();
    }
    let name = &body.sig.ident;
    let label = name.to_string();
    let chosen = |test: &str| match &only {
        Some(only) => only == test,
        None => true,
    };
    let tests = BACKENDS.iter().filter(|(test, _)| chosen(test)).map(|(test, variant)| {
        let test = Ident::new(test, Span::call_site());
        let variant = Ident::new(variant, Span::call_site());
        quote! {
            #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn #test() {
                ::ordo_store::testing::run(::ordo_store::Backend::#variant, #label, super::#name).await;
            }
        }
    });
    quote! {
        #body

        /// The body above, once per backend.
        mod #name {
            #(#tests)*
        }
    }
    .into()
}

/// The one backend a body is limited to, if the attribute names one.
fn parse_only(args: TokenStream) -> syn::Result<Option<String>> {
    if args.is_empty() {
        return Ok(None);
    }
    let ident: Ident = syn::parse(args)?;
    let name = ident.to_string();
    if BACKENDS.iter().any(|(test, _)| *test == name) {
        Ok(Some(name))
    } else {
        Err(syn::Error::new(ident.span(), "expected `sqlite` or `postgres`"))
    }
}
