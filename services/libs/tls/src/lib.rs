//! Mutual TLS for replication (being written).
