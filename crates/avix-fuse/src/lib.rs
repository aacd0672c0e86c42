//! avix-fuse
