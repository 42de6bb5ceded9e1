;; Attacks: the decoder. A Tool request whose name claims 10 bytes but has 3.
(module
  (import "warden" "host_call" (func $host_call (param i32 i32 i32) (result i64)))
  (memory (export "memory") 1)
  (data (i32.const 16) "\02\0aabc")
  (func (export "warden_step") (result i32)
    (drop (call $host_call (i32.const 0) (i32.const 16) (i32.const 5))) i32.const 0))
