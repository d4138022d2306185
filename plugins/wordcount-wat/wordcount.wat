;; wordcount, written by hand in the WebAssembly text format from
;; docs/abi.md: the same three functions as the Rust plugin
;; (plugins/wordcount), with byte-identical outputs and error messages.
;;
;;   map:split              line -> (word, i64 1) for every whitespace-separated
;;                          word (Unicode White_Space, as Rust's
;;                          str::split_whitespace); the key is ignored.
;;   reduce:sum             adds i64 counts; an overflow fails the call.
;;   update:running_count   state = i64 total; an entry with new values gets
;;                          total + sum(values) (wrapping) and emits
;;                          (word, total); an entry without values keeps its
;;                          state and emits nothing.
;;
;; The host loads the text directly: `runtime.load_file("wordcount.wat")`.
;;
;; Memory layout:
;;   0    .. 32     scratch for number formatting
;;   1024 .. 3328   NUL-terminated strings, one per 64-byte slot (see below)
;;   4096 ..        heap: a bump allocator, grown with memory.grow
(module
  (memory (export "memory") 1)

  ;; ---- strings ----------------------------------------------------------
  ;; framing errors (the wording of the weir-abi crate)
  (data (i32.const 1024) "malformed framing at byte \00")
  (data (i32.const 1088) ": expected \00")
  (data (i32.const 1152) "end of buffer (trailing bytes)\00")
  (data (i32.const 1216) "bad record batch from host: \00")
  (data (i32.const 1280) "bad reduce input from host: \00")
  (data (i32.const 1344) "bad update input from host: \00")
  (data (i32.const 1408) "bad call input: \00")
  (data (i32.const 1472) "a 16-byte call header\00")
  (data (i32.const 1536) "record count\00")
  (data (i32.const 1600) "record key\00")
  (data (i32.const 1664) "record value\00")
  (data (i32.const 1728) "group count\00")
  (data (i32.const 1792) "group key\00")
  (data (i32.const 1856) "value count\00")
  (data (i32.const 1920) "a value count of at least 1\00")
  (data (i32.const 1984) "group value\00")
  (data (i32.const 2048) "update entry count\00")
  (data (i32.const 2112) "update key\00")
  (data (i32.const 2176) "update flags\00")
  (data (i32.const 2240) "update flags with only bits 0 and 1\00")
  (data (i32.const 2304) "update state\00")
  (data (i32.const 2368) "update value count\00")
  (data (i32.const 2432) "update value\00")
  ;; decoding and user errors (the wording of the Rust SDK and plugin)
  (data (i32.const 2496) "record \00")
  (data (i32.const 2560) ": value: \00")
  (data (i32.const 2624) "cannot decode alloc::string::String: \00")
  (data (i32.const 2688) "invalid utf-8 sequence of \00")
  (data (i32.const 2752) " bytes from index \00")
  (data (i32.const 2816) "incomplete utf-8 byte sequence from index \00")
  (data (i32.const 2880) "group \00")
  (data (i32.const 2944) "cannot decode i64: expected 8 bytes, found \00")
  (data (i32.const 3008) "count overflow adding \00")
  (data (i32.const 3072) " and \00")
  (data (i32.const 3136) "entry \00")
  (data (i32.const 3200) ": key: \00")
  (data (i32.const 3264) ": state: \00")

  ;; ---- allocator --------------------------------------------------------
  (global $heap (mut i32) (i32.const 4096))

  ;; 8-byte aligned bump allocation of $size bytes; grows memory; traps if
  ;; the block does not fit in 4 GiB.
  (func $alloc (param $size i64) (result i32)
    (local $start i32) (local $end i64) (local $have i64)
    (local.set $start (global.get $heap))
    (local.set $end
      (i64.and
        (i64.add (i64.add (i64.extend_i32_u (local.get $start)) (local.get $size)) (i64.const 7))
        (i64.const -8)))
    (if (i64.gt_u (local.get $end) (i64.const 0xffffffff)) (then unreachable))
    (local.set $have (i64.shl (i64.extend_i32_u (memory.size)) (i64.const 16)))
    (if (i64.gt_u (local.get $end) (local.get $have))
      (then
        (if (i32.eq
              (memory.grow
                (i32.wrap_i64
                  (i64.shr_u (i64.add (i64.sub (local.get $end) (local.get $have)) (i64.const 65535))
                             (i64.const 16))))
              (i32.const -1))
          (then unreachable))))
    (global.set $heap (i32.wrap_i64 (local.get $end)))
    (local.get $start))

  (func (export "weir_abi_version") (result i32) (i32.const 1))

  (func (export "weir_alloc") (param $size i32) (result i32)
    (call $alloc (i64.extend_i32_u (local.get $size))))

  ;; ---- results and messages ---------------------------------------------
  (func $ok (param $res i32) (param $ptr i32) (param $len i32) (result i32)
    (i32.store align=1 (local.get $res) (local.get $ptr))
    (i32.store offset=4 align=1 (local.get $res) (local.get $len))
    (i32.const 0))

  (global $mstart (mut i32) (i32.const 0))
  (global $mp (mut i32) (i32.const 0))

  (func $msg_new
    (global.set $mstart (call $alloc (i64.const 512)))
    (global.set $mp (global.get $mstart)))

  ;; appends the NUL-terminated string at $s
  (func $puts (param $s i32)
    (local $c i32)
    (block $end
      (loop $next
        (local.set $c (i32.load8_u (local.get $s)))
        (br_if $end (i32.eqz (local.get $c)))
        (i32.store8 (global.get $mp) (local.get $c))
        (global.set $mp (i32.add (global.get $mp) (i32.const 1)))
        (local.set $s (i32.add (local.get $s) (i32.const 1)))
        (br $next))))

  ;; appends $v as an unsigned decimal number
  (func $putu (param $v i64)
    (local $p i32)
    (local.set $p (i32.const 32))
    (loop $digit
      (local.set $p (i32.sub (local.get $p) (i32.const 1)))
      (i32.store8 (local.get $p)
        (i32.add (i32.const 48) (i32.wrap_i64 (i64.rem_u (local.get $v) (i64.const 10)))))
      (local.set $v (i64.div_u (local.get $v) (i64.const 10)))
      (br_if $digit (i64.ne (local.get $v) (i64.const 0))))
    (memory.copy (global.get $mp) (local.get $p) (i32.sub (i32.const 32) (local.get $p)))
    (global.set $mp (i32.add (global.get $mp) (i32.sub (i32.const 32) (local.get $p)))))

  (func $putu32 (param $v i32)
    (call $putu (i64.extend_i32_u (local.get $v))))

  ;; appends $v as a signed decimal number
  (func $puti (param $v i64)
    (if (i64.lt_s (local.get $v) (i64.const 0))
      (then
        (i32.store8 (global.get $mp) (i32.const 45)) ;; '-'
        (global.set $mp (i32.add (global.get $mp) (i32.const 1)))
        (call $putu (i64.sub (i64.const 0) (local.get $v))))
      (else (call $putu (local.get $v)))))

  ;; points the result area at the message and returns status 1
  (func $fail (param $res i32) (result i32)
    (i32.store align=1 (local.get $res) (global.get $mstart))
    (i32.store offset=4 align=1 (local.get $res) (i32.sub (global.get $mp) (global.get $mstart)))
    (i32.const 1))

  ;; "<what><i><field>cannot decode i64: expected 8 bytes, found <found>"
  (func $bad_i64 (param $res i32) (param $what i32) (param $i i32) (param $field i32) (param $found i32)
        (result i32)
    (call $msg_new)
    (call $puts (local.get $what))
    (call $putu32 (local.get $i))
    (call $puts (local.get $field))
    (call $puts (i32.const 2944))
    (call $putu32 (local.get $found))
    (call $fail (local.get $res)))

  ;; ---- reading the host's framing ---------------------------------------
  ;; A cursor over the body; the first framing error is kept as a byte
  ;; offset in the body and the address of what was expected there.
  (global $rbase (mut i32) (i32.const 0))
  (global $rp (mut i32) (i32.const 0))
  (global $rend (mut i32) (i32.const 0))
  (global $ferr (mut i32) (i32.const 0))
  (global $ferr_at (mut i32) (i32.const 0))
  (global $ferr_exp (mut i32) (i32.const 0))
  ;; the byte string $rd_bytes read last
  (global $bptr (mut i32) (i32.const 0))
  (global $blen (mut i32) (i32.const 0))

  (func $reader (param $ptr i32) (param $len i32)
    (global.set $rbase (local.get $ptr))
    (global.set $rp (local.get $ptr))
    (global.set $rend (i32.add (local.get $ptr) (local.get $len)))
    (global.set $ferr (i32.const 0)))

  (func $rewind (param $to i32)
    (global.set $rp (i32.add (global.get $rbase) (local.get $to))))

  (func $frame_error (param $at i32) (param $exp i32)
    (global.set $ferr (i32.const 1))
    (global.set $ferr_at (i32.sub (local.get $at) (global.get $rbase)))
    (global.set $ferr_exp (local.get $exp)))

  ;; 1 if $n more bytes are there, else records the error
  (func $need (param $n i32) (param $exp i32) (result i32)
    (if (i32.lt_u (i32.sub (global.get $rend) (global.get $rp)) (local.get $n))
      (then
        (call $frame_error (global.get $rp) (local.get $exp))
        (return (i32.const 0))))
    (i32.const 1))

  (func $rd_u8 (param $exp i32) (result i32)
    (local $v i32)
    (if (i32.eqz (call $need (i32.const 1) (local.get $exp))) (then (return (i32.const 0))))
    (local.set $v (i32.load8_u (global.get $rp)))
    (global.set $rp (i32.add (global.get $rp) (i32.const 1)))
    (local.get $v))

  (func $rd_u32 (param $exp i32) (result i32)
    (local $v i32)
    (if (i32.eqz (call $need (i32.const 4) (local.get $exp))) (then (return (i32.const 0))))
    (local.set $v (i32.load align=1 (global.get $rp)))
    (global.set $rp (i32.add (global.get $rp) (i32.const 4)))
    (local.get $v))

  ;; a byte string: u32 length, then the bytes (into $bptr, $blen)
  (func $rd_bytes (param $exp i32)
    (local $len i32)
    (local.set $len (call $rd_u32 (local.get $exp)))
    (if (global.get $ferr) (then (return)))
    (if (i32.eqz (call $need (local.get $len) (local.get $exp))) (then (return)))
    (global.set $bptr (global.get $rp))
    (global.set $blen (local.get $len))
    (global.set $rp (i32.add (global.get $rp) (local.get $len))))

  ;; a count whose items need at least $min bytes each must fit in the rest
  (func $rd_count (param $min i32) (param $exp i32) (result i32)
    (local $at i32) (local $n i32)
    (local.set $at (global.get $rp))
    (local.set $n (call $rd_u32 (local.get $exp)))
    (if (global.get $ferr) (then (return (i32.const 0))))
    (if (i64.gt_u
          (i64.mul (i64.extend_i32_u (local.get $n)) (i64.extend_i32_u (local.get $min)))
          (i64.extend_i32_u (i32.sub (global.get $rend) (global.get $rp))))
      (then
        (call $frame_error (local.get $at) (local.get $exp))
        (return (i32.const 0))))
    (local.get $n))

  (func $rd_finish
    (if (i32.ne (global.get $rp) (global.get $rend))
      (then (call $frame_error (global.get $rp) (i32.const 1152)))))

  ;; "<prefix>malformed framing at byte <at>: expected <what>"
  (func $bad_frame (param $res i32) (param $prefix i32) (result i32)
    (call $msg_new)
    (call $puts (local.get $prefix))
    (call $puts (i32.const 1024))
    (call $putu32 (global.get $ferr_at))
    (call $puts (i32.const 1088))
    (call $puts (global.get $ferr_exp))
    (call $fail (local.get $res)))

  ;; the input is shorter than the call header
  (func $bad_header (param $res i32) (param $len i32) (result i32)
    (call $msg_new)
    (call $puts (i32.const 1408))
    (call $puts (i32.const 1024))
    (call $putu32 (local.get $len))
    (call $puts (i32.const 1088))
    (call $puts (i32.const 1472))
    (call $fail (local.get $res)))

  ;; ---- text -------------------------------------------------------------
  (func $in (param $x i32) (param $lo i32) (param $hi i32) (result i32)
    (i32.le_u (i32.sub (local.get $x) (local.get $lo)) (i32.sub (local.get $hi) (local.get $lo))))

  (func $is_cont (param $c i32) (result i32)
    (call $in (local.get $c) (i32.const 0x80) (i32.const 0xbf)))

  ;; UTF-8 validation with the error Rust reports: 1 if valid; else 0 with
  ;; $u_at = offset of the bad sequence, $u_len = its length (0: cut off by
  ;; the end of the input).
  (global $u_at (mut i32) (i32.const 0))
  (global $u_len (mut i32) (i32.const 0))

  (func $utf8_check (param $s i32) (param $n i32) (result i32)
    (local $i i32) (local $b i32) (local $c i32) (local $w i32) (local $k i32) (local $ok i32)
    (block $valid
      (loop $next
        (br_if $valid (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $b (i32.load8_u (i32.add (local.get $s) (local.get $i))))
        (if (i32.lt_u (local.get $b) (i32.const 0x80))
          (then
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br $next)))
        (local.set $w (i32.const 0))
        (if (call $in (local.get $b) (i32.const 0xc2) (i32.const 0xdf)) (then (local.set $w (i32.const 2))))
        (if (call $in (local.get $b) (i32.const 0xe0) (i32.const 0xef)) (then (local.set $w (i32.const 3))))
        (if (call $in (local.get $b) (i32.const 0xf0) (i32.const 0xf4)) (then (local.set $w (i32.const 4))))
        (global.set $u_at (local.get $i))
        (global.set $u_len (i32.const 1))
        (if (i32.eqz (local.get $w)) (then (return (i32.const 0))))
        (if (i32.ge_u (i32.add (local.get $i) (i32.const 1)) (local.get $n))
          (then
            (global.set $u_len (i32.const 0))
            (return (i32.const 0))))
        (local.set $c (i32.load8_u (i32.add (i32.add (local.get $s) (local.get $i)) (i32.const 1))))
        (local.set $ok (call $is_cont (local.get $c)))
        (if (i32.eq (local.get $b) (i32.const 0xe0))
          (then (local.set $ok (call $in (local.get $c) (i32.const 0xa0) (i32.const 0xbf)))))
        (if (i32.eq (local.get $b) (i32.const 0xed))
          (then (local.set $ok (call $in (local.get $c) (i32.const 0x80) (i32.const 0x9f)))))
        (if (i32.eq (local.get $b) (i32.const 0xf0))
          (then (local.set $ok (call $in (local.get $c) (i32.const 0x90) (i32.const 0xbf)))))
        (if (i32.eq (local.get $b) (i32.const 0xf4))
          (then (local.set $ok (call $in (local.get $c) (i32.const 0x80) (i32.const 0x8f)))))
        (if (i32.eqz (local.get $ok)) (then (return (i32.const 0))))
        (local.set $k (i32.const 2))
        (block $rest_done
          (loop $rest
            (br_if $rest_done (i32.ge_u (local.get $k) (local.get $w)))
            (if (i32.ge_u (i32.add (local.get $i) (local.get $k)) (local.get $n))
              (then
                (global.set $u_len (i32.const 0))
                (return (i32.const 0))))
            (if (i32.eqz (call $is_cont
                           (i32.load8_u (i32.add (i32.add (local.get $s) (local.get $i)) (local.get $k)))))
              (then
                (global.set $u_len (local.get $k))
                (return (i32.const 0))))
            (local.set $k (i32.add (local.get $k) (i32.const 1)))
            (br $rest)))
        (local.set $i (i32.add (local.get $i) (local.get $w)))
        (br $next)))
    (i32.const 1))

  ;; "cannot decode alloc::string::String: <the UTF-8 error>"
  (func $put_utf8_error
    (call $puts (i32.const 2624))
    (if (global.get $u_len)
      (then
        (call $puts (i32.const 2688))
        (call $putu32 (global.get $u_len))
        (call $puts (i32.const 2752)))
      (else (call $puts (i32.const 2816))))
    (call $putu32 (global.get $u_at)))

  ;; Length of the whitespace character at $p (valid UTF-8), or 0. Unicode
  ;; White_Space: U+0009..U+000D, U+0020, U+0085, U+00A0, U+1680,
  ;; U+2000..U+200A, U+2028, U+2029, U+202F, U+205F, U+3000. Never matches
  ;; at a continuation byte, so callers may step byte by byte otherwise.
  (func $space_len (param $p i32) (param $end i32) (result i32)
    (local $b i32) (local $b1 i32) (local $b2 i32) (local $left i32)
    (local.set $b (i32.load8_u (local.get $p)))
    (local.set $left (i32.sub (local.get $end) (local.get $p)))
    (if (i32.or (i32.eq (local.get $b) (i32.const 0x20))
                (call $in (local.get $b) (i32.const 0x09) (i32.const 0x0d)))
      (then (return (i32.const 1))))
    (if (i32.lt_u (local.get $left) (i32.const 2)) (then (return (i32.const 0))))
    (local.set $b1 (i32.load8_u offset=1 (local.get $p)))
    (if (i32.eq (local.get $b) (i32.const 0xc2))
      (then
        (return (select (i32.const 2) (i32.const 0)
                  (i32.or (i32.eq (local.get $b1) (i32.const 0x85))
                          (i32.eq (local.get $b1) (i32.const 0xa0)))))))
    (if (i32.lt_u (local.get $left) (i32.const 3)) (then (return (i32.const 0))))
    (local.set $b2 (i32.load8_u offset=2 (local.get $p)))
    (if (i32.eq (local.get $b) (i32.const 0xe1))
      (then
        (return (select (i32.const 3) (i32.const 0)
                  (i32.and (i32.eq (local.get $b1) (i32.const 0x9a))
                           (i32.eq (local.get $b2) (i32.const 0x80)))))))
    (if (i32.eq (local.get $b) (i32.const 0xe3))
      (then
        (return (select (i32.const 3) (i32.const 0)
                  (i32.and (i32.eq (local.get $b1) (i32.const 0x80))
                           (i32.eq (local.get $b2) (i32.const 0x80)))))))
    (if (i32.ne (local.get $b) (i32.const 0xe2)) (then (return (i32.const 0))))
    (if (i32.eq (local.get $b1) (i32.const 0x80))
      (then
        (return (select (i32.const 3) (i32.const 0)
                  (i32.or
                    (i32.or (i32.le_u (local.get $b2) (i32.const 0x8a))
                            (i32.eq (local.get $b2) (i32.const 0xa8)))
                    (i32.or (i32.eq (local.get $b2) (i32.const 0xa9))
                            (i32.eq (local.get $b2) (i32.const 0xaf))))))))
    (select (i32.const 3) (i32.const 0)
      (i32.and (i32.eq (local.get $b1) (i32.const 0x81))
               (i32.eq (local.get $b2) (i32.const 0x9f)))))

  ;; ---- map:split --------------------------------------------------------
  ;; $words runs in two modes: 0 tallies the words of a value into $wcount
  ;; and $wbytes, 1 writes their (word, 1) records at $op.
  (global $wcount (mut i32) (i32.const 0))
  (global $wbytes (mut i64) (i64.const 0))
  (global $op (mut i32) (i32.const 0))

  (func $emit_word (param $w i32) (param $len i32) (param $mode i32)
    (if (i32.eqz (local.get $mode))
      (then
        (global.set $wcount (i32.add (global.get $wcount) (i32.const 1)))
        (global.set $wbytes
          (i64.add (global.get $wbytes) (i64.add (i64.const 16) (i64.extend_i32_u (local.get $len)))))
        (return)))
    (i32.store align=1 (global.get $op) (local.get $len))
    (memory.copy (i32.add (global.get $op) (i32.const 4)) (local.get $w) (local.get $len))
    (global.set $op (i32.add (i32.add (global.get $op) (i32.const 4)) (local.get $len)))
    (i32.store align=1 (global.get $op) (i32.const 8))
    (i64.store offset=4 align=1 (global.get $op) (i64.const 1))
    (global.set $op (i32.add (global.get $op) (i32.const 12))))

  (func $words (param $s i32) (param $n i32) (param $mode i32)
    (local $p i32) (local $end i32) (local $word i32) (local $inword i32) (local $sp i32)
    (local.set $p (local.get $s))
    (local.set $end (i32.add (local.get $s) (local.get $n)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $p) (local.get $end)))
        (local.set $sp (call $space_len (local.get $p) (local.get $end)))
        (if (local.get $sp)
          (then
            (if (local.get $inword)
              (then
                (call $emit_word (local.get $word) (i32.sub (local.get $p) (local.get $word)) (local.get $mode))))
            (local.set $inword (i32.const 0))
            (local.set $p (i32.add (local.get $p) (local.get $sp))))
          (else
            (if (i32.eqz (local.get $inword))
              (then
                (local.set $word (local.get $p))
                (local.set $inword (i32.const 1))))
            (local.set $p (i32.add (local.get $p) (i32.const 1)))))
        (br $next)))
    (if (local.get $inword)
      (then
        (call $emit_word (local.get $word) (i32.sub (local.get $p) (local.get $word)) (local.get $mode)))))

  (func (export "map:split") (param $in i32) (param $len i32) (param $res i32) (result i32)
    (local $n i32) (local $i i32) (local $out i32)
    (if (i32.lt_u (local.get $len) (i32.const 16))
      (then (return (call $bad_header (local.get $res) (local.get $len)))))
    (call $reader (i32.add (local.get $in) (i32.const 16)) (i32.sub (local.get $len) (i32.const 16)))
    (block $bad
      ;; 1. the framing of the whole batch
      (local.set $n (call $rd_count (i32.const 8) (i32.const 1536)))
      (br_if $bad (global.get $ferr))
      (block $done
        (loop $next
          (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
          (call $rd_bytes (i32.const 1600))
          (br_if $bad (global.get $ferr))
          (call $rd_bytes (i32.const 1664))
          (br_if $bad (global.get $ferr))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br $next)))
      (call $rd_finish)
      (br_if $bad (global.get $ferr))

      ;; 2. decode every value as UTF-8 and size the output
      (global.set $wcount (i32.const 0))
      (global.set $wbytes (i64.const 4))
      (call $rewind (i32.const 4))
      (local.set $i (i32.const 0))
      (block $done
        (loop $next
          (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
          (call $rd_bytes (i32.const 0))
          (call $rd_bytes (i32.const 0))
          (if (i32.eqz (call $utf8_check (global.get $bptr) (global.get $blen)))
            (then
              (call $msg_new)
              (call $puts (i32.const 2496))
              (call $putu32 (local.get $i))
              (call $puts (i32.const 2560))
              (call $put_utf8_error)
              (return (call $fail (local.get $res)))))
          (call $words (global.get $bptr) (global.get $blen) (i32.const 0))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br $next)))

      ;; 3. write the (word, 1) records
      (local.set $out (call $alloc (global.get $wbytes)))
      (i32.store align=1 (local.get $out) (global.get $wcount))
      (global.set $op (i32.add (local.get $out) (i32.const 4)))
      (call $rewind (i32.const 4))
      (local.set $i (i32.const 0))
      (block $done
        (loop $next
          (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
          (call $rd_bytes (i32.const 0))
          (call $rd_bytes (i32.const 0))
          (call $words (global.get $bptr) (global.get $blen) (i32.const 1))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br $next)))
      (return (call $ok (local.get $res) (local.get $out) (i32.sub (global.get $op) (local.get $out)))))
    (call $bad_frame (local.get $res) (i32.const 1216)))

  ;; ---- reduce:sum -------------------------------------------------------
  (func (export "reduce:sum") (param $in i32) (param $len i32) (param $res i32) (result i32)
    (local $n i32) (local $m i32) (local $g i32) (local $v i32) (local $at i32)
    (local $out i32) (local $o i32) (local $acc i64) (local $x i64) (local $sum i64)
    (if (i32.lt_u (local.get $len) (i32.const 16))
      (then (return (call $bad_header (local.get $res) (local.get $len)))))
    (call $reader (i32.add (local.get $in) (i32.const 16)) (i32.sub (local.get $len) (i32.const 16)))
    (block $bad
      ;; 1. framing: groups of (key, values), at least one value each
      (local.set $n (call $rd_count (i32.const 8) (i32.const 1728)))
      (br_if $bad (global.get $ferr))
      (block $done
        (loop $next
          (br_if $done (i32.ge_u (local.get $g) (local.get $n)))
          (call $rd_bytes (i32.const 1792))
          (br_if $bad (global.get $ferr))
          (local.set $at (global.get $rp))
          (local.set $m (call $rd_count (i32.const 4) (i32.const 1856)))
          (br_if $bad (global.get $ferr))
          (if (i32.eqz (local.get $m))
            (then
              (call $frame_error (local.get $at) (i32.const 1920))
              (br $bad)))
          (local.set $v (i32.const 0))
          (block $values_done
            (loop $value
              (br_if $values_done (i32.ge_u (local.get $v) (local.get $m)))
              (call $rd_bytes (i32.const 1984))
              (br_if $bad (global.get $ferr))
              (local.set $v (i32.add (local.get $v) (i32.const 1)))
              (br $value)))
          (local.set $g (i32.add (local.get $g) (i32.const 1)))
          (br $next)))
      (call $rd_finish)
      (br_if $bad (global.get $ferr))

      ;; 2. fold each group's values left to right
      (local.set $out
        (call $alloc (i64.add (i64.const 4) (i64.mul (i64.extend_i32_u (local.get $n)) (i64.const 12)))))
      (i32.store align=1 (local.get $out) (local.get $n))
      (local.set $o (i32.add (local.get $out) (i32.const 4)))
      (call $rewind (i32.const 4))
      (local.set $g (i32.const 0))
      (block $done
        (loop $next
          (br_if $done (i32.ge_u (local.get $g) (local.get $n)))
          (call $rd_bytes (i32.const 0))
          (local.set $m (call $rd_u32 (i32.const 0)))
          (local.set $v (i32.const 0))
          (block $values_done
            (loop $value
              (br_if $values_done (i32.ge_u (local.get $v) (local.get $m)))
              (call $rd_bytes (i32.const 0))
              (if (i32.ne (global.get $blen) (i32.const 8))
                (then
                  (return (call $bad_i64 (local.get $res) (i32.const 2880) (local.get $g) (i32.const 2560)
                            (global.get $blen)))))
              (local.set $x (i64.load align=1 (global.get $bptr)))
              (if (i32.eqz (local.get $v))
                (then (local.set $acc (local.get $x)))
                (else
                  (local.set $sum (i64.add (local.get $acc) (local.get $x)))
                  ;; signed overflow: both operands' signs differ from the sum's
                  (if (i64.lt_s (i64.and (i64.xor (local.get $acc) (local.get $sum))
                                         (i64.xor (local.get $x) (local.get $sum)))
                                (i64.const 0))
                    (then
                      (call $msg_new)
                      (call $puts (i32.const 3008))
                      (call $puti (local.get $acc))
                      (call $puts (i32.const 3072))
                      (call $puti (local.get $x))
                      (return (call $fail (local.get $res)))))
                  (local.set $acc (local.get $sum))))
              (local.set $v (i32.add (local.get $v) (i32.const 1)))
              (br $value)))
          (i32.store align=1 (local.get $o) (i32.const 8))
          (i64.store offset=4 align=1 (local.get $o) (local.get $acc))
          (local.set $o (i32.add (local.get $o) (i32.const 12)))
          (local.set $g (i32.add (local.get $g) (i32.const 1)))
          (br $next)))
      (return (call $ok (local.get $res) (local.get $out) (i32.sub (local.get $o) (local.get $out)))))
    (call $bad_frame (local.get $res) (i32.const 1280)))

  ;; ---- update:running_count ---------------------------------------------
  (func (export "update:running_count") (param $in i32) (param $len i32) (param $res i32) (result i32)
    (local $n i32) (local $m i32) (local $e i32) (local $v i32) (local $at i32) (local $flags i32)
    (local $key i32) (local $key_len i32) (local $state i32) (local $state_len i32)
    (local $actions_len i64) (local $emitted_len i64)
    (local $out i32) (local $ap i32) (local $emitted i32) (local $recs i32) (local $count i32)
    (local $added i64) (local $total i64)
    (if (i32.lt_u (local.get $len) (i32.const 16))
      (then (return (call $bad_header (local.get $res) (local.get $len)))))
    (call $reader (i32.add (local.get $in) (i32.const 16)) (i32.sub (local.get $len) (i32.const 16)))
    (block $bad
      ;; 1. framing, and the sizes of the two output sections
      (local.set $actions_len (i64.const 4))
      (local.set $emitted_len (i64.const 4))
      (local.set $n (call $rd_count (i32.const 9) (i32.const 2048)))
      (br_if $bad (global.get $ferr))
      (block $done
        (loop $next
          (br_if $done (i32.ge_u (local.get $e) (local.get $n)))
          (call $rd_bytes (i32.const 2112))
          (br_if $bad (global.get $ferr))
          (local.set $key_len (global.get $blen))
          (local.set $at (global.get $rp))
          (local.set $flags (call $rd_u8 (i32.const 2176)))
          (br_if $bad (global.get $ferr))
          (if (i32.and (local.get $flags) (i32.const -4))
            (then
              (call $frame_error (local.get $at) (i32.const 2240))
              (br $bad)))
          (if (i32.and (local.get $flags) (i32.const 1))
            (then
              (call $rd_bytes (i32.const 2304))
              (br_if $bad (global.get $ferr))))
          (local.set $m (call $rd_count (i32.const 4) (i32.const 2368)))
          (br_if $bad (global.get $ferr))
          (local.set $v (i32.const 0))
          (block $values_done
            (loop $value
              (br_if $values_done (i32.ge_u (local.get $v) (local.get $m)))
              (call $rd_bytes (i32.const 2432))
              (br_if $bad (global.get $ferr))
              (local.set $v (i32.add (local.get $v) (i32.const 1)))
              (br $value)))
          (local.set $actions_len
            (i64.add (local.get $actions_len)
              (select (i64.const 13) (i64.const 1)
                (i32.or (local.get $m) (i32.and (local.get $flags) (i32.const 1))))))
          (if (local.get $m)
            (then
              (local.set $emitted_len
                (i64.add (local.get $emitted_len)
                  (i64.add (i64.const 16) (i64.extend_i32_u (local.get $key_len)))))))
          (local.set $e (i32.add (local.get $e) (i32.const 1)))
          (br $next)))
      (call $rd_finish)
      (br_if $bad (global.get $ferr))

      ;; 2. per entry: decode key, values, state; then the new state
      (local.set $out (call $alloc (i64.add (local.get $actions_len) (local.get $emitted_len))))
      (i32.store align=1 (local.get $out) (local.get $n))
      (local.set $ap (i32.add (local.get $out) (i32.const 4)))
      (local.set $emitted (i32.add (local.get $out) (i32.wrap_i64 (local.get $actions_len))))
      (local.set $recs (i32.add (local.get $emitted) (i32.const 4)))
      (call $rewind (i32.const 4))
      (local.set $e (i32.const 0))
      (block $done
        (loop $next
          (br_if $done (i32.ge_u (local.get $e) (local.get $n)))
          (call $rd_bytes (i32.const 0))
          (local.set $key (global.get $bptr))
          (local.set $key_len (global.get $blen))
          (local.set $flags (call $rd_u8 (i32.const 0)))
          (if (i32.and (local.get $flags) (i32.const 1))
            (then
              (call $rd_bytes (i32.const 0))
              (local.set $state (global.get $bptr))
              (local.set $state_len (global.get $blen))))
          (local.set $m (call $rd_u32 (i32.const 0)))

          (if (i32.eqz (call $utf8_check (local.get $key) (local.get $key_len)))
            (then
              (call $msg_new)
              (call $puts (i32.const 3136))
              (call $putu32 (local.get $e))
              (call $puts (i32.const 3200))
              (call $put_utf8_error)
              (return (call $fail (local.get $res)))))
          ;; wrapping, like the Rust plugin's release build
          (local.set $added (i64.const 0))
          (local.set $v (i32.const 0))
          (block $values_done
            (loop $value
              (br_if $values_done (i32.ge_u (local.get $v) (local.get $m)))
              (call $rd_bytes (i32.const 0))
              (if (i32.ne (global.get $blen) (i32.const 8))
                (then
                  (return (call $bad_i64 (local.get $res) (i32.const 3136) (local.get $e) (i32.const 2560)
                            (global.get $blen)))))
              (local.set $added (i64.add (local.get $added) (i64.load align=1 (global.get $bptr))))
              (local.set $v (i32.add (local.get $v) (i32.const 1)))
              (br $value)))
          (if (i32.and (i32.and (local.get $flags) (i32.const 1))
                       (i32.ne (local.get $state_len) (i32.const 8)))
            (then
              (return (call $bad_i64 (local.get $res) (i32.const 3136) (local.get $e) (i32.const 3264)
                        (local.get $state_len)))))

          (if (i32.eqz (local.get $m))
            (then
              ;; no new values: keep the state (or its absence), emit nothing
              (if (i32.and (local.get $flags) (i32.const 1))
                (then
                  (i32.store8 (local.get $ap) (i32.const 1))
                  (i32.store offset=1 align=1 (local.get $ap) (i32.const 8))
                  (i64.store offset=5 align=1 (local.get $ap) (i64.load align=1 (local.get $state)))
                  (local.set $ap (i32.add (local.get $ap) (i32.const 13))))
                (else
                  (i32.store8 (local.get $ap) (i32.const 0))
                  (local.set $ap (i32.add (local.get $ap) (i32.const 1)))))
              (local.set $e (i32.add (local.get $e) (i32.const 1)))
              (br $next)))

          (local.set $total (local.get $added))
          (if (i32.and (local.get $flags) (i32.const 1))
            (then
              (local.set $total (i64.add (local.get $total) (i64.load align=1 (local.get $state))))))
          (i32.store8 (local.get $ap) (i32.const 1))
          (i32.store offset=1 align=1 (local.get $ap) (i32.const 8))
          (i64.store offset=5 align=1 (local.get $ap) (local.get $total))
          (local.set $ap (i32.add (local.get $ap) (i32.const 13)))
          (i32.store align=1 (local.get $recs) (local.get $key_len))
          (memory.copy (i32.add (local.get $recs) (i32.const 4)) (local.get $key) (local.get $key_len))
          (local.set $recs (i32.add (i32.add (local.get $recs) (i32.const 4)) (local.get $key_len)))
          (i32.store align=1 (local.get $recs) (i32.const 8))
          (i64.store offset=4 align=1 (local.get $recs) (local.get $total))
          (local.set $recs (i32.add (local.get $recs) (i32.const 12)))
          (local.set $count (i32.add (local.get $count) (i32.const 1)))
          (local.set $e (i32.add (local.get $e) (i32.const 1)))
          (br $next)))
      (i32.store align=1 (local.get $emitted) (local.get $count))
      (return (call $ok (local.get $res) (local.get $out) (i32.sub (local.get $recs) (local.get $out)))))
    (call $bad_frame (local.get $res) (i32.const 1344)))
)
