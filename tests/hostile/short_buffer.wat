;; Attacks: the response buffer. Reads the input response into a 1-byte buffer.
(module
  (import "warden" "host_call" (func $host_call (param i32 i32 i32) (result i64)))
  (memory (export "memory") 1)
  (data (i32.const 16) "\00")
  (func (export "warden_step") (result i32)
    (drop (call $host_call (i32.const 0) (i32.const 16) (i32.const 1)))
    (drop (call $host_call (i32.const 1) (i32.const 1024) (i32.const 1))) i32.const 0))
