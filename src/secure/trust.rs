//! Trusted devices: who was paired with, by name and pinned public key, kept as `trusted.json`
//! (mode 0600) in the config folder. A key is never re-pinned silently: a known name with a
//! different key is [`SecureError::KeyChanged`] until the user forgets the old device.
//!
//! Where a device is comes only from a completed handshake with its pinned key ([`SeenAt`]):
//! `last_address` is where its server listens (sent to by name), `last_ip` the IP it was last
//! proven at, port known or not (probed by discovery, never sent to). The file stays at
//! version 1 while fields are only added: an absent one takes its default, an unknown one is
//! ignored, so older and newer Ferry read each other's files.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::identity::{
    check_private_file, create_private_dir, device_id, fingerprint, write_private_file,
};
use super::lookalike::looks_alike;
use super::{SecureError, hex, unhex};

const TRUST_FILE: &str = "trusted.json";
/// A trust store larger than this is refused rather than read (it is a hand-sized list).
const MAX_TRUST_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// One trusted device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustedDevice {
    pub name: String,
    /// 64 hex digits of the X25519 public key.
    pub public_key: String,
    pub device_id: String,
    /// Where its Ferry server was last known to listen, as `ip:port`.
    pub last_address: Option<String>,
    /// The IP its key was last proven at, even when no port was known (a `ferry send` runs no
    /// server): where discovery probes it, never where files are sent. One this Ferry cannot
    /// read (another Ferry's) is unknown: a hint must not make the file unreadable.
    #[serde(
        default,
        deserialize_with = "lenient_ip",
        skip_serializing_if = "Option::is_none"
    )]
    pub last_ip: Option<IpAddr>,
    pub first_seen_unix_secs: u64,
    pub last_seen_unix_secs: u64,
}

impl TrustedDevice {
    /// The pinned key as bytes (`None` if the file was edited into nonsense).
    pub fn key(&self) -> Option<[u8; 32]> {
        unhex::<32>(&self.public_key)
    }

    /// Its last address as a socket address (`None`: none, or one that does not parse).
    pub fn last_socket_addr(&self) -> Option<SocketAddr> {
        self.last_address.as_deref()?.parse().ok()
    }

    /// Takes in where its key was just proven (see [`SeenAt`]); true if that changed
    /// anything stored. Proven at another IP with no port known, its old address is stale
    /// (a laptop that moved networks and now only sends): it goes, rather than files being
    /// sent there later; at the same IP the port it said before stays.
    fn seen_at(&mut self, seen: SeenAt) -> bool {
        let before = (self.last_address.clone(), self.last_ip);
        match seen {
            SeenAt::Server(addr) => {
                // An IPv4-mapped address is its IPv4 one (a link-local one keeps its scope).
                let ip = addr.ip().to_canonical();
                let addr = match ip.is_ipv4() {
                    true => SocketAddr::new(ip, addr.port()),
                    false => addr,
                };
                self.last_address = Some(addr.to_string());
                self.last_ip = Some(addr.ip());
            }
            SeenAt::Ip(ip) => {
                let ip = ip.to_canonical();
                if self
                    .last_socket_addr()
                    .is_some_and(|last| last.ip().to_canonical() != ip)
                {
                    self.last_address = None;
                }
                self.last_ip = Some(ip);
            }
        }
        before != (self.last_address.clone(), self.last_ip)
    }
}

/// An IP address as written, or `None` for anything else (see `TrustedDevice::last_ip`).
fn lenient_ip<'de, D: serde::Deserializer<'de>>(de: D) -> Result<Option<IpAddr>, D::Error> {
    let value = serde_json::Value::deserialize(de)?;
    Ok(value.as_str().and_then(|s| s.parse().ok()))
}

/// Where a device's key was just proven by a completed handshake (and only then: nothing
/// unauthenticated may move a trusted device).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeenAt {
    /// Its Ferry server listens here (this side connected to it, or the sender said the
    /// port at the IP it came from).
    Server(SocketAddr),
    /// It came from this IP and said no port (`ferry send` runs no server).
    Ip(IpAddr),
}

impl SeenAt {
    /// A sender that came from `ip` and said its own server listens on `serves_on` (that
    /// port at that IP), or said no port (the IP alone: a sender's own port is a passing
    /// one, and a guessed one would send files to whatever else listens there).
    pub fn sender(ip: IpAddr, serves_on: Option<u16>) -> SeenAt {
        match serves_on {
            Some(port) => SeenAt::Server(SocketAddr::new(ip, port)),
            None => SeenAt::Ip(ip),
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct TrustFile {
    version: u32,
    devices: Vec<TrustedDevice>,
}

/// What the store says about a peer after a handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Its key is pinned (under this name in the store).
    Trusted(TrustedDevice),
    /// Neither its key nor its name is known: first contact.
    Unknown,
}

/// The trusted devices, loaded from and saved to one folder.
#[derive(Debug)]
pub struct TrustStore {
    path: PathBuf,
    devices: Vec<TrustedDevice>,
}

impl TrustStore {
    /// Loads `trusted.json` from `dir` (an empty store if there is none yet).
    pub fn load(dir: &Path) -> Result<Self, SecureError> {
        let path = dir.join(TRUST_FILE);
        let err = |reason: String| SecureError::TrustStore {
            path: path.display().to_string(),
            reason,
        };
        let devices = match std::fs::symlink_metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(err(e.to_string())),
            Ok(meta) => {
                check_private_file(&path)?;
                if meta.len() > MAX_TRUST_FILE_BYTES {
                    return Err(err(format!("{} bytes is too large", meta.len())));
                }
                let bytes = std::fs::read(&path).map_err(|e| err(e.to_string()))?;
                let file: TrustFile =
                    serde_json::from_slice(&bytes).map_err(|e| err(e.to_string()))?;
                file.devices
            }
        };
        Ok(TrustStore { path, devices })
    }

    /// Writes the store (creating the folder 0700 and the file 0600).
    pub fn save(&self) -> Result<(), SecureError> {
        if let Some(dir) = self.path.parent() {
            create_private_dir(dir)?;
        }
        let file = TrustFile {
            version: 1,
            devices: self.devices.clone(),
        };
        let json = serde_json::to_vec_pretty(&file).map_err(|e| SecureError::TrustStore {
            path: self.path.display().to_string(),
            reason: e.to_string(),
        })?;
        write_private_file(&self.path, &json)
    }

    pub fn devices(&self) -> &[TrustedDevice] {
        &self.devices
    }

    pub fn by_key(&self, public_key: &[u8; 32]) -> Option<&TrustedDevice> {
        let wanted = hex(public_key);
        self.devices.iter().find(|d| d.public_key == wanted)
    }

    pub fn by_name(&self, name: &str) -> Option<&TrustedDevice> {
        self.devices.iter().find(|d| d.name == name)
    }

    /// Whether `name` is, or looks the same as, a trusted device's name: the same letters
    /// whatever their case, whatever invisible characters (zero-width spaces, bidi marks,
    /// variation selectors, Hangul fillers) are mixed in, in fullwidth or compatibility
    /// forms, or with Cyrillic or Greek letters drawn like Latin ones, so neither
    /// `laptop\u{200B}` nor `ｌａｐｔｏｐ` nor a Cyrillic `lаptop` can pass for `laptop` (see
    /// [`super::lookalike`]).
    pub fn looks_like_a_trusted_name(&self, name: &str) -> bool {
        self.devices.iter().any(|d| looks_alike(&d.name, name))
    }

    /// Why a device with `public_key` (not trusted) cannot be known as `name`: a trusted
    /// device has that name (`KeyChanged`), or one that looks like it (`LooksLikeTrusted`:
    /// an honest device so named is told to take another name; the reason also goes to the
    /// peer, so it does not say which trusted name).
    fn name_taken(&self, name: &str, public_key: &[u8; 32]) -> Option<SecureError> {
        let (name, fingerprint) = (name.to_owned(), fingerprint(public_key));
        if self.by_name(&name).is_some() {
            Some(SecureError::KeyChanged { name, fingerprint })
        } else if self.looks_like_a_trusted_name(&name) {
            Some(SecureError::LooksLikeTrusted { name, fingerprint })
        } else {
            None
        }
    }

    /// Checks a peer that presented `public_key` and called itself `name`: trusted by key,
    /// unknown, or `KeyChanged` (`LooksLikeTrusted`) when the name is (looks like) a trusted
    /// one under a different key.
    pub fn check(&self, name: &str, public_key: &[u8; 32]) -> Result<Verdict, SecureError> {
        if let Some(device) = self.by_key(public_key) {
            return Ok(Verdict::Trusted(device.clone()));
        }
        match self.name_taken(name, public_key) {
            Some(refusal) => Err(refusal),
            None => Ok(Verdict::Unknown),
        }
    }

    /// Trusts a device (after pairing or "Accept and trust"), or refreshes its address and
    /// last-seen time if its key is already pinned. A name already pinned to another key is
    /// `KeyChanged`: forget that device first. Call [`TrustStore::save`] afterwards.
    pub fn pin(
        &mut self,
        name: &str,
        public_key: &[u8; 32],
        seen: Option<SeenAt>,
        now_unix_secs: u64,
    ) -> Result<&TrustedDevice, SecureError> {
        let key_hex = hex(public_key);
        if let Some(i) = self.devices.iter().position(|d| d.public_key == key_hex) {
            let device = &mut self.devices[i];
            device.last_seen_unix_secs = now_unix_secs;
            if let Some(seen) = seen {
                device.seen_at(seen);
            }
            return Ok(&self.devices[i]);
        }
        if let Some(refusal) = self.name_taken(name, public_key) {
            return Err(refusal);
        }
        let mut device = TrustedDevice {
            name: name.to_owned(),
            public_key: key_hex,
            device_id: device_id(public_key),
            last_address: None,
            last_ip: None,
            first_seen_unix_secs: now_unix_secs,
            last_seen_unix_secs: now_unix_secs,
        };
        if let Some(seen) = seen {
            device.seen_at(seen);
        }
        self.devices.push(device);
        Ok(&self.devices[self.devices.len() - 1])
    }

    /// Renames a trusted device; false if `old` is unknown or `new` is, or looks like,
    /// another one's name. Each other device is asked: looking alike is not transitive, so
    /// a `new` that looks like `old` may still look like another device's name.
    pub fn rename(&mut self, old: &str, new: &str) -> bool {
        let taken = |d: &TrustedDevice| d.name != old && looks_alike(&d.name, new);
        if self.devices.iter().any(taken) {
            return false;
        }
        match self.devices.iter_mut().find(|d| d.name == old) {
            Some(device) => {
                device.name = new.to_owned();
                true
            }
            None => false,
        }
    }

    /// Forgets a trusted device by name; false if there was none.
    pub fn forget(&mut self, name: &str) -> bool {
        let before = self.devices.len();
        self.devices.retain(|d| d.name != name);
        self.devices.len() != before
    }
}

/// The trust store as every thread of a process shares it, and as other Ferry processes
/// (a `ferry listen` beside a `ferry serve`) change it: each read first reloads the file if
/// it changed on disk since it was last read, each change is saved at once.
#[derive(Debug, Clone)]
pub struct TrustBook {
    dir: PathBuf,
    inner: std::sync::Arc<std::sync::Mutex<BookState>>,
}

#[derive(Debug)]
struct BookState {
    store: TrustStore,
    /// The file's modification time and length when it was last read or written.
    seen: Option<(std::time::SystemTime, u64)>,
}

fn file_stamp(path: &Path) -> Option<(std::time::SystemTime, u64)> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn now_unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl TrustBook {
    /// Loads the store kept in `dir` (empty if there is none yet).
    pub fn open(dir: &Path) -> Result<Self, SecureError> {
        let store = TrustStore::load(dir)?;
        let seen = file_stamp(&store.path);
        Ok(TrustBook {
            dir: dir.to_path_buf(),
            inner: std::sync::Arc::new(std::sync::Mutex::new(BookState { store, seen })),
        })
    }

    /// The folder the store lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Runs `f` on the current store (reloaded first if the file changed on disk; a file
    /// that cannot be read now keeps the last good copy, and says so in the log).
    fn with<T>(&self, f: impl FnOnce(&mut TrustStore) -> T) -> T {
        let mut state = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = file_stamp(&state.store.path);
        if now != state.seen {
            match TrustStore::load(&self.dir) {
                Ok(store) => state.store = store,
                Err(e) => log::warn!("keeping the trusted devices read earlier: {e}"),
            }
            state.seen = now;
        }
        f(&mut state.store)
    }

    /// Runs `f` on the store and saves it if `f` returned `Ok(true)`.
    fn change(
        &self,
        f: impl FnOnce(&mut TrustStore) -> Result<bool, SecureError>,
    ) -> Result<bool, SecureError> {
        let path = self.dir.join(TRUST_FILE);
        let changed = self.with(|store| -> Result<bool, SecureError> {
            if f(store)? {
                store.save()?;
                return Ok(true);
            }
            Ok(false)
        })?;
        if changed {
            let mut state = self
                .inner
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            state.seen = file_stamp(&path);
        }
        Ok(changed)
    }

    /// Every trusted device, as stored now.
    pub fn devices(&self) -> Vec<TrustedDevice> {
        self.with(|store| store.devices.clone())
    }

    /// See [`TrustStore::check`].
    pub fn check(&self, name: &str, public_key: &[u8; 32]) -> Result<Verdict, SecureError> {
        self.with(|store| store.check(name, public_key))
    }

    pub fn by_key(&self, public_key: &[u8; 32]) -> Option<TrustedDevice> {
        self.with(|store| store.by_key(public_key).cloned())
    }

    pub fn by_name(&self, name: &str) -> Option<TrustedDevice> {
        self.with(|store| store.by_name(name).cloned())
    }

    /// Trusts a device (or refreshes its address and last-seen time) and saves the store.
    pub fn pin(
        &self,
        name: &str,
        public_key: &[u8; 32],
        seen: Option<SeenAt>,
    ) -> Result<TrustedDevice, SecureError> {
        let mut pinned = None;
        self.change(|store| {
            pinned = Some(store.pin(name, public_key, seen, now_unix_secs())?.clone());
            Ok(true)
        })?;
        pinned.ok_or_else(|| SecureError::TrustStore {
            path: self.dir.join(TRUST_FILE).display().to_string(),
            reason: "the device was not pinned".into(),
        })
    }

    /// Notes that a trusted device's key was proven (where, see [`SeenAt`]): never adds a
    /// device (one forgotten meanwhile stays forgotten), and saves only when where it is
    /// changed or the last-seen time is an hour old.
    pub fn touch(&self, public_key: &[u8; 32], seen: Option<SeenAt>) -> Result<(), SecureError> {
        let key_hex = hex(public_key);
        self.change(|store| {
            let Some(device) = store.devices.iter_mut().find(|d| d.public_key == key_hex) else {
                return Ok(false);
            };
            let now = now_unix_secs();
            let moved = seen.is_some_and(|seen| device.seen_at(seen));
            if !moved && now.saturating_sub(device.last_seen_unix_secs) < 3600 {
                return Ok(false);
            }
            device.last_seen_unix_secs = now;
            Ok(true)
        })
        .map(|_| ())
    }

    /// Renames a trusted device and saves; false if `old` is unknown or `new` is taken.
    pub fn rename(&self, old: &str, new: &str) -> Result<bool, SecureError> {
        self.change(|store| Ok(store.rename(old, new)))
    }

    /// Forgets a trusted device and saves; false if there was none by that name.
    pub fn forget(&self, name: &str) -> Result<bool, SecureError> {
        self.change(|store| Ok(store.forget(name)))
    }
}

#[cfg(test)]
#[path = "trust_tests.rs"]
mod tests;
