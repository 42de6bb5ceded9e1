;; Attacks: checkpoint completeness. A mutable global holding a function reference: its
;; value is instance state a checkpoint of memory and numeric globals cannot capture
;; (before the fix, capturing it made warden exit 1 with no run recorded).
(module
  (import "warden" "host_call" (func $host_call (param i32 i32 i32) (result i64)))
  (memory (export "memory") 1)
  (table 1 funcref)
  (global $f (mut funcref) (ref.null func))
  (func $g)
  (elem declare func $g)
  (func (export "warden_step") (result i32)
    (global.set $f (ref.func $g))
    i32.const 0))
