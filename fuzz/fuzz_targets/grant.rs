//! Grant JWT parsing and verification: any token, signed or not, is
//! accepted or rejected with a reason, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rollgate::grants::Expected;
use rollgate_fuzz::{NOW, grant_verifier, jws_from};
use std::sync::LazyLock;

static VERIFIER: LazyLock<rollgate::grants::GrantVerifier> = LazyLock::new(grant_verifier);

fuzz_target!(|data: &[u8]| {
    let Some(token) = jws_from(data) else { return };
    let _ = VERIFIER.verify_token(&token, NOW);
    let expected = Expected {
        user: "alice@example.com",
        namespace: "production",
        application: "checkout-api",
        action: "restart",
        new_images: &["registry.example.com/shop/checkout-api:v3.42.0"],
        removed_containers: &[],
    };
    if let Err(rejection) = VERIFIER.verify(&token, expected, NOW) {
        // The denial message is built from the rejection.
        let _ = rejection.to_string();
    }
});
