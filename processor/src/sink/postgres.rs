//! PostgreSQL sink (being written).
