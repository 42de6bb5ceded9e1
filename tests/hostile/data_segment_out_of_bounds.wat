;; Attacks: instantiation. An active data segment that does not fit in the module's own
;; memory traps as the instance is made: the module's doing, the same every time, so a
;; recorded failure of the run (not a host error that would leave nothing recorded).
(module
  (import "warden" "host_call" (func $host_call (param i32 i32 i32) (result i64)))
  (memory (export "memory") 1)
  (data (i32.const 65535) "\01\02")
  (func (export "warden_step") (result i32) i32.const 0))
