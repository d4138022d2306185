//! Attribute macros of `weir-sdk`. Each leaves the function as written and,
//! when compiling for `wasm32`, adds the export `KIND:NAME` that runs it over
//! a whole partition through the drivers in `weir_sdk::invoke`.
//!
//! `#[map]`, `#[reduce]` and `#[update]` take an optional
//! `name = "exported_name"` to export under another name than the function's.

use proc_macro::TokenStream;
use quote::{format_ident, quote};
use syn::parse::Parser;
use syn::{parse_macro_input, DeriveInput, ItemFn, LitStr};

#[derive(Clone, Copy)]
enum Kind {
    Map,
    Reduce,
    Update,
    Migrate,
}

/// The attribute's arguments: the export name, and (`reduce` only) the
/// standard combine the function declares itself to be.
fn export_name(
    attr: TokenStream,
    func: &ItemFn,
    kind: Kind,
    default: Option<&str>,
) -> syn::Result<(String, Option<LitStr>)> {
    let mut name = default.map_or_else(|| func.sig.ident.to_string(), str::to_owned);
    let mut native = None;
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("name") {
            name = meta.value()?.parse::<LitStr>()?.value();
            Ok(())
        } else if meta.path.is_ident("native") && matches!(kind, Kind::Reduce) {
            let combine = meta.value()?.parse::<LitStr>()?;
            if combine.value() != "checked_add_i64" {
                return Err(syn::Error::new_spanned(
                    &combine,
                    "the only native combine is \"checked_add_i64\"",
                ));
            }
            native = Some(combine);
            Ok(())
        } else if matches!(kind, Kind::Reduce) {
            Err(meta.error(
                "unknown argument; they are `name = \"...\"` and `native = \"checked_add_i64\"`",
            ))
        } else {
            Err(meta.error("unknown argument; the only one is `name = \"...\"`"))
        }
    });
    parser.parse(attr)?;
    if name.is_empty() || name.contains(':') {
        return Err(syn::Error::new_spanned(
            &func.sig.ident,
            "export name must be non-empty and contain no ':'",
        ));
    }
    Ok((name, native))
}

fn expand(kind: Kind, attr: TokenStream, item: TokenStream) -> TokenStream {
    let func = parse_macro_input!(item as ItemFn);
    let default = matches!(kind, Kind::Migrate).then_some("state");
    let (name, native) = match export_name(attr, &func, kind, default) {
        Ok(n) => n,
        Err(e) => return e.to_compile_error().into(),
    };
    let ident = &func.sig.ident;
    let arity = func.sig.inputs.len();
    let (prefix, runner) = match (kind, arity) {
        (Kind::Map, 1) => ("map", quote!(run_map_values)),
        (Kind::Map, 2) => ("map", quote!(run_map)),
        (Kind::Reduce, 2) => ("reduce", quote!(run_reduce)),
        (Kind::Update, 3) => ("update", quote!(run_update)),
        (Kind::Migrate, 2) => ("migrate", quote!(run_migrate)),
        (Kind::Migrate, _) => {
            return arity_error(
                &func,
                "a migrate function takes (key, old_state) and returns Option<new_state>",
            )
        }
        (Kind::Map, _) => {
            return arity_error(&func, "a map function takes (value) or (key, value)")
        }
        (Kind::Reduce, _) => {
            return arity_error(&func, "a reduce function takes (a, b) of the same type")
        }
        (Kind::Update, _) => {
            return arity_error(
                &func,
                "an update function takes (key, values: Vec<V>, state: &mut State<S>)",
            )
        }
    };
    let export = format!("{prefix}:{name}");
    let glue = format_ident!("__weir_export_{}_{}", prefix, ident);
    let declaration = native.map(|combine| {
        // The line the host reads from the `weir.native` custom section,
        // and a check that the function adds i64s (its type, at least).
        let line = format!("{export}={}\n", combine.value());
        let bytes = syn::LitByteStr::new(line.as_bytes(), combine.span());
        let len = line.len();
        let decl = format_ident!("__WEIR_NATIVE_{}", ident);
        quote! {
            #[cfg(target_arch = "wasm32")]
            #[doc(hidden)]
            #[used]
            #[link_section = "weir.native"]
            static #decl: [u8; #len] = *#bytes;

            #[doc(hidden)]
            #[allow(dead_code)]
            const _: () = {
                fn __weir_native_type_check() {
                    let _: fn(i64, i64) -> _ = #ident;
                }
            };
        }
    });
    quote! {
        #func

        #declaration

        #[cfg(target_arch = "wasm32")]
        #[doc(hidden)]
        #[export_name = #export]
        pub extern "C" fn #glue(input: u32, len: u32, result: u32) -> i32 {
            // SAFETY: the host passes a valid input range and result area (ABI v1).
            unsafe { ::weir_sdk::__private::#runner(input, len, result, #ident) }
        }
    }
    .into()
}

fn arity_error(func: &ItemFn, msg: &str) -> TokenStream {
    syn::Error::new_spanned(&func.sig.inputs, msg)
        .to_compile_error()
        .into()
}

/// Exports a per-record function as `map:NAME`: `fn(value) -> R` or
/// `fn(key, value) -> R`. Parameters may borrow the input (`&str`, `&[u8]`)
/// or own it (`String`, `i64`, any `Decode` type); `R` is a pair, `()`, an
/// `Option`, `Vec` or array of records, any iterator of records (`impl
/// Iterator<Item = (&str, i64)>`), or a `Result` of those (`weir_sdk::Emit`).
#[proc_macro_attribute]
pub fn map(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand(Kind::Map, attr, item)
}

/// Exports an associative combine `fn(V, V) -> V` (or `Result<V, E>`) as
/// `reduce:NAME`.
///
/// `native = "checked_add_i64"` declares that the function is `a + b` of
/// two `i64`s failing on overflow (`a.checked_add(b)`, an error if `None`):
/// the host then combines its values itself, with the same results and the
/// same failures, and calls it no more (see `weir.native` in the ABI
/// notes of `weir-sdk`). Declare it only of such a function.
#[proc_macro_attribute]
pub fn reduce(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand(Kind::Reduce, attr, item)
}

/// Exports a state update `fn(K, Vec<V>, &mut State<S>) -> R` as
/// `update:NAME` (the values may also be `weir_sdk::Values<V>`, decoded
/// lazily; the key may borrow, `&str`); `R` is the records to emit, as for
/// `map`.
#[proc_macro_attribute]
pub fn update(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand(Kind::Update, attr, item)
}

/// Exports a state migration as `migrate:state` (the host calls it when a
/// module with a new `state_version!` replaces one with an older version):
/// `fn(key: K, old: OldState) -> Option<NewState>`; `None` drops the key.
#[proc_macro_attribute]
pub fn migrate(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand(Kind::Migrate, attr, item)
}

/// Makes a serde type usable as a key, value or state, encoded with bincode
/// (`config::legacy()`).
#[proc_macro_derive(Data)]
pub fn derive_data(item: TokenStream) -> TokenStream {
    let input = parse_macro_input!(item as DeriveInput);
    let ident = &input.ident;
    let (impl_g, ty_g, where_g) = input.generics.split_for_impl();
    quote! {
        impl #impl_g ::weir_sdk::Encode for #ident #ty_g #where_g {
            fn encode(&self, out: &mut ::std::vec::Vec<u8>) {
                ::weir_sdk::codec::to_bincode(self, out)
            }
        }
        impl #impl_g ::weir_sdk::Decode for #ident #ty_g #where_g {
            fn decode(bytes: &[u8]) -> ::std::result::Result<Self, ::weir_sdk::DecodeError> {
                ::weir_sdk::codec::from_bincode(bytes)
            }
        }
    }
    .into()
}
