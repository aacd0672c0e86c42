//! avix-auth
