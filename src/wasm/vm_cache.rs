//! The idle VMs a runner keeps between tasks: at most a fixed number, the least recently
//! used dropped first, so a runner serving hundreds of task types never holds more
//! instances than its share of the engine's pool.
//!
//! The policy ([`VmCache`]) is a plain container, generic over what it holds; the part
//! that instantiates task VMs ([`VmCache::instantiate`]) drops idle VMs and retries when
//! the pool is out of slots, so pool exhaustion never fails a task while an idle VM can
//! make room.

use super::engine::WasmEngine;
use super::vm::{TaskCode, TaskVm, VmLimits};
use super::WasmError;
use crate::clock::SharedClock;
use std::collections::VecDeque;
use std::sync::Arc;

/// How many idle VMs each of `runners` runners may keep when the engine holds
/// `vm_slots` live VMs at once ([`WasmEngine::vm_slots`]).
///
/// A runner holds at most its idle VMs plus the one it runs (or is instantiating), so
/// `runners × (N + 1) ≤ vm_slots`: every runner finds a free slot for the VM it needs,
/// whatever the others keep. Zero when the pool has no more than one slot per runner
/// (each task then gets a fresh VM).
pub fn idle_vms_per_runner(vm_slots: u32, runners: usize) -> usize {
    (vm_slots as usize / runners.max(1)).saturating_sub(1)
}

/// Values kept by key, at most `capacity` of them; putting one more drops the least
/// recently used.
#[derive(Debug)]
pub struct VmCache<V> {
    capacity: usize,
    /// Front: least recently used.
    idle: VecDeque<(String, V)>,
}

impl<V> VmCache<V> {
    /// An empty cache keeping at most `capacity` values.
    pub fn new(capacity: usize) -> VmCache<V> {
        VmCache {
            capacity,
            idle: VecDeque::new(),
        }
    }

    /// The most values it keeps.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// How many values it holds.
    pub fn len(&self) -> usize {
        self.idle.len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.idle.is_empty()
    }

    /// Takes the value of `key` out, if there is one.
    pub fn take(&mut self, key: &str) -> Option<V> {
        let at = self.idle.iter().position(|(k, _)| k == key)?;
        self.idle.remove(at).map(|(_, v)| v)
    }

    /// Keeps `value` as the most recently used, replacing what `key` held. Returns what
    /// was dropped to make room (or the replaced value), for the caller to drop.
    pub fn put(&mut self, key: String, value: V) -> Option<(String, V)> {
        if let Some(at) = self.idle.iter().position(|(k, _)| *k == key) {
            let replaced = self.idle.remove(at);
            self.idle.push_back((key, value));
            return replaced;
        }
        self.idle.push_back((key, value));
        if self.idle.len() > self.capacity {
            return self.idle.pop_front();
        }
        None
    }

    /// Takes out the least recently used value, to make room in the pool.
    pub fn evict_lru(&mut self) -> Option<(String, V)> {
        self.idle.pop_front()
    }

    /// Drops every value.
    pub fn clear(&mut self) {
        self.idle.clear();
    }

    /// The keys held, least recently used first.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.idle.iter().map(|(k, _)| k.as_str())
    }
}

impl VmCache<TaskVm> {
    /// The idle VM of `task_type` when it may still run a task; one that may not (too
    /// old, for instance) is dropped.
    pub fn take_reusable(&mut self, task_type: &str) -> Option<TaskVm> {
        self.take(task_type).filter(TaskVm::is_reusable)
    }

    /// Keeps `vm` for the next task of its type when it may run one, else drops it.
    pub fn check_in(&mut self, vm: TaskVm) {
        if vm.is_reusable() {
            let key = vm.code().task_type.clone();
            drop(self.put(key, vm));
        }
    }

    /// A new VM of `code`. While the engine's pool is out of slots, idle VMs are dropped
    /// (least recently used first) and the instantiation retried; the pool's error comes
    /// back only when no idle VM is left to drop.
    pub async fn instantiate(
        &mut self,
        engine: &WasmEngine,
        code: Arc<TaskCode>,
        limits: VmLimits,
        clock: SharedClock,
    ) -> Result<TaskVm, WasmError> {
        loop {
            match TaskVm::new(engine, code.clone(), limits, clock.clone()).await {
                Err(WasmError::PoolExhausted { .. }) if !self.is_empty() => {
                    if let Some((evicted, vm)) = self.evict_lru() {
                        tracing::debug!(task_type = %code.task_type, %evicted, "pool full: dropping an idle VM");
                        drop(vm);
                    }
                }
                other => return other,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys<V>(cache: &VmCache<V>) -> Vec<&str> {
        cache.keys().collect()
    }

    #[test]
    fn keeps_at_most_capacity_dropping_the_least_recently_used() {
        let mut cache = VmCache::new(2);
        assert_eq!(cache.put("a".into(), 1), None);
        assert_eq!(cache.put("b".into(), 2), None);
        assert_eq!(cache.put("c".into(), 3), Some(("a".to_string(), 1)));
        assert_eq!(keys(&cache), ["b", "c"]);
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn taking_and_putting_back_makes_a_value_the_most_recent() {
        let mut cache = VmCache::new(2);
        cache.put("a".into(), 1);
        cache.put("b".into(), 2);
        let a = cache.take("a").unwrap();
        assert_eq!(keys(&cache), ["b"]);
        cache.put("a".into(), a);
        assert_eq!(cache.put("c".into(), 3), Some(("b".to_string(), 2)));
        assert_eq!(keys(&cache), ["a", "c"]);
        assert_eq!(cache.take("b"), None);
    }

    #[test]
    fn putting_a_key_again_replaces_its_value() {
        let mut cache = VmCache::new(2);
        cache.put("a".into(), 1);
        cache.put("b".into(), 2);
        assert_eq!(cache.put("a".into(), 10), Some(("a".to_string(), 1)));
        assert_eq!(keys(&cache), ["b", "a"]);
        assert_eq!(cache.take("a"), Some(10));
    }

    #[test]
    fn capacity_zero_keeps_nothing() {
        let mut cache = VmCache::new(0);
        assert_eq!(cache.put("a".into(), 1), Some(("a".to_string(), 1)));
        assert!(cache.is_empty());
    }

    #[test]
    fn evicting_takes_the_least_recently_used_first() {
        let mut cache = VmCache::new(3);
        for (i, k) in ["a", "b", "c"].into_iter().enumerate() {
            cache.put(k.into(), i);
        }
        assert_eq!(cache.evict_lru(), Some(("a".to_string(), 0)));
        assert_eq!(cache.evict_lru(), Some(("b".to_string(), 1)));
        cache.clear();
        assert_eq!(cache.evict_lru(), None);
    }

    #[test]
    fn idle_vms_leave_every_runner_a_slot_for_the_vm_it_runs() {
        assert_eq!(idle_vms_per_runner(128, 1), 127);
        assert_eq!(idle_vms_per_runner(128, 5), 24);
        assert_eq!(idle_vms_per_runner(128, 128), 0);
        assert_eq!(idle_vms_per_runner(128, 200), 0);
        assert_eq!(idle_vms_per_runner(128, 0), 127);
        for runners in 1..300 {
            let n = idle_vms_per_runner(512, runners);
            assert!(
                runners * (n + 1) <= 512 || n == 0,
                "{runners} runners, {n} idle"
            );
        }
    }
}
