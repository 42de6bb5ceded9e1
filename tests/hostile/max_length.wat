;; Attacks: the request budget. A request of 2^31-1 bytes.
(module
  (import "warden" "host_call" (func $host_call (param i32 i32 i32) (result i64)))
  (memory (export "memory") 1)
  
  (func (export "warden_step") (result i32)
    (drop (call $host_call (i32.const 0) (i32.const 0) (i32.const 0x7fffffff))) i32.const 0))
