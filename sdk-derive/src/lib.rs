//! `#[params]`: turns one struct whose fields carry doc comments into a plugin's parameters —
//! serde (unknown keys rejected, missing keys defaulted), `Default` from `#[param(default = …)]`,
//! the documentation table `retort plugins inspect` shows, and range checks run before the plugin
//! is built. Used through `retort_sdk::params`.
use proc_macro::TokenStream;
use proc_macro2::TokenStream as Tokens;
use quote::{quote, ToTokens};
use syn::{
    parse::Parser, parse_macro_input, punctuated::Punctuated, spanned::Spanned, Attribute, Expr, ExprLit, Fields,
    ItemStruct, Lit, Meta, MetaNameValue, Token,
};

/// What `#[param(…)]` says about one field.
#[derive(Default)]
struct ParamAttr {
    default: Option<Expr>,
    /// (operator, bound) pairs: `gt`, `ge`, `lt`, `le`.
    bounds: Vec<(&'static str, Expr)>,
}

fn parse_param(attr: &Attribute, out: &mut ParamAttr) -> syn::Result<()> {
    let items = Punctuated::<MetaNameValue, Token![,]>::parse_terminated.parse2(match &attr.meta {
        Meta::List(l) => l.tokens.clone(),
        other => return Err(syn::Error::new(other.span(), "expected #[param(key = value, …)]")),
    })?;
    for nv in items {
        let key = nv.path.get_ident().map(|i| i.to_string()).unwrap_or_default();
        match key.as_str() {
            "default" => out.default = Some(nv.value),
            "gt" => out.bounds.push((">", nv.value)),
            "ge" => out.bounds.push((">=", nv.value)),
            "lt" => out.bounds.push(("<", nv.value)),
            "le" => out.bounds.push(("<=", nv.value)),
            _ => return Err(syn::Error::new(nv.path.span(), "unknown #[param] key: use default, gt, ge, lt or le")),
        }
    }
    Ok(())
}

/// The text of a field's `///` lines, joined into one line.
fn doc_of(attrs: &[Attribute]) -> String {
    let lines: Vec<String> = attrs
        .iter()
        .filter(|a| a.path().is_ident("doc"))
        .filter_map(|a| match &a.meta {
            Meta::NameValue(MetaNameValue { value: Expr::Lit(ExprLit { lit: Lit::Str(s), .. }), .. }) => {
                Some(s.value().trim().to_string())
            }
            _ => None,
        })
        .filter(|l| !l.is_empty())
        .collect();
    lines.join(" ")
}

fn expand(mut item: ItemStruct) -> syn::Result<Tokens> {
    let name = item.ident.clone();
    let Fields::Named(fields) = &mut item.fields else {
        return Err(syn::Error::new(item.span(), "#[params] needs a struct with named fields"));
    };
    let (mut inits, mut docs, mut checks) = (Vec::new(), Vec::new(), Vec::new());
    for field in fields.named.iter_mut() {
        let ident = field.ident.clone().ok_or_else(|| syn::Error::new(field.span(), "unnamed field"))?;
        let mut p = ParamAttr::default();
        for a in field.attrs.iter().filter(|a| a.path().is_ident("param")) {
            parse_param(a, &mut p)?;
        }
        field.attrs.retain(|a| !a.path().is_ident("param"));
        let doc = doc_of(&field.attrs);
        if doc.is_empty() {
            return Err(syn::Error::new(
                ident.span(),
                "every parameter needs a /// doc comment: it is what `retort plugins inspect` shows",
            ));
        }
        let key = ident.to_string();
        docs.push(quote! { (#key, #doc) });
        let ty = &field.ty;
        inits.push(match &p.default {
            // A string literal becomes whatever string type the field has.
            Some(Expr::Lit(ExprLit { lit: Lit::Str(s), .. })) => quote! { #ident: ::core::convert::Into::into(#s) },
            Some(e) => quote! { #ident: { let v: #ty = #e; v } },
            None => quote! { #ident: ::core::default::Default::default() },
        });
        for (op, bound) in &p.bounds {
            let op_tokens: Tokens = op.parse().map_err(|_| syn::Error::new(bound.span(), "bad operator"))?;
            let shown = bound.to_token_stream().to_string();
            checks.push(quote! {
                if !(self.#ident #op_tokens #bound) {
                    return ::core::result::Result::Err(::std::format!(
                        "parameter `{}` must be {} {}, got {:?}", #key, #op, #shown, self.#ident
                    ));
                }
            });
        }
    }
    Ok(quote! {
        #[derive(
            ::retort_sdk::__export::serde::Serialize,
            ::retort_sdk::__export::serde::Deserialize,
            ::core::clone::Clone,
            ::core::fmt::Debug
        )]
        #[serde(crate = "retort_sdk::__export::serde", deny_unknown_fields, default)]
        #item

        impl ::core::default::Default for #name {
            fn default() -> Self {
                #name { #(#inits),* }
            }
        }

        impl ::retort_sdk::Params for #name {
            fn docs() -> &'static [(&'static str, &'static str)] {
                &[#(#docs),*]
            }
            fn check(&self) -> ::core::result::Result<(), ::std::string::String> {
                #(#checks)*
                ::core::result::Result::Ok(())
            }
        }
    })
}

/// Makes a plugin's parameter struct: every field documented with `///`, its default and bounds in
/// `#[param(default = 4.0, gt = 0.0)]` (keys: `default`, `gt`, `ge`, `lt`, `le`). Generates the
/// serde derives (unknown keys are errors, missing keys take their defaults), `Default`, and
/// `retort_sdk::Params` (the docs table and the bound checks).
#[proc_macro_attribute]
pub fn params(attr: TokenStream, item: TokenStream) -> TokenStream {
    if !attr.is_empty() {
        return syn::Error::new(Tokens::from(attr).span(), "#[params] takes no arguments").to_compile_error().into();
    }
    let item = parse_macro_input!(item as ItemStruct);
    expand(item).unwrap_or_else(|e| e.to_compile_error()).into()
}
