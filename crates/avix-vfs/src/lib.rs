//! avix-vfs
