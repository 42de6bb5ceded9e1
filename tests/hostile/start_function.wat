;; Attacks: unenforced execution. A start function runs at instantiation, outside any step.
(module
  (memory (export "memory") 1)
  (func $boot (i32.store (i32.const 0) (i32.const 42)))
  (start $boot)
  (func (export "warden_step") (result i32) i32.const 0))
