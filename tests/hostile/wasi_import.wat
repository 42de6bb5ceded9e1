;; Attacks: ambient authority. Imports WASI's fd_write to write outside the journal.
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "warden_step") (result i32) i32.const 0))
