//! Journals and records in memory: for tests, and for a daemon that keeps no history.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

use super::{Durable, InvocationKey, InvocationStore, JournalLog};
use crate::storage::StorageError;

/// Journals and records held in memory; every write is "durable" at once.
#[derive(Debug, Default, Clone)]
pub struct MemoryInvocations {
    // Held only for map operations.
    runs: Arc<Mutex<HashMap<InvocationKey, Arc<MemoryLog>>>>,
}

#[derive(Debug, Default)]
struct MemoryLog {
    journal: Mutex<Vec<u8>>,
    record: Mutex<Option<Bytes>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl MemoryInvocations {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn get(&self, key: &InvocationKey) -> Result<Arc<MemoryLog>, StorageError> {
        lock(&self.runs)
            .get(key)
            .cloned()
            .ok_or(StorageError::NotFound)
    }
}

impl InvocationStore for MemoryInvocations {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn open(&self, key: &InvocationKey) -> Result<Arc<dyn JournalLog>, StorageError> {
        let log = lock(&self.runs).entry(key.clone()).or_default().clone();
        Ok(log)
    }

    fn read_journal(&self, key: &InvocationKey) -> Result<Bytes, StorageError> {
        Ok(Bytes::from(lock(&self.get(key)?.journal).clone()))
    }

    fn read_record(&self, key: &InvocationKey) -> Result<Bytes, StorageError> {
        lock(&self.get(key)?.record)
            .clone()
            .ok_or(StorageError::NotFound)
    }

    fn list(&self, user: &str, agent: Option<&str>) -> Result<Vec<InvocationKey>, StorageError> {
        Ok(lock(&self.runs)
            .keys()
            .filter(|k| k.user() == user && agent.is_none_or(|a| k.agent() == a))
            .cloned()
            .collect())
    }

    fn remove(&self, key: &InvocationKey) -> Result<(), StorageError> {
        lock(&self.runs)
            .remove(key)
            .map(drop)
            .ok_or(StorageError::NotFound)
    }

    fn describe(&self, key: &InvocationKey) -> String {
        format!("memory:{key}")
    }
}

impl JournalLog for MemoryLog {
    fn append(&self, bytes: Vec<u8>, durable: Option<Durable>) {
        lock(&self.journal).extend_from_slice(&bytes);
        if let Some(d) = durable {
            d(Ok(()));
        }
    }

    fn write_record(&self, bytes: Vec<u8>, durable: Option<Durable>) {
        *lock(&self.record) = Some(Bytes::from(bytes));
        if let Some(d) = durable {
            d(Ok(()));
        }
    }

    fn size(&self) -> u64 {
        lock(&self.journal).len() as u64
    }

    fn read_at(&self, offset: u64, len: usize) -> Result<Bytes, StorageError> {
        let j = lock(&self.journal);
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(j.len());
        let end = start.saturating_add(len).min(j.len());
        Ok(Bytes::copy_from_slice(&j[start..end]))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn keeps_the_contract() {
        super::super::contract::check(&super::MemoryInvocations::new());
    }
}
