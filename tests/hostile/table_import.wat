;; Attacks: shared state. Imports a table.
(module
  (import "warden" "table" (table 1 funcref))
  (memory (export "memory") 1)
  (func (export "warden_step") (result i32) i32.const 0))
