//! wordcount in Zig: the same three functions as the Rust plugin
//! (plugins/wordcount), written from docs/abi.md, with byte-identical
//! outputs and error messages.
//!
//!   map:split             line -> (word, i64 1) for every word split on
//!                         Unicode White_Space (Rust's char::is_whitespace)
//!   reduce:sum            adds i64 counts; an overflow fails the call
//!   update:running_count  state = i64 total; a key with new values gets
//!                         total + sum(values) (wrapping) and emits
//!                         (word, total); a key without values keeps its
//!                         state (or has none)
//!
//! Build (a freestanding module: no imports at all):
//!   zig build-exe wordcount.zig -target wasm32-freestanding -fno-entry \
//!       -O ReleaseSmall --export=weir_abi_version --export=weir_alloc \
//!       --export=map:split --export=reduce:sum --export=update:running_count \
//!       -femit-bin=wordcount_zig.wasm
//! (--export names each export; -rdynamic would also export __stack_pointer.)
//! Test natively: zig test wordcount.zig

const std = @import("std");
const builtin = @import("builtin");
const Allocator = std.mem.Allocator;

/// Every allocation of a call; nothing is freed (the host discards the
/// instance after the call).
const gpa: Allocator = if (builtin.target.cpu.arch == .wasm32) std.heap.wasm_allocator else std.testing.allocator;

// ---- text -----------------------------------------------------------------

/// Rust's char::is_whitespace: the Unicode White_Space property.
pub fn isWhitespace(c: u21) bool {
    return switch (c) {
        0x09...0x0d, 0x20, 0x85, 0xa0, 0x1680, 0x2000...0x200a, 0x2028, 0x2029, 0x202f, 0x205f, 0x3000 => true,
        else => false,
    };
}

/// The words of a valid UTF-8 line, as Rust's str::split_whitespace.
pub const Words = struct {
    it: std.unicode.Utf8Iterator,

    pub fn init(line: []const u8) Words {
        return .{ .it = std.unicode.Utf8View.initUnchecked(line).iterator() };
    }

    pub fn next(self: *Words) ?[]const u8 {
        var start: ?usize = null;
        while (true) {
            const at = self.it.i;
            const cp = self.it.nextCodepoint() orelse break;
            if (isWhitespace(cp)) {
                if (start) |s| return self.it.bytes[s..at];
            } else if (start == null) {
                start = at;
            }
        }
        const s = start orelse return null;
        return self.it.bytes[s..];
    }
};

/// Where and how UTF-8 is invalid, as Rust's Utf8Error
/// (std.unicode.utf8ValidateSlice says only whether).
pub const Utf8Error = struct {
    valid_up_to: usize,
    /// null: the input ends inside a sequence.
    error_len: ?usize,
};

pub fn utf8Check(s: []const u8) ?Utf8Error {
    const cont = struct {
        fn f(c: u8) bool {
            return c >= 0x80 and c <= 0xbf;
        }
    }.f;
    var i: usize = 0;
    while (i < s.len) {
        const b = s[i];
        if (b < 0x80) {
            i += 1;
            continue;
        }
        const w: usize = switch (b) {
            0xc2...0xdf => 2,
            0xe0...0xef => 3,
            0xf0...0xf4 => 4,
            else => return .{ .valid_up_to = i, .error_len = 1 },
        };
        if (i + 1 >= s.len) return .{ .valid_up_to = i, .error_len = null };
        const c = s[i + 1];
        const second_ok = switch (b) {
            0xe0 => c >= 0xa0 and c <= 0xbf,
            0xed => c >= 0x80 and c <= 0x9f,
            0xf0 => c >= 0x90 and c <= 0xbf,
            0xf4 => c >= 0x80 and c <= 0x8f,
            else => cont(c),
        };
        if (!second_ok) return .{ .valid_up_to = i, .error_len = 1 };
        var k: usize = 2;
        while (k < w) : (k += 1) {
            if (i + k >= s.len) return .{ .valid_up_to = i, .error_len = null };
            if (!cont(s[i + k])) return .{ .valid_up_to = i, .error_len = k };
        }
        i += w;
    }
    return null;
}

// ---- failures: a message for the host -------------------------------------

const Failed = error{ Failed, OutOfMemory };

/// The message of the call's failure (status 1).
var failure: []const u8 = "";

fn fail(comptime fmt: []const u8, args: anytype) Failed {
    failure = try std.fmt.allocPrint(gpa, fmt, args);
    return error.Failed;
}

fn decodeString(bytes: []const u8, comptime what: []const u8, index: usize) Failed![]const u8 {
    const e = utf8Check(bytes) orelse return bytes;
    const prefix = what ++ " {d}: {s}: cannot decode alloc::string::String: ";
    const field = if (std.mem.eql(u8, what, "record")) "value" else "key";
    if (e.error_len) |n|
        return fail(prefix ++ "invalid utf-8 sequence of {d} bytes from index {d}", .{ index, field, n, e.valid_up_to });
    return fail(prefix ++ "incomplete utf-8 byte sequence from index {d}", .{ index, field, e.valid_up_to });
}

fn decodeI64(bytes: []const u8, comptime what: []const u8, index: usize, comptime field: []const u8) Failed!i64 {
    if (bytes.len != 8)
        return fail(what ++ " {d}: " ++ field ++ ": cannot decode i64: expected 8 bytes, found {d}", .{ index, bytes.len });
    return std.mem.readInt(i64, bytes[0..8], .little);
}

// ---- framing (docs/abi.md §3), with the weir-abi crate's error wording -----

const Reader = struct {
    buf: []const u8,
    pos: usize = 0,
    context: []const u8,

    fn frameError(r: *Reader, at: usize, expected: []const u8) Failed {
        return fail("{s}malformed framing at byte {d}: expected {s}", .{ r.context, at, expected });
    }

    fn take(r: *Reader, n: usize, expected: []const u8) Failed![]const u8 {
        if (r.buf.len - r.pos < n) return r.frameError(r.pos, expected);
        defer r.pos += n;
        return r.buf[r.pos..][0..n];
    }

    fn byte(r: *Reader, expected: []const u8) Failed!u8 {
        return (try r.take(1, expected))[0];
    }

    fn int(r: *Reader, expected: []const u8) Failed!u32 {
        return std.mem.readInt(u32, (try r.take(4, expected))[0..4], .little);
    }

    fn bytes(r: *Reader, expected: []const u8) Failed![]const u8 {
        return r.take(try r.int(expected), expected);
    }

    /// A count of items that need at least `min_item` bytes each.
    fn count(r: *Reader, min_item: u64, expected: []const u8) Failed!u32 {
        const at = r.pos;
        const n = try r.int(expected);
        if (@as(u64, n) * min_item > r.buf.len - r.pos) return r.frameError(at, expected);
        return n;
    }

    fn finish(r: *Reader) Failed!void {
        if (r.pos != r.buf.len) return r.frameError(r.pos, "end of buffer (trailing bytes)");
    }
};

/// The body after the 16-byte call header.
fn body(input: []const u8) Failed![]const u8 {
    if (input.len < 16)
        return fail("bad call input: malformed framing at byte {d}: expected a 16-byte call header", .{input.len});
    return input[16..];
}

const Out = std.ArrayList(u8);

fn putU32(out: *Out, v: u32) !void {
    try out.appendSlice(gpa, std.mem.asBytes(&std.mem.nativeToLittle(u32, v)));
}

fn putBytes(out: *Out, b: []const u8) !void {
    try putU32(out, @intCast(b.len));
    try out.appendSlice(gpa, b);
}

fn putI64(out: *Out, v: i64) !void {
    try putU32(out, 8);
    try out.appendSlice(gpa, std.mem.asBytes(&std.mem.nativeToLittle(i64, v)));
}

// ---- the three functions ---------------------------------------------------

/// map:split
pub fn split(input: []const u8) Failed![]u8 {
    var r: Reader = .{ .buf = try body(input), .context = "bad record batch from host: " };
    const n = try r.count(8, "record count");
    for (0..n) |_| {
        _ = try r.bytes("record key");
        _ = try r.bytes("record value");
    }
    try r.finish();

    var out: Out = .empty;
    try putU32(&out, 0);
    var words: u32 = 0;
    r.pos = 4;
    for (0..n) |i| {
        _ = try r.bytes("");
        var it = Words.init(try decodeString(try r.bytes(""), "record", i));
        while (it.next()) |word| : (words += 1) {
            try putBytes(&out, word);
            try putI64(&out, 1);
        }
    }
    std.mem.writeInt(u32, out.items[0..4], words, .little);
    return out.items;
}

/// Adds two counts; an overflow fails, with the Rust plugin's message.
pub fn add(a: i64, b: i64) Failed!i64 {
    return std.math.add(i64, a, b) catch fail("count overflow adding {d} and {d}", .{ a, b });
}

/// reduce:sum
pub fn sum(input: []const u8) Failed![]u8 {
    var r: Reader = .{ .buf = try body(input), .context = "bad reduce input from host: " };
    const n = try r.count(8, "group count");
    for (0..n) |_| {
        _ = try r.bytes("group key");
        const at = r.pos;
        const m = try r.count(4, "value count");
        if (m == 0) return r.frameError(at, "a value count of at least 1");
        for (0..m) |_| _ = try r.bytes("group value");
    }
    try r.finish();

    var out: Out = .empty;
    try putU32(&out, n);
    r.pos = 4;
    for (0..n) |g| {
        _ = try r.bytes("");
        const m = try r.int("");
        var acc = try decodeI64(try r.bytes(""), "group", g, "value");
        for (1..m) |_| acc = try add(acc, try decodeI64(try r.bytes(""), "group", g, "value"));
        try putI64(&out, acc);
    }
    return out.items;
}

/// update:running_count
pub fn runningCount(input: []const u8) Failed![]u8 {
    var r: Reader = .{ .buf = try body(input), .context = "bad update input from host: " };
    const n = try r.count(9, "update entry count");
    for (0..n) |_| {
        _ = try r.bytes("update key");
        const at = r.pos;
        const flags = try r.byte("update flags");
        if (flags & ~@as(u8, 3) != 0) return r.frameError(at, "update flags with only bits 0 and 1");
        if (flags & 1 != 0) _ = try r.bytes("update state");
        const m = try r.count(4, "update value count");
        for (0..m) |_| _ = try r.bytes("update value");
    }
    try r.finish();

    var actions: Out = .empty;
    var emitted: Out = .empty;
    try putU32(&actions, n);
    try putU32(&emitted, 0);
    var emitted_count: u32 = 0;
    r.pos = 4;
    for (0..n) |e| {
        const word = try decodeString(try r.bytes(""), "entry", e);
        const flags = try r.byte("");
        const state = if (flags & 1 != 0) try r.bytes("") else null;
        const m = try r.int("");
        var added: i64 = 0; // wrapping, like the Rust plugin's release build
        for (0..m) |_| added +%= try decodeI64(try r.bytes(""), "entry", e, "value");
        const total = if (state) |s| try decodeI64(s, "entry", e, "state") else 0;
        if (m > 0) {
            try actions.append(gpa, 1);
            try putI64(&actions, total +% added);
            try putBytes(&emitted, word);
            try putI64(&emitted, total +% added);
            emitted_count += 1;
        } else if (state != null) { // no new values: the state stays
            try actions.append(gpa, 1);
            try putI64(&actions, total);
        } else { // no values, no state: nothing to keep
            try actions.append(gpa, 0);
        }
    }
    std.mem.writeInt(u32, emitted.items[0..4], emitted_count, .little);
    try actions.appendSlice(gpa, emitted.items);
    return actions.items;
}

// ---- the weir ABI exports ----------------------------------------------------

fn weirAbiVersion() callconv(.c) i32 {
    return 1;
}

fn weirAlloc(size: u32) callconv(.c) u32 {
    const buf = gpa.alignedAlloc(u8, .@"8", size) catch @trap();
    return @intFromPtr(buf.ptr);
}

fn Export(comptime f: fn ([]const u8) Failed![]u8) type {
    return struct {
        fn call(input: u32, len: u32, result: u32) callconv(.c) i32 {
            const in: [*]const u8 = @ptrFromInt(input);
            const area: *[8]u8 = @ptrFromInt(result);
            var status: i32 = 0;
            const out = f(in[0..len]) catch |err| switch (err) {
                error.Failed => blk: {
                    status = 1;
                    break :blk failure;
                },
                error.OutOfMemory => @trap(),
            };
            std.mem.writeInt(u32, area[0..4], @intFromPtr(out.ptr), .little);
            std.mem.writeInt(u32, area[4..8], @intCast(out.len), .little);
            return status;
        }
    };
}

comptime {
    if (builtin.target.cpu.arch == .wasm32) {
        @export(&weirAbiVersion, .{ .name = "weir_abi_version" });
        @export(&weirAlloc, .{ .name = "weir_alloc" });
        @export(&Export(split).call, .{ .name = "map:split" });
        @export(&Export(sum).call, .{ .name = "reduce:sum" });
        @export(&Export(runningCount).call, .{ .name = "update:running_count" });
    }
}

// ---- native tests --------------------------------------------------------------

test "words split on exactly Rust's whitespace" {
    var it = Words.init("  the cat\u{3000}the\u{85}end\u{a0}x\u{200b}y ");
    for ([_][]const u8{ "the", "cat", "the", "end", "x\u{200b}y" }) |want|
        try std.testing.expectEqualStrings(want, it.next().?);
    try std.testing.expect(it.next() == null);
    var empty = Words.init("");
    try std.testing.expect(empty.next() == null);
}

test "utf-8 errors are Rust's" {
    try std.testing.expectEqual(Utf8Error{ .valid_up_to = 2, .error_len = 1 }, utf8Check("ab\xff").?);
    try std.testing.expectEqual(Utf8Error{ .valid_up_to = 0, .error_len = null }, utf8Check("\xe2\x82").?);
    try std.testing.expectEqual(Utf8Error{ .valid_up_to = 0, .error_len = 2 }, utf8Check("\xe2\x82x").?);
    try std.testing.expectEqual(Utf8Error{ .valid_up_to = 0, .error_len = 1 }, utf8Check("\xed\xa0\x80").?);
    try std.testing.expect(utf8Check("héllo 日本 🦀") == null);
}
