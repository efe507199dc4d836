//! HTTP and Prometheus health probes (in progress).
