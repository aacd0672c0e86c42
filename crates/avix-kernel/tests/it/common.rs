//! A booted kernel in a temporary root: avix-testkit's, shared with the kernel's own tests.

pub(crate) use avix_testkit::kernel::{TestKernel, p, wait_exit, wait_state};
