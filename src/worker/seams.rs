//! How the engine looks host names up and starts threads: the system's way, or (in tests)
//! ways that hang or fail on purpose, so every slow or failing path can be tested.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

/// Looks up a `"host:port"`; may wait on DNS.
pub(crate) type HostLookup = Arc<dyn Fn(&str) -> io::Result<Vec<SocketAddr>> + Send + Sync>;

/// Starts a named thread running the given work.
pub(crate) type Spawner =
    Arc<dyn Fn(&str, Box<dyn FnOnce() + Send>) -> io::Result<JoinHandle<()>> + Send + Sync>;

/// What the engine uses to look names up and to start threads: the system's, or (in tests)
/// ones that hang or fail on purpose.
#[derive(Clone)]
pub(crate) struct Seams {
    pub lookup_host: HostLookup,
    pub spawner: Spawner,
}

impl Seams {
    pub(crate) fn system() -> Self {
        Self {
            lookup_host: Arc::new(|to| to.to_socket_addrs().map(Iterator::collect)),
            spawner: Arc::new(|name, work| thread::Builder::new().name(name.into()).spawn(work)),
        }
    }
}
