//! Which algorithms fleetfix offers: every family OpenSSH's `ssh` offers
//! by default that russh implements, strongest and cheapest first, so a
//! server that `ssh` reaches with its defaults, fleetfix reaches too.
//!
//! Not offered, because russh has no implementation: the
//! `sntrup761x25519-sha512` key exchange and the `umac` MACs. A server that
//! offers nothing else (rare: both come after others in OpenSSH's own
//! defaults) is refused with the algorithms it offered.

use std::borrow::Cow;

use russh::{Preferred, cipher, kex, mac};

/// Key exchange: post-quantum hybrid and curve25519 first, then the NIST
/// curves and the finite-field groups `ssh` still offers.
const KEX: &[kex::Name] = &[
    kex::MLKEM768X25519_SHA256,
    kex::CURVE25519,
    kex::CURVE25519_PRE_RFC_8731,
    kex::ECDH_SHA2_NISTP256,
    kex::ECDH_SHA2_NISTP384,
    kex::ECDH_SHA2_NISTP521,
    kex::DH_GEX_SHA256,
    kex::DH_G16_SHA512,
    kex::DH_G18_SHA512,
    kex::DH_G14_SHA256,
    kex::EXTENSION_SUPPORT_AS_CLIENT,
    kex::EXTENSION_OPENSSH_STRICT_KEX_AS_CLIENT,
];

/// MACs, for the non-AEAD ciphers: encrypt-then-MAC first; SHA-1 last, as
/// `ssh` still offers it.
const MAC: &[mac::Name] = &[
    mac::HMAC_SHA256_ETM,
    mac::HMAC_SHA512_ETM,
    mac::HMAC_SHA1_ETM,
    mac::HMAC_SHA256,
    mac::HMAC_SHA512,
    mac::HMAC_SHA1,
];

/// What a connection offers, with the cipher order of this machine.
pub(super) fn preferred() -> Preferred {
    Preferred {
        kex: Cow::Borrowed(KEX),
        cipher: Cow::Borrowed(cipher_order()),
        mac: Cow::Borrowed(MAC),
        ..Preferred::default()
    }
}

/// Both AEAD ciphers are strong; AES-GCM is the cheap one where the CPU
/// does AES in hardware, ChaCha20-Poly1305 everywhere else.
fn cipher_order() -> &'static [cipher::Name] {
    use russh::cipher::{
        AES_128_CTR, AES_128_GCM, AES_192_CTR, AES_256_CTR, AES_256_GCM, CHACHA20_POLY1305,
    };
    const AES_FIRST: &[cipher::Name] = &[
        AES_256_GCM,
        AES_128_GCM,
        CHACHA20_POLY1305,
        AES_256_CTR,
        AES_192_CTR,
        AES_128_CTR,
    ];
    const CHACHA_FIRST: &[cipher::Name] = &[
        CHACHA20_POLY1305,
        AES_256_GCM,
        AES_128_GCM,
        AES_256_CTR,
        AES_192_CTR,
        AES_128_CTR,
    ];
    #[cfg(target_arch = "x86_64")]
    let hardware_aes = std::arch::is_x86_feature_detected!("aes")
        && std::arch::is_x86_feature_detected!("pclmulqdq");
    #[cfg(target_arch = "aarch64")]
    let hardware_aes = std::arch::is_aarch64_feature_detected!("aes");
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    let hardware_aes = false;
    if hardware_aes {
        AES_FIRST
    } else {
        CHACHA_FIRST
    }
}
