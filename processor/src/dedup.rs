//! Redis delivery dedup (being written).
