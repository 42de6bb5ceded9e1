;; Attacks: the response buffer. Reads the same response twice (Request::Input is byte 00).
(module
  (import "warden" "host_call" (func $host_call (param i32 i32 i32) (result i64)))
  (memory (export "memory") 1)
  (data (i32.const 16) "\00")
  (func (export "warden_step") (result i32)
    (drop (call $host_call (i32.const 0) (i32.const 16) (i32.const 1)))
    (drop (call $host_call (i32.const 1) (i32.const 1024) (i32.const 4096)))
    (drop (call $host_call (i32.const 1) (i32.const 1024) (i32.const 4096))) i32.const 0))
