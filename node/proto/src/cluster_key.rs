//! The cluster key file: where it is and what it holds, for the node (which
//! creates it, in `p2p`) and for clients (the CLI and the Python package,
//! which only read it).
//!
//! The file is libp2p's pre-shared key text format (`/key/swarm/psk/1.0.0/`,
//! `/base16/`, 64 hex digits); a file holding only the 64 hex digits is
//! accepted too.

use std::path::{Path, PathBuf};

/// The default key file, relative to `$HOME`.
pub const DEFAULT_PATH: &str = ".raynode/cluster.key";
/// The environment variable that names a client's key file.
pub const PATH_ENV: &str = "RAYNODE_CLUSTER_KEY";
/// First line of a key file in libp2p's pre-shared key format.
pub const FILE_HEADER: &str = "/key/swarm/psk/1.0.0/";
/// Key files are never larger than this; anything bigger is malformed.
pub const MAX_FILE_BYTES: u64 = 4096;

/// `$HOME/.raynode/cluster.key`, if there is a home.
pub fn default_path() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|home| PathBuf::from(home).join(DEFAULT_PATH))
}

/// A client's key file: `$RAYNODE_CLUSTER_KEY`, else the default.
pub fn client_path() -> Option<PathBuf> {
    std::env::var_os(PATH_ENV)
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(default_path)
}

/// The key a key file's contents hold.
pub fn parse(bytes: &[u8]) -> Result<[u8; 32], String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())?;
    let trimmed = text.trim();
    if trimmed.starts_with("/key/") {
        let lines: Vec<&str> = trimmed.lines().map(str::trim).collect();
        return match lines.as_slice() {
            [FILE_HEADER, "/base16/", hex] => parse_hex32(hex),
            _ => Err(format!(
                "not a key file of the form {FILE_HEADER}, /base16/, 64 hex digits"
            )),
        };
    }
    parse_hex32(trimmed)
}

/// A key file's contents for `key`.
pub fn file_text(key: &[u8; 32]) -> String {
    format!("{FILE_HEADER}\n/base16/\n{}\n", crate::ids::hex(key))
}

/// Reads the key from `path` (for a client: it never creates one).
pub fn read(path: &Path) -> Result<[u8; 32], String> {
    let what = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let meta = std::fs::metadata(path).map_err(|e| what(&e))?;
    if !meta.is_file() || meta.len() > MAX_FILE_BYTES {
        return Err(what(&format!(
            "not a key file (a regular file under {MAX_FILE_BYTES} bytes)"
        )));
    }
    let bytes = std::fs::read(path).map_err(|e| what(&e))?;
    parse(&bytes).map_err(|e| what(&e))
}

fn parse_hex32(hex: &str) -> Result<[u8; 32], String> {
    if hex.len() != 64 {
        return Err(format!(
            "expected a key file or 64 hex digits, found {} characters",
            hex.len()
        ));
    }
    crate::ids::parse_hex::<32>(hex).ok_or_else(|| "not hex digits".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_parse_and_others_do_not() {
        let key = [7u8; 32];
        assert_eq!(parse(file_text(&key).as_bytes()), Ok(key));
        assert_eq!(parse(crate::ids::hex(&key).as_bytes()), Ok(key));
        assert!(parse(b"/key/swarm/psk/1.0.0/\n/base64/\nAAAA").is_err());
        assert!(parse(b"abc").is_err());
        assert!(parse(&[0xff, 0xfe]).is_err());
        assert!(parse("zz".repeat(32).as_bytes()).is_err());
    }
}
