//! Verification of werkzeug's password hashes, as Python MiniTwit stored them.
//!
//! werkzeug (`werkzeug.security.generate_password_hash`) writes `method$salt$digest`:
//!
//! - `pbkdf2:<digest>:<iterations>`: `hashlib.pbkdf2_hmac(digest, password, salt, iterations)`
//!   with the key as long as the digest (sha1, sha256, sha512 here);
//! - `scrypt:<n>:<r>:<p>`: `hashlib.scrypt(password, salt=salt, n=n, r=r, p=p, dklen=64)`;
//! - before werkzeug 2.3, a bare hashlib name (`sha1`, the original MiniTwit's default, and
//!   `md5`, `sha256`, `sha512`): `hmac.new(salt, password, name)`, or with an empty salt
//!   `hashlib.new(name, password)`; and `plain`, the password itself (`plain$$password`).
//!   werkzeug 2.3 dropped them, so current werkzeug cannot verify the course's 2026 hand-out
//!   database; we can, and the first sign-in replaces them with argon2id;
//!
//! password and salt both as UTF-8 bytes (the salt is used as text, not decoded), the digest
//! in lowercase hex. werkzeug always writes the parameters out, but reads the short forms
//! `pbkdf2`, `pbkdf2:<digest>` and `scrypt` with its defaults; so do we, taking werkzeug 3.0's
//! for pbkdf2 (see `PBKDF2_DEFAULT_ITERATIONS`).
//!
//! Parameters come from the stored string, so everything is checked before anything is
//! computed: a hash asking for gigabytes of scrypt memory or billions of rounds is an error,
//! not an allocation or a CPU stuck for minutes.

use sha1::Sha1;
use sha2::{Sha256, Sha512};
use subtle::ConstantTimeEq;

use super::HashFormatError;

const PBKDF2: &str = "werkzeug pbkdf2";
const SCRYPT: &str = "werkzeug scrypt";
const SALTED: &str = "werkzeug salted hash";
const PLAIN: &str = "werkzeug plain";

/// Iterations for `pbkdf2` and `pbkdf2:<digest>`: werkzeug 2.3 and 3.0's default. werkzeug
/// 3.1 raised its default to 1,000,000, so the short forms are ambiguous; but werkzeug always
/// writes the count out, so only hand-made hashes lack it.
const PBKDF2_DEFAULT_ITERATIONS: u32 = 600_000;

/// More rounds than any werkzeug default (the highest is 1,000,000) by a wide margin; beyond
/// it a stored hash could pin a blocking thread for minutes.
const PBKDF2_MAX_ITERATIONS: u32 = 10_000_000;

/// werkzeug's scrypt key length.
const SCRYPT_KEY_LEN: usize = 64;

/// Bound on scrypt's 128·n·r·p bytes: 256 MiB, eight times werkzeug's default. It bounds the
/// memory (128·n·r; the lanes are computed one after another) and the work (∝ n·r·p) alike.
const SCRYPT_MAX_COST: u64 = 256 * 1024 * 1024;

/// Whether `password` is the one `stored` was made from. An error when `stored` is no
/// werkzeug hash, is malformed, or asks for parameters out of bounds.
pub(super) fn verify(password: &[u8], stored: &str) -> Result<bool, HashFormatError> {
    Hash::parse(stored)?.matches(password)
}

/// A parsed hash. No `Debug`: it would print salt and digest.
struct Hash<'a> {
    kdf: Kdf,
    salt: &'a str,
    digest: Vec<u8>,
}

enum Kdf {
    Pbkdf2 {
        hmac: Hmac,
        iterations: u32,
    },
    Scrypt(scrypt::Params),
    /// werkzeug before 2.3: one HMAC keyed with the salt, or one plain hash without a salt.
    Salted(Hmac),
    /// The password itself.
    Plain,
}

/// A hash function, as werkzeug names it; `Md5` only for the pre-2.3 methods.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hmac {
    Md5,
    Sha1,
    Sha256,
    Sha512,
}

impl<'a> Hash<'a> {
    fn parse(stored: &'a str) -> Result<Self, HashFormatError> {
        // Like werkzeug, split at the first two `$`; neither a method nor a werkzeug salt
        // (letters and digits) contains one.
        let mut fields = stored.splitn(3, '$');
        let method = fields.next().unwrap_or_default();
        let mut args = method.split(':');
        let (kdf, scheme) = match (args.next().unwrap_or_default(), args.next()) {
            ("pbkdf2", first) => (
                parse_pbkdf2(first.into_iter().chain(args).collect())?,
                PBKDF2,
            ),
            ("scrypt", first) => (
                parse_scrypt(first.into_iter().chain(args).collect())?,
                SCRYPT,
            ),
            ("md5", None) => (Kdf::Salted(Hmac::Md5), SALTED),
            ("sha1", None) => (Kdf::Salted(Hmac::Sha1), SALTED),
            ("sha256", None) => (Kdf::Salted(Hmac::Sha256), SALTED),
            ("sha512", None) => (Kdf::Salted(Hmac::Sha512), SALTED),
            ("plain", None) => (Kdf::Plain, PLAIN),
            _ => return Err(HashFormatError::Unrecognised),
        };
        let (Some(salt), Some(digest)) = (fields.next(), fields.next()) else {
            return Err(malformed(scheme, "not of the form method$salt$digest"));
        };
        if let Kdf::Plain = kdf {
            // werkzeug wrote `plain$$password`: the third field is the password as it is.
            let digest = digest.as_bytes().to_vec();
            return Ok(Self { kdf, salt, digest });
        }
        // werkzeug compares hex strings, so a digest in upper case could never match there;
        // like any other digest that is not what werkzeug writes, it is corrupt data.
        let lower_hex = |byte: u8| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte);
        if !digest.bytes().all(lower_hex) {
            return Err(malformed(scheme, "digest is not lowercase hex"));
        }
        let digest = hex::decode(digest).map_err(|_| malformed(scheme, "digest is not hex"))?;
        if digest.len() != kdf.output_len() {
            return Err(malformed(scheme, "digest has the wrong length"));
        }
        Ok(Self { kdf, salt, digest })
    }

    fn matches(&self, password: &[u8]) -> Result<bool, HashFormatError> {
        let salt = self.salt.as_bytes();
        let computed = match self.kdf {
            Kdf::Pbkdf2 { hmac, iterations } => {
                let derive = match hmac {
                    Hmac::Md5 => pbkdf2::pbkdf2_hmac::<md5::Md5>,
                    Hmac::Sha1 => pbkdf2::pbkdf2_hmac::<Sha1>,
                    Hmac::Sha256 => pbkdf2::pbkdf2_hmac::<Sha256>,
                    Hmac::Sha512 => pbkdf2::pbkdf2_hmac::<Sha512>,
                };
                let mut key = vec![0u8; self.digest.len()];
                derive(password, salt, iterations, &mut key);
                key
            }
            Kdf::Scrypt(ref params) => {
                let mut key = vec![0u8; self.digest.len()];
                scrypt::scrypt(password, salt, params, &mut key)
                    // Unreachable: the length was checked to be 64 in `parse`.
                    .map_err(|_| malformed(SCRYPT, "digest has the wrong length"))?;
                key
            }
            Kdf::Salted(hash) if salt.is_empty() => hash.digest(password),
            Kdf::Salted(hash) => hash.mac(salt, password),
            Kdf::Plain => password.to_vec(),
        };
        // Constant time, so that timing shows nothing of how much of a guess's digest is right.
        Ok(computed.ct_eq(&self.digest).into())
    }
}

impl Kdf {
    /// The digest's length in bytes: werkzeug leaves pbkdf2's at the hash function's size.
    fn output_len(&self) -> usize {
        match self {
            Kdf::Pbkdf2 { hmac, .. } | Kdf::Salted(hmac) => match hmac {
                Hmac::Md5 => 16,
                Hmac::Sha1 => 20,
                Hmac::Sha256 => 32,
                Hmac::Sha512 => 64,
            },
            Kdf::Scrypt(_) => SCRYPT_KEY_LEN,
            // Not hex: the stored password's own length, checked by comparing.
            Kdf::Plain => 0,
        }
    }
}

impl Hmac {
    /// `hashlib.new(name, message).digest()`.
    fn digest(self, message: &[u8]) -> Vec<u8> {
        use sha2::Digest as _;
        match self {
            Hmac::Md5 => md5::Md5::digest(message).to_vec(),
            Hmac::Sha1 => Sha1::digest(message).to_vec(),
            Hmac::Sha256 => Sha256::digest(message).to_vec(),
            Hmac::Sha512 => Sha512::digest(message).to_vec(),
        }
    }

    /// `hmac.new(key, message, name).digest()`.
    fn mac(self, key: &[u8], message: &[u8]) -> Vec<u8> {
        fn mac<D>(key: &[u8], message: &[u8]) -> Vec<u8>
        where
            D: pbkdf2::hmac::digest::Digest + pbkdf2::hmac::digest::core_api::BlockSizeUser,
        {
            use pbkdf2::hmac::Mac as _;
            let mut mac = pbkdf2::hmac::SimpleHmac::<D>::new_from_slice(key)
                .expect("HMAC takes a key of any length");
            mac.update(message);
            mac.finalize().into_bytes().to_vec()
        }
        match self {
            Hmac::Md5 => mac::<md5::Md5>(key, message),
            Hmac::Sha1 => mac::<Sha1>(key, message),
            Hmac::Sha256 => mac::<Sha256>(key, message),
            Hmac::Sha512 => mac::<Sha512>(key, message),
        }
    }
}

fn parse_pbkdf2(args: Vec<&str>) -> Result<Kdf, HashFormatError> {
    let (hmac, iterations) = match args[..] {
        [] => (Hmac::Sha256, PBKDF2_DEFAULT_ITERATIONS),
        [hmac] => (parse_hmac(hmac)?, PBKDF2_DEFAULT_ITERATIONS),
        [hmac, iterations] => (
            parse_hmac(hmac)?,
            decimal(iterations).ok_or(malformed(PBKDF2, "iterations are not a number in range"))?,
        ),
        _ => return Err(malformed(PBKDF2, "too many parameters")),
    };
    if iterations == 0 {
        return Err(malformed(PBKDF2, "zero iterations"));
    }
    if iterations > PBKDF2_MAX_ITERATIONS {
        return Err(unsupported(PBKDF2, "more than 10,000,000 iterations"));
    }
    Ok(Kdf::Pbkdf2 { hmac, iterations })
}

fn parse_hmac(name: &str) -> Result<Hmac, HashFormatError> {
    match name {
        "md5" => Ok(Hmac::Md5),
        "sha1" => Ok(Hmac::Sha1),
        "sha256" => Ok(Hmac::Sha256),
        "sha512" => Ok(Hmac::Sha512),
        // hashlib knows more (sha384, sha3_256, …), but werkzeug never defaulted to them.
        _ => Err(unsupported(
            PBKDF2,
            "digest other than md5, sha1, sha256, sha512",
        )),
    }
}

fn parse_scrypt(args: Vec<&str>) -> Result<Kdf, HashFormatError> {
    let (n, r, p) = match args[..] {
        [] => (1 << 15, 8, 1),
        [n, r, p] => {
            let not_a_number = || malformed(SCRYPT, "n, r or p is not a number in range");
            (
                decimal::<u64>(n).ok_or_else(not_a_number)?,
                decimal::<u32>(r).ok_or_else(not_a_number)?,
                decimal::<u32>(p).ok_or_else(not_a_number)?,
            )
        }
        _ => return Err(malformed(SCRYPT, "not of the form scrypt:n:r:p")),
    };
    if n < 2 || !n.is_power_of_two() {
        return Err(malformed(SCRYPT, "n is not a power of two above 1"));
    }
    if r == 0 || p == 0 {
        return Err(malformed(SCRYPT, "r or p is zero"));
    }
    // n ≤ 2^63 and r, p < 2^32, so this can overflow; overflowing is too costly as well.
    let cost = n
        .checked_mul(128)
        .and_then(|cost| cost.checked_mul(u64::from(r)))
        .and_then(|cost| cost.checked_mul(u64::from(p)));
    if cost.is_none_or(|cost| cost > SCRYPT_MAX_COST) {
        return Err(unsupported(SCRYPT, "128·n·r·p above 256 MiB"));
    }
    // What remains for the crate to refuse is what scrypt itself forbids (n < 2^(16·r)).
    let log_n = n.trailing_zeros() as u8;
    scrypt::Params::new(log_n, r, p, SCRYPT_KEY_LEN)
        .map(Kdf::Scrypt)
        .map_err(|_| malformed(SCRYPT, "parameters invalid for scrypt"))
}

/// A plain decimal, as werkzeug writes it: no sign, no spaces, no `_` (which Python's `int`
/// would all accept, but werkzeug never produces).
fn decimal<T: std::str::FromStr>(text: &str) -> Option<T> {
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn malformed(scheme: &'static str, reason: &'static str) -> HashFormatError {
    HashFormatError::Malformed { scheme, reason }
}

fn unsupported(scheme: &'static str, reason: &'static str) -> HashFormatError {
    HashFormatError::Unsupported { scheme, reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Fixtures: real werkzeug hashes, made with werkzeug 3.1.9 (Python 3, from PyPI) by
    // `werkzeug.security.generate_password_hash(password, method=…)` (no method for the
    // default), each checked with `check_password_hash` (right password accepted, a wrong
    // one rejected). PASSWORD is "correct horse"; ODD mixes quotes, a backslash, `{<` and a
    // non-ASCII letter.
    const PASSWORD: &str = "correct horse";
    const ODD: &str = "\\\"'{<é";

    /// method="pbkdf2": werkzeug 3.1's pbkdf2 default.
    const PBKDF2_DEFAULT: &str = "pbkdf2:sha256:1000000$jiDlBvxWBCCRDCpF$33b058a99b19dbdfa7e26afeb90e94e443fc28a6e63a94366d842f4e0f704e35";
    /// No method: werkzeug 3's default method, scrypt with n = 2^15, r = 8, p = 1.
    const WERKZEUG_DEFAULT: &str = "scrypt:32768:8:1$G0xHBkqh4icHzGxr$b6d3f461129eb344cd3c770bf21d97f9792809ac2fa6a4c6ebde29a0db5ac61c9a3838c807ea0beedac9a29ab7ae86933cca031a2acbfda4e977f89675c579a8";
    /// method="pbkdf2:sha256:600000", werkzeug 2.3 and 3.0's default.
    const PBKDF2_SHA256_600K: &str = "pbkdf2:sha256:600000$ET8P08eUIgraWKDc$c9a4858abb82ccd8bdc9725c734433d979efffaabd8d7e1bc34cc5b9769769c0";
    const PBKDF2_SHA256: &str = "pbkdf2:sha256:1000$WKAYhPFe3hE5ims7$e4c90000cc15b07270ae3f680f0c2ee380c401b482b8e409c3f697cbbcac2c41";
    const PBKDF2_SHA1: &str =
        "pbkdf2:sha1:1000$f9ToNEybP70HJRku$5560eec68ca3858fc87a4764a36380875473cf0f";
    const PBKDF2_SHA512: &str = "pbkdf2:sha512:1000$MYkhc0GUDYYwDf6x$5a53ae2237230c47594dd1501e14e73819b1d17b9d790af94d9867a64dd40829288a166e3c7125eaa95c3aa1af775a0904f3b54cd7e7fce4bb951ab39f21837e";
    const SCRYPT_SMALL: &str = "scrypt:1024:8:1$BKiWDNYOA1cuRuZL$4358b2131aadf40680f4a77a24b17fec0cc5f08211885c51fa157c70225eaa5459a8ff9acbd96e57ca5be2f121a906bf22e9f6961695c4189f8428ff5b5847a6";
    /// Password ODD, method="pbkdf2:sha256:1000".
    const ODD_PBKDF2: &str = "pbkdf2:sha256:1000$BFFRAtBbrD8VDh7Q$dacdea1120f64f2e6ddd654b48c4f4183d2c4f1517a9a77a30a2e90b585bfa1a";
    /// Password ODD, method="scrypt:1024:8:1".
    const ODD_SCRYPT: &str = "scrypt:1024:8:1$YRfCnC1yUHkNM8pX$35a6598cf8932057911b8a50dc4f4be69ef58fbc38c01855557827889ac4943da14a4c8124d62bde1610127683cec84515d815cdfcd13e5d54dd651fe0d7a8aa";

    // Pre-2.3 methods, made with werkzeug 2.2.3 (the last to write them) by
    // `generate_password_hash(password, method=…, salt_length=8)`, each checked with its
    // `check_password_hash`; the unsalted one is `"sha1$$" + hashlib.sha1(password)`, which
    // that werkzeug verifies too.
    const SALTED_SHA1: &str = "sha1$s11wwGfE$66204cc2c1c144fbeb2c06b51eeec29d14203313";
    const SALTED_MD5: &str = "md5$1Wl4S39P$ccf4d720c417ee79ca9b4ece3295277c";
    const SALTED_SHA256: &str =
        "sha256$Qfo5RJZM$334fcb7847b1d5784f801ccac09297da7a79f8c1b0e19aeea471a52a5f9254dd";
    const SALTED_SHA512: &str = "sha512$wyxqyXOl$f92fbbfcd355cfa49d5ed6c1fcb9c8c126125a640483941202d307978a24c5e018d1d4097b9670a2e8defae04773c9789dfe9851e7d20a54ed30bdb7aa973b7a";
    const UNSALTED_SHA1: &str = "sha1$$2f9e53523b62abc141a2b4d6019d23cba835dbd0";
    const PLAIN_TEXT: &str = "plain$$correct horse";
    /// Password ODD.
    const ODD_SALTED_SHA1: &str = "sha1$A3SP4i75$ebdc5ed5d9e89562f7e4e80aad504c28814e0db4";
    const ODD_SALTED_MD5: &str = "md5$TWjVEh5D$e46126628e8a9113d75fb109341f8aa6";

    #[test]
    fn pre_2_3_werkzeug_hashes_verify() {
        for (password, hash) in [
            (PASSWORD, SALTED_SHA1),
            (PASSWORD, SALTED_MD5),
            (PASSWORD, SALTED_SHA256),
            (PASSWORD, SALTED_SHA512),
            (PASSWORD, UNSALTED_SHA1),
            (PASSWORD, PLAIN_TEXT),
            (ODD, ODD_SALTED_SHA1),
            (ODD, ODD_SALTED_MD5),
        ] {
            assert_verifies_only(password, hash);
        }
        // The salt is the HMAC's key, not a prefix: the bare digest of salt and password is
        // not the hash.
        assert!(!verifies("s11wwGfEcorrect horse", SALTED_SHA1));
        assert!(!verifies("correct horse ", PLAIN_TEXT));
    }

    #[test]
    fn pre_2_3_methods_take_no_parameters_and_a_digest_of_their_length() {
        let sha1_digest = &SALTED_SHA1[SALTED_SHA1.rfind('$').unwrap() + 1..];
        for hash in [
            format!("sha1:1000$salt${sha1_digest}"),
            format!("md5$salt${sha1_digest}"),
            format!("sha1$salt${}", sha1_digest.to_uppercase()),
            "sha1$salt".to_owned(),
            "plain:1$$correct horse".to_owned(),
        ] {
            assert!(
                matches!(
                    verify(PASSWORD.as_bytes(), &hash),
                    Err(HashFormatError::Malformed { .. } | HashFormatError::Unrecognised)
                ),
                "{hash}"
            );
        }
        // hashlib names werkzeug never used are no format of its.
        assert!(matches!(
            verify(PASSWORD.as_bytes(), &format!("sha384$salt${sha1_digest}")),
            Err(HashFormatError::Unrecognised)
        ));
    }

    /// `hash` takes `password`, and neither a near miss nor nothing.
    fn assert_verifies_only(password: &str, hash: &str) {
        assert!(verifies(password, hash), "{hash}");
        assert!(!verifies("correct horsE", hash), "{hash}");
        assert!(!verifies("", hash), "{hash}");
    }

    fn verifies(password: &str, hash: &str) -> bool {
        verify(password.as_bytes(), hash).unwrap_or_else(|err| panic!("{hash}: {err}"))
    }

    #[test]
    fn small_werkzeug_hashes_verify() {
        for (password, hash) in [
            (PASSWORD, PBKDF2_SHA256),
            (PASSWORD, PBKDF2_SHA1),
            (PASSWORD, PBKDF2_SHA512),
            (PASSWORD, SCRYPT_SMALL),
            (ODD, ODD_PBKDF2),
            (ODD, ODD_SCRYPT),
        ] {
            assert_verifies_only(password, hash);
        }
        // The non-ASCII letter counts: "é" is not "e", and is hashed as UTF-8.
        assert!(!verifies("\\\"'{<e", ODD_PBKDF2));
        assert!(!verifies("\\\"'{<e", ODD_SCRYPT));
    }

    #[test]
    fn werkzeug_default_method_verifies() {
        assert!(verifies(PASSWORD, WERKZEUG_DEFAULT));
        assert!(!verifies("correct horsE", WERKZEUG_DEFAULT));
        // Cut down to the short form, which werkzeug 3.0.6 and 3.1.9 both still verify.
        let (_, rest) = WERKZEUG_DEFAULT.split_once('$').unwrap();
        assert!(verifies(PASSWORD, &format!("scrypt${rest}")));
    }

    /// Hundreds of thousands of HMAC rounds take seconds in a debug build: the pbkdf2 and hmac
    /// code is generic, so it is compiled in this crate, unoptimised (`opt-level = 2` covers
    /// only the dependencies' own code). `cargo test --release -- --include-ignored` runs it.
    #[test]
    #[cfg_attr(debug_assertions, ignore = "seconds unoptimised; run with --release")]
    fn pbkdf2_defaults_verify() {
        assert!(verifies(PASSWORD, PBKDF2_DEFAULT));
        assert!(verifies(PASSWORD, PBKDF2_SHA256_600K));
        assert!(!verifies("correct horsE", PBKDF2_SHA256_600K));
        // The short forms, made by cutting the method down: werkzeug 3.0.6's
        // check_password_hash accepts both (3.1.9 reads them as 1,000,000 rounds).
        let (_, rest) = PBKDF2_SHA256_600K.split_once('$').unwrap();
        assert!(verifies(PASSWORD, &format!("pbkdf2${rest}")));
        assert!(verifies(PASSWORD, &format!("pbkdf2:sha256${rest}")));
    }

    /// What `pbkdf2_defaults_verify` checks by computing, checked by parsing, in debug too.
    #[test]
    fn short_methods_mean_the_defaults() {
        fn pbkdf2(stored: &str) -> (Hmac, u32) {
            match Hash::parse(stored).unwrap().kdf {
                Kdf::Pbkdf2 { hmac, iterations } => (hmac, iterations),
                _ => panic!("{stored}: not pbkdf2"),
            }
        }
        let sha256_digest = "00".repeat(32);
        let sha1_digest = "00".repeat(20);
        assert_eq!(
            pbkdf2(&format!("pbkdf2$salt${sha256_digest}")),
            (Hmac::Sha256, 600_000)
        );
        assert_eq!(
            pbkdf2(&format!("pbkdf2:sha1$salt${sha1_digest}")),
            (Hmac::Sha1, 600_000)
        );
        assert_eq!(
            pbkdf2(&format!("pbkdf2:sha1:1234$salt${sha1_digest}")),
            (Hmac::Sha1, 1234)
        );
        let Kdf::Scrypt(params) = Hash::parse(&format!("scrypt$salt${}", "00".repeat(64)))
            .unwrap()
            .kdf
        else {
            panic!("not scrypt");
        };
        assert_eq!((params.log_n(), params.r(), params.p()), (15, 8, 1));
    }

    fn error(hash: &str) -> HashFormatError {
        match verify(b"pw", hash) {
            Err(err) => err,
            Ok(matched) => panic!("{hash}: expected an error, got {matched}"),
        }
    }

    #[test]
    fn malformed_hashes_are_errors() {
        let digest = "e4c90000cc15b07270ae3f680f0c2ee380c401b482b8e409c3f697cbbcac2c41";
        let scrypt_digest = &SCRYPT_SMALL[SCRYPT_SMALL.rfind('$').unwrap() + 1..];
        for hash in [
            "".to_owned(),
            "sha384$salt$abcd".to_owned(),
            "bcrypt$salt$abcd".to_owned(),
            "pbkdf2sha256:1000$salt$abcd".to_owned(),
            "Pbkdf2:sha256:1000$salt$abcd".to_owned(),
        ] {
            assert_eq!(error(&hash), HashFormatError::Unrecognised, "{hash}");
        }
        for hash in [
            // No `$`, or only one.
            "pbkdf2:sha256:1000".to_owned(),
            format!("pbkdf2:sha256:1000${digest}"),
            // Not hex, or of the wrong length for the digest.
            "pbkdf2:sha256:1000$salt$zz".to_owned(),
            format!("pbkdf2:sha256:1000$salt${}g", &digest[1..]),
            format!("pbkdf2:sha256:1000$salt${digest}$"),
            format!("pbkdf2:sha256:1000$salt${digest}00"),
            format!("pbkdf2:sha1:1000$salt${digest}"),
            "pbkdf2:sha256:1000$salt$".to_owned(),
            // Bad iterations or parameters.
            format!("pbkdf2:sha256:0$salt${digest}"),
            format!("pbkdf2:sha256:-1$salt${digest}"),
            format!("pbkdf2:sha256:+1000$salt${digest}"),
            format!("pbkdf2:sha256: 1000$salt${digest}"),
            format!("pbkdf2:sha256:$salt${digest}"),
            format!("pbkdf2:sha256:99999999999999999999$salt${digest}"),
            format!("pbkdf2:sha256:1000:1$salt${digest}"),
            format!("scrypt:3:8:1$salt${scrypt_digest}"),
            format!("scrypt:1:8:1$salt${scrypt_digest}"),
            format!("scrypt:0:8:1$salt${scrypt_digest}"),
            format!("scrypt:1024:0:1$salt${scrypt_digest}"),
            format!("scrypt:1024:8:0$salt${scrypt_digest}"),
            format!("scrypt:1024:8$salt${scrypt_digest}"),
            format!("scrypt:1024:8:1:1$salt${scrypt_digest}"),
            // Allowed by the memory bound, but not by scrypt itself (n < 2^(16·r)).
            format!("scrypt:65536:1:1$salt${scrypt_digest}"),
            format!("scrypt:1024:8:1$salt${digest}"),
        ] {
            assert!(
                matches!(error(&hash), HashFormatError::Malformed { .. }),
                "{hash}"
            );
        }
    }

    #[test]
    fn unsupported_digests_and_absurd_costs_are_refused_before_computing() {
        let digest = "e4c90000cc15b07270ae3f680f0c2ee380c401b482b8e409c3f697cbbcac2c41";
        let scrypt_digest = &SCRYPT_SMALL[SCRYPT_SMALL.rfind('$').unwrap() + 1..];
        for hash in [
            format!("pbkdf2:sha3_256:1000$salt${digest}"),
            format!("pbkdf2:sha384:1000$salt${digest}"),
            format!("pbkdf2:SHA256:1000$salt${digest}"),
            format!("pbkdf2::1000$salt${digest}"),
            format!("pbkdf2:sha256:10000001$salt${digest}"),
            format!("pbkdf2:sha256:4294967295$salt${digest}"),
            // 1 GiB, 512 MiB through p, and overflowing u64.
            format!("scrypt:1048576:8:1$salt${scrypt_digest}"),
            format!("scrypt:262144:8:2$salt${scrypt_digest}"),
            format!("scrypt:9223372036854775808:8:1$salt${scrypt_digest}"),
            format!("scrypt:1024:4294967295:4294967295$salt${scrypt_digest}"),
        ] {
            assert!(
                matches!(error(&hash), HashFormatError::Unsupported { .. }),
                "{hash}"
            );
        }
        // The largest accepted scrypt is exactly at the bound (and not computed here).
        assert!(parse_scrypt(vec!["262144", "8", "1"]).is_ok());
    }

    #[test]
    fn salts_are_text_and_may_be_empty_and_digests_are_lowercase_hex() {
        // Vectors from Python: hashlib.pbkdf2_hmac("sha256", b"pw", salt.encode(), 1).hex()
        // for the salts "sält" and "". werkzeug 3.1.9's check_password_hash accepts both
        // hashes, and rejects the first with its digest in upper case.
        let non_ascii_salt =
            "pbkdf2:sha256:1$sält$056e65a934ce530aca2840be33972212d42a1e6f64b599a3c6ed44bc300da4df";
        let empty_salt =
            "pbkdf2:sha256:1$$6a65192736d636be9f08743ea5a9e37cf93c2701cc689aac593a23a0a9df5677";
        assert!(verifies("pw", non_ascii_salt));
        assert!(verifies("pw", empty_salt));
        assert!(!verifies("pW", empty_salt));
        let (method_and_salt, digest) = non_ascii_salt.rsplit_once('$').unwrap();
        let upper = format!("{method_and_salt}${}", digest.to_uppercase());
        assert!(matches!(error(&upper), HashFormatError::Malformed { .. }));
    }
}
