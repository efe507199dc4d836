//! Integration tests for `deployctl-probes`, one binary. Every probe here
//! talks to a real HTTP/1.1 server on 127.0.0.1 (`support`), never to a
//! mock of the client.

mod http;
mod probe_for;
mod prometheus;
mod support;
mod webhook;
