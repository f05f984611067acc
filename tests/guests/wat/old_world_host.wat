;; A Warren task component built against the 0.2.0 world, written by hand: it imports
;; `now-ms` from `warren:task/host@0.2.0` (the host serves 0.2.1, which added
;; `set-progress`; a 0.2.x release only adds, so the import must still resolve). It
;; completes with "{}" when the host's clock reads after 2001-01-01 and traps otherwise.
(component
  ;; The `warren:task/types@0.2.0` interface, as the world declares it.
  (type $types-iface
    (instance
      (type $opt-string (option string))
      (type $task-rec (record
        (field "id" u64)
        (field "task-type" string)
        (field "data" string)
        (field "aux-data" $opt-string)
        (field "failures" u32)
        (field "iteration" u32)))
      (export "task" (type $task (eq $task-rec)))
      (type $opt-u64 (option u64))
      (type $failure-rec (record
        (field "error" string)
        (field "stack" $opt-string)
        (field "next-retry-ms" $opt-u64)))
      (export "failure" (type $failure (eq $failure-rec)))
      (type $restart-rec (record
        (field "at-ms" u64)
        (field "new-data" $opt-string)
        (field "new-aux-data" $opt-string)))
      (export "restart" (type $restart (eq $restart-rec)))
      (type $perm (tuple string $opt-string))
      (type $resolution-var (variant
        (case "completion" string)
        (case "permanent-failure" $perm)
        (case "cancellation" string)
        (case "temporary-failure" $failure)
        (case "restart" $restart)
        (case "snooze" u64)))
      (export "resolution" (type (eq $resolution-var)))))
  (import "warren:task/types@0.2.0" (instance $types (type $types-iface)))
  (alias export $types "task" (type $task))
  (alias export $types "resolution" (type $resolution))
  (import "task" (type $task-t (eq $task)))
  (import "resolution" (type $resolution-t (eq $resolution)))

  ;; The one host function it uses, from the 0.2.0 host interface.
  (import "warren:task/host@0.2.0" (instance $host
    (export "now-ms" (func (result u64)))))
  (alias export $host "now-ms" (func $now-ms))
  (core func $now-ms-core (canon lower (func $now-ms)))
  (core instance $host-core (export "now-ms" (func $now-ms-core)))

  (core module $m
    (import "host" "now-ms" (func $now (result i64)))
    (memory (export "memory") 1)
    ;; the result JSON
    (data (i32.const 16) "{}")
    ;; Bump allocator for the host's copies of the arguments; everything is freed at
    ;; once after each call (cabi_post_run-task).
    (global $next (mut i32) (i32.const 1024))
    (func (export "cabi_realloc") (param $old i32) (param $old-size i32) (param $align i32) (param $size i32) (result i32)
      (local $ptr i32) (local $end i32)
      ;; align up
      (local.set $ptr
        (i32.and
          (i32.add (global.get $next) (i32.sub (local.get $align) (i32.const 1)))
          (i32.sub (i32.const 0) (local.get $align))))
      (local.set $end (i32.add (local.get $ptr) (local.get $size)))
      ;; grow memory when needed
      (if (i32.gt_u (local.get $end) (i32.mul (memory.size) (i32.const 65536)))
        (then
          (if (i32.eq
                (memory.grow
                  (i32.add
                    (i32.div_u (i32.sub (local.get $end) (i32.mul (memory.size) (i32.const 65536))) (i32.const 65536))
                    (i32.const 1)))
                (i32.const -1))
            (then unreachable))))
      (global.set $next (local.get $end))
      (local.get $ptr))
    (func (export "cabi_post_run-task") (param $ret i32)
      (global.set $next (i32.const 1024)))
    ;; run-task: the task record arrives flattened (id, task-type ptr/len, data ptr/len,
    ;; aux-data discriminant/ptr/len, failures, iteration); the resolution is returned
    ;; through a pointer: discriminant (u8) at +0, payload at +8 (the variant's
    ;; alignment is 8 because of the u64s in failure and restart).
    (func (export "run-task")
      (param $id i64) (param $type-ptr i32) (param $type-len i32)
      (param $data-ptr i32) (param $data-len i32)
      (param $aux-tag i32) (param $aux-ptr i32) (param $aux-len i32)
      (param $failures i32) (param $iteration i32)
      (result i32)
      ;; 978307200000: 2001-01-01T00:00:00Z in ms
      (if (i64.lt_u (call $now) (i64.const 978307200000))
        (then unreachable))
      (i32.store8 (i32.const 32) (i32.const 0))   ;; case 0: completion
      (i32.store (i32.const 40) (i32.const 16))   ;; string pointer
      (i32.store (i32.const 44) (i32.const 2))    ;; string length
      (i32.const 32)))
  (core instance $i (instantiate $m (with "host" (instance $host-core))))
  (alias core export $i "memory" (core memory $mem))
  (alias core export $i "cabi_realloc" (core func $realloc))
  (alias core export $i "run-task" (core func $run-task-core))
  (alias core export $i "cabi_post_run-task" (core func $post-return))

  (type $run-task-t (func (param "t" $task-t) (result $resolution-t)))
  (func $run-task (type $run-task-t)
    (canon lift (core func $run-task-core) (memory $mem) (realloc $realloc)
      (post-return $post-return)))
  (export "run-task" (func $run-task)))
