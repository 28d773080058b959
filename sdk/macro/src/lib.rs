//! The `#[virga_sdk::handler]` attribute: exports a function as the component's
//! `wasi:http/incoming-handler`.

use proc_macro::TokenStream;
use quote::quote;
use syn::{ItemFn, parse_macro_input};

/// Exports `fn(Request) -> Result<Response>` or `fn(Request, Env) -> Result<Response>`
/// (either may be `async`, and may return a plain `Response`) as the component's handler.
#[proc_macro_attribute]
pub fn handler(attr: TokenStream, item: TokenStream) -> TokenStream {
    if !attr.is_empty() {
        return syn::Error::new(
            proc_macro2::Span::call_site(),
            "#[virga_sdk::handler] takes no arguments",
        )
        .to_compile_error()
        .into();
    }
    let function = parse_macro_input!(item as ItemFn);
    let name = &function.sig.ident;
    let call = match function.sig.inputs.len() {
        1 => quote!(#name(request)),
        2 => quote!(#name(request, env)),
        _ => {
            return syn::Error::new_spanned(
                &function.sig.inputs,
                "a handler takes (Request) or (Request, Env)",
            )
            .to_compile_error()
            .into();
        }
    };
    let call = if function.sig.asyncness.is_some() {
        quote!(#call.await)
    } else {
        call
    };
    quote! {
        #function

        #[doc(hidden)]
        struct __VirgaHandler;

        impl ::virga_sdk::__private::Guest for __VirgaHandler {
            fn handle(
                request: ::virga_sdk::__private::IncomingRequest,
                out: ::virga_sdk::__private::ResponseOutparam,
            ) {
                #[allow(unused_variables)]
                ::virga_sdk::__private::run(request, out, |request, env| async move { #call });
            }
        }

        ::virga_sdk::__private::export!(__VirgaHandler);
    }
    .into()
}
