;; Attacks: the ABI. Imports warden.host_call with the wrong type.
(module
  (import "warden" "host_call" (func (param i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "warden_step") (result i32) i32.const 0))
