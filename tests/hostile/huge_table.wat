;; Attacks: the host's table limit. A table of two million entries (the host allows a
;; million): refused as the instance is made, a recorded failure of the run.
(module
  (import "warden" "host_call" (func $host_call (param i32 i32 i32) (result i64)))
  (memory (export "memory") 1)
  (table 2000000 funcref)
  (func (export "warden_step") (result i32) i32.const 0))
