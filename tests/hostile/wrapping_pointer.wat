;; Attacks: integer overflow. ptr + len wraps past 2^32 (0xfffffff0 + 0x20).
(module
  (import "warden" "host_call" (func $host_call (param i32 i32 i32) (result i64)))
  (memory (export "memory") 1)
  
  (func (export "warden_step") (result i32)
    (drop (call $host_call (i32.const 0) (i32.const 0xfffffff0) (i32.const 0x20))) i32.const 0))
