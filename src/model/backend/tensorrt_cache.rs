//! TensorRT's engine cache: a directory of its own per bundle, keyed by the
//! engine files' contents.

use std::path::PathBuf;

use super::options::{BackendKind, BackendOptions};
use crate::error::{Error, Result};
use crate::model::bundle::{Bundle, EngineRole};

/// `options` with the TensorRT engine cache moved into a subdirectory of its
/// own for `bundle` ([`engine_cache_key`]); other backends unchanged.
///
/// ONNX Runtime's TensorRT provider names cached engines by a hash of the
/// graph (its structure and names, not the weights' values), so two bundles
/// exported from the same architecture with different weights would load
/// each other's engines and give the other model's results, silently.
pub fn per_bundle_options(options: &BackendOptions, bundle: &Bundle) -> Result<BackendOptions> {
    let mut options = options.clone();
    if options.kind == BackendKind::TensorRt {
        let files: Vec<PathBuf> = EngineRole::ALL
            .iter()
            .map(|r| bundle.engine_path(*r))
            .collect();
        let key = engine_cache_key(&bundle.manifest.bundle.name, &files)?;
        options.tensorrt.engine_cache_dir = Some(options.tensorrt.cache_dir().join(key));
    }
    Ok(options)
}

/// The name of a bundle's engine cache directory: the bundle's name (only
/// letters, digits, `-` and `_`, for the person looking in the cache) and a
/// hash of the engine files' contents.
///
/// The contents, not sizes and modification times: a re-export with new
/// weights has the same sizes, and `cp -p`, `rsync -a` or `tar` keep times, so
/// only the bytes say reliably that an engine is stale, and a stale engine
/// means wrong masks, not an error. Reading the files costs a few seconds for
/// the full model (several GB) once per load on the `tensorrt` backend only,
/// while ONNX Runtime reads them anyway.
pub fn engine_cache_key(bundle_name: &str, files: &[PathBuf]) -> Result<String> {
    let mut name: String = bundle_name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(48)
        .collect();
    if name.is_empty() {
        name = "bundle".into();
    }
    let mut h = ContentHash::new();
    for path in files {
        let mut f = std::fs::File::open(path).map_err(|e| Error::Backend {
            backend: "tensorrt".into(),
            message: format!(
                "cannot read {} to key its engine cache: {e}",
                path.display()
            ),
        })?;
        h.file(&mut f).map_err(|e| Error::Backend {
            backend: "tensorrt".into(),
            message: format!(
                "cannot read {} to key its engine cache: {e}",
                path.display()
            ),
        })?;
    }
    Ok(format!("{name}-{:016x}", h.finish()))
}

/// A 64-bit hash of byte streams, fast enough to read GB-sized engines at
/// disk speed (a multiply-rotate over 8-byte words, as in FxHash / wyhash).
/// Written here because no hash crate is a dependency and the key needs
/// neither cryptographic strength nor more than 64 bits: it tells apart the
/// few bundles on one machine, not an adversary's.
struct ContentHash(u64);

impl ContentHash {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;

    fn new() -> ContentHash {
        ContentHash(0x243F_6A88_85A3_08D3)
    }

    fn word(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(23) ^ w).wrapping_mul(Self::K);
    }

    /// One file: its bytes, then its length, so that file boundaries count.
    fn file(&mut self, f: &mut impl std::io::Read) -> std::io::Result<()> {
        let mut buf = vec![0u8; 1 << 20];
        let mut len = 0u64;
        let mut tail: Vec<u8> = Vec::with_capacity(8);
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            len += n as u64;
            let mut data = &buf[..n];
            // Complete the word a previous read left unfinished.
            if !tail.is_empty() {
                let take = (8 - tail.len()).min(data.len());
                tail.extend_from_slice(&data[..take]);
                data = &data[take..];
                if tail.len() == 8 {
                    self.word(u64::from_le_bytes(tail[..].try_into().unwrap_or([0; 8])));
                    tail.clear();
                }
            }
            let words = data.chunks_exact(8);
            tail.extend_from_slice(words.remainder());
            for w in words {
                self.word(u64::from_le_bytes(w.try_into().unwrap_or([0; 8])));
            }
        }
        if !tail.is_empty() {
            let mut last = [0u8; 8];
            last[..tail.len()].copy_from_slice(&tail);
            self.word(u64::from_le_bytes(last));
        }
        self.word(len);
        Ok(())
    }

    fn finish(&self) -> u64 {
        let mut x = self.0;
        x ^= x >> 33;
        x = x.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
        x ^ (x >> 33)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(parts: &[&[u8]]) -> u64 {
        let mut h = ContentHash::new();
        for p in parts {
            h.file(&mut &p[..]).unwrap();
        }
        h.finish()
    }

    /// Hands out its bytes a few at a time, as a reader may.
    struct Trickle<'a>(&'a [u8], usize);

    impl std::io::Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.1.min(buf.len()).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn the_content_hash_sees_every_byte_and_every_file_boundary() {
        let a: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        let mut b = a.clone();
        b[999] ^= 1;
        assert_ne!(hash(&[&a]), hash(&[&b]), "same size, one byte differs");
        b = a.clone();
        b[0] ^= 0x80;
        assert_ne!(hash(&[&a]), hash(&[&b]));
        assert_ne!(
            hash(&[&a[..500], &a[500..]]),
            hash(&[&a]),
            "file boundaries count"
        );
        assert_ne!(
            hash(&[&a[..3]]),
            hash(&[&[a[0], a[1], a[2], 0][..]]),
            "length counts"
        );
        // However the reads are split, the same bytes give the same hash.
        for step in [1, 3, 8, 13] {
            let mut h = ContentHash::new();
            h.file(&mut Trickle(&a, step)).unwrap();
            assert_eq!(h.finish(), hash(&[&a]), "reads of {step}");
        }
    }
}
