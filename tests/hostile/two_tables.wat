;; Attacks: the host's instance limits. Two tables where the host allows one: refused as
;; the instance is made, a recorded failure of the run.
(module
  (import "warden" "host_call" (func $host_call (param i32 i32 i32) (result i64)))
  (memory (export "memory") 1)
  (table 1 funcref)
  (table 1 funcref)
  (func (export "warden_step") (result i32) i32.const 0))
