//! Keys and credentials: the master key and its HKDF sub-keys, API keys, passwords and the
//! secrets box.
//!
//! # Layout
//! - [`master_key`]: the 32-byte master key, its sources, and the sub-keys derived from it.
//! - [`api_key`]: generating API keys and checking them against their keyed hash.
//! - [`captoken`]: HMAC-signed capability tokens for calls that leave the daemon.
//! - [`password`]: argon2id password hashes.
//! - [`atptoken`]: the tokens ATP clients log in for.
//! - [`signed`]: the signed-token format both kinds of token share.
//! - [`secret_box`]: AES-256-GCM sealing of secrets, bound to owner and name.
//! - [`hex`]: lowercase hex, used by every stored MAC.
//!
//! Every type that holds key material has a `Debug` that leaves it out, and zeroes it on drop.
//! Every MAC comparison is constant-time.

pub mod api_key;
pub mod atptoken;
pub mod captoken;
pub mod hex;
pub mod master_key;
pub mod password;
pub mod secret_box;
pub mod signed;

pub use api_key::ApiKey;
pub use master_key::{MasterKey, MasterKeyError, Purpose, SubKey};
