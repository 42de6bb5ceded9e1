;; Attacks: checkpoint completeness. Mutates its table, state a checkpoint cannot capture.
(module
  (table 2 funcref)
  (memory (export "memory") 1)
  (func $f)
  (elem declare func $f)
  (func (export "warden_step") (result i32)
    (table.set (i32.const 0) (ref.func $f))
    i32.const 0))
