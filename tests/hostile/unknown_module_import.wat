;; Attacks: ambient authority. Imports a function from a module Warden does not provide.
(module
  (import "env" "getrandom" (func (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "warden_step") (result i32) i32.const 0))
