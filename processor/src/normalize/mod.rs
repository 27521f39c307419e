//! Vendor normalizers (being written).
