import CarbonModel
import Testing

@testable import CarbonFormat

/// The pieces of the codec's fast paths: varints read inline, and the section dictionary's
/// representation cache.
@Suite struct CodecInternalsTests {
    /// Reads one varint from `bytes` with a description that counts how often it is built.
    static func read(_ bytes: [UInt8]) -> (value: UInt64?, error: FormatError?, pos: Int, described: Int) {
        bytes.withUnsafeBytes { buffer in
            var r = ByteReader(buffer, context: ReaderContext(fileOffset: 0))
            var described = 0
            func what() -> String {
                described += 1
                return "test value"
            }
            do throws(FormatError) {
                let v = try r.varint(what())
                return (v, nil, r.pos, described)
            } catch {
                return (nil, error, r.pos, described)
            }
        }
    }

    /// Every length from 1 to 10 bytes, at the edges of each length, and every error, as the
    /// format specifies them; the description of the value is built only for an error.
    @Test func varintsOfEveryLengthAndEveryError() {
        var values: [UInt64] = [0, 1, 127, UInt64.max, UInt64.max - 1, 1 << 63]
        for k in 1...9 {
            values += [1 << (7 * UInt64(k)), (1 << (7 * UInt64(k))) - 1, (1 << (7 * UInt64(k))) + 1]
        }
        for v in values {
            var w = ByteWriter(capacity: 10)
            w.varint(v)
            let encoded = w.bytes
            let got = Self.read(encoded + [0xAA])
            #expect(got.value == v && got.pos == encoded.count, "\(v)")
            #expect(got.described == 0, "\(v): description built \(got.described) times")
            // Cut short anywhere: truncated, reported at the varint's start.
            for cut in 0..<encoded.count {
                let short = Self.read(Array(encoded[..<cut]))
                #expect(short.error?.kind == .truncated && short.error?.offset == 0, "\(v) cut at \(cut)")
                #expect(short.described == 1)
            }
        }
        // Overlong: a last byte 0 after a continuation, at every length.
        for n in 2...10 {
            let overlong = [UInt8](repeating: 0x80, count: n - 1) + [0]
            let got = Self.read(overlong)
            #expect(got.error?.kind == .malformed && got.error?.detail.contains("overlong") == true, "\(n)")
        }
        // Ten bytes whose last is above 1 overflow 64 bits; eleven never end within ten.
        let overflow = [UInt8](repeating: 0xFF, count: 9) + [0x02]
        #expect(Self.read(overflow).error?.detail.contains("overflows 64 bits") == true)
        let eleven = [UInt8](repeating: 0xFF, count: 10) + [0x01]
        #expect(Self.read(eleven).error?.kind == .malformed)
    }

    /// The section dictionary gives one index per distinct byte string, in order of first use,
    /// whatever storage a string has: the same storage, another storage with the same bytes, a
    /// small string, canonically equivalent spellings (distinct), and more strings than its cache
    /// has slots.
    @Test func dictionaryIndicesAreByBytes() {
        var table = StringTable(capacity: 4)
        var expected: [String] = []
        func check(_ s: String, sourceLocation: SourceLocation = #_sourceLocation) {
            let id = table.id(s)
            if let known = expected.firstIndex(where: { $0.isByteEqual(to: s) }) {
                #expect(id == known, "\(s)", sourceLocation: sourceLocation)
            } else {
                #expect(id == expected.count, "\(s)", sourceLocation: sourceLocation)
                expected.append(s)
            }
        }
        let words = (0..<500).map { "merchant name number \($0)" }
        for round in 0..<3 {
            for (i, w) in words.enumerated() where i % (round + 1) == 0 {
                check(w)
                // Another storage with the same bytes.
                check(String(decoding: Array(w.utf8), as: UTF8.self))
                check("m\(i)")
            }
        }
        check("caf\u{E9}")
        check("cafe\u{301}")
        check("")
        #expect(table.strings.count == expected.count)
        #expect(table.strings.isByteEqual(to: expected))
    }
}
