//! The device identity: a long-term X25519 key pair (the Noise static key), its device id and
//! spoken fingerprint, and the editable device name, kept in the config folder.
//!
//! Files (in the folder given, normally [`default_config_dir`]; created with mode 0700):
//! - `identity.key`: one line, 64 hex digits of the private key, mode 0600. A key file that is
//!   not a regular file (a symlink, a folder, a FIFO) or that its group or others can read is
//!   refused with a clear error, never used.
//! - `device.json`: `{"name": "..."}`; the default name is the host name.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::rng::{Entropy, OsEntropy};
use super::{SecureError, hex, unhex, words};

/// The longest device name, in UTF-8 bytes, that Ferry sends or accepts.
pub const MAX_DEVICE_NAME_BYTES: usize = 64;

const KEY_FILE: &str = "identity.key";
const DEVICE_FILE: &str = "device.json";

/// `$XDG_CONFIG_HOME/ferry`, or `~/.config/ferry` (what `dirs::config_dir` gives on Linux).
pub fn default_config_dir() -> Option<PathBuf> {
    dirs::config_dir().map(|d| d.join("ferry"))
}

/// This device: its key pair and name.
#[derive(Clone)]
pub struct Identity {
    private: [u8; 32],
    public: [u8; 32],
    name: String,
}

impl std::fmt::Debug for Identity {
    // Never print the private key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("device_id", &self.device_id())
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize, Deserialize)]
struct DeviceFile {
    name: String,
}

impl Identity {
    /// An identity from a private key (tests and golden vectors).
    pub fn from_private(private: [u8; 32], name: &str) -> Self {
        let public = public_key_of(&private);
        Identity {
            private,
            public,
            name: clip_name(name),
        }
    }

    /// A fresh identity from `entropy`, not stored anywhere.
    pub fn generate(entropy: &mut dyn Entropy, name: &str) -> Result<Self, SecureError> {
        let mut private = [0u8; 32];
        entropy.fill(&mut private)?;
        Ok(Self::from_private(private, name))
    }

    /// Loads the identity kept in `dir`, creating the folder (0700), the key (0600) and the
    /// device file on first use.
    pub fn load_or_create(dir: &Path) -> Result<Self, SecureError> {
        create_private_dir(dir)?;
        let key_path = dir.join(KEY_FILE);
        let private = match fs::symlink_metadata(&key_path) {
            Ok(_) => read_key_file(&key_path)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut private = [0u8; 32];
                OsEntropy.fill(&mut private)?;
                let text = format!("{}\n", hex(&private));
                if create_private_file_once(&key_path, text.as_bytes())? {
                    private
                } else {
                    // Another process made the identity just now: use that one.
                    read_key_file(&key_path)?
                }
            }
            Err(e) => return Err(key_error(&key_path, e.to_string())),
        };
        let device_path = dir.join(DEVICE_FILE);
        let name = match fs::read(&device_path) {
            Ok(bytes) => serde_json::from_slice::<DeviceFile>(&bytes)
                .map(|d| d.name)
                .map_err(|e| key_error(&device_path, e.to_string()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let name = default_device_name();
                let json = serde_json::to_vec_pretty(&DeviceFile { name: name.clone() })
                    .map_err(|e| key_error(&device_path, e.to_string()))?;
                if !create_private_file_once(&device_path, &json)? {
                    // Named by another process just now: its name stands.
                    return Self::load_or_create(dir);
                }
                name
            }
            Err(e) => return Err(key_error(&device_path, e.to_string())),
        };
        Ok(Self::from_private(private, &name))
    }

    /// The same key under another name, for this run only (`ferry serve --name`): the name
    /// the handshake tells peers, as the LAN announcement and LocalSend already do.
    pub fn called(&self, name: &str) -> Identity {
        Identity::from_private(self.private, name)
    }

    /// Renames this device and stores the new name in `dir`.
    pub fn rename(&mut self, dir: &Path, name: &str) -> Result<(), SecureError> {
        self.name = clip_name(name);
        store_name(&dir.join(DEVICE_FILE), &self.name)
    }

    pub fn public_key(&self) -> &[u8; 32] {
        &self.public
    }

    pub(crate) fn private_key(&self) -> &[u8; 32] {
        &self.private
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// 32 hex digits: the first 16 bytes of BLAKE3 of the public key.
    pub fn device_id(&self) -> String {
        device_id(&self.public)
    }

    /// Six words two people can compare aloud: see [`fingerprint`].
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.public)
    }
}

/// The X25519 public key of a private key.
pub fn public_key_of(private: &[u8; 32]) -> [u8; 32] {
    let secret = x25519_dalek::StaticSecret::from(*private);
    x25519_dalek::PublicKey::from(&secret).to_bytes()
}

/// The first 16 bytes of BLAKE3(public key), raw.
pub fn device_id_bytes(public: &[u8; 32]) -> [u8; 16] {
    let hash = blake3::hash(public);
    let mut id = [0u8; 16];
    id.copy_from_slice(&hash.as_bytes()[..16]);
    id
}

/// The device id as 32 lowercase hex digits.
pub fn device_id(public: &[u8; 32]) -> String {
    hex(&device_id_bytes(public))
}

/// Six words from the fixed list (48 bits): the first 6 bytes of
/// `derive_key("ferry 2025 secure v1 fingerprint", public key)`, one word per byte, joined
/// by spaces. Two keys with the same fingerprint take about 2^47 tries to find.
pub fn fingerprint(public: &[u8; 32]) -> String {
    let digest = blake3::derive_key("ferry 2025 secure v1 fingerprint", public);
    digest[..6]
        .iter()
        .map(|&b| words::WORDS[usize::from(b)])
        .collect::<Vec<_>>()
        .join(" ")
}

/// The host name, or "ferry" when there is none.
pub fn default_device_name() -> String {
    // std has no gethostname and the crate forbids unsafe code, so read what the kernel shows.
    let from_file = fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| fs::read_to_string("/etc/hostname"))
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty());
    clip_name(&from_file.unwrap_or_else(|| "ferry".to_owned()))
}

/// Cuts a name to [`MAX_DEVICE_NAME_BYTES`] at a character boundary.
pub fn clip_name(name: &str) -> String {
    let name = name.trim();
    let mut end = name.len().min(MAX_DEVICE_NAME_BYTES);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].to_owned()
}

fn key_error(path: &Path, reason: String) -> SecureError {
    SecureError::KeyFile {
        path: path.display().to_string(),
        reason,
    }
}

fn store_name(path: &Path, name: &str) -> Result<(), SecureError> {
    let json = serde_json::to_vec_pretty(&DeviceFile {
        name: name.to_owned(),
    })
    .map_err(|e| key_error(path, e.to_string()))?;
    write_private_file(path, &json)
}

/// Creates `dir` (and parents) with mode 0700 on Unix.
pub(crate) fn create_private_dir(dir: &Path) -> Result<(), SecureError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .map_err(|e| key_error(dir, format!("cannot create the folder: {e}")))
}

/// Writes `bytes` to `path` atomically (a 0600 temp file renamed over it).
pub(crate) fn write_private_file(path: &Path, bytes: &[u8]) -> Result<(), SecureError> {
    let tmp = write_private_tmp(path, bytes)?;
    fs::rename(&tmp, path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        key_error(path, format!("cannot write: {e}"))
    })
}

/// Creates `path` with `bytes` (0600) only if it does not exist yet: `Ok(false)` when another
/// process (or thread) created it first, whose copy then stands. Two Ferry processes
/// starting at once (a `ferry serve` and a `ferry listen`) thus end up with one identity.
pub(crate) fn create_private_file_once(path: &Path, bytes: &[u8]) -> Result<bool, SecureError> {
    let tmp = write_private_tmp(path, bytes)?;
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(key_error(path, format!("cannot write: {e}"))),
    }
}

/// Writes `bytes` to a temp file of this process and call of its own beside `path`, synced.
fn write_private_tmp(path: &Path, bytes: &[u8]) -> Result<std::path::PathBuf, SecureError> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp.{}.{n}", std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()
    })();
    match result {
        Ok(()) => Ok(tmp),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(key_error(path, format!("cannot write: {e}")))
        }
    }
}

/// Checks that `path` is a regular file only its owner can read; the error says what is wrong.
pub(crate) fn check_private_file(path: &Path) -> Result<(), SecureError> {
    let meta = fs::symlink_metadata(path).map_err(|e| key_error(path, e.to_string()))?;
    if !meta.file_type().is_file() {
        return Err(key_error(
            path,
            "not a regular file; refusing to use it".to_owned(),
        ));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(key_error(
                path,
                format!("mode {mode:o} lets other users read it; run `chmod 600` on it"),
            ));
        }
    }
    Ok(())
}

fn read_key_file(path: &Path) -> Result<[u8; 32], SecureError> {
    check_private_file(path)?;
    let text = fs::read_to_string(path).map_err(|e| key_error(path, e.to_string()))?;
    unhex::<32>(text.trim())
        .ok_or_else(|| key_error(path, "not 64 hex digits of a private key".to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_id_and_fingerprint_follow_the_public_key() {
        let a = Identity::from_private([1; 32], "a");
        let b = Identity::from_private([2; 32], "b");
        assert_eq!(a.device_id().len(), 32);
        assert_eq!(a.fingerprint().split(' ').count(), 6);
        assert_ne!(a.device_id(), b.device_id());
        assert_ne!(a.fingerprint(), b.fingerprint());
        assert_eq!(
            a.fingerprint(),
            Identity::from_private([1; 32], "other").fingerprint()
        );
    }

    #[test]
    fn names_are_clipped_at_a_character_boundary() {
        let long = "é".repeat(40);
        let clipped = clip_name(&long);
        assert_eq!(clipped.len(), 64);
        assert_eq!(clip_name("  x  "), "x");
    }
}

#[cfg(test)]
mod race_tests {
    use super::*;

    #[test]
    fn threads_creating_one_identity_at_once_all_get_the_same_key() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("ferry");
        let keys: Vec<[u8; 32]> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| scope.spawn(|| *Identity::load_or_create(&conf).unwrap().public_key()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(keys.windows(2).all(|w| w[0] == w[1]), "{keys:?}");
        assert_eq!(
            Identity::load_or_create(&conf).unwrap().public_key(),
            &keys[0]
        );
        // No temp files are left behind.
        let left: Vec<_> = std::fs::read_dir(&conf)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.contains("tmp"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }
}
