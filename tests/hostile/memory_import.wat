;; Attacks: shared state. Imports its memory instead of defining it.
(module
  (import "warden" "memory" (memory 1))
  (func (export "warden_step") (result i32) i32.const 0))
