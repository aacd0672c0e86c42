//! The kernel's view of supervised services. The supervisor lives outside the kernel (it
//! spawns host processes and speaks sockets); the doors reach it through this trait. Every
//! operation that changes something takes the caller and enforces [`crate::policy`]
//! (operators control services, admins install them, agents neither), so no door decides it.

use std::path::Path;

use avix_llm::BoxFuture;
use avix_proto::service::ServiceStatus;
use avix_vfs::Caller;

/// A failed service operation: its kind and what to do.
pub type ServiceError = avix_proto::Error;

/// Controls installed and built-in services.
pub trait ServiceControl: Send + Sync + 'static {
    /// Every service, sorted by name.
    fn list(&self) -> Vec<ServiceStatus>;
    /// One service.
    fn status(&self, name: &str) -> Result<ServiceStatus, ServiceError>;
    /// Starts a stopped or failed service; resolves once it registered (or failed to).
    fn start(
        &self,
        caller: &Caller,
        name: &str,
    ) -> BoxFuture<'static, Result<ServiceStatus, ServiceError>>;
    /// Stops a service (SIGTERM, then SIGKILL after a grace period).
    fn stop(
        &self,
        caller: &Caller,
        name: &str,
    ) -> BoxFuture<'static, Result<ServiceStatus, ServiceError>>;
    /// Stops and starts again.
    fn restart(
        &self,
        caller: &Caller,
        name: &str,
    ) -> BoxFuture<'static, Result<ServiceStatus, ServiceError>>;
    /// Installs the unit in host directory `dir` (it holds `service.yaml`).
    fn install(
        &self,
        caller: &Caller,
        dir: &Path,
    ) -> BoxFuture<'static, Result<ServiceStatus, ServiceError>>;
    /// Removes an installed service; a running one only with `force` (it is stopped first).
    fn uninstall(
        &self,
        caller: &Caller,
        name: &str,
        force: bool,
    ) -> BoxFuture<'static, Result<(), ServiceError>>;
}
