//! {{name}}: a weir plugin in Zig (word count), freestanding: no imports.
//! The ABI is in docs/abi.md of the weir source tree.
//!
//!   map:split             line -> (word, i64 1) per word (Unicode
//!                         whitespace); a line that is not UTF-8 fails.
//!   reduce:sum            adds i64 counts; an overflow fails the call.
//!   update:running_count  state = i64 total; with new values: total + sum
//!                         (wrapping), emits (word, total); without: keeps
//!                         the state (or none) and emits nothing.
//!
//! Build: {{build_command}}
//! Test natively: python3 -m ziglang test {{name}}.zig

const std = @import("std");
const builtin = @import("builtin");

const Error = error{ Malformed, NotUtf8, BadCount, Overflow };

fn message(err: Error) []const u8 {
    return switch (err) {
        error.Malformed => "malformed input from the host",
        error.NotUtf8 => "a line or key is not valid UTF-8",
        error.BadCount => "a count or state is not 8 bytes (an i64)",
        error.Overflow => "count overflow",
    };
}

/// Reads the framing of docs/abi.md, checking every length.
const Reader = struct {
    buf: []const u8,
    pos: usize = 0,

    fn int(r: *Reader, comptime T: type) Error!T {
        const n = @sizeOf(T);
        if (r.buf.len - r.pos < n) return error.Malformed;
        const v = std.mem.readInt(T, r.buf[r.pos..][0..n], .little);
        r.pos += n;
        return v;
    }

    fn bytes(r: *Reader) Error![]const u8 {
        const n = try r.int(u32);
        if (r.buf.len - r.pos < n) return error.Malformed;
        const b = r.buf[r.pos..][0..n];
        r.pos += n;
        return b;
    }
};

/// Writes output into a buffer sized beforehand.
const Writer = struct {
    buf: []u8,
    len: usize = 0,

    fn int(w: *Writer, comptime T: type, v: T) void {
        std.mem.writeInt(T, w.buf[w.len..][0..@sizeOf(T)], v, .little);
        w.len += @sizeOf(T);
    }

    fn bytes(w: *Writer, b: []const u8) void {
        w.int(u32, @intCast(b.len));
        @memcpy(w.buf[w.len..][0..b.len], b);
        w.len += b.len;
    }

    fn count(w: *Writer, v: i64) void {
        w.int(u32, 8);
        w.int(i64, v);
    }
};

fn toCount(b: []const u8) Error!i64 {
    if (b.len != 8) return error.BadCount;
    return std.mem.readInt(i64, b[0..8], .little);
}

/// Unicode White_Space, as Rust's str::split_whitespace uses it.
fn isSpace(c: u21) bool {
    return (c >= 0x09 and c <= 0x0d) or c == 0x20 or c == 0x85 or c == 0xa0 or c == 0x1680 or
        (c >= 0x2000 and c <= 0x200a) or c == 0x2028 or c == 0x2029 or c == 0x202f or
        c == 0x205f or c == 0x3000;
}

/// Output bytes `split` needs at most for a body of `len` bytes.
fn splitBound(len: usize) usize {
    return 4 + 9 * len + 8;
}

/// map:split on a body, into `out` (at least splitBound(body.len) bytes).
fn split(body: []const u8, out: []u8) Error![]u8 {
    var r = Reader{ .buf = body };
    const n = try r.int(u32);
    var w = Writer{ .buf = out, .len = 4 };
    var words: u32 = 0;
    for (0..n) |_| {
        _ = try r.bytes(); // the key is ignored
        const line = try r.bytes();
        if (!std.unicode.utf8ValidateSlice(line)) return error.NotUtf8;
        var it = std.unicode.Utf8View.initUnchecked(line).iterator();
        var start: ?usize = null;
        while (true) {
            const pos = it.i;
            const c = it.nextCodepoint() orelse break;
            if (isSpace(c)) {
                if (start) |s| {
                    w.bytes(line[s..pos]);
                    w.count(1);
                    words += 1;
                    start = null;
                }
            } else if (start == null) start = pos;
        }
        if (start) |s| {
            w.bytes(line[s..]);
            w.count(1);
            words += 1;
        }
    }
    std.mem.writeInt(u32, out[0..4], words, .little);
    return out[0..w.len];
}

/// reduce:sum on a body, into `out` (at least 4 + 12 * groups bytes; the
/// body length is enough).
fn sum(body: []const u8, out: []u8) Error![]u8 {
    var r = Reader{ .buf = body };
    const groups = try r.int(u32);
    if (groups > body.len / 8) return error.Malformed;
    var w = Writer{ .buf = out };
    w.int(u32, groups);
    for (0..groups) |_| {
        _ = try r.bytes();
        const values = try r.int(u32);
        if (values == 0) return error.Malformed;
        var total = try toCount(try r.bytes());
        for (1..values) |_| {
            const v = try toCount(try r.bytes());
            total = std.math.add(i64, total, v) catch return error.Overflow;
        }
        w.count(total);
    }
    return out[0..w.len];
}

/// update:running_count on a body, into `out` (at least 8 + 29 * entries +
/// body length bytes); `scratch` (as large) holds the emitted records.
fn runningCount(body: []const u8, out: []u8, scratch: []u8) Error![]u8 {
    var r = Reader{ .buf = body };
    const n = try r.int(u32);
    if (n > body.len / 9) return error.Malformed;
    var w = Writer{ .buf = out };
    var e = Writer{ .buf = scratch };
    var emitted: u32 = 0;
    w.int(u32, n);
    for (0..n) |_| {
        const key = try r.bytes();
        const flags = try r.int(u8);
        const state: ?i64 = if (flags & 1 != 0) try toCount(try r.bytes()) else null;
        const values = try r.int(u32);
        if (!std.unicode.utf8ValidateSlice(key)) return error.NotUtf8;
        var total: i64 = state orelse 0;
        for (0..values) |_| total +%= try toCount(try r.bytes()); // wraps, as the Rust SDK's release build
        if (values == 0 and state == null) {
            w.int(u8, 0); // no state, nothing new: remove
            continue;
        }
        w.int(u8, 1);
        w.count(total);
        if (values > 0) {
            e.bytes(key);
            e.count(total);
            emitted += 1;
        }
    }
    w.int(u32, emitted);
    @memcpy(out[w.len..][0..e.len], scratch[0..e.len]);
    return out[0 .. w.len + e.len];
}

// ---- the ABI glue (wasm only) -------------------------------------------

/// Whole pages from memory.grow: 8-byte aligned, never freed (the instance
/// is thrown away after one call).
fn alloc(size: usize) ?[]u8 {
    const pages = (size + 65535) / 65536;
    const old = @wasmMemoryGrow(0, pages);
    if (old < 0) return null;
    const base: [*]u8 = @ptrFromInt(@as(usize, @intCast(old)) * 65536);
    return base[0..size];
}

fn weirAlloc(size: u32) callconv(.c) u32 {
    const buf = alloc(size) orelse @trap();
    return @intCast(@intFromPtr(buf.ptr));
}

fn weirAbiVersion() callconv(.c) i32 {
    return 1;
}

fn finish(result: [*]u32, status: i32, out: []const u8) i32 {
    result[0] = @intCast(@intFromPtr(out.ptr));
    result[1] = @intCast(out.len);
    return status;
}

fn run(input: [*]const u8, len: u32, result: [*]u32, comptime which: enum { split, sum, update }) i32 {
    if (len < 16) return finish(result, 1, message(error.Malformed));
    const body = input[16..len];
    const bound = 8 + 29 * body.len + 9 * body.len;
    const out = alloc(bound) orelse @trap();
    const got = switch (which) {
        .split => split(body, out),
        .sum => sum(body, out),
        .update => runningCount(body, out, alloc(bound) orelse @trap()),
    };
    const bytes = got catch |err| return finish(result, 1, message(err));
    return finish(result, 0, bytes);
}

fn splitExport(input: [*]const u8, len: u32, result: [*]u32) callconv(.c) i32 {
    return run(input, len, result, .split);
}

fn sumExport(input: [*]const u8, len: u32, result: [*]u32) callconv(.c) i32 {
    return run(input, len, result, .sum);
}

fn runningCountExport(input: [*]const u8, len: u32, result: [*]u32) callconv(.c) i32 {
    return run(input, len, result, .update);
}

comptime {
    if (builtin.cpu.arch.isWasm()) {
        @export(&weirAbiVersion, .{ .name = "weir_abi_version" });
        @export(&weirAlloc, .{ .name = "weir_alloc" });
        @export(&splitExport, .{ .name = "map:split" });
        @export(&sumExport, .{ .name = "reduce:sum" });
        @export(&runningCountExport, .{ .name = "update:running_count" });
    }
}

// ---- native tests: python3 -m ziglang test {{name}}.zig ----------------------

fn testBatch(comptime lines: []const []const u8) []const u8 {
    comptime var out: []const u8 = &[_]u8{ lines.len, 0, 0, 0 };
    inline for (lines) |l| out = out ++ [_]u8{ 0, 0, 0, 0, l.len, 0, 0, 0 } ++ l;
    return out;
}

test "split follows the worked example of docs/abi.md" {
    var buf: [256]u8 = undefined;
    const got = try split(testBatch(&.{"a b"}), &buf);
    const one = [_]u8{ 8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0 };
    const want = [_]u8{ 2, 0, 0, 0, 1, 0, 0, 0, 'a' } ++ one ++ [_]u8{ 1, 0, 0, 0, 'b' } ++ one;
    try std.testing.expectEqualSlices(u8, &want, got);
    try std.testing.expectError(error.NotUtf8, split(testBatch(&.{"ok \xff"}), &buf));
}

test "sum fails on overflow" {
    var buf: [64]u8 = undefined;
    const max = [_]u8{ 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f };
    const body = [_]u8{ 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 8, 0, 0, 0 } ++ max ++ [_]u8{ 8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0 };
    try std.testing.expectError(error.Overflow, sum(&body, &buf));
}
