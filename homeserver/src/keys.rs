//! The server's signing keys: read from the key file (Synapse's format), or
//! generated on first start and written with owner-only permissions.

use std::io::Write;
use std::path::Path;

use myelin_proto::signing::{KeyPair, parse_key_file};

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot read signing key file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("signing key file {path}: {source}")]
    Parse {
        path: String,
        source: myelin_proto::signing::KeyError,
    },
    #[error("cannot write signing key file {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot generate a signing key: {0}")]
    Generate(myelin_proto::signing::KeyError),
}

/// Loads the keys at `path`, generating a new key file when there is none.
/// The first key signs; the others are older keys still published.
pub fn load_or_generate(path: &Path) -> Result<Vec<KeyPair>, KeyFileError> {
    let display = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => parse_key_file(&text).map_err(|source| KeyFileError::Parse {
            path: display,
            source,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = KeyPair::generate().map_err(KeyFileError::Generate)?;
            write_new(path, &format!("{}\n", key.to_line())).map_err(|source| {
                KeyFileError::Write {
                    path: display,
                    source,
                }
            })?;
            tracing::info!(path = %path.display(), key_id = key.key_id(), "generated a new signing key");
            Ok(vec![key])
        }
        Err(source) => Err(KeyFileError::Read {
            path: display,
            source,
        }),
    }
}

/// Writes a new file atomically (temporary file, fsync, rename), readable
/// by the owner only.
fn write_new(path: &Path, contents: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut file = opts.open(&tmp)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_once_then_loads_the_same_key() {
        let dir = std::env::temp_dir().join(format!("myelin-keys-{}", std::process::id()));
        let path = dir.join("signing.key");
        let first = load_or_generate(&path).expect("generate");
        let second = load_or_generate(&path).expect("load");
        assert_eq!(first[0].public_key(), second[0].public_key());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, "not a key\n").expect("write");
        assert!(matches!(
            load_or_generate(&path),
            Err(KeyFileError::Parse { .. })
        ));
        std::fs::remove_dir_all(&dir).ok();
    }
}
