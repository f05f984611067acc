//! The diesel schema shared by both backends. Every instant is a `BigInt` of
//! milliseconds since the Unix epoch, so the same table definitions fit SQLite and
//! PostgreSQL alike.

diesel::table! {
    /// The managed-task queue: one row per task, kept until pruned.
    warren_tasks (id) {
        id -> BigInt,
        task_type -> Text,
        cluster -> Text,
        state -> Text,
        data -> Text,
        aux_data -> Nullable<Text>,
        result -> Nullable<Text>,
        last_error -> Nullable<Text>,
        last_stack -> Nullable<Text>,
        priority -> Integer,
        timeout_ms -> BigInt,
        created_at -> BigInt,
        not_before -> Nullable<BigInt>,
        next_attempt -> BigInt,
        started_at -> Nullable<BigInt>,
        finished_at -> Nullable<BigInt>,
        failures -> Integer,
        iterations -> Integer,
        lease_owner -> Nullable<Text>,
        lease_until -> Nullable<BigInt>,
        lease_token -> BigInt,
        waited -> Bool,
        unique_key -> Nullable<Text>,
        unique_states -> Nullable<Integer>,
        flow_key -> Nullable<Text>,
    }
}

diesel::table! {
    /// Per-task key/value metadata; keys are unique per task, compared case-insensitively.
    warren_task_metadata (task_id, key_norm) {
        task_id -> BigInt,
        key_norm -> Text,
        key -> Text,
        value -> Text,
    }
}

diesel::table! {
    /// State of each scheduled (`<task>`) tag, shared by every node.
    warren_scheduled (tag) {
        tag -> Text,
        mask -> Nullable<Text>,
        zone -> Text,
        enabled -> Bool,
        next_run -> Nullable<BigInt>,
        run_requested -> Bool,
        running -> Bool,
        run_owner -> Nullable<Text>,
        run_until -> Nullable<BigInt>,
        run_token -> BigInt,
        last_start -> Nullable<BigInt>,
        last_finish -> Nullable<BigInt>,
        last_outcome -> Nullable<Text>,
        last_output -> Nullable<Text>,
    }
}

diesel::table! {
    /// Nodes (`warren serve` processes) sharing the database, with their heartbeats.
    warren_nodes (name) {
        name -> Text,
        started_at -> BigInt,
        heartbeat_at -> BigInt,
        info -> Text,
        runners -> Text,
    }
}

diesel::table! {
    /// Small persistent settings, such as the maintenance zone's offset.
    warren_settings (key) {
        key -> Text,
        value -> Text,
    }
}

diesel::table! {
    /// The cluster and flow rules of each task type, registered by the nodes that load
    /// its module.
    warren_task_types (task_type) {
        task_type -> Text,
        cluster -> Text,
        concurrency -> Nullable<Integer>,
        concurrency_key -> Nullable<Text>,
        rate_count -> Nullable<Integer>,
        rate_period_ms -> Nullable<BigInt>,
        rate_burst -> Nullable<Integer>,
    }
}

diesel::table! {
    /// One rate-limit bucket per (task type, key) that has started tasks: its
    /// theoretical arrival time in nanoseconds (`rate_limit.rs`).
    warren_rate_buckets (task_type, flow_key) {
        task_type -> Text,
        flow_key -> Text,
        tat -> BigInt,
    }
}

diesel::table! {
    /// Paused clusters (`kind` 'cluster') and task types or scheduled tags ('type').
    warren_paused (kind, name) {
        kind -> Text,
        name -> Text,
        paused_at -> BigInt,
    }
}

diesel::table! {
    /// The runs of a task worth recording (see `run_history.rs`), newest ones kept.
    warren_task_runs (task_id, lease_token) {
        task_id -> BigInt,
        lease_token -> BigInt,
        node -> Text,
        started_at -> BigInt,
        finished_at -> BigInt,
        outcome -> Text,
        error -> Nullable<Text>,
        log -> Text,
    }
}

diesel::joinable!(warren_task_metadata -> warren_tasks (task_id));
diesel::table! {
    /// How far the latest run of a task said it had got (see `progress.rs`).
    warren_task_progress (task_id) {
        task_id -> BigInt,
        lease_token -> BigInt,
        fraction -> Double,
        message -> Nullable<Text>,
        reported_at -> BigInt,
    }
}

diesel::joinable!(warren_task_runs -> warren_tasks (task_id));
diesel::joinable!(warren_task_progress -> warren_tasks (task_id));
diesel::allow_tables_to_appear_in_same_query!(
    warren_tasks,
    warren_task_runs,
    warren_task_progress,
    warren_task_metadata,
    warren_scheduled,
    warren_nodes,
    warren_settings,
    warren_task_types,
    warren_paused,
    warren_rate_buckets,
);
