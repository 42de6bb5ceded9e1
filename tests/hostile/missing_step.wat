;; Attacks: the ABI. Exports no warden_step.
(module
  (memory (export "memory") 1)
  (func (export "run") (result i32) i32.const 0))
