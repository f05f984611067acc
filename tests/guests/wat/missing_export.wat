;; A component that does NOT implement the Warren world: it exports `run` instead of
;; `run-task` (same types otherwise). Loading it must fail with an error naming the
;; missing export, not a panic.
(component
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
      (export "task" (type $task (eq $task-rec)))))
  (import "warren:task/types@0.2.0" (instance $types (type $types-iface)))
  (alias export $types "task" (type $task))
  (import "task" (type $task-t (eq $task)))

  (core module $m
    (memory (export "memory") 1)
    (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
      (i32.const 1024))
    (func (export "run")
      (param i64 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)
      (i32.const 0)))
  (core instance $i (instantiate $m))
  (alias core export $i "memory" (core memory $mem))
  (alias core export $i "cabi_realloc" (core func $realloc))
  (alias core export $i "run" (core func $run-core))

  (type $run-t (func (param "t" $task-t) (result u32)))
  (func $run (type $run-t)
    (canon lift (core func $run-core) (memory $mem) (realloc $realloc)))
  (export "run" (func $run)))
