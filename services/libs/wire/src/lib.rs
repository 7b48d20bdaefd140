//! The replication wire protocol (being written).
