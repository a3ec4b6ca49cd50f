//! UDP notes: one datagram is one UTF-8 message.
