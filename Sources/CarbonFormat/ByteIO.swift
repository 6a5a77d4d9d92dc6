import CarbonModel

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

// Little-endian fixed-width integers, LEB128 varints, zigzag, and length-prefixed UTF-8 strings.
// See docs/FORMAT.md, "Primitive encodings".

/// Appends primitives to a growing byte array.
struct ByteWriter {
    var bytes: [UInt8]
    /// Items written with `itemCount`, as a reader counts them against `Limits.maxItemCount`.
    var items = 0

    init(capacity: Int) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    var count: Int { bytes.count }

    @inline(__always) mutating func u8(_ v: UInt8) { bytes.append(v) }

    /// `n` zero bytes.
    mutating func zeros(_ n: Int) { bytes.append(contentsOf: repeatElement(0, count: n)) }

    @inline(__always) mutating func u16(_ v: UInt16) {
        bytes.append(UInt8(truncatingIfNeeded: v))
        bytes.append(UInt8(truncatingIfNeeded: v >> 8))
    }

    @inline(__always) mutating func u32(_ v: UInt32) {
        for shift in stride(from: 0, to: 32, by: 8) {
            bytes.append(UInt8(truncatingIfNeeded: v >> UInt32(shift)))
        }
    }

    @inline(__always) mutating func u64(_ v: UInt64) {
        for shift in stride(from: 0, to: 64, by: 8) {
            bytes.append(UInt8(truncatingIfNeeded: v >> UInt64(shift)))
        }
    }

    mutating func patchU16(_ v: UInt16, at offset: Int) {
        bytes[offset] = UInt8(truncatingIfNeeded: v)
        bytes[offset + 1] = UInt8(truncatingIfNeeded: v >> 8)
    }

    mutating func patchU32(_ v: UInt32, at offset: Int) {
        for k in 0..<4 { bytes[offset + k] = UInt8(truncatingIfNeeded: v >> UInt32(8 * k)) }
    }

    @inline(__always) mutating func varint(_ v: UInt64) {
        var v = v
        while v >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(truncatingIfNeeded: v))
    }

    @inline(__always) mutating func varint(_ v: Int) { varint(UInt64(v)) }

    /// A `count` of items (rows, dictionary strings, choices, metadata entries).
    @inline(__always) mutating func itemCount(_ n: Int) {
        items += n
        varint(n)
    }

    @inline(__always) mutating func zigzag(_ v: Int64) { varint(zigzagEncode(v)) }

    /// A time as the zigzag varint of its difference (wrapping) from `previous`, which it then replaces.
    @inline(__always) mutating func delta(_ t: Timestamp, from previous: inout Int64) {
        zigzag(t.millisecondsSince1970 &- previous)
        previous = t.millisecondsSince1970
    }

    @inline(__always) mutating func utf8(_ s: String) {
        var s = s
        s.withUTF8 { bytes.append(contentsOf: $0) }
    }

    /// varint byte length, then the UTF-8 bytes.
    @inline(__always) mutating func string(_ s: String) {
        varint(s.utf8.count)
        utf8(s)
    }

    /// varint 0 for nil, else varint (byte length + 1) and the UTF-8 bytes.
    @inline(__always) mutating func optionalString(_ s: String?) {
        guard let s else { return u8(0) }
        varint(s.utf8.count + 1)
        utf8(s)
    }
}

@inline(__always) func zigzagEncode(_ v: Int64) -> UInt64 { UInt64(bitPattern: (v << 1) ^ (v >> 63)) }
@inline(__always) func zigzagDecode(_ v: UInt64) -> Int64 { Int64(bitPattern: (v >> 1) ^ (0 &- (v & 1))) }

/// Where a reader's bytes sit in the file, for error messages.
struct ReaderContext {
    /// File offset of the reader's byte 0.
    var fileOffset: Int
    /// The bytes are an inflated (decompressed) payload, so positions are not file offsets.
    var inflated: Bool = false
    var tag: UInt16?
}

/// Reads primitives from a buffer, checking every length against the bytes left before using it.
struct ByteReader {
    let buffer: UnsafeRawBufferPointer
    var pos: Int
    let end: Int
    let context: ReaderContext
    /// Items (rows, dictionary strings, choices, metadata entries) counted so far in the record,
    /// and how many it may hold (`Limits.maxItemCount`).
    var items: Int
    let maxItems: Int

    init(_ buffer: UnsafeRawBufferPointer, context: ReaderContext, items: Int = 0, maxItems: Int = .max) {
        self.buffer = buffer
        self.pos = 0
        self.end = buffer.count
        self.context = context
        self.items = items
        self.maxItems = maxItems
    }

    var remaining: Int { end &- pos }
    var atEnd: Bool { pos == end }

    func error(_ kind: FormatError.Kind, _ detail: String, at position: Int? = nil) -> FormatError {
        let p = position ?? pos
        if context.inflated {
            return FormatError(
                kind, offset: context.fileOffset, sectionTag: context.tag,
                detail: "\(detail) (at byte \(p) of the inflated payload)")
        }
        return FormatError(kind, offset: context.fileOffset + p, sectionTag: context.tag, detail: detail)
    }

    @inline(__always) mutating func need(_ n: Int, _ what: @autoclosure () -> String) throws(FormatError) {
        guard n <= remaining else {
            throw error(.truncated, "\(what()) needs \(n) bytes, \(remaining) left")
        }
    }

    @inline(__always) mutating func u8(_ what: @autoclosure () -> String = "byte") throws(FormatError)
        -> UInt8
    {
        guard pos < end else { throw error(.truncated, "\(what()) needs 1 byte, 0 left") }
        let b = buffer[pos]
        pos &+= 1
        return b
    }

    mutating func u16(_ what: @autoclosure () -> String) throws(FormatError) -> UInt16 {
        try need(2, what())
        let v = UInt16(buffer[pos]) | UInt16(buffer[pos + 1]) << 8
        pos += 2
        return v
    }

    mutating func u32(_ what: @autoclosure () -> String) throws(FormatError) -> UInt32 {
        try need(4, what())
        var v: UInt32 = 0
        for k in 0..<4 { v |= UInt32(buffer[pos + k]) << UInt32(8 * k) }
        pos += 4
        return v
    }

    mutating func u64(_ what: @autoclosure () -> String) throws(FormatError) -> UInt64 {
        try need(8, what())
        var v: UInt64 = 0
        for k in 0..<8 { v |= UInt64(buffer[pos + k]) << UInt64(8 * k) }
        pos += 8
        return v
    }

    /// An unsigned LEB128 varint of at most 10 bytes; overlong and overflowing encodings are errors.
    ///
    /// Inline, a varint of up to 9 bytes that ends in the buffer and is not overlong; anything else
    /// (10 bytes, the end of the buffer, an overlong or overflowing encoding) is read again by
    /// `varintSlow`, which gives the errors. `what` is evaluated only for an error.
    @inline(__always) mutating func varint(_ what: @autoclosure () -> String = "varint") throws(FormatError)
        -> UInt64
    {
        var p = pos
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while p < end, shift < 63 {
            let b = buffer[p]
            p &+= 1
            result |= UInt64(b & 0x7F) &<< shift
            if b < 0x80 {
                guard b != 0 || shift == 0 else { break }
                pos = p
                return result
            }
            shift &+= 7
        }
        return try varintSlow(what)
    }

    mutating func varintSlow(_ what: () -> String) throws(FormatError) -> UInt64 {
        let start = pos
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard pos < end else { throw error(.truncated, "\(what()) runs past the end", at: start) }
            let b = buffer[pos]
            pos += 1
            if shift == 63, b > 1 { throw error(.malformed, "\(what()) overflows 64 bits", at: start) }
            result |= UInt64(b & 0x7F) << shift
            if b < 0x80 {
                if b == 0, shift > 0 {
                    throw error(.malformed, "\(what()) has an overlong encoding", at: start)
                }
                return result
            }
            shift += 7
        }
    }

    @inline(__always) mutating func zigzag(_ what: @autoclosure () -> String = "integer") throws(FormatError)
        -> Int64
    {
        zigzagDecode(try varint(what()))
    }

    /// A time stored as a zigzag delta from `previous`, which it then replaces.
    @inline(__always) mutating func delta(
        from previous: inout Int64, _ what: @autoclosure () -> String = "time"
    )
        throws(FormatError) -> Timestamp
    {
        previous = previous &+ zigzagDecode(try varint(what()))
        return Timestamp(millisecondsSince1970: previous)
    }

    /// A count or index that must not exceed `limit`.
    @inline(__always) mutating func int(max limit: Int, _ what: @autoclosure () -> String) throws(FormatError)
        -> Int
    {
        let start = pos
        let v = try varint(what())
        guard limit >= 0, v <= UInt64(limit) else {
            throw error(.malformed, "\(what()) \(v) is out of range (largest allowed: \(limit))", at: start)
        }
        return Int(v)
    }

    /// A count of items each taking at least `minItemSize` bytes (see docs/FORMAT.md), so that many
    /// items must fit in the bytes left, and within the record's item limit: checked before
    /// anything is reserved for them.
    @inline(__always) mutating func count(_ what: @autoclosure () -> String, minItemSize: Int = 1)
        throws(FormatError) -> Int
    {
        let start = pos
        let v = try varint(what())
        guard v <= UInt64(remaining / minItemSize) else {
            let needed = v.multipliedReportingOverflow(by: UInt64(minItemSize))
            let bytes = needed.overflow ? "more than 2^64" : "\(needed.partialValue)"
            throw error(
                .lengthBeyondEnd,
                "\(what()) \(v) needs at least \(bytes) bytes (\(minItemSize) per item), \(remaining) left",
                at: start)
        }
        guard Int(v) <= maxItems - items else {
            throw error(
                .limitExceeded,
                "\(what()) \(v) makes \(items + Int(v)) items (rows, dictionary strings, choices, metadata entries) in the record, above the limit of \(maxItems) (RecordCodec.Limits.maxItemCount)",
                at: start)
        }
        items += Int(v)
        return Int(v)
    }

    /// `n` bytes of valid UTF-8.
    @inline(__always) mutating func utf8(_ n: Int, _ what: @autoclosure () -> String) throws(FormatError)
        -> String
    {
        guard n <= remaining else {
            throw error(.lengthBeyondEnd, "\(what()) length \(n) exceeds the \(remaining) bytes left")
        }
        let start = pos
        let slice = UnsafeBufferPointer<UInt8>(
            start: buffer.baseAddress.map { $0.assumingMemoryBound(to: UInt8.self) + start }, count: n)
        guard let s = decodeUTF8(slice) else {
            throw error(.invalidValue, "\(what()) is not valid UTF-8", at: start)
        }
        pos += n
        return s
    }

    @inline(__always) mutating func string(_ what: @autoclosure () -> String) throws(FormatError) -> String {
        let start = pos
        let n = try varint(what())
        guard n <= UInt64(remaining) else {
            throw error(
                .lengthBeyondEnd, "\(what()) length \(n) exceeds the \(remaining) bytes left", at: start)
        }
        return try utf8(Int(n), what())
    }

    @inline(__always) mutating func optionalString(_ what: @autoclosure () -> String) throws(FormatError)
        -> String?
    {
        guard let length = try optionalStringLength(what()) else { return nil }
        return try utf8(length, what())
    }

    /// The byte length of the `optstring` at the reader (nil for none), checked against the bytes
    /// left; the reader is left at its first byte.
    @inline(__always) mutating func optionalStringLength(_ what: @autoclosure () -> String)
        throws(FormatError) -> Int?
    {
        let start = pos
        let n = try varint(what())
        if n == 0 { return nil }
        guard n - 1 <= UInt64(remaining) else {
            throw error(
                .lengthBeyondEnd, "\(what()) length \(n - 1) exceeds the \(remaining) bytes left", at: start)
        }
        return Int(n - 1)
    }
}

/// Strict UTF-8 decoding: nil for anything invalid (overlong forms, surrogates, > U+10FFFF, truncation).
///
/// `String(decoding:as:)` (the standard library's fast, non-generic path) replaces each invalid
/// sequence with U+FFFD, so the bytes are valid exactly when the string's UTF-8 is the same bytes:
/// at the first invalid sequence the string holds EF BF BD, which the input cannot hold there, as
/// that is itself a valid sequence. This is about four times faster than `String(validating:as:)`,
/// whose generic path looks up type metadata for every string.
/// ASCII bytes (checked eight at a time) are valid as they are, and need no comparison.
@inline(__always) func decodeUTF8(_ bytes: UnsafeBufferPointer<UInt8>) -> String? {
    guard let source = bytes.baseAddress, !bytes.isEmpty else { return "" }
    if isASCII(UnsafeRawPointer(source), bytes.count) { return String(decoding: bytes, as: UTF8.self) }
    let s = String(decoding: bytes, as: UTF8.self)
    return sameBytes(s, UnsafeRawBufferPointer(bytes)) ? s : nil
}

/// Whether `s` is exactly `bytes` in UTF-8.
@inline(__always) func sameBytes(_ s: String, _ bytes: UnsafeRawBufferPointer) -> Bool {
    guard s.utf8.count == bytes.count else { return false }
    guard let base = bytes.baseAddress else { return true }
    var s = s
    return s.withUTF8 { memcmp($0.baseAddress!, base, bytes.count) == 0 }
}

/// Whether the `count` bytes at `p` are all below 0x80.
@inline(__always) func isASCII(_ p: UnsafeRawPointer, _ count: Int) -> Bool {
    var i = 0
    var bits: UInt64 = 0
    while i &+ 8 <= count {
        bits |= p.loadUnaligned(fromByteOffset: i, as: UInt64.self)
        i &+= 8
    }
    while i < count {
        bits |= UInt64(p.load(fromByteOffset: i, as: UInt8.self))
        i &+= 1
    }
    return bits & 0x8080_8080_8080_8080 == 0
}

/// A currency code as stored: exactly three upper-case ASCII letters.
func storedCurrency(_ s: String) -> CurrencyCode? {
    guard s.utf8.count == 3, s.utf8.allSatisfy({ $0 >= 65 && $0 <= 90 }) else { return nil }
    return CurrencyCode(s)
}
