import CarbonModel
import Foundation
import Testing

@testable import CarbonFormat

/// Metadata keys cost their bytes once per file, not once per entry that names them
/// (docs/FORMAT.md §8): a file stores each string once, so a small file can have thousands of
/// transactions name the same long keys. Before, every entry hashed its key when the decoder built
/// the transaction's metadata, and the encoder compared the keys of every transaction byte by byte:
/// 4,000 transactions naming two keys of 100 kB took 0.4 s to decode and 2.2 s to encode again in
/// a release build (`CodecProfile long-keys 4000 100000`, docs/BENCHMARKS.md).
@Suite struct LongKeyTests {
    static let t0 = Timestamp(millisecondsSince1970: 1_700_000_000_000)

    /// `count` transactions that all name the same two keys of `length` bytes, equal but for their
    /// last byte, through one dictionary value (as a decoded record shares the file's strings).
    static func record(count: Int, length: Int) throws -> (record: UserRecord, keys: [String]) {
        // Letters that do not compress much: a file whose sections inflate more than
        // `maxCompressionRatio` times is refused.
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        let letters = (0..<(length - 1)).map { _ -> UInt8 in
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return UInt8(ascii: "a") + UInt8((state >> 33) % 26)
        }
        let stem = String(decoding: letters, as: UTF8.self)
        let keys = [stem + "b", stem + "a"]
        let metadata: ExactDictionary<String> = [keys[0]: "second", keys[1]: "first"]
        var record = UserRecord(userID: "long-keys", createdAt: t0)
        for i in 0..<count {
            try record.upsert(
                Transaction(
                    id: "t\(i)", time: Timestamp(millisecondsSince1970: t0.millisecondsSince1970 + Int64(i)),
                    amount: Money(minorUnits: 100, currency: CurrencyCode("EUR")!), metadata: metadata))
        }
        return (record, keys)
    }

    /// 12,000 transactions naming two keys of 2 MiB: 50 GB of key bytes if every entry hashed its
    /// key. The decode and the encode of the decoded record (what a compaction of that user does)
    /// take 0.6 to 1 s in a debug build on a 2-core machine; a decode that hashed every entry's key
    /// took 18 s there. (What the encoder saves, comparing two long keys once and looking a long
    /// string up once, is counted by the tests below: `memcmp` of 25 GB would pass the limit.)
    @Test func entriesNamingTwoLongKeysCostTheKeysOnce() throws {
        let (record, keys) = try Self.record(count: 12_000, length: 2 << 20)
        let codec = RecordCodec()
        let file = try codec.encodeSnapshot(record, fileID: .random()).bytes

        let start = ContinuousClock.now
        let decoded = try codec.decodeFile(file).record
        let again = try codec.encodeSnapshot(decoded, fileID: .random()).bytes
        let elapsed = ContinuousClock.now - start
        #expect(elapsed < .seconds(8), "decode and encode took \(elapsed)")

        #expect(decoded.transactions.count == 12_000)
        for i in [0, 4_321, 11_999] {
            let metadata = decoded.transactions[i].metadata
            #expect(metadata.count == 2)
            #expect(metadata[keys[1]] == "first" && metadata[keys[0]] == "second")
        }
        // The encoding of the decoded record decodes to the same entries.
        let twice = try codec.decodeFile(again).record
        #expect(twice.transactions.count == 12_000)
        let last = twice.transactions[12_000 - 1].metadata
        #expect(last.count == 2 && last[keys[1]] == "first" && last[keys[0]] == "second")
    }

    /// The file lists each transaction's keys in the order of their bytes, the first transaction's
    /// (whose comparisons are made) and the later ones' (whose comparisons are remembered): four long
    /// keys that differ at their end, put in each transaction in another order.
    @Test func longKeysAreWrittenInTheOrderOfTheirBytes() throws {
        let stem = String(repeating: "x", count: LongKeyOrder.longKey)
        let keys = [stem + "\u{E9}", stem + "e", stem + "z", stem]
        let expected = keys.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
        var record = UserRecord(userID: "order", createdAt: Self.t0)
        let permutations = [
            [0, 1, 2, 3], [3, 2, 1, 0], [2, 0, 3, 1], [1, 3, 0, 2], [3, 1, 2, 0], [0, 2, 3, 1],
        ]
        // Each transaction's values are its own, so that the dictionary, whose strings are in the
        // order of their first use, shows the order of every transaction's entries.
        func value(_ k: Int, _ i: Int) -> String { "v\(k)t\(i)" }
        for (i, order) in permutations.enumerated() {
            var metadata = ExactDictionary<String>()
            for k in order { metadata[keys[k]] = value(k, i) }
            try record.upsert(
                Transaction(
                    id: "t\(i)",
                    time: Timestamp(millisecondsSince1970: Self.t0.millisecondsSince1970 + Int64(i)),
                    amount: Money(minorUnits: 1, currency: CurrencyCode("EUR")!), metadata: metadata))
        }
        // Uncompressed, so that the section's dictionary can be read in the file.
        let codec = RecordCodec(options: .init(compression: .none))
        let file = try codec.encodeSnapshot(record, fileID: .random()).bytes
        for i in permutations.indices {
            let positions = expected.map { key -> Int in
                let text = Array(value(keys.firstIndex(of: key)!, i).utf8)
                let pattern = [UInt8(text.count)] + text
                return (0...(file.count - pattern.count)).first {
                    Array(file[$0..<($0 + pattern.count)]) == pattern
                }
                    ?? -1
            }
            #expect(positions.allSatisfy { $0 > 0 } && positions == positions.sorted(), "t\(i): \(positions)")
        }
        let decoded = try codec.decodeFile(file).record
        for t in decoded.transactions {
            #expect(t.metadata.sortedByKey.map(\.key) == expected)
        }
        // Asked again, the remembered order is the same, and the bytes are not compared again.
        var order = LongKeyOrder()
        for (a, b) in zip(expected, expected.dropFirst()) {
            #expect(order.less(a, b) && !order.less(b, a))
        }
        // One comparison per pair, whichever way round it is asked.
        #expect(order.comparisons == 3)
        for (a, b) in zip(expected, expected.dropFirst()) {
            #expect(order.less(a, b) && !order.less(b, a), "remembered")
        }
        #expect(order.comparisons == 3)
        // Equal bytes in two strings are not less either way, and short keys are compared directly.
        let copy = String(decoding: Array(expected[1].utf8), as: UTF8.self)
        #expect(!order.less(expected[1], copy) && !order.less(copy, expected[1]))
        let itself = order.less(copy, copy)
        #expect(!itself)
        #expect(order.less("a", "b") && !order.less("b", "a"))
        #expect(order.comparisons == 4)
    }

    /// An encoder's dictionary looks a long string up by its bytes once, however often it is used
    /// and however many other strings pass through its cache of recent strings in between.
    @Test func aLongStringIsLookedUpByItsBytesOnce() {
        var table = StringTable(capacity: 64)
        let strings = (0..<600).map { String(repeating: "s", count: LongKeyOrder.longKey) + "\($0)" }
        for _ in 0..<3 {
            for (i, s) in strings.enumerated() { #expect(table.id(s) == i) }
        }
        #expect(table.lookUps == 600)
        #expect(table.strings.count == 600)
    }

    /// `isBytewiseLess` and `isByteEqual` (which compare with `memcmp`) agree with a comparison of
    /// the UTF-8 bytes as arrays: prefixes, bytes above 0x7F, empty strings, long strings.
    @Test func byteOrderAndEqualityAgreeWithTheBytes() {
        let pieces = ["", "a", "b", "ab", "\u{E9}", "e\u{301}", "\u{10FFFF}", "\u{7F}", "\u{80}", "\0"]
        var strings: [String] = []
        for p in pieces {
            for q in pieces { strings.append(p + q) }
        }
        let long = String(repeating: "q", count: 300)
        strings += [long, long + "a", long + "\u{E9}", String(long.dropLast()), "a" + long]
        for a in strings {
            for b in strings {
                let x = Array(a.utf8)
                let y = Array(b.utf8)
                #expect(a.isBytewiseLess(than: b) == x.lexicographicallyPrecedes(y), "\(x) < \(y)")
                #expect(a.isByteEqual(to: b) == (x == y), "\(x) == \(y)")
            }
        }
    }
}
