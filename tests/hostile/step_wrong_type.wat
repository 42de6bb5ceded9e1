;; Attacks: the ABI. Exports warden_step with the wrong type.
(module
  (memory (export "memory") 1)
  (func (export "warden_step") (param i32) (result i32) local.get 0))
