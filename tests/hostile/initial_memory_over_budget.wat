;; Attacks: the memory budget at instantiation. Declares 1000 pages (65.5 MB) up front.
(module
  (memory (export "memory") 1000)
  (func (export "warden_step") (result i32) i32.const 0))
