//! Golden vectors: fixed keys and fixed randomness give fixed bytes on the wire.
